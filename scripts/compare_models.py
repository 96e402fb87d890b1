#!/usr/bin/env python3
"""Compare the three model classes of issue 10 on the same stance-labelled splits.

1. n-gram logistic regression (TF-IDF of words 1–2 and characters 3–5);
2. the frozen encoder (all-MiniLM-L6-v2 int8 ONNX) + logistic-regression heads — what
   ``triage train-screener`` builds;
3. all-MiniLM-L6-v2 fine-tuned end to end (``scripts/finetune_minilm.py``, its probabilities
   read from ``var/finetuned-probs.json``; skipped when absent).

Each is combined with the rules as the screener does: thresholds (rule floor, page, ask)
chosen on the validation split, figures reported on the test split. The screener's page model
(``bot.screening.stack``) is not refitted for each reader: here each reader's own risk score
stands in for the page model's probability, so the readers are compared on equal terms. Writes
``docs/model-comparison.md``. Run after ``triage train-screener`` (which writes
``var/labelled-splits.jsonl``).

Example: ``.venv/bin/python scripts/compare_models.py``
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.screening.model import Encoder, combined_risk  # noqa: E402
from bot.screening.result import CATEGORIES  # noqa: E402
from bot.screening.rules import RuleScreener  # noqa: E402
from bot.screening.training import (  # noqa: E402
    OUTPUTS,
    auc,
    choose_thresholds,
    embed_windows,
    fit_head,
    mean_vectors,
    score_rows,
    tier_of,
    tier_report,
    window_probabilities,
)


def targets(rows):
    out = {"risk": np.array([r["risky"] for r in rows], dtype=int)}
    for c in CATEGORIES:
        out[c] = np.array([c in r["categories"] for r in rows], dtype=int)
    return out


def ngram_probs(split):
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    words = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), min_df=3, sublinear_tf=True, max_features=200000)
    texts = {s: [r["text"] for r in rows] for s, rows in split.items()}
    x = {"train": hstack([words.fit_transform(texts["train"]), chars.fit_transform(texts["train"])]).tocsr()}
    for s in ("validation", "test"):
        x[s] = hstack([words.transform(texts[s]), chars.transform(texts[s])]).tocsr()
    ys = {s: targets(rows) for s, rows in split.items()}
    probs = {s: np.zeros((len(split[s]), len(OUTPUTS))) for s in ("validation", "test")}
    for i, name in enumerate(OUTPUTS):
        best = None
        for c in (1.0, 4.0, 16.0):
            model = LogisticRegression(C=c, max_iter=3000, class_weight="balanced", random_state=0)
            model.fit(x["train"], ys["train"][name])
            score = auc(ys["validation"][name], model.predict_proba(x["validation"])[:, 1]) or 0
            if best is None or score > best[0]:
                best = (score, model)
        for s in ("validation", "test"):
            probs[s][:, i] = best[1].predict_proba(x[s])[:, 1]
    return probs


def frozen_probs(split):
    encoder = Encoder(ROOT / "config" / "screening" / "model")
    windows = {s: embed_windows(encoder, [r["text"] for r in rows], ROOT / "var" / "screener-embeddings.npz")
               for s, rows in split.items()}
    ys = {s: targets(rows) for s, rows in split.items()}
    head, _ = fit_head(mean_vectors(windows["train"]), ys["train"], mean_vectors(windows["validation"]),
                       ys["validation"])
    return {s: window_probabilities(head, windows[s]) for s in ("validation", "test")}


def finetuned_probs(split):
    path = ROOT / "var" / "finetuned-probs.json"
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    try:
        return {s: np.array([data[s][r["key"]] for r in split[s]]) for s in ("validation", "test")}
    except KeyError:
        return None  # probabilities from other splits


def main() -> int:
    rows = [json.loads(line) for line in (ROOT / "var" / "labelled-splits.jsonl").read_text().splitlines() if line]
    split = {s: [r for r in rows if r["split"] == s] for s in ("train", "validation", "test")}
    rules = RuleScreener()
    models = {}
    started = time.monotonic()
    models["n-gram logistic regression (TF-IDF words 1–2 + chars 3–5)"] = ngram_probs(split)
    models["frozen all-MiniLM-L6-v2 (int8 ONNX) + logistic-regression heads"] = frozen_probs(split)
    tuned = finetuned_probs(split)
    if tuned is not None:
        models["all-MiniLM-L6-v2 fine-tuned end to end (3 epochs, best by validation AUC)"] = tuned
    lines = [
        "# Model comparison on the stance-labelled splits",
        "",
        "Written by `scripts/compare_models.py`. Same rows and splits for every model "
        f"(train {len(split['train'])}, validation {len(split['validation'])}, test {len(split['test'])}); "
        "each model is combined with the rules as the screener does (its own risk score standing in for the page model's probability), its thresholds chosen on validation, "
        "its figures measured on test. `risk` is the mean of the risk head and the highest category head. "
        "The tiers here are chosen on validation alone; the committed model's card adds the dev set as a "
        "guard (its explicit sentences must keep paging), which changes the operating point.",
        "",
        "| model | validation AUC | test AUC | page recall | page-or-ask recall | pages on none | ask-or-page on none |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    cat_lines = ["", "Test AUC per category (one-vs-rest on all test rows):", "",
                 "| model | " + " | ".join(CATEGORIES) + " |", "| --- |" + " --- |" * len(CATEGORIES)]
    for name, probs in models.items():
        # the frozen model's column 0 is already the screener's score (riskiest window, combined)
        risk = {s: probs[s][:, 0] if "frozen" in name else combined_risk(probs[s]) for s in probs}
        y = {s: targets(split[s]) for s in ("validation", "test")}
        scored = {s: score_rows(rules, [r["text"] for r in split[s]], np.column_stack([risk[s], probs[s][:, 1:]]))
                  for s in ("validation", "test")}
        for rows in scored.values():
            for x in rows:
                x.page = x.probs["risk"]  # the reader's score in place of the page model (docstring)
        t = choose_thresholds(scored["validation"], [r["risky"] for r in split["validation"]])
        rep = tier_report([tier_of(x, t) for x in scored["test"]], [r["risky"] for r in split["test"]])["all"]
        lines.append(f"| {name} | {auc(y['validation']['risk'], risk['validation']):.3f} | "
                     f"{auc(y['test']['risk'], risk['test']):.3f} | {rep['page_recall']:.3f} | "
                     f"{rep['page_or_ask_recall']:.3f} | {rep['page_on_none']:.3f} | {rep['page_or_ask_on_none']:.3f} |")
        cat_lines.append(f"| {name} | " + " | ".join(
            f"{auc(y['test'][c], probs['test'][:, i + 1]):.3f}" for i, c in enumerate(CATEGORIES)) + " |")
        print(lines[-1], flush=True)
    lines += cat_lines
    lines += ["", f"Run time here (2 cores, embeddings cached): {time.monotonic() - started:.0f} s.", ""]
    (ROOT / "docs" / "model-comparison.md").write_text("\n".join(lines), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
