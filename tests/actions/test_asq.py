"""The ASQ form and its scoring (../shared/CLINICAL.md routing), with tracker fixtures."""

from __future__ import annotations

import asyncio

import pytest
from rasa_sdk import Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.asq import ActionAsqResult, ValidateAsqForm, asq_route


def answer_tracker(requested, text, intent, slots=None, region="US"):
    """The tracker a form's validation sees right after the client answered ``requested``."""
    all_slots = {"requested_slot": requested, **(slots or {})}
    message = {"text": text, "intent": {"name": intent, "confidence": 0.9}, "entities": [],
               "metadata": {"region": region}}
    return Tracker("console:t", all_slots, message,
                   [{"event": "action", "name": "action_listen"}, {"event": "user", "text": text, **{"parse_data": message}}],
                   False, None, {"name": "asq_form"}, "action_listen")


def result_tracker(slots, region="US"):
    message = {"text": "no", "intent": {"name": "deny"}, "entities": [], "metadata": {"region": region}}
    return Tracker("console:t", slots, message, [], False, None, {}, "asq_form")


def run(action, tracker):
    dispatcher = CollectingDispatcher()
    events = asyncio.run(action.run(dispatcher, tracker, {}))
    return dispatcher.messages, events


@pytest.mark.parametrize("answers, route", [
    ({"asq_q1": "no", "asq_q2": "no", "asq_q3": "no", "asq_q4": "no"}, "negative"),
    ({"asq_q1": "yes", "asq_q2": "no", "asq_q3": "no", "asq_q4": "no", "asq_q5": "no"}, "non_acute"),
    ({"asq_q1": "declined", "asq_q2": "no", "asq_q3": "no", "asq_q4": "no", "asq_q5": "no"}, "non_acute"),
    ({"asq_q1": "no", "asq_q2": "no", "asq_q3": "no", "asq_q4": "yes", "asq_q5": "yes"}, "acute"),
    ({"asq_q1": "yes", "asq_q2": "no", "asq_q3": "no", "asq_q4": "no", "asq_q5": "declined"}, "acute"),
])
def test_routing_follows_the_asq(answers, route):
    assert asq_route(answers) == route


def test_a_no_is_recorded_and_the_next_question_requested():
    messages, events = run(ValidateAsqForm(), answer_tracker("asq_q1", "no", "deny"))
    assert messages == []
    assert events == [SlotSet("asq_q1", "no"), SlotSet("requested_slot", "asq_q2")]


def test_a_button_yes_is_read_without_the_nlu():
    _, events = run(ValidateAsqForm(), answer_tracker("asq_q2", "Yes", "nlu_fallback", {"asq_q1": "no"}))
    assert events[0] == SlotSet("asq_q2", "yes")


def test_a_first_refusal_is_asked_once_more():
    messages, events = run(ValidateAsqForm(), answer_tracker("asq_q3", "I'd rather not say", "refuse"))
    assert [m["response"] for m in messages] == ["utter_ask_again"]
    assert events == [SlotSet("asq_q3", None), SlotSet("question_retries", {"asq_q3": 1}),
                      SlotSet("requested_slot", "asq_q3")]


def test_a_second_refusal_counts_as_yes_and_brings_question_5():
    slots = {"asq_q1": "no", "asq_q2": "no", "asq_q4": "no", "question_retries": {"asq_q3": 1}}
    messages, events = run(ValidateAsqForm(), answer_tracker("asq_q3", "dunno", "refuse", slots))
    assert [m["response"] for m in messages] == ["utter_answer_noted"]
    assert events == [SlotSet("asq_q3", "declined"), SlotSet("requested_slot", "asq_q5")]


def test_all_four_no_ends_the_form_without_question_5():
    slots = {"asq_q1": "no", "asq_q2": "no", "asq_q3": "no"}
    _, events = run(ValidateAsqForm(), answer_tracker("asq_q4", "nope", "deny", slots))
    assert events == [SlotSet("asq_q4", "no"), SlotSet("requested_slot", None)]


def test_a_past_attempt_asks_how_and_when():
    slots = {"asq_q1": "no", "asq_q2": "no", "asq_q3": "no"}
    _, events = run(ValidateAsqForm(), answer_tracker("asq_q4", "yes", "affirm", slots))
    assert events == [SlotSet("asq_q4", "yes"), SlotSet("requested_slot", "asq_attempt")]


def test_a_request_for_a_person_is_not_an_answer():
    """Nothing extracted: Rasa rejects the form, the rule answers, the question comes again."""
    messages, events = run(ValidateAsqForm(), answer_tracker("asq_q2", "can I talk to a person", "request_human"))
    assert (messages, events) == ([], [])


def test_after_an_interruption_the_same_question_is_asked_again():
    tracker = answer_tracker("asq_q2", "can I talk to a person", "request_human", {"asq_q1": "yes"})
    tracker.events.append({"event": "action", "name": "action_request_human"})
    _, events = run(ValidateAsqForm(), tracker)
    assert events == [SlotSet("requested_slot", "asq_q2")]


NEGATIVE = {"asq_q1": "no", "asq_q2": "no", "asq_q3": "no", "asq_q4": "no"}


def test_negative_gives_a_routine_alert_and_never_says_safe():
    messages, events = run(ActionAsqResult(), result_tracker(dict(NEGATIVE)))
    assert messages[0]["response"] == "utter_asq_negative"
    assert "988" in messages[1]["text"]
    payload = messages[2]["custom"]["escalate"]
    assert payload["priority"] == "routine" and payload["categories"] == ["self_harm"]
    assert payload["facts"]["ASQ result"] == "negative (all four no)"
    assert len(messages) == 3  # no safety plan offer
    assert not any("safe" in (m.get("text") or "").lower().split() for m in messages)
    assert events == [SlotSet("asq_result", "negative"), SlotSet("safety_plan_offered", False),
                      SlotSet("completed_flows", ["asq"])]


def test_non_acute_is_urgent_and_offers_a_safety_plan():
    slots = dict(NEGATIVE, asq_q2="declined", asq_q5="no")
    messages, events = run(ActionAsqResult(), result_tracker(slots, region="UK"))
    assert [m["response"] for m in messages if m["response"]] == ["utter_asq_non_acute", "utter_offer_safety_plan"]
    assert "116 123" in messages[1]["text"]
    payload = messages[2]["custom"]["escalate"]
    assert payload["priority"] == "urgent"
    assert payload["facts"]["ASQ 2 family better off if dead (past few weeks)"] == "declined"
    assert "ASQ 2" in payload["facts"]["declined (counted as yes)"]
    assert events[:2] == [SlotSet("asq_result", "non_acute"), SlotSet("safety_plan_offered", True)]


def test_acute_is_imminent_repeats_the_numbers_and_asks_to_stay():
    slots = dict(NEGATIVE, asq_q3="yes", asq_q5="yes")
    messages, events = run(ActionAsqResult(), result_tracker(slots))
    assert messages[0]["response"] == "utter_asq_acute"
    card = messages[1]["text"]
    assert "stay here in this chat" in card and "911" in card and "988" in card
    assert messages[2]["custom"]["escalate"]["priority"] == "imminent"
    assert events[0] == SlotSet("asq_result", "acute")
