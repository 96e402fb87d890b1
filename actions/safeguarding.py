"""Safeguarding: the client is being harmed (abuse, violence, threats, a child at risk).

../shared/CLINICAL.md "Being harmed (safeguarding)": ask whether they are safe right now and
whether the person is with them (and whether a child is at risk); give the emergency number
and the region's domestic-abuse line; alert a clinician. A refusal or "not sure" is asked once
more and then treated as the unsafe answer (ARCHITECTURE.md invariant 4).
"""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType
from rasa_sdk.executor import CollectingDispatcher

from actions.forms import ScriptedFormValidation, yes_no_or_detail
from actions.helpers import NO, YES, client_region_any, escalation_payload, mark_completed
from bot.hotlines import emergency_number, hotline_card

SG_SLOTS = ("sg_safe_now", "sg_person_present", "sg_child_at_risk")
FACT_LABELS = {
    "sg_safe_now": "Safe right now?",
    "sg_person_present": "Person who harmed them with them / nearby?",
    "sg_child_at_risk": "Child at risk?",
}


def unsafe_now(values: dict[str, Any]) -> bool:
    """Not a clear "yes, I'm safe", or the person is (or may be) with them."""
    return values.get("sg_safe_now") != YES or values.get("sg_person_present") not in (NO, None)


class ValidateSafeguardingForm(ScriptedFormValidation):
    """Safe now? person with you? child at risk? — the emergency number at once if unsafe."""

    form = "safeguarding_form"
    slots = SG_SLOTS

    def interpret(self, slot: str, tracker: Tracker) -> Any:
        return yes_no_or_detail(tracker)

    def after_answer(self, slot, value, dispatcher, tracker):
        if slot == "sg_safe_now" and value != YES:
            dispatcher.utter_message(
                response="utter_sg_danger_now", emergency=emergency_number(client_region_any(tracker))
            )
        return []


class ActionSafeguardingResult(Action):
    """Give the emergency number and the abuse line; alert a clinician with the answers."""

    def name(self) -> str:
        return "action_safeguarding_result"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        values = {slot: tracker.get_slot(slot) for slot in SG_SLOTS}
        facts = {label: str(values[s]) for s, label in FACT_LABELS.items() if values.get(s) is not None}
        child = values.get("sg_child_at_risk") not in (NO, None)
        if child:
            facts["Child safeguarding"] = "a child may be at risk — follow child-protection procedure"
        region = client_region_any(tracker)
        dispatcher.utter_message(response="utter_sg_done", emergency=emergency_number(region))
        dispatcher.utter_message(text=hotline_card(region, abuse=True, clinician_told=True))
        dispatcher.utter_message(
            json_message=escalation_payload(
                priority="imminent" if unsafe_now(values) else "urgent",
                reason="Safeguarding: the client disclosed being harmed"
                + ("; may not be safe right now." if unsafe_now(values) else "; says they are safe right now.")
                + (" A child may be at risk." if child else ""),
                categories=["being_harmed"],
                facts=facts,
            )
        )
        return [mark_completed(tracker, "safeguarding")]
