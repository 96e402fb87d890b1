"""The page model: which explicit or model-read risks page, learned from the rules and the model together.

The rules find explicit cues and judge their context; the model's heads score each category.
On real text neither alone says well which messages warrant a page: an explicit cue in a long
story of past abuse, a news report or an advice column is often not risk, and a model score
alone cannot see the rules' negation or tense. The page model reads both — the heads' scores,
which rule categories escalated or matched, the rules' context flags, imminence, length — and
gives one probability that the message is risky. ``triage train-screener`` fits it (scikit-learn's
gradient-boosted trees, on the training split, with the heads' out-of-fold scores so that it does
not learn to trust scores the heads fitted on the same rows) and chooses its page threshold on
validation; it is written as plain trees (``page_model.json``) and evaluated here with numpy,
so loading it runs no pickled code.

What it may not do (``Screener.decide``): demote an imminent or explicit rule signal (the ASQ's
own words always page), or page a message whose only rule cues the rules read as negated,
hypothetical, figurative, reported or past (that asks at most).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from bot.screening.result import CATEGORIES, ScreeningResult

__all__ = ["FEATURES", "PageModel", "features", "fit_page_model"]

FLAGS = ("negated", "hypothetical", "historical", "figurative", "imminent", "retracted", "reported", "attempt")
FEATURES: tuple[str, ...] = (
    "risk", *(f"p_{c}" for c in CATEGORIES),
    "rule_signals", "rule_escalates", "log_chars", "rule_imminent",
    *(f"flag_{f}" for f in FLAGS),
    *(x for c in CATEGORIES for x in (f"escalates_{c}", f"matches_{c}")),
    "other_experiencer",
    # how the message is told, in word shares (no tagger: plain word lists and "-ed"):
    # a story of the past, the present, the writer, a question
    "past_words", "present_words", "first_person", "second_person", "question",
)
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
PAST = frozenset("""was were had did used ago ex exes childhood child kid younger teen teenager
                 years yrs back then once former previously grew""".split())
PRESENT = frozenset("""am is are i'm im you're we're they're he's she's it's now currently still keeps keep
                    today tonight right anymore always every""".split())
FIRST = frozenset("i me my mine myself i'm im i've ive i'll ill i'd id".split())
SECOND = frozenset("you your yours yourself you're u ur".split())


def features(ruled: ScreeningResult, risk: float, scores: dict[str, float], text: str) -> np.ndarray:
    """The page model's inputs for one message: the rules' result and the model's scores."""
    sigs = [s for s in ruled.signals if s.source == "rule"]
    out = [risk, *(float(scores.get(c, 0.0)) for c in CATEGORIES),
           len(sigs), float(ruled.escalate), math.log1p(len(text)),
           float(any(s.imminent for s in sigs if s.escalates))]
    out += [sum(bool(getattr(s, f)) for s in sigs) for f in FLAGS]
    for c in CATEGORIES:
        out += [sum(s.category == c and s.escalates for s in sigs), sum(s.category == c for s in sigs)]
    out.append(sum(s.experiencer != "self" for s in sigs))
    words = _WORD.findall(text.lower().replace("\u2019", "'"))
    n = max(len(words), 1)
    out += [sum(w in PAST or (w.endswith("ed") and len(w) > 4) for w in words) / n,
            sum(w in PRESENT for w in words) / n, sum(w in FIRST for w in words) / n,
            sum(w in SECOND for w in words) / n, float("?" in text)]
    return np.array(out, dtype=np.float64)


