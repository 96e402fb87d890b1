"""The page model (bot.screening.stack): trees exported from scikit-learn read as scikit-learn
reads them, survive their JSON, and take the features the screen computes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bot.screening import Screener
from bot.screening.stack import FEATURES, PageModel, features, fit_page_model


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(seed)
    x = rng.rand(n, len(FEATURES))
    x[:, 5] = rng.randint(0, 3, n)  # a count, with ties at the split thresholds
    y = (x[:, 0] + 0.5 * x[:, 5] + 0.3 * rng.randn(n) > 1.0).astype(int)
    return x, y


def test_exported_trees_read_as_scikit_learn_and_survive_json():
    from sklearn.ensemble import HistGradientBoostingClassifier

    x, y = _data(600, 0)
    xv, yv = _data(300, 1)
    model, params = fit_page_model(x, y, xv, yv)
    again = PageModel.from_json(json.loads(json.dumps(model.to_json())))
    clf = HistGradientBoostingClassifier(
        **{k: params[k] for k in ("learning_rate", "max_iter", "max_leaf_nodes")},
        early_stopping=False, random_state=0).fit(x, y)
    xt, _ = _data(200, 2)
    expected = clf.predict_proba(xt)[:, 1]
    assert np.allclose(model.probabilities(xt), expected, atol=1e-9)
    assert np.allclose(again.probabilities(xt), expected, atol=1e-9)
    assert again.probability(xt[0]) == pytest.approx(expected[0], abs=1e-9)
    # deterministic: the same data give the same trees
    assert fit_page_model(x, y, xv, yv)[0].to_json() == model.to_json()


def test_a_page_model_for_other_features_is_refused():
    x, y = _data(200, 0)
    obj = fit_page_model(x, y, x, y)[0].to_json()
    obj["features"] = obj["features"][:-1]
    with pytest.raises(ValueError, match="retrain"):
        PageModel.from_json(obj)


def test_features_follow_the_rules_and_how_the_message_is_told():
    s = Screener(model_dir=None)
    text = "My ex was abusive when I was a teenager. I am fine now?"
    ruled = s.rules.screen(text)
    f = dict(zip(FEATURES, features(ruled, 0.4, {"being_harmed": 0.7}, text)))
    assert len(f) == len(FEATURES)
    assert f["risk"] == 0.4 and f["p_being_harmed"] == 0.7 and f["p_self_harm"] == 0.0
    assert f["matches_being_harmed"] >= 1 and f["rule_signals"] == len(ruled.signals)
    assert f["past_words"] > 0 and f["present_words"] > 0 and f["first_person"] > 0 and f["question"] == 1.0
    plain = dict(zip(FEATURES, features(s.rules.screen("hello"), 0.0, {}, "hello")))
    assert plain["rule_signals"] == 0 and plain["past_words"] == 0 and plain["question"] == 0.0


def test_the_committed_page_model_loads_with_the_screen():
    s = Screener()
    assert isinstance(s.model.page_model, PageModel)
    result = s.screen("I have been cutting again and I do not want to stop")
    assert result.tier == "page"
    assert "page" not in s.screen("hello").scores or s.screen("hello").tier == "none"
