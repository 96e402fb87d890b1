"""Tracker fixtures for the custom-action tests (Rasa's financial-demo style)."""

from __future__ import annotations

import asyncio

from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher


def answer_tracker(form, requested, text, intent, slots=None, entities=None, region="US"):
    """The tracker a form's validation sees right after the client answered ``requested``."""
    message = {"text": text, "intent": {"name": intent, "confidence": 0.9}, "entities": entities or [],
               "metadata": {"region": region}}
    return Tracker("console:t", {"requested_slot": requested, **(slots or {})}, message,
                   [{"event": "action", "name": "action_listen"}, {"event": "user", "text": text}],
                   False, None, {"name": form}, "action_listen")


def result_tracker(slots, region="US"):
    """The tracker a flow's result action sees once its form is complete."""
    message = {"text": "x", "intent": {"name": "inform"}, "entities": [], "metadata": {"region": region}}
    return Tracker("console:t", slots, message, [], False, None, {}, "action_listen")


def run(action, tracker):
    """Run an action with a fresh CollectingDispatcher; return (messages, events)."""
    dispatcher = CollectingDispatcher()
    events = asyncio.run(action.run(dispatcher, tracker, {}))
    return dispatcher.messages, events