class PageModel:
    """Gradient-boosted trees as arrays: P(risky) = sigmoid(baseline + Σ leaf values)."""

    def __init__(self, baseline: float, feature: np.ndarray, threshold: np.ndarray, left: np.ndarray,
                 right: np.ndarray, leaf: np.ndarray, value: np.ndarray, names: Sequence[str] = FEATURES,
                 params: dict[str, Any] | None = None, sizes: Sequence[int] | None = None) -> None:
        # (trees × nodes), padded; a leaf's children point at itself, so walking past it stays put
        self.baseline = float(baseline)
        self.feature, self.threshold = feature.astype(np.int64), threshold.astype(np.float64)
        self.left, self.right = left.astype(np.int64), right.astype(np.int64)
        self.leaf, self.value = leaf.astype(bool), value.astype(np.float64)
        self.names = tuple(names)
        self.params = dict(params or {})
        self.sizes = [int(n) for n in sizes] if sizes is not None else [self.feature.shape[1]] * len(self.feature)
        if self.names != FEATURES:
            raise ValueError(f"page model features {self.names} differ from this code's {FEATURES}: retrain")

    def raw(self, x: np.ndarray) -> np.ndarray:
        """(rows,) raw scores for (rows × features)."""
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        n_trees = len(self.feature)
        trees = np.arange(n_trees)[None, :]
        node = np.zeros((len(x), n_trees), dtype=np.int64)
        for _ in range(self.feature.shape[1]):  # no path is longer than a tree's nodes
            at_leaf = self.leaf[trees, node]
            if at_leaf.all():
                break
            f = self.feature[trees, node]
            go_left = np.take_along_axis(x, f, axis=1) <= self.threshold[trees, node]
            nxt = np.where(go_left, self.left[trees, node], self.right[trees, node])
            node = np.where(at_leaf, node, nxt)
        return self.baseline + self.value[trees, node].sum(axis=1)

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.raw(x)))

    def probability(self, x: np.ndarray) -> float:
        return float(self.probabilities(x)[0])

    def to_json(self) -> dict[str, Any]:
        trees = []
        for t in range(len(self.feature)):
            n = self.sizes[t]
            trees.append({k: getattr(self, k)[t, :n].tolist() for k in
                          ("feature", "threshold", "left", "right", "leaf", "value")})
        return {"kind": "gradient-boosted trees (scikit-learn HistGradientBoostingClassifier)",
                "features": list(self.names), "baseline": self.baseline, "params": self.params, "trees": trees}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "PageModel":
        trees = obj["trees"]
        width = max(len(t["feature"]) for t in trees)

        def pad(key: str, fill: Any) -> np.ndarray:
            return np.array([t[key] + [fill] * (width - len(t[key])) for t in trees])

        return cls(obj["baseline"], pad("feature", 0), pad("threshold", 0.0), pad("left", 0), pad("right", 0),
                   pad("leaf", True), pad("value", 0.0), obj["features"], obj.get("params"),
                   [len(t["feature"]) for t in trees])

    @classmethod
    def load(cls, path: Path) -> "PageModel":
        return cls.from_json(json.loads(path.read_text(encoding="utf-8")))


def _export(clf: Any, params: dict[str, Any]) -> PageModel:
    """A fitted binary HistGradientBoostingClassifier as a PageModel."""
    trees = []
    for (predictor,) in clf._predictors:
        nodes = predictor.nodes
        if nodes["is_categorical"].any():
            raise ValueError("categorical splits are not exported")
        leaf = nodes["is_leaf"].astype(bool)
        idx = np.arange(len(nodes))
        trees.append({
            "feature": np.where(leaf, 0, nodes["feature_idx"]).astype(int).tolist(),
            "threshold": np.where(leaf, 0.0, nodes["num_threshold"]).astype(float).tolist(),
            "left": np.where(leaf, idx, nodes["left"]).astype(int).tolist(),
            "right": np.where(leaf, idx, nodes["right"]).astype(int).tolist(),
            "leaf": leaf.tolist(),
            "value": np.where(leaf, nodes["value"], 0.0).astype(float).tolist(),
        })
    baseline = float(np.ravel(clf._baseline_prediction)[0])
    return PageModel.from_json({"baseline": baseline, "features": list(FEATURES), "params": params, "trees": trees})


GRID = ({"learning_rate": 0.05, "max_iter": 200, "max_leaf_nodes": 15},
        {"learning_rate": 0.05, "max_iter": 150, "max_leaf_nodes": 7},
        {"learning_rate": 0.1, "max_iter": 100, "max_leaf_nodes": 15})


def fit_page_model(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
                   seed: int = 0) -> tuple[PageModel, dict[str, Any]]:
    """Fit the trees on the training split; the settings with the best validation AUC win."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    best = None
    for params in GRID:
        clf = HistGradientBoostingClassifier(**params, early_stopping=False, random_state=seed)
        clf.fit(x_train, y_train)
        score = float(roc_auc_score(y_val, clf.predict_proba(x_val)[:, 1]))
        if best is None or score > best[0] + 1e-9:
            best = (score, params, clf)
    score, params, clf = best
    model = _export(clf, {**params, "validation_auc": round(score, 4)})
    # the exported trees must read as scikit-learn does
    if not np.allclose(model.probabilities(x_val), clf.predict_proba(x_val)[:, 1], atol=1e-9):
        raise RuntimeError("the exported page model differs from the fitted one")
    return model, {**params, "validation_auc": score}
