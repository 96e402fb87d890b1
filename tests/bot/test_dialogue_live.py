"""The minimal assistant through the real gateway pipeline, real Rasa and action server."""

from __future__ import annotations

import asyncio
import itertools

import httpx
import pytest

from bot.pipeline import Alert, Inbound, Pipeline, Reply
from bot.rasa_client import RasaClient

pytestmark = pytest.mark.rasa
_ids = itertools.count()


@pytest.fixture
def chat(rasa_stack, store, fake_screener, sink):
    """Send messages as one fresh client; return the events of each turn."""
    name = f"live{next(_ids)}"

    def say(text: str, region: str = "US") -> list[Reply | Alert]:
        async def turn():
            client = RasaClient(rasa_stack.rasa_url, timeout=30, token=rasa_stack.token)
            try:
                pipeline = Pipeline(store, fake_screener, client, sink)
                return await pipeline.handle(Inbound(chat=name, text=text, region=region))
            finally:
                await client.close()

        return asyncio.run(turn())

    say.conversation_id = f"console:{name}"
    return say


def tracker(rasa_stack, conversation_id: str) -> dict:
    url = f"{rasa_stack.rasa_url}/conversations/{conversation_id}/tracker"
    return httpx.get(url, params={"token": rasa_stack.token}, timeout=30, trust_env=False).json()


def texts(events) -> str:
    return "\n".join(e.text for e in events if isinstance(e, Reply))


def test_first_contact_gets_the_consent_and_disclosure(chat):
    said = texts(chat("hello"))
    assert "automated assistant" in said
    assert "not an emergency service" in said
    assert "read by the clinic's clinicians" in said
    assert "not end-to-end encrypted" in said


def test_typed_restart_does_not_restart_the_conversation(chat, rasa_stack):
    chat("hello")
    said = texts(chat("/restart"))
    assert "Before we start" not in said  # a real restart would show the disclosure again
    state = tracker(rasa_stack, chat.conversation_id)
    assert all(e["event"] != "restart" for e in state["events"])
    assert state["slots"]["disclosure_shown"] is True
    assert state["latest_message"]["text"] == "restart"


def test_typed_deny_is_read_by_nlu_not_forced_as_an_intent(chat, rasa_stack):
    chat("hello")
    chat("/deny")
    latest = tracker(rasa_stack, chat.conversation_id)["latest_message"]
    assert latest["text"] == "deny"
    # a "/deny" parsed as an intent has a single ranking entry at confidence 1.0
    assert len(latest["intent_ranking"]) > 1


def test_bot_challenge_gets_an_honest_answer(chat):
    chat("hi")
    said = texts(chat("are you a real person?"))
    assert "automated assistant" in said and "not a person" in said


def test_request_for_a_human_shows_card_and_pages_a_clinician(chat, store):
    chat("hello")
    events = chat("I want to talk to a real person", region="UK")
    assert "116 123" in texts(events) and "clinician" in texts(events)
    alerts = [e for e in events if isinstance(e, Alert)]
    assert len(alerts) == 1 and alerts[0].priority == "routine"
    assert store.open_case(chat.conversation_id) is not None


def test_help_shows_the_card_without_paging(chat, store):
    chat("hello")
    events = chat("what can you do", region="AU")
    assert "13 11 14" in texts(events)
    assert not [e for e in events if isinstance(e, Alert)]
    assert "being told" not in texts(events)


def test_out_of_scope_is_answered_honestly(chat):
    chat("hello")
    said = texts(chat("can you order me a pizza"))
    assert "can't help with that" in said


def test_goodbye(chat):
    chat("hello")
    assert "Take care" in texts(chat("bye"))


def test_rasa_http_api_refuses_calls_without_the_token(rasa_stack):
    url = f"{rasa_stack.rasa_url}/conversations/anyone/tracker"
    assert httpx.get(url, timeout=30, trust_env=False).status_code == 401


def test_each_turns_answer_says_the_active_form_as_the_tracker_does(rasa_stack):
    """The gateway reads from a turn's answer whether a crisis form runs (bot/rasa_channel.py)
    instead of asking for the whole tracker: the two must agree at every step of a flow."""
    from bot.rasa_client import UNKNOWN

    sender = f"console:loops{next(_ids)}"
    metadata = {"screening": {"escalate": False}, "region": "US", "channel": "console"}

    async def conversation() -> list[tuple[str | None, str | None]]:
        client = RasaClient(rasa_stack.rasa_url, timeout=30, token=rasa_stack.token)
        seen = []
        try:
            for step, text in enumerate(["hello", "TRIGGER", "yes", "no", "yes", "stop", "hello again"]):
                if text == "TRIGGER":  # as the gateway asks for the suicide-risk flow
                    await client.trigger_intent(sender, "EXTERNAL_screen_positive",
                                                {"risk_category": "self_harm", "risk_priority": "urgent"})
                    continue
                turn = await client.turn(sender, text, metadata)
                assert turn.replies, f"step {step}: Rasa answered nothing"
                seen.append((turn.active_loop, await client.active_loop(sender)))
        finally:
            await client.close()
        return seen

    seen = asyncio.run(conversation())
    assert all(said != UNKNOWN for said, _ in seen), seen
    assert [said for said, _ in seen] == [asked for _, asked in seen], seen
    assert "asq_form" in [said for said, _ in seen], seen  # the flow's answers ran inside the form
