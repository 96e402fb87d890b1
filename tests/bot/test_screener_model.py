"""The screen with its model: tiers, model signals with their sentence, and failure safety.

The example messages are written here as unit tests (not evidence): indirect wording that
no rule names, for the model; and plain benign messages.
"""

from __future__ import annotations

import pytest

from bot.screening import Screener, get_screener
from bot.screening.model import ModelScore

# Indirect disclosures: no explicit cue a rule names (checked below), risk in the wording.
INDIRECT = [
    "Everyone would honestly be better off without me around. I have written letters to my family.",
    "I have been giving my things away this week. I won't need them where I'm going.",
    "I don't see any way out anymore and I'm so tired of all of it. Tonight feels different.",
    "Nobody would even notice if I was gone. I'm done pretending.",
    "i cant keep going like this, i just want everything to stop for good",
    "I looked up how many of my pills it would take. Just curious I guess.",
]
BENIGN = [
    "Can I book an appointment for next Tuesday afternoon?",
    "Thanks for the session yesterday, the breathing exercise helped.",
    "What time does the clinic open on Monday?",
]


@pytest.fixture(scope="module")
def screener() -> Screener:
    return get_screener()


def test_benign_messages_are_tier_none(screener):
    for text in BENIGN:
        result = screener.screen(text)
        assert result.tier == "none" and not result.escalate, text
        assert result.scores is not None and result.scores["risk"] < screener.thresholds["ask"], text


def test_indirect_disclosures_are_never_silent(screener):
    for text in INDIRECT:
        assert screener.screen(text).tier in ("page", "ask"), text


def test_a_model_only_page_carries_a_model_signal_with_its_sentence():
    s = Screener()
    text = "The weather was grey all week. There is nothing left for me here and I am ready now. See you."
    assert s.rules.screen(text).signals == []  # nothing a rule names: the model alone decides
    _with_page(s, s.thresholds["page"])
    result = s.screen(text)
    assert result.tier == "page" and result.escalate and result.categories
    assert result.priority in ("routine", "urgent") and "risk model" in result.reason
    model_signals = [sig for sig in result.signals if sig.source == "model"]
    assert {sig.category for sig in model_signals} == set(result.categories)
    for sig in model_signals:  # the sentence that carried the score, offsets into the original
        assert text[sig.start:sig.end] == sig.cue == "There is nothing left for me here and I am ready now."
        assert sig.to_dict()["source"] == "model" and sig.score is not None
    from bot.escalation import evidence_from_screening

    assert any("«There is nothing left for me here" in line for line in evidence_from_screening(text, result.to_dict()))


def _with_score(screener: Screener, risk: float) -> Screener:
    fixed = ModelScore(risk=risk, scores={"self_harm": risk, "harm_to_others": 0.0, "lethal_means": 0.0,
                                          "being_harmed": 0.0, "third_party_concern": 0.0}, window=0)
    screener.model.score = lambda text: fixed  # type: ignore[method-assign]
    return screener


def _with_page(screener: Screener, p: float) -> Screener:
    """Fix what the page model reads (bot.screening.stack), whatever the message."""
    screener.model.page_model.probability = lambda features: p  # type: ignore[method-assign]
    return screener


def test_tiers_follow_the_thresholds():
    s = Screener()
    t = s.thresholds
    text = "some words with no rule cue"
    assert s.rules.screen(text).signals == []
    # page: the page model reaches its threshold on a message no rule names
    assert _with_page(_with_score(s, t["ask"]), t["page"]).screen(text).tier == "page"
    below = _with_page(s, max(0.0, t["page"] - 1e-6))
    assert below.screen(text).tier == "ask"  # model risk at the ask threshold asks
    ask = s.screen(text)
    assert not ask.escalate and ask.categories == [] and ask.ask_categories == ["self_harm"]
    assert _with_score(s, max(0.0, t["ask"] - 1e-6)).screen(text).tier == "none"
    # the page model's probability is in the result's scores, for the clinician and the review
    assert ask.scores["page"] == pytest.approx(t["page"] - 1e-6)
    # the model's most confident readings page whatever the page model reads
    sure = _with_page(_with_score(s, t["risk_page"]), 0.0).screen(text)
    assert sure.tier == "page" and sure.escalate and "risk model" in sure.reason
    assert _with_score(s, t["risk_page"] - 1e-6).screen(text).tier == "ask"


