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



def in_flight_client(handler, *, timeout: float, in_flight: int):
    """A RasaClient with ``in_flight`` against a webhook answered by ``handler``: an async
    context manager giving the client; the server and the client close on leaving."""
    import contextlib

    from aiohttp import web

    from bot.rasa_client import RasaClient
    from conftest import serve_app

    @contextlib.asynccontextmanager
    async def serving():
        app = web.Application()
        app.router.add_post("/webhooks/rest/webhook", handler)
        runner, base = await serve_app(app)
        client = RasaClient(base, timeout=timeout, in_flight=in_flight)
        try:
            yield client
        finally:
            await client.close()
            await runner.cleanup()

    return serving()


def test_at_most_in_flight_turns_are_in_rasa_at_once_and_the_rest_go_in_the_order_asked():
    """The gateway keeps no more turns in Rasa than ``in_flight``; every turn is answered, and
    those that waited reached Rasa in the order they were asked."""
    import asyncio

    from aiohttp import web

    inside, most, arrived = 0, 0, []

    async def answer(request: web.Request) -> web.Response:
        nonlocal inside, most
        body = await request.json()
        arrived.append(body["sender"])
        inside += 1
        most = max(most, inside)
        await asyncio.sleep(0.05)
        inside -= 1
        return web.json_response([{"text": f"hello {body['sender']}"}])

    async def run():
        async with in_flight_client(answer, timeout=30, in_flight=2) as client:
            return await asyncio.gather(*(client.turn(f"telegram:{n}", "hi", {}) for n in range(8)))

    turns = asyncio.run(run())
    assert [turn.replies[0].text for turn in turns] == [f"hello telegram:{n}" for n in range(8)]
    assert most == 2
    assert arrived[2:] == [f"telegram:{n}" for n in range(2, 8)]  # the two first race each other


def test_waiting_for_a_place_counts_towards_the_time_out():
    """With Rasa stalled, every queued message gets its fail-safe after the time-out, not after
    the time-outs of all those ahead of it (six of 0.4 s one after the other would take 2.4 s)."""
    import asyncio
    import time

    from aiohttp import web

    from bot.rasa_client import RasaUnavailable

    stalled = asyncio.Event()

    async def stall(request: web.Request) -> web.Response:
        await stalled.wait()
        return web.json_response([])

    async def run():
        async with in_flight_client(stall, timeout=0.4, in_flight=1) as client:
            started = time.monotonic()
            try:
                outcomes = await asyncio.gather(*(client.turn(f"telegram:{n}", "hi", {}) for n in range(6)),
                                                return_exceptions=True)
                return outcomes, time.monotonic() - started
            finally:
                stalled.set()

    outcomes, took = asyncio.run(run())
    assert all(isinstance(outcome, RasaUnavailable) for outcome in outcomes)
    assert all(isinstance(outcome.__cause__, asyncio.TimeoutError) for outcome in outcomes)
    assert took < 1.6


def test_a_place_left_by_a_timed_out_request_goes_to_the_next():
    """A request that timed out (waiting or in Rasa) gives its place back: later turns are
    answered once Rasa answers again."""
    import asyncio

    from aiohttp import web

    from bot.rasa_client import RasaUnavailable

    slow = {"telegram:0", "telegram:1"}

    async def answer(request: web.Request) -> web.Response:
        body = await request.json()
        if body["sender"] in slow:
            await asyncio.sleep(1.0)
        return web.json_response([{"text": "ok"}])

    async def run():
        async with in_flight_client(answer, timeout=0.3, in_flight=1) as client:
            first = await asyncio.gather(*(client.turn(f"telegram:{n}", "hi", {}) for n in range(2)),
                                         return_exceptions=True)
            later = await asyncio.gather(*(client.turn(f"telegram:{n}", "hi", {}) for n in range(2, 6)))
            return first, later

    first, later = asyncio.run(run())
    assert all(isinstance(outcome, RasaUnavailable) for outcome in first)
    assert [turn.replies[0].text for turn in later] == ["ok"] * 4

def test_the_gateway_keeps_one_turn_more_in_rasa_than_it_has_workers():
    from bot.rasa_client import in_flight_for

    assert [in_flight_for(workers) for workers in (1, 2, 4)] == [2, 3, 5]
