"""The router (who starts which flow) and stop."""

from __future__ import annotations

import asyncio

import pytest
from rasa_sdk import Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.events import ActiveLoop

from bot.flows_config import FlowsConfig
from actions.routing import ActionRoute, ActionStopFlow


def tracker(intent, *, entities=None, slots=None, active=None, screening=None, region="US", events=None):
    message = {"text": "x", "intent": {"name": intent}, "entities": entities or [],
               "metadata": {"region": region, "screening": screening or {"escalate": False}}}
    return Tracker("console:t", slots or {}, message, events or [], False, None,
                   {"name": active} if active else {}, "action_listen")


def run(action, t):
    dispatcher = CollectingDispatcher()
    events = asyncio.run(action.run(dispatcher, t, {}))
    return dispatcher.messages, events


def test_an_nlu_guess_the_screen_did_not_page_for_asks_and_never_pages():
    messages, events = run(ActionRoute(), tracker("express_suicidal_ideation",
                                                   entities=[{"entity": "means", "value": "pills"}]))
    assert [m["custom"] for m in messages] == [{"ask": {
        "categories": ["self_harm", "lethal_means"],
        "reason": "The dialogue's NLU read a possible risk (express_suicidal_ideation) that the screen did not find.",
    }}]
    assert not any("escalate" in (m.get("custom") or {}) for m in messages)
    assert events == [SlotSet("flow", "acknowledge")]


def test_an_nlu_guess_mid_crisis_flow_leaves_the_flow_alone():
    messages, events = run(ActionRoute(), tracker("express_harm_to_others", active="asq_form"))
    assert messages == [] and events == [SlotSet("flow", "acknowledge")]


def test_when_the_screen_already_escalated_there_is_no_second_card():
    messages, events = run(ActionRoute(), tracker("disclose_being_harmed", screening={"escalate": True}))
    assert [m["response"] for m in messages] == ["utter_sg_intro"]
    assert events[-1] == SlotSet("flow", "safeguarding")


@pytest.mark.parametrize("category, flow", [("self_harm", "asq"), ("lethal_means", "asq"),
                                            ("harm_to_others", "harm_to_others"), ("being_harmed", "safeguarding"),
                                            ("third_party_concern", "concerned_other"), ("bogus", "asq")])
def test_screen_trigger_picks_the_flow_by_category(category, flow):
    entities = [{"entity": "risk_category", "value": category}, {"entity": "risk_priority", "value": "urgent"}]
    messages, events = run(ActionRoute(), tracker("EXTERNAL_screen_positive", entities=entities, region=None))
    assert not any(m.get("custom") for m in messages)  # the gateway already alerted
    assert events[-1] == SlotSet("flow", flow)


def test_screen_trigger_interrupts_the_intake_at_once():
    entities = [{"entity": "risk_category", "value": "self_harm"}]
    _, events = run(ActionRoute(), tracker("EXTERNAL_screen_positive", entities=entities, active="intake_form"))
    assert events[:2] == [ActiveLoop(None), SlotSet("requested_slot", None)]
    assert events[-1] == SlotSet("flow", "asq")


def test_a_completed_flow_is_acknowledged_not_repeated():
    entities = [{"entity": "risk_category", "value": "self_harm"}, {"entity": "risk_priority", "value": "imminent"}]
    messages, events = run(ActionRoute(), tracker("EXTERNAL_screen_positive", entities=entities,
                                                  slots={"completed_flows": ["asq"]}, region="UK"))
    assert messages[0]["response"] == "utter_risk_acknowledged" and messages[0]["emergency"] == "999"
    payload = messages[1]["custom"]["escalate"]
    assert payload["priority"] == "imminent" and payload["categories"] == ["self_harm"]
    assert events == [SlotSet("flow", "acknowledge")]


def test_concern_for_other_the_screen_paged_starts_the_concerned_other_flow():
    entities = [{"entity": "relation", "value": "my sister"}]
    messages, events = run(ActionRoute(), tracker("concern_for_other", entities=entities,
                                                   screening={"escalate": True}))
    assert [m["response"] for m in messages] == ["utter_co_intro"]
    assert SlotSet("co_relation", "my sister") in events and events[-1] == SlotSet("flow", "concerned_other")


def test_concern_for_other_from_the_nlu_alone_asks_about_the_other_person():
    messages, _ = run(ActionRoute(), tracker("concern_for_other"))
    assert messages[0]["custom"]["ask"]["categories"] == ["third_party_concern"]


def test_greeting_after_hours_starts_the_intake(monkeypatch):
    monkeypatch.setattr(FlowsConfig, "is_after_hours", lambda self, when=None: True)
    messages, events = run(ActionRoute(), tracker("greet"))
    assert messages[0]["response"] == "utter_after_hours" and messages[0]["emergency"] == "911"
    assert events[-1] == SlotSet("flow", "intake")


def test_greeting_in_hours_is_a_greeting(monkeypatch):
    monkeypatch.setattr(FlowsConfig, "is_after_hours", lambda self, when=None: False)
    assert run(ActionRoute(), tracker("greet")) == ([], [SlotSet("flow", "chat")])


def test_leave_message_starts_the_intake_at_any_time():
    messages, events = run(ActionRoute(), tracker("leave_message"))
    assert messages[0]["response"] == "utter_intake_intro" and events[-1] == SlotSet("flow", "intake")


def test_stop_in_a_risk_flow_tells_a_clinician():
    messages, events = run(ActionStopFlow(), tracker("stop", active="asq_form", slots={"requested_slot": "asq_q2", "asq_q1": "yes"}))
    assert messages[0]["response"] == "utter_flow_stopped_risk"
    payload = messages[2]["custom"]["escalate"]
    assert payload["priority"] == "urgent" and payload["facts"] == {
        "ASQ 1 wished dead (past few weeks)": "yes", "Stopped at": "asq_q2"}
    assert events == [ActiveLoop(None), SlotSet("requested_slot", None), SlotSet("completed_flows", ["asq"])]


def test_stop_outside_a_flow_just_stops():
    messages, events = run(ActionStopFlow(), tracker("stop"))
    assert [m["response"] for m in messages] == ["utter_stop_ack"] and events == []


def test_flow_state_is_not_carried_to_a_new_session():
    """A new session may run the ASQ again; the disclosure flag is still carried over."""
    from actions.session import carried_over_slots

    slots = {"disclosure_shown": True, "completed_flows": ["asq"], "asq_q1": "yes", "flow": "asq",
             "question_retries": {"asq_q1": 1}, "safety_plan_offered": True, "requested_slot": "asq_q2"}
    assert carried_over_slots(tracker("greet", slots=slots)) == [SlotSet("disclosure_shown", True)]
