"""Clinician review: case lists, transcripts (rendered by ``bot.transcripts``), annotations,
labels, exports, retention and the audit trail. Every transcript access is audited.

The CLI (``triage cases``, ``transcript``, ``annotate``, ``export-labels``, ``purge``,
``audit``) and the Telegram ``/transcript`` command are thin layers over these functions.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any, Iterable

from bot import clock
from bot.screening.result import escalates
from bot.store import Store
from bot.transcripts import render_html, render_markdown
from bot.terms import CATEGORIES, OPEN_STATUSES, PRIORITIES, STATUSES


class ReviewError(ValueError):
    """Bad input to a review command; the message says what is wrong."""


# -- case lists ---------------------------------------------------------------------------

def list_cases(
    store: Store,
    *,
    status: str | None = None,
    priority: str | None = None,
    category: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> list[dict[str, Any]]:
    """Cases filtered by status, priority, category and opening date; most urgent, oldest first.

    ``status`` None means open and claimed; "all" means every case.
    """
    if status not in (None, "all", *STATUSES):
        raise ReviewError(f"status must be one of {', '.join(STATUSES)} or all")
    if priority not in (None, *PRIORITIES):
        raise ReviewError(f"priority must be one of {', '.join(PRIORITIES)}")
    if category not in (None, *CATEGORIES):
        raise ReviewError(f"category must be one of {', '.join(CATEGORIES)}")
    rows = store.find_cases(
        statuses=OPEN_STATUSES if status is None else None if status == "all" else [status],
        priority=priority, category=category,
        opened_from=_date(since) if since else None,
        opened_before=_date(until, end=True) if until else None,
    )
    for row in rows:
        row["categories"] = json.loads(row["categories"] or "[]")
    return rows


def _date(text: str, end: bool = False) -> str:
    try:
        day = dt.date.fromisoformat(text)
    except ValueError as exc:
        raise ReviewError(f"dates are YYYY-MM-DD, not {text!r}") from exc
    if end:
        day += dt.timedelta(days=1)
    return day.isoformat()


def case_summary(case: dict[str, Any]) -> str:
    """One line per case for lists: number, priority, status, categories, who, since when."""
    categories = case["categories"]
    if isinstance(categories, str):
        categories = json.loads(categories or "[]")
    who = f" · claimed by {case['claimed_by']}" if case["claimed_by"] else ""
    return (
        f"#{case['id']} {case['priority'].upper()} {case['status']} · {', '.join(categories) or '—'}"
        f" · opened {case['opened_at'][:16].replace('T', ' ')}Z{who}"
    )


# -- transcripts --------------------------------------------------------------------------

def _escalating_spans(signals: list[dict[str, Any]], length: int) -> list[tuple[int, int]]:
    spans = sorted({
        (s["start"], s["end"]) for s in signals
        if escalates(s) and 0 <= s["start"] < s["end"] <= length
    })
    merged: list[tuple[int, int]] = []
    for start, end in spans:  # overlapping cues become one highlighted span
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def transcript(store: Store, case_id: int, actor: str) -> dict[str, Any]:
    """The case's whole record as data: case, messages with screening, history, alerts, labels.

    Writes an audit entry for ``actor`` (ARCHITECTURE.md invariant 7).
    """
    case = store.case(case_id)
    if case is None:
        raise LookupError(f"there is no case #{case_id}")
    store.audit(actor, "transcript", f"case:{case_id}")
    conversation_id = case["conversation_id"]
    screenings = store.screenings_of(conversation_id)
    labels: dict[int, list[dict[str, Any]]] = {}
    for row in store.labels_of(conversation_id):
        labels.setdefault(row["message_id"], []).append(
            {"label": row["label"], "kind": row["kind"], "actor": row["actor"], "at": row["created_at"]})
    messages = []
    for m in store.messages(conversation_id):
        entry: dict[str, Any] = {
            "id": m["id"], "at": m["created_at"], "direction": m["direction"], "kind": m["kind"],
            "text": m["text"], "labels": labels.get(m["id"], []),
        }
        screening = screenings.get(m["id"])
        if screening:
            signals = json.loads(screening["signals"])
            entry["screening"] = {
                "escalate": bool(screening["escalate"]),
                "priority": screening["priority"],
                "categories": json.loads(screening["categories"]),
                "signals": signals,
                "highlight": _escalating_spans(signals, len(m["text"] or "")) if screening["escalate"] else [],
                "tier": screening["tier"] or ("page" if screening["escalate"] else "none"),
                "scores": json.loads(screening["scores"]) if screening["scores"] else None,
            }
        messages.append(entry)
    case_view = dict(case)
    case_view["categories"] = json.loads(case["categories"] or "[]")
    return {
        "case": case_view,
        "messages": messages,
        "history": [
            {"at": e["created_at"], "event": e["event"], "actor": e["actor"], "priority": e["priority"],
             "details": json.loads(e["details"] or "{}")}
            for e in store.case_events(case_id)
        ],
        "alerts": [
            {"at": a["created_at"], "priority": a["priority"], "kind": a["kind"] or "alert",
             "delivered_at": a["delivered_at"], "attempts": a["attempts"]}
            for a in store.alerts(case_id)
        ],
    }


def render(record: dict[str, Any], fmt: str) -> str:
    """The transcript record in a format: ``md``, ``html`` or ``json``."""
    if fmt == "md":
        return render_markdown(record)
    if fmt == "html":
        return render_html(record)
    if fmt == "json":
        return json.dumps(record, ensure_ascii=False, indent=2) + "\n"
    raise ReviewError("format must be md, html or json")


def transcript_markdown(store: Store, case_id: int, actor: str) -> str:
    """The case's conversation as Markdown (used by Telegram's /transcript); audited."""
    return render_markdown(transcript(store, case_id, actor))


# -- annotations and labels ---------------------------------------------------------------

def _label_spec(spec: str, kind: str) -> tuple[int, str]:
    """Parse ``MESSAGE_ID:CATEGORY`` (or a bare id for a false alarm)."""
    message_text, _, label = spec.partition(":")
    try:
        message_id = int(message_text.lstrip("#"))
    except ValueError as exc:
        raise ReviewError(f"{spec!r}: expected MESSAGE_ID:CATEGORY, e.g. 14:self_harm") from exc
    if kind == "false_alarm":
        label = label or "none"
    if label not in (*CATEGORIES, "none"):
        raise ReviewError(f"{spec!r}: the category must be one of {', '.join(CATEGORIES)} or none")
    return message_id, label


def annotate(
    store: Store,
    case_id: int,
    actor: str,
    *,
    outcome: str | None = None,
    note: str | None = None,
    missed: Iterable[str] = (),
    false_alarms: Iterable[str] = (),
    confirmed: Iterable[str] = (),
) -> dict[str, Any]:
    """Record a clinician's judgement on a case and labels on its messages."""
    case = store.case(case_id)
    if case is None:
        raise LookupError(f"there is no case #{case_id}")
    specs = ([(_label_spec(s, "missed_risk"), "missed_risk") for s in missed]
             + [(_label_spec(s, "false_alarm"), "false_alarm") for s in false_alarms]
             + [(_label_spec(s, "confirmed"), "confirmed") for s in confirmed])
    if not (outcome or note or specs):
        raise ReviewError("nothing to record: give --outcome, --note or a label")
    inbound = {m["id"] for m in store.messages(case["conversation_id"]) if m["direction"] == "in"}
    for (message_id, _), _kind in specs:
        if message_id not in inbound:
            raise ReviewError(f"message #{message_id} is not a client message of case #{case_id}")
    with store.write():
        store.add_labels(case_id, actor, [(message_id, label, kind) for (message_id, label), kind in specs])
        details = {k: v for k, v in {"outcome": outcome, "note": note,
                                     "labels": [[m, lab, k] for (m, lab), k in specs]}.items() if v}
        store.change_case(case_id, "annotated", actor, {}, details)
        store.audit(actor, "annotate", f"case:{case_id}")
    return store.case(case_id)


