"""Concerned other: immediate danger? where? → emergency number and the hotline to pass on."""

from __future__ import annotations

import pytest
from rasa_sdk.events import SlotSet

from action_trackers import answer_tracker, result_tracker, run
from actions.concerned_other import ActionConcernedOtherResult, ValidateConcernedOtherForm


FORM = "concerned_other_form"


def test_not_sure_is_asked_again_not_taken_as_no():
    messages, events = run(ValidateConcernedOtherForm(), answer_tracker(FORM, "co_danger", "not sure", "refuse"))
    assert [m["response"] for m in messages] == ["utter_ask_again"]
    assert events[0] == SlotSet("co_danger", None)


@pytest.mark.parametrize("danger, priority, emergency_line", [
    ("yes", "imminent", True), ("declined", "urgent", True), ("no", "routine", False)])
def test_priority_follows_the_danger(danger, priority, emergency_line):
    slots = {"co_danger": danger, "co_location": "at home", "co_relation": "my friend"}
    messages, events = run(ActionConcernedOtherResult(), result_tracker(slots, region="CA"))
    responses = [m["response"] for m in messages if m["response"]]
    assert responses == (["utter_co_danger"] if emergency_line else []) + ["utter_co_pass_on"]
    card = next(m["text"] for m in messages if m["text"])
    assert "9-8-8" in card
    payload = messages[-1]["custom"]["escalate"]
    assert payload["priority"] == priority and payload["categories"] == ["third_party_concern"]
    assert payload["facts"]["Who they are worried about"] == "my friend"
    assert events == [SlotSet("completed_flows", ["concerned_other"])]