def test_the_real_page_model_reads_the_rules_and_the_model_together():
    """Without patches: a disclosure the rules name, in the present, pages; the same topic told
    as a news report does not page (it may ask)."""
    s = Screener()
    page = s.screen("My husband hits me every night and I am scared to go home")
    assert page.tier == "page" and page.escalate and "being_harmed" in page.categories
    assert 0.0 <= page.scores["risk"] <= 1.0
    news = s.screen("The report says domestic violence calls rose by a fifth in the city last year.")
    assert news.tier != "page" and not news.escalate


def test_an_explicit_rule_signal_pages_unless_the_page_model_reads_it_as_unlikely():
    s = Screener()
    text = "my boyfriend is abusive"
    rules = {sig.rule for sig in s.rules.screen(text).signals if sig.escalates}
    assert rules and not rules & s.rules.explicit
    s.model.thresholds = {**s.thresholds, "rule_floor": {r: 0.5 for r in rules}}
    assert _with_page(s, 0.51).screen(text).tier == "page"
    low = _with_page(s, 0.2).screen(text)
    assert low.tier == "ask" and low.ask_categories == ["being_harmed"] and not low.escalate
    assert "explicit cue" in low.reason
    # imminence always pages, whatever the model says
    imminent = "I'm going to kill myself tonight"
    s.model.thresholds["rule_floor"].update({sig.rule: 0.9 for sig in s.rules.screen(imminent).signals})
    assert _with_page(_with_score(s, 0.0), 0.0).screen(imminent).tier == "page"


def test_the_asqs_own_words_always_page_whatever_the_model_reads():
    """A pattern marked explicit (a wish to die, killing oneself, suicide and its slang, an
    attempt) is never demoted to "ask", even with a floor above the model's score."""
    s = Screener()
    for text in ("I want to kill myself", "thinking about sewerslide again", "i want to die",
                 "i tried to kill myself last year"):
        rules = {sig.rule for sig in s.rules.screen(text).signals if sig.escalates}
        assert rules & s.rules.explicit, text
        s.model.thresholds = {**s.thresholds, "rule_floor": {r: 0.99 for r in rules}}
        result = _with_page(_with_score(s, 0.01), 0.01).screen(text)
        assert result.tier == "page" and result.escalate and "self_harm" in result.categories, text


def test_a_broken_model_leaves_the_rules_in_charge():
    s = Screener()

    def broken(text):
        raise RuntimeError("onnxruntime fell over")

    s.model.score = broken  # type: ignore[method-assign]
    assert s.screen("I want to kill myself").tier == "page"
    assert s.screen("hello").tier == "none"


def test_a_broken_page_model_leaves_the_rules_in_charge():
    s = Screener()

    def broken(features):
        raise FloatingPointError("a corrupt tree")

    s.model.page_model.probability = broken  # type: ignore[method-assign]
    result = s.screen("my boyfriend is abusive")  # a rule signal the page model would read
    assert result.tier == "page" and result.escalate
    assert s.screen("hello").tier == "none"


def test_a_page_model_for_other_features_does_not_load(tmp_path):
    import json
    import shutil

    from bot.screening.model import ModelUnavailable, RiskModel
    from bot.screening.screener import default_model_dir

    for name in ("head.json", "tokenizer.json", "page_model.json"):
        shutil.copy(default_model_dir() / name, tmp_path / name)
    obj = json.loads((tmp_path / "page_model.json").read_text())
    obj["features"] = obj["features"][:-1]
    (tmp_path / "page_model.json").write_text(json.dumps(obj))
    with pytest.raises(ModelUnavailable, match="retrain"):
        RiskModel(tmp_path)
    (tmp_path / "page_model.json").unlink()
    with pytest.raises(ModelUnavailable, match="page model missing"):
        RiskModel(tmp_path)
