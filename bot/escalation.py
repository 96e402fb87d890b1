"""Escalation: open or raise a case and put a clinician alert in the outbox.

One place owns escalation (ARCHITECTURE.md "One inbound message"): the gateway's own screen
and the Rasa actions' ``{"escalate": {...}}`` payloads both come through ``escalate``, and
every attempt to deliver an alert, by any channel, comes through ``deliver``.
The bot side can only open or raise a case, never lower or close one (invariant 3).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from bot import cases, clock
from bot.screening.result import escalates
from bot.store import Store
from bot.terms import PRIORITIES, PRIORITY_RANK

log = logging.getLogger(__name__)

PRIORITY_LABEL = {p: p.upper() for p in PRIORITIES}
MAX_BACKOFF = 300.0  # seconds: the longest wait between two attempts to deliver an alert
RECENT_MESSAGES = 4  # the client's last messages quoted in an alert
EVIDENCE_WINDOW = 160  # characters of context either side of a cue in an alert


@dataclass
class Escalation:
    """What to escalate: from the screener or from a Rasa action's payload."""

    priority: str
    categories: list[str]
    reason: str
    evidence: list[str] = field(default_factory=list)  # message excerpts with the cue marked
    facts: dict[str, Any] = field(default_factory=dict)
    duty_to_protect: bool = False
    source: str = "screen"  # "screen" | "rasa" | "ask" | "failsafe"


@dataclass
class AlertRecord:
    alert_id: int
    case_id: int
    priority: str
    categories: list[str]
    text: str
    opened: bool


def mark_cue(text: str, start: int, end: int, window: int = EVIDENCE_WINDOW) -> str:
    """Quote a message with the cue between «» and at most ``window`` characters around it."""
    lo, hi = max(0, start - window), min(len(text), end + window)
    head = ("…" if lo > 0 else "") + text[lo:start]
    tail = text[end:hi] + ("…" if hi < len(text) else "")
    return f"{head}«{text[start:end]}»{tail}"


def evidence_from_screening(text: str, result: dict[str, Any]) -> list[str]:
    """One marked excerpt per escalating signal of a paged category (the screen's own answer)."""
    out: list[str] = []
    for signal in result.get("signals", []):
        if signal.get("category") not in result.get("categories", []) or not escalates(signal):
            continue
        excerpt = f"{signal['category']}: {mark_cue(text, signal['start'], signal['end'])}"
        if excerpt not in out:
            out.append(excerpt)
    return out[:5]


def format_alert(
    case: dict[str, Any],
    escalation: Escalation,
    chat: str,
    region: str,
    opened: bool,
    recent: list[str] | None = None,
) -> str:
    """The alert text for the clinicians' triage group."""
    lines = [
        f"{PRIORITY_LABEL[case['priority']]} — case #{case['id']}"
        + (" (new)" if opened else f" (updated, was open since {case['opened_at'][:16]}Z)"),
        f"Chat: {chat} · region {region}",
        f"Categories: {', '.join(escalation.categories) or 'none (see reason)'}",
        f"Reason: {escalation.reason}",
    ]
    if escalation.duty_to_protect:
        lines.append("DUTY-TO-PROTECT REVIEW: an identifiable person may be at risk.")
    for excerpt in escalation.evidence:
        lines.append(f"Evidence — {excerpt}")
    for key, value in escalation.facts.items():
        lines.append(f"{key}: {value}")
    if recent:
        lines.append("Recent messages from the client:")
        lines.extend(f"  › {text[:300]}" for text in recent)
    lines.append("The client has been given the hotline card. A clinician must claim this case.")
    return "\n".join(lines)


def escalate(
    store: Store,
    conversation_id: str,
    chat: str,
    region: str,
    escalation: Escalation,
    message_id: int | None,
) -> AlertRecord:
    """Open or raise the conversation's case and record the alert durably (the outbox)."""
    priority = escalation.priority if escalation.priority in PRIORITY_RANK else "urgent"
    case, opened = cases.open_or_raise(
        store,
        conversation_id,
        priority,
        escalation.categories,
        details={
            "reason": escalation.reason,
            "source": escalation.source,
            "categories": escalation.categories,
            "facts": escalation.facts,
        },
        message_id=message_id,
        duty_to_protect=escalation.duty_to_protect,
    )
    recent = [
        m["text"] for m in store.messages(conversation_id)
        if m["direction"] == "in" and m["text"]
    ][-RECENT_MESSAGES:]
    text = format_alert(case, escalation, chat, region, opened, recent)
    categories = sorted(set(escalation.categories))
    alert_id = store.record_alert(case["id"], case["priority"], categories, text, message_id)
    return AlertRecord(alert_id, case["id"], case["priority"], categories, text, opened)


def record_review(
    store: Store,
    conversation_id: str,
    categories: list[str],
    reason: str,
    evidence: list[str],
    message_id: int | None,
) -> int:
    """The *ask* tier's entry on the case queue: a routine case that pages nobody; its id."""
    case, _ = cases.open_or_raise(
        store,
        conversation_id,
        "routine",
        categories,
        details={"reason": reason, "source": "ask", "categories": categories, "evidence": evidence},
        message_id=message_id,
        page=False,
    )
    return int(case["id"])


def backoff(attempts: int) -> dt.timedelta:
    """How long to wait before the next try after ``attempts`` failed ones: doubling, capped."""
    return dt.timedelta(seconds=min(2.0 ** attempts, MAX_BACKOFF))


async def deliver(store: Store, alert_id: int, attempts: int, send: Callable[[], Awaitable[int | None]]) -> bool:
    """Try to deliver one alert; the one place that records delivery state.

    ``send`` delivers it and returns the channel's reference to what it sent (or None);
    ``attempts`` is how many attempts came before. On success the alert is delivered; on
    failure the error and the time of the next attempt (after ``backoff``) are recorded and
    the alert stays in the outbox.
    """
    try:
        ref = await send()
    except Exception as exc:  # noqa: BLE001 - recorded; the row stays undelivered
        retry_at = (clock.now() + backoff(attempts + 1)).isoformat()
        store.alert_failed(alert_id, type(exc).__name__, retry_at)
        log.error("alert %s not delivered (attempt %s): %s", alert_id, attempts + 1, type(exc).__name__)
        return False
    store.alert_delivered(alert_id, ref)
    return True


def from_payload(payload: dict[str, Any]) -> Escalation:
    """Read a Rasa action's ``escalate`` payload; malformed fields fall back to safe values."""
    priority = payload.get("priority")
    categories = payload.get("categories") or []
    facts = payload.get("facts") or {}
    return Escalation(
        priority=priority if priority in PRIORITY_RANK else "urgent",
        categories=[str(c) for c in categories] if isinstance(categories, list) else [],
        reason=str(payload.get("reason") or "The dialogue asked for a clinician."),
        facts=facts if isinstance(facts, dict) else {"facts": str(facts)},
        duty_to_protect=bool(payload.get("duty_to_protect")),
        source="rasa",
    )
