"""Tests for bot.screening.evaluation: the dev-set gate and the labelled-file loader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.screening.evaluation import evaluate, format_report, load_labelled
from bot.screening import CATEGORIES, get_screener

DEV_SET = Path(__file__).parent.parent / "data" / "dev_set.jsonl"
MIN_ESCALATION_RECALL = 0.98
MAX_FALSE_ESCALATION_RATE = 0.05


@pytest.fixture(scope="module")
def dev_report() -> dict:
    """Evaluate the screener on the development set once."""
    return evaluate(load_labelled(DEV_SET), get_screener())


def test_dev_set_is_large_and_covers_every_category():
    rows = load_labelled(DEV_SET)
    assert len(rows) >= 400
    labels = {r["label"] for r in rows}
    assert labels == {*CATEGORIES, "none"}
    none = sum(r["label"] == "none" for r in rows)
    assert none >= 100


def test_dev_set_escalation_recall_meets_the_gate(dev_report):
    assert dev_report["escalation_recall"] >= MIN_ESCALATION_RECALL, format_report(dev_report)


def test_dev_set_false_escalation_rate_meets_the_gate(dev_report):
    assert dev_report["false_escalation_rate"] <= MAX_FALSE_ESCALATION_RATE, format_report(dev_report)


def test_report_counts_add_up(dev_report):
    for figures in dev_report["categories"].values():
        assert figures["tp"] + figures["fn"] == figures["support"]
    counts = dev_report["counts"]
    assert counts["risky"] + counts["none"] == dev_report["lines"]
    assert len(dev_report["false_alarms"]) == counts["escalated_none"]


def test_evaluate_counts_a_miss_and_a_false_alarm():
    rows = [
        {"text": "I want to kill myself", "label": "self_harm"},
        {"text": "good morning", "label": "self_harm"},
        {"text": "this traffic is killing me", "label": "none"},
        {"text": "kms", "label": "none"},
    ]
    report = evaluate(rows, get_screener())
    assert report["categories"]["self_harm"] == {
        "tp": 1, "fp": 1, "fn": 1, "support": 2, "recall": 0.5, "precision": 0.5}
    assert report["escalation_recall"] == 0.5
    assert report["false_escalation_rate"] == 0.5
    assert [m["text"] for m in report["misses"]] == ["good morning"]
    assert report["false_alarms"] == [{"text": "kms", "label": "none", "got": ["self_harm"]}]
    table = format_report(report)
    assert "escalation recall" in table and "self_harm" in table and "good morning" in table


def _write(tmp_path: Path, lines: list[str]) -> Path:
    """Write a labelled file and return its path."""
    path = tmp_path / "labels.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_load_labelled_reads_text_and_label_and_skips_blank_lines(tmp_path):
    path = _write(tmp_path, [json.dumps({"text": "hi", "label": "none"}), "",
                             json.dumps({"text": "kms", "label": "self_harm"})])
    rows = load_labelled(path)
    assert [(r["text"], r["label"]) for r in rows] == [("hi", "none"), ("kms", "self_harm")]


def test_load_labelled_names_file_and_line_for_bad_json(tmp_path):
    path = _write(tmp_path, [json.dumps({"text": "hi", "label": "none"}), '{"text": "oops"'])
    with pytest.raises(ValueError, match=rf"{path.name}:2: bad JSON"):
        load_labelled(path)


def test_load_labelled_rejects_unknown_label(tmp_path):
    path = _write(tmp_path, [json.dumps({"text": "hi", "label": "sad"})])
    with pytest.raises(ValueError, match=rf"{path.name}:1: label 'sad' is not one of"):
        load_labelled(path)


def test_load_labelled_rejects_missing_text(tmp_path):
    path = _write(tmp_path, [json.dumps({"label": "none"})])
    with pytest.raises(ValueError, match=rf"{path.name}:1: missing or non-string \"text\""):
        load_labelled(path)


def test_load_labelled_rejects_non_object_line(tmp_path):
    path = _write(tmp_path, [json.dumps({"text": "a", "label": "none"}), json.dumps(["text", "label"])])
    with pytest.raises(ValueError, match=rf"{path.name}:2: expected a JSON object"):
        load_labelled(path)
