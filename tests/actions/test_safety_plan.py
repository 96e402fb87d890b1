"""The Stanley-Brown safety plan: six steps in order, sent to the gateway when complete."""

from __future__ import annotations

from rasa_sdk.events import SlotSet

from action_trackers import answer_tracker, result_tracker, run
from actions.safety_plan import PLAN_KEYS, ActionSafetyPlanResult, ValidateSafetyPlanForm


FORM = "safety_plan_form"


def test_steps_are_asked_in_stanley_brown_order():
    _, events = run(ValidateSafetyPlanForm(), answer_tracker(FORM, "sp_warning_signs", "when I stop eating", "inform"))
    assert events == [SlotSet("sp_warning_signs", "when I stop eating"), SlotSet("requested_slot", "sp_coping")]
    assert list(PLAN_KEYS.values()) == ["warning_signs", "coping_strategies", "distractions",
                                        "people_to_ask", "professionals", "safe_environment"]


def test_the_last_step_ends_the_form():
    slots = {s: "x" for s in list(PLAN_KEYS)[:5]}
    _, events = run(ValidateSafetyPlanForm(), answer_tracker(FORM, "sp_safe_environment", "lock up the pills", "inform", slots))
    assert events == [SlotSet("sp_safe_environment", "lock up the pills"), SlotSet("requested_slot", None)]


def test_a_stop_is_not_taken_as_an_answer():
    assert run(ValidateSafetyPlanForm(), answer_tracker(FORM, "sp_people", "stop", "stop")) == ([], [])


def test_the_plan_is_sent_with_the_contract_keys():
    slots = {slot: f"answer {i}" for i, slot in enumerate(PLAN_KEYS)}
    messages, events = run(ActionSafetyPlanResult(), result_tracker(slots))
    assert messages[0]["custom"] == {"safety_plan": {key: f"answer {i}" for i, key in enumerate(PLAN_KEYS.values())}}
    assert messages[1]["response"] == "utter_safety_plan_saved"
    assert events == [SlotSet("completed_flows", ["safety_plan"])]
