"""Small pure helpers shared by the custom actions."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Tracker
from rasa_sdk.events import SlotSet

from bot.terms import PRIORITIES  # noqa: F401 - the one vocabulary; re-exported for the actions


def message_metadata(tracker: Tracker) -> dict[str, Any]:
    """The metadata the gateway attached to the latest user message (region, screening)."""
    meta = (tracker.latest_message or {}).get("metadata") or {}
    return meta if isinstance(meta, dict) else {}


def client_region(tracker: Tracker) -> str | None:
    """The client's hotline region as sent by the gateway, if any."""
    region = message_metadata(tracker).get("region")
    return region if isinstance(region, str) and region else None


def escalation_payload(
    *,
    priority: str,
    reason: str,
    categories: list[str] | None = None,
    facts: dict[str, Any] | None = None,
    duty_to_protect: bool = False,
) -> dict[str, Any]:
    """Build the custom JSON payload the gateway turns into a case update and an alert.

    Actions can only ask to open or raise a case: the gateway never lowers a priority or
    closes a case on the bot's word (ARCHITECTURE.md invariant 3).
    """
    if priority not in PRIORITIES:
        raise ValueError(f"priority must be one of {PRIORITIES}, not {priority!r}")
    return {
        "escalate": {
            "priority": priority,
            "categories": list(categories or []),
            "reason": reason,
            "facts": dict(facts or {}),
            "duty_to_protect": duty_to_protect,
        }
    }


# --- Shared by the scripted flows (actions/asq.py, harm_to_others.py, …) ------------------

#: Forms that are crisis flows (the gateway's bot/pipeline.py CRISIS_LOOPS names the same).
CRISIS_FORMS = frozenset(
    {"asq_form", "harm_to_others_form", "safeguarding_form", "concerned_other_form", "safety_plan_form"}
)
#: Risk intents from the NLU and the flow each starts (../shared/CLINICAL.md).
RISK_INTENT_CATEGORY = {
    "express_suicidal_ideation": "self_harm",
    "express_self_harm": "self_harm",
    "express_harm_to_others": "harm_to_others",
    "disclose_being_harmed": "being_harmed",
    "concern_for_other": "third_party_concern",
}
#: Screening category → flow. lethal_means goes to the ASQ (CLINICAL.md "Lethal means").
CATEGORY_FLOW = {
    "self_harm": "asq",
    "lethal_means": "asq",
    "harm_to_others": "harm_to_others",
    "being_harmed": "safeguarding",
    "third_party_concern": "concerned_other",
}
SCREEN_INTENT = "EXTERNAL_screen_positive"

from bot.answers import DECLINED, NO, NO_WORDS as _NO_WORDS, REFUSE_WORDS as _REFUSE_WORDS, YES  # noqa: E402
from bot.answers import YES_WORDS as _YES_WORDS, normalise_answer  # noqa: E402,F401


def is_plain_answer(text: str | None) -> bool:
    """True for a bare yes / no / pass (a button payload), whatever the NLU made of it."""
    words = normalise_answer(text)
    return words in _YES_WORDS or words in _NO_WORDS or words in _REFUSE_WORDS


def latest_intent(tracker: Tracker) -> str:
    return ((tracker.latest_message or {}).get("intent") or {}).get("name") or ""


def latest_text(tracker: Tracker) -> str:
    return str((tracker.latest_message or {}).get("text") or "").strip()


def latest_entities(tracker: Tracker, entity: str) -> list[str]:
    """Values of one entity type in the latest user message."""
    return [
        str(e.get("value"))
        for e in (tracker.latest_message or {}).get("entities") or []
        if e.get("entity") == entity and e.get("value")
    ]


def yes_no(tracker: Tracker) -> str | None:
    """Read a yes/no question's answer: YES, NO, DECLINED (refused/unsure), or None (unclear)."""
    words = normalise_answer(latest_text(tracker))
    if words in _YES_WORDS:
        return YES
    if words in _NO_WORDS:
        return NO
    if words in _REFUSE_WORDS:
        return DECLINED
    return {"affirm": YES, "deny": NO, "refuse": DECLINED}.get(latest_intent(tracker))


def is_fresh_answer(tracker: Tracker, form: str) -> bool:
    """True when the form runs straight after the client's message (the message answers it).

    After an interruption (a rule ran ``action_request_human`` …) the form runs again for the
    same user message: that message is not an answer, and the question is simply asked again.
    """
    allowed = {"action_listen", "action_extract_slots", form, f"validate_{form}", None}
    for event in reversed(tracker.events or []):
        if event.get("event") == "user":
            return True
        if event.get("event") == "action_execution_rejected":
            return False
        if event.get("event") == "action" and event.get("name") not in allowed:
            return False
    return False


def client_region_any(tracker: Tracker) -> str | None:
    """The region from the latest user message that carried one (trigger_intent carries none)."""
    region = client_region(tracker)
    if region:
        return region
    for event in reversed(tracker.events or []):
        if event.get("event") == "user":
            meta = event.get("metadata") or {}
            if isinstance(meta, dict) and isinstance(meta.get("region"), str) and meta["region"]:
                return meta["region"]
    return None


def screen_escalated_this_turn(tracker: Tracker) -> bool:
    """True when the gateway's screen already sent the card and paged a clinician this turn."""
    screening = message_metadata(tracker).get("screening")
    return isinstance(screening, dict) and bool(screening.get("escalate"))


def slot_facts(tracker: Tracker, labels: dict[str, str]) -> dict[str, str]:
    """"question: answer" facts for the clinician, in the order of ``labels``; unasked ones left out."""
    facts: dict[str, str] = {}
    for slot, label in labels.items():
        value = tracker.get_slot(slot)
        if value is not None:
            facts[label] = str(value)
    return facts


def completed(tracker: Tracker) -> list[str]:
    return list(tracker.get_slot("completed_flows") or [])


def mark_completed(tracker: Tracker, flow: str) -> SlotSet:
    """The event adding ``flow`` to the flows completed this session."""
    done = completed(tracker)
    if flow not in done:
        done.append(flow)
    return SlotSet("completed_flows", done)
