"""The Stanley-Brown safety plan: six steps, in order, saved on the case.

../shared/CLINICAL.md "Safety planning (Stanley & Brown)": 1. warning signs; 2. internal
coping strategies; 3. people and places that distract; 4. people to ask for help;
5. professionals and crisis lines; 6. making the environment safe (lethal means). Offered
after a positive ASQ, never forced: a "no" to the offer is respected (data/rules/flows.yml).
When all six are collected the plan goes to the gateway as {"safety_plan": {...}}.
"""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType
from rasa_sdk.executor import CollectingDispatcher

from actions.forms import ScriptedFormValidation, free_text
from actions.helpers import mark_completed

#: slot → the key the gateway stores (the contract's names), in Stanley-Brown order
PLAN_KEYS = {
    "sp_warning_signs": "warning_signs",
    "sp_coping": "coping_strategies",
    "sp_distractions": "distractions",
    "sp_people": "people_to_ask",
    "sp_professionals": "professionals",
    "sp_safe_environment": "safe_environment",
}
SP_SLOTS = tuple(PLAN_KEYS)


class ValidateSafetyPlanForm(ScriptedFormValidation):
    """Take each step in the client's own words; a refusal is asked once, then skipped."""

    form = "safety_plan_form"
    slots = SP_SLOTS

    def interpret(self, slot: str, tracker: Tracker) -> Any:
        return free_text(tracker)


def safety_plan(tracker: Tracker) -> dict[str, str]:
    return {key: str(tracker.get_slot(slot) or "") for slot, key in PLAN_KEYS.items()}


class ActionSafetyPlanResult(Action):
    """Send the plan to the gateway (saved on the case) and show the client a copy."""

    def name(self) -> str:
        return "action_safety_plan_result"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        dispatcher.utter_message(json_message={"safety_plan": safety_plan(tracker)})
        dispatcher.utter_message(response="utter_safety_plan_saved")
        return [mark_completed(tracker, "safety_plan")]
