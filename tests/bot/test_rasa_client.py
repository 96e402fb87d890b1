"""The "/" guard and the mapping of Rasa's REST replies."""

from __future__ import annotations

import pytest

from bot.rasa_client import neutralise, parse_reply


@pytest.mark.parametrize(
    "typed,forwarded",
    [
        ("/restart", "restart"),
        ("/deny", "deny"),
        ('/inform{"x": 1}', 'inform{"x": 1}'),
        ("  //greet", "greet"),
        ("\t/ / stop", "stop"),
        ("\u00a0/restart", "restart"),
        ("and/or is fine", "and/or is fine"),
        ("I feel 1/10", "I feel 1/10"),
    ],
)
def test_neutralise_removes_every_leading_slash(typed, forwarded):
    assert neutralise(typed) == forwarded
    assert not neutralise(typed).strip().startswith("/")


def test_parse_reply_keeps_text_buttons_and_custom_payloads():
    reply = parse_reply({"text": "Yes or no?", "buttons": [{"title": "Yes", "payload": "yes"}, {"x": 1}]})
    assert reply.text == "Yes or no?" and [b["title"] for b in reply.buttons] == ["Yes"]
    custom = parse_reply({"custom": {"escalate": {"priority": "urgent"}}})
    assert custom.text is None and custom.custom == {"escalate": {"priority": "urgent"}}


def test_a_triggered_intent_asks_rasa_for_its_messages_without_the_conversations_events():
    import asyncio
    import json

    import httpx

    from bot.rasa_client import RasaClient

    seen = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"tracker": {"events": None}, "messages": [{"text": "Are you safe?"}]})

    client = RasaClient("http://rasa.test", token="secret")
    client._client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    replies = asyncio.run(client.trigger_intent("telegram:1", "EXTERNAL_risk", {"risk_category": "self_harm"}))
    assert [reply.text for reply in replies] == ["Are you safe?"]
    (request,) = seen
    assert request.url.path == "/conversations/telegram:1/trigger_intent"
    assert request.url.params["include_events"] == "NONE" and request.url.params["token"] == "secret"
    assert json.loads(request.content) == {"name": "EXTERNAL_risk", "entities": {"risk_category": "self_harm"}}
