"""Custom actions, run with tracker fixtures and a fresh CollectingDispatcher."""

from __future__ import annotations

import asyncio

import pytest
from rasa_sdk import Tracker
from rasa_sdk.events import ActionExecuted, SessionStarted, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.helpers import escalation_payload
from actions.hotline import ActionHotlineCard, ActionRequestHuman
from actions.session import ActionSessionStart


def make_tracker(slots=None, metadata=None) -> Tracker:
    return Tracker(
        sender_id="console:test",
        slots=slots or {},
        latest_message={"text": "x", "intent": {}, "entities": [], "metadata": metadata or {}},
        events=[],
        paused=False,
        followup_action=None,
        active_loop={},
        latest_action_name="action_listen",
    )


def run(action, tracker):
    dispatcher = CollectingDispatcher()
    events = asyncio.run(action.run(dispatcher, tracker, {}))
    return dispatcher.messages, events


def test_first_session_shows_the_disclosure_and_remembers_it():
    messages, events = run(ActionSessionStart(), make_tracker({"disclosure_shown": False}))
    assert [m["response"] for m in messages] == ["utter_disclosure"]
    assert events == [
        SessionStarted(),
        SlotSet("disclosure_shown", False),
        SlotSet("disclosure_shown", True),
        ActionExecuted("action_listen"),
    ]


def test_later_sessions_show_a_short_reminder():
    messages, events = run(ActionSessionStart(), make_tracker({"disclosure_shown": True}))
    assert [m["response"] for m in messages] == ["utter_disclosure_reminder"]
    assert events == [SessionStarted(), SlotSet("disclosure_shown", True), ActionExecuted("action_listen")]


def test_hotline_card_uses_the_region_from_metadata():
    messages, events = run(ActionHotlineCard(), make_tracker(metadata={"region": "CA"}))
    assert events == []
    (card,) = messages
    assert "9-8-8" in card["text"] and "being told" not in card["text"]


def test_request_human_pages_a_clinician_with_a_routine_payload():
    messages, events = run(ActionRequestHuman(), make_tracker(metadata={"region": "UK"}))
    assert events == []
    assert messages[0]["response"] == "utter_human_requested"
    assert "116 123" in messages[1]["text"] and "being told" in messages[1]["text"]
    assert messages[2]["custom"] == {
        "escalate": {
            "priority": "routine",
            "categories": [],
            "reason": "The client asked to talk to a person.",
            "facts": {},
            "duty_to_protect": False,
        }
    }


def test_escalation_payload_rejects_unknown_priorities():
    with pytest.raises(ValueError):
        escalation_payload(priority="low", reason="x")
