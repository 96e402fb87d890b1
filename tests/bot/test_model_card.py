"""The committed model and its card: the card's figures are what the committed model does.

The corpus sample is rebuilt from ``../shared/corpus`` (never committed); without it these
tests are skipped, saying why.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot import CONFIG_DIR, PROJECT_ROOT
from bot.screening import get_screener
from bot.screening.data import HeldOutGuard, corpus_test_split, load_corpus, read_jsonl
from bot.screening.training import tier_report

MODEL_DIR = CONFIG_DIR / "screening" / "model"
CORPUS = PROJECT_ROOT.parent / "shared" / "corpus"
EVALUATION = json.loads((MODEL_DIR / "evaluation.json").read_text(encoding="utf-8"))
needs_corpus = pytest.mark.skipif(
    not (CORPUS / "public.jsonl").is_file(),
    reason="../shared/corpus/public.jsonl is absent: the card's corpus figures cannot be re-measured here",
)


def test_the_committed_model_is_small_and_complete():
    head = json.loads((MODEL_DIR / "head.json").read_text(encoding="utf-8"))
    assert set(head["thresholds"]) == {"ask", "page", "risk_page", "rule_floor"}
    assert 0 <= head["thresholds"]["ask"] <= 1 and 0 <= head["thresholds"]["page"] <= 1 + 1e-6
    assert (MODEL_DIR / "page_model.json").is_file()
    assert head["thresholds"] == EVALUATION["thresholds"]
    size = sum(p.stat().st_size for p in MODEL_DIR.iterdir())
    assert size < 50 * 1024 * 1024


def test_the_card_states_the_thresholds_and_test_figures():
    card = (MODEL_DIR / "MODEL_CARD.md").read_text(encoding="utf-8")
    t = EVALUATION["thresholds"]
    assert f"**{t['page']:.4f}**" in card and f"**{t['ask']:.4f}**" in card
    test = EVALUATION["test"]["all"]
    row = (f"| screen (rules + model) | {test['risky']} | {test['none']} | {test['page_recall']:.3f} | "
           f"{test['page_or_ask_recall']:.3f} | {test['page_on_none']:.3f} | {test['page_or_ask_on_none']:.3f} |")
    assert row in card
    assert f"stance {EVALUATION['agreement']['stance']:.3f}" in card


def test_label_files_hold_keys_not_texts():
    for path in sorted((PROJECT_ROOT / "data" / "screening" / "labels").glob("*.jsonl")):
        for where, obj in read_jsonl(path):
            assert "text" not in obj, f"{where}: label rows carry keys, never texts"
            assert ":" in obj["key"], where


@needs_corpus
def test_card_figures_match_a_fresh_evaluation_of_the_committed_model():
    corpus = load_corpus(CORPUS / "public.jsonl")
    labelled = {obj["key"] for path in (PROJECT_ROOT / "data" / "screening" / "labels").glob("*.jsonl")
                for _, obj in read_jsonl(path)}
    sample = corpus_test_split(corpus, labelled, HeldOutGuard(CORPUS / "heldout-shingles.txt"))
    import hashlib

    card = EVALUATION["corpus_labels"]
    assert hashlib.sha256("\n".join(o["key"] for o in sample).encode()).hexdigest() == card["keys_sha256"]
    screener = get_screener()
    tiers = [screener.screen(o["text"]).tier for o in sample]
    fresh = tier_report(tiers, [bool(o["risky"]) for o in sample])["all"]
    for name in ("page_recall", "page_or_ask_recall", "page_on_none", "page_or_ask_on_none"):
        assert fresh[name] == pytest.approx(card["all"][name], abs=0.01), name
