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

    from aiohttp import web

    from bot.rasa_client import RasaClient, RasaUnavailable
    from conftest import serve_app

    seen = []

    async def answer(request: web.Request) -> web.Response:
        seen.append((request.path, dict(request.query), await request.json()))
        if request.match_info["sender"] == "broken":
            return web.Response(status=500, text="ConversationError")
        return web.json_response({"tracker": {"events": None}, "messages": [{"text": "Are you safe?"}]})

    async def run():
        app = web.Application()
        app.router.add_post("/conversations/{sender}/trigger_intent", answer)
        runner, base = await serve_app(app)
        client = RasaClient(base, token="secret")
        try:
            replies = await client.trigger_intent("telegram:1", "EXTERNAL_risk", {"risk_category": "self_harm"})
            with pytest.raises(RasaUnavailable):
                await client.trigger_intent("broken", "EXTERNAL_risk", {})
        finally:
            await client.close()
            await runner.cleanup()
        return replies

    replies = asyncio.run(run())
    assert [reply.text for reply in replies] == ["Are you safe?"]
    path, query, body = seen[0]
    assert path == "/conversations/telegram:1/trigger_intent"
    assert query == {"include_events": "NONE", "token": "secret"}
    assert body == {"name": "EXTERNAL_risk", "entities": {"risk_category": "self_harm"}}


@pytest.mark.parametrize("header,loop", [({"X-Triage-Active-Loop": "asq_form"}, "asq_form"),
                                         ({"x-triage-active-loop": ""}, None), ({}, "?")])
def test_a_turn_reads_the_active_form_from_the_answers_header(header, loop):
    import asyncio

    from aiohttp import web

    from bot.rasa_client import UNKNOWN, RasaClient
    from conftest import serve_app

    async def answer(request: web.Request) -> web.Response:
        return web.json_response([{"text": "Thanks for telling me."}], headers=header)

    async def run():
        app = web.Application()
        app.router.add_post("/webhooks/rest/webhook", answer)
        runner, base = await serve_app(app)
        client = RasaClient(base)
        try:
            return await client.turn("telegram:1", "hello", {})
        finally:
            await client.close()
            await runner.cleanup()

    turn = asyncio.run(run())
    assert [reply.text for reply in turn.replies] == ["Thanks for telling me."]
    assert turn.active_loop == loop and (loop != "?" or turn.active_loop == UNKNOWN)
