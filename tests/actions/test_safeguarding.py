"""Safeguarding: safe now? person with you? child at risk? → emergency number and abuse line."""

from __future__ import annotations

from rasa_sdk.events import SlotSet

from action_trackers import answer_tracker, result_tracker, run
from actions.safeguarding import ActionSafeguardingResult, ValidateSafeguardingForm


FORM = "safeguarding_form"


def test_not_safe_now_gives_the_emergency_number_at_once():
    messages, events = run(ValidateSafeguardingForm(), answer_tracker(FORM, "sg_safe_now", "no", "deny", region="UK"))
    assert messages == [dict(messages[0], response="utter_sg_danger_now", emergency="999")]
    assert events == [SlotSet("sg_safe_now", "no"), SlotSet("requested_slot", "sg_person_present")]


def test_safe_now_asks_the_next_question_without_a_warning():
    messages, events = run(ValidateSafeguardingForm(), answer_tracker(FORM, "sg_safe_now", "yes", "affirm"))
    assert messages == []
    assert events == [SlotSet("sg_safe_now", "yes"), SlotSet("requested_slot", "sg_person_present")]


def test_unsafe_is_imminent_with_the_abuse_line_first():
    slots = {"sg_safe_now": "no", "sg_person_present": "yes", "sg_child_at_risk": "yes"}
    messages, events = run(ActionSafeguardingResult(), result_tracker(slots, region="US"))
    assert messages[0]["response"] == "utter_sg_done" and messages[0]["emergency"] == "911"
    card = messages[1]["text"]
    assert card.index("1-800-799-7233") < card.index("988") and "911" in card
    payload = messages[2]["custom"]["escalate"]
    assert payload["priority"] == "imminent" and payload["categories"] == ["being_harmed"]
    assert payload["facts"]["Safe right now?"] == "no"
    assert "child" in payload["facts"]["Child safeguarding"]
    assert events == [SlotSet("completed_flows", ["safeguarding"])]


def test_safe_and_alone_is_urgent():
    slots = {"sg_safe_now": "yes", "sg_person_present": "no", "sg_child_at_risk": "no"}
    messages, _ = run(ActionSafeguardingResult(), result_tracker(slots))
    assert messages[2]["custom"]["escalate"]["priority"] == "urgent"
