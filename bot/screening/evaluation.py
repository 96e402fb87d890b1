"""Evaluate the screener on a labelled JSON Lines file (``triage eval``).

Each line is ``{"text": "...", "label": "<category>|none"}``; the label is the most important
category of the message. Per category: ``tp`` = lines labelled with it on which the screener
reported it, ``fn`` = lines labelled with it on which it did not, ``fp`` = lines *not* labelled
with it on which it was reported (so a line labelled ``self_harm`` that also reports
``lethal_means`` counts against lethal-means precision: precision here is a lower bound).
``escalation_recall`` is over every line whose label is not ``none``;
``false_escalation_rate`` is over the lines labelled ``none`` (both count pages: ``escalate``).
``tiers`` adds the *ask* tier: page recall, page-or-ask recall, pages on ``none`` and
ask-or-page on ``none`` (ARCHITECTURE.md "Risk model").

``triage eval --split test`` evaluates the stance-labelled split instead of a file: the
label files joined to the corpus (``bot.screening.data``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from bot.screening.result import CATEGORIES

__all__ = ["LABELS", "evaluate", "format_report", "load_labelled", "load_split"]

LABELS = (*CATEGORIES, "none")


def load_labelled(path: str | Path) -> list[dict[str, Any]]:
    """Read a labelled JSON Lines file; a bad line raises ValueError naming file and line."""
    path = Path(path)
    rows: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: bad JSON: {exc.msg}") from exc
            if not isinstance(obj, dict):
                raise ValueError(f"{where}: expected a JSON object")
            text, label = obj.get("text"), obj.get("label")
            if not isinstance(text, str):
                raise ValueError(f"{where}: missing or non-string \"text\"")
            if label not in LABELS:
                raise ValueError(f"{where}: label {label!r} is not one of {', '.join(LABELS)}")
            rows.append({"text": text, "label": label, "line": number})
    return rows


def load_split(split: str, corpus: Path, labels: Path, guard: Path, external: Path | None = None) -> list[dict[str, Any]]:
    """The stance-labelled rows of one split as eval rows (label = the first escalating category)."""
    from bot.screening.data import HeldOutGuard, load_corpus, load_external, load_labelled as load_rows

    data = load_rows(labels, load_corpus(corpus), HeldOutGuard(guard), load_external(external))
    return [{"text": r.text, "label": r.categories[0] if r.categories else "none", "line": i, "source": r.source}
            for i, r in enumerate(data.split(split), 1)]


def _ratio(numerator: int, denominator: int) -> float | None:
    """Return numerator/denominator, or None when there is nothing to divide."""
    return numerator / denominator if denominator else None


def evaluate(rows: Iterable[dict[str, Any]], screener: Any) -> dict[str, Any]:
    """Screen every row and return per-category and escalation figures plus the errors."""
    counts = {c: {"tp": 0, "fp": 0, "fn": 0, "support": 0} for c in CATEGORIES}
    risky = escalated_risky = none_lines = escalated_none = 0
    misses: list[dict[str, Any]] = []
    false_alarms: list[dict[str, Any]] = []
    total = 0
    tier_counts = {"page_risky": 0, "ask_risky": 0, "page_none": 0, "ask_none": 0}
    for row in rows:
        total += 1
        label = row["label"]
        result = screener.screen(row["text"])
        tier = getattr(result, "tier", None) or ("page" if result.escalate else "none")
        if tier in ("page", "ask"):
            tier_counts[f"{tier}_{'none' if label == 'none' else 'risky'}"] += 1
        got = list(result.categories)
        for category in CATEGORIES:
            reported = category in got
            if label == category:
                counts[category]["support"] += 1
                counts[category]["tp" if reported else "fn"] += 1
            elif reported:
                counts[category]["fp"] += 1
        entry = {"text": row["text"], "label": label, "got": got}
        if label == "none":
            none_lines += 1
            if result.escalate:
                escalated_none += 1
                false_alarms.append(entry)
        else:
            risky += 1
            if result.escalate:
                escalated_risky += 1
            if not result.escalate or label not in got:
                misses.append({**entry, "escalated": result.escalate})
    per_category = {
        c: {**v, "recall": _ratio(v["tp"], v["support"]), "precision": _ratio(v["tp"], v["tp"] + v["fp"])}
        for c, v in counts.items()
    }
    return {
        "lines": total,
        "categories": per_category,
        "escalation_recall": _ratio(escalated_risky, risky),
        "false_escalation_rate": _ratio(escalated_none, none_lines),
        "counts": {"risky": risky, "escalated_risky": escalated_risky, "none": none_lines,
                   "escalated_none": escalated_none},
        "tiers": {
            "page_recall": _ratio(tier_counts["page_risky"], risky),
            "page_or_ask_recall": _ratio(tier_counts["page_risky"] + tier_counts["ask_risky"], risky),
            "page_on_none": _ratio(tier_counts["page_none"], none_lines),
            "page_or_ask_on_none": _ratio(tier_counts["page_none"] + tier_counts["ask_none"], none_lines),
        },
        "misses": misses,
        "false_alarms": false_alarms,
    }


def _fmt(value: float | None) -> str:
    """Format a ratio for the table."""
    return "   -" if value is None else f"{value:.3f}"


def format_report(report: dict[str, Any]) -> str:
    """Return a human-readable table of an :func:`evaluate` report."""
    lines = [f"{'category':<22}{'support':>8}{'tp':>6}{'fp':>6}{'fn':>6}{'recall':>9}{'precision':>11}"]
    for category, v in report["categories"].items():
        lines.append(f"{category:<22}{v['support']:>8}{v['tp']:>6}{v['fp']:>6}{v['fn']:>6}"
                     f"{_fmt(v['recall']):>9}{_fmt(v['precision']):>11}")
    c = report["counts"]
    lines.append("")
    lines.append(f"escalation recall      {_fmt(report['escalation_recall'])}  "
                 f"({c['escalated_risky']}/{c['risky']} risky lines escalated)")
    lines.append(f"false escalation rate  {_fmt(report['false_escalation_rate'])}  "
                 f"({c['escalated_none']}/{c['none']} 'none' lines escalated)")
    t = report["tiers"]
    lines.append(f"tiers: page recall {_fmt(t['page_recall'])}, page-or-ask recall {_fmt(t['page_or_ask_recall'])}, "
                 f"pages on none {_fmt(t['page_on_none'])}, ask-or-page on none {_fmt(t['page_or_ask_on_none'])}")
    if report["misses"]:
        lines.append("")
        lines.append("misses (label not reported):")
        for m in report["misses"]:
            lines.append(f"  [{m['label']} -> {','.join(m['got']) or 'none'}] {m['text']}")
    if report["false_alarms"]:
        lines.append("")
        lines.append("false alarms (label none, escalated):")
        for m in report["false_alarms"]:
            lines.append(f"  [{','.join(m['got'])}] {m['text']}")
    return "\n".join(lines)