def export_labels(store: Store, actor: str) -> list[dict[str, str]]:
    """Clinician-labelled messages as ``triage eval`` rows: {"text", "label"} (latest label wins)."""
    store.audit(actor, "export-labels", "labels")
    latest: dict[int, dict[str, str]] = {}
    for row in store.labelled_messages():
        latest[row["id"]] = {"text": row["text"], "label": row["label"], "kind": row["kind"]}
    return list(latest.values())


# -- retention and audit ------------------------------------------------------------------

_AGE = re.compile(r"^(\d+)\s*([dw])$")


def parse_age(text: str) -> dt.timedelta:
    match = _AGE.match(text.strip().lower())
    if not match:
        raise ReviewError(f"age must look like 90d or 12w, not {text!r}")
    number, unit = int(match.group(1)), match.group(2)
    return dt.timedelta(days=number * (7 if unit == "w" else 1))


def purge(store: Store, older_than: dt.timedelta, actor: str, dry_run: bool = False) -> dict[str, int]:
    """Delete resolved cases older than the cut-off, with their conversations' records.

    A conversation that still has an open or claimed case keeps all its messages. The
    audit log is kept (it holds no message text) and gains an entry for the purge.
    """
    cutoff = (clock.now() - older_than).isoformat()
    counts = store.purge_resolved(cutoff, dry_run=dry_run)
    if not dry_run:
        store.audit(actor, "purge", json.dumps({"older_than_days": older_than.days, **counts}))
    return counts


def audit_entries(
    store: Store, actor: str | None = None, since: str | None = None, case: int | None = None
) -> list[dict[str, Any]]:
    """The audit log, oldest first, by one actor, from a date on and/or about one case."""
    return store.audit_entries(actor, _date(since) if since else None, f"case:{case}" if case else None)
