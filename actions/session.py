"""Session start: the consent and disclosure text on first contact.

../shared/CLINICAL.md "Consent and disclosure": say plainly that this is an automated
assistant, not an emergency service or a therapist; that messages are stored and read by
clinicians; that Telegram bot chats are not end-to-end encrypted.
"""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import ActionExecuted, EventType, SessionStarted, SlotSet
from rasa_sdk.executor import CollectingDispatcher


#: Flow state belongs to one session: a new session may run the ASQ (or the intake) again.
PER_SESSION_PREFIXES = ("asq_", "hto_", "sg_", "co_", "sp_", "phq2_", "gad2_", "intake_", "callback_")
PER_SESSION_SLOTS = frozenset(
    {
        "session_started_metadata",
        "requested_slot",
        "completed_flows",
        "flow",
        "question_retries",
        "safety_plan_offered",
        "risk_category",
        "risk_priority",
        "consent_contact",
    }
)


def carried_over_slots(tracker: Tracker) -> list[EventType]:
    """Slot events to repeat at the start of a new session (not session metadata or flow state)."""
    return [
        SlotSet(key=name, value=value)
        for name, value in tracker.slots.items()
        if name not in PER_SESSION_SLOTS
        and not name.startswith(PER_SESSION_PREFIXES)
        and value is not None
    ]


class ActionSessionStart(Action):
    """Start a session; show the full disclosure once per client, a reminder afterwards."""

    def name(self) -> str:
        return "action_session_start"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        events: list[EventType] = [SessionStarted(), *carried_over_slots(tracker)]
        if tracker.get_slot("disclosure_shown"):
            dispatcher.utter_message(response="utter_disclosure_reminder")
        else:
            dispatcher.utter_message(response="utter_disclosure")
            events.append(SlotSet("disclosure_shown", True))
        events.append(ActionExecuted("action_listen"))
        return events
