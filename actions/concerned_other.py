"""Concerned other: someone writes about another person at risk ("my friend says she wants to die").

../shared/CLINICAL.md "Concerned other": ask whether the person is in immediate danger and
where they are; give the emergency number and the hotline to pass on; alert a clinician at a
lower priority unless the danger is immediate. "Not sure" is not a "no": it is asked once
more, then alerted as urgent.
"""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType
from rasa_sdk.executor import CollectingDispatcher

from actions.forms import ScriptedFormValidation, free_text, yes_no_or_detail
from actions.helpers import DECLINED, NO, client_region_any, escalation_payload, mark_completed
from bot.hotlines import emergency_number, hotline_card

CO_SLOTS = ("co_danger", "co_location")
FACT_LABELS = {
    "co_relation": "Who they are worried about",
    "co_danger": "Person in immediate danger?",
    "co_location": "Where the person is / is the writer with them",
}


def concern_priority(danger: Any) -> str:
    if danger == NO:
        return "routine"
    if danger in (DECLINED, None):
        return "urgent"
    return "imminent"  # "yes", or a description of what is happening


class ValidateConcernedOtherForm(ScriptedFormValidation):
    """Is the person in immediate danger? Where are they?"""

    form = "concerned_other_form"
    slots = CO_SLOTS

    def interpret(self, slot: str, tracker: Tracker) -> Any:
        return yes_no_or_detail(tracker) if slot == "co_danger" else free_text(tracker)


class ActionConcernedOtherResult(Action):
    """Emergency number if in danger, the hotline to pass on, and an alert."""

    def name(self) -> str:
        return "action_concerned_other_result"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        danger = tracker.get_slot("co_danger")
        priority = concern_priority(danger)
        region = client_region_any(tracker)
        facts = {
            label: str(tracker.get_slot(s)) for s, label in FACT_LABELS.items() if tracker.get_slot(s) is not None
        }
        if priority != "routine":
            dispatcher.utter_message(response="utter_co_danger", emergency=emergency_number(region))
        dispatcher.utter_message(response="utter_co_pass_on")
        dispatcher.utter_message(text=hotline_card(region, clinician_told=True))
        dispatcher.utter_message(
            json_message=escalation_payload(
                priority=priority,
                reason="Concerned other: the client is worried about someone else"
                + ("; that person may be in immediate danger." if priority == "imminent" else "."),
                categories=["third_party_concern"],
                facts=facts,
            )
        )
        return [mark_completed(tracker, "concerned_other")]
