"""Clinician review: case lists and transcripts. Every transcript access is audited."""

from __future__ import annotations

import json
from typing import Any

from bot.storage import Store


def case_summary(case: dict[str, Any]) -> str:
    """One line per case for lists: number, priority, status, categories, who, since when."""
    categories = ", ".join(json.loads(case["categories"] or "[]")) or "—"
    who = f" · claimed by {case['claimed_by']}" if case["claimed_by"] else ""
    return (
        f"#{case['id']} {case['priority'].upper()} {case['status']} · {categories}"
        f" · opened {case['opened_at'][:16].replace('T', ' ')}Z{who}"
    )


def _marked(text: str, signals: list[dict[str, Any]]) -> str:
    """The text with each escalating cue wrapped in «», right to left so offsets hold."""
    spans = sorted(
        {(s["start"], s["end"]) for s in signals
         if not (s.get("negated") or s.get("hypothetical") or s.get("figurative"))},
        reverse=True,
    )
    for start, end in spans:
        if 0 <= start < end <= len(text):
            text = f"{text[:start]}«{text[start:end]}»{text[end:]}"
    return text


def transcript_markdown(store: Store, case_id: int, actor: str) -> str:
    """The case's whole conversation as Markdown, with evidence marked; audited."""
    case = store.case(case_id)
    if case is None:
        raise LookupError(f"there is no case #{case_id}")
    store.audit(actor, "transcript", f"case:{case_id}")
    screenings = {
        row["message_id"]: row
        for row in store.db.query(
            "select s.* from screenings s join messages m on m.id = s.message_id"
            " where m.conversation_id = ?",
            [case["conversation_id"]],
        )
    }
    lines = [
        f"# Case #{case_id} — {case['priority'].upper()} — {case['status']}",
        "",
        f"- Conversation: {case['conversation_id']}",
        f"- Categories: {', '.join(json.loads(case['categories'] or '[]')) or '—'}",
        f"- Opened: {case['opened_at']}",
    ]
    if case["claimed_by"]:
        lines.append(f"- Claimed by {case['claimed_by']} at {case['claimed_at']}")
    if case["resolved_by"]:
        lines.append(f"- Resolved by {case['resolved_by']} at {case['resolved_at']}: {case['outcome']}")
    if case["duty_to_protect"]:
        lines.append("- DUTY-TO-PROTECT REVIEW")
    lines += ["", "## Messages", ""]
    for message in store.messages(case["conversation_id"]):
        who = "client" if message["direction"] == "in" else f"bot ({message['kind']})"
        text = message["text"]
        screening = screenings.get(message["id"])
        flag = ""
        if screening and screening["escalate"]:
            text = _marked(text, json.loads(screening["signals"]))
            flag = f" **[screen: {', '.join(json.loads(screening['categories'])) or 'review'}]**"
        body = text.replace("\n", "\n  > ")
        lines.append(f"- `{message['created_at'][:19]}` {who}{flag}:\n  > {body}")
    lines += ["", "## Case history", ""]
    for event in store.case_events(case_id):
        details = json.loads(event["details"] or "{}")
        extra = f" — {details}" if details else ""
        lines.append(f"- `{event['created_at'][:19]}` {event['event']} by {event['actor']}"
                     f" ({event['priority'] or '—'}){extra}")
    lines += ["", "## Alerts", ""]
    for alert in store.alerts(case_id):
        state = f"delivered {alert['delivered_at'][:19]}" if alert["delivered_at"] else "NOT delivered yet"
        lines.append(f"- `{alert['created_at'][:19]}` {alert['priority']} ({alert['kind'] or 'alert'}): {state}")
    return "\n".join(lines) + "\n"
