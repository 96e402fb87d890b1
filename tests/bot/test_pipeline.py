"""The gateway pipeline: store first, screen, escalate without Rasa, guard the engine."""

from __future__ import annotations

import asyncio
import json

import pytest

from bot.pipeline import FAILSAFE_TEXT, Alert, Inbound, Pipeline, Reply
from bot.rasa_client import RasaClient, RasaReply
from bot.servers import free_port
from conftest import RecordingSink


def run(coro):
    return asyncio.run(coro)


def make_pipeline(store, screener, rasa, sink, region="US") -> Pipeline:
    return Pipeline(store, screener, rasa, sink, default_region=region)


def test_inbound_is_stored_before_it_is_forwarded(store, fake_screener, fake_rasa, sink):
    pipeline = make_pipeline(store, fake_screener, fake_rasa, sink)
    run(pipeline.handle(Inbound(chat="alice", text="hello there")))
    assert fake_rasa.stored_at_call == [True]
    inbound = [m for m in store.messages("console:alice") if m["direction"] == "in"]
    assert [m["text"] for m in inbound] == ["hello there"]


def test_every_outbound_reply_is_stored(store, fake_screener, fake_rasa, sink):
    pipeline = make_pipeline(store, fake_screener, fake_rasa, sink)
    events = run(pipeline.handle(Inbound(chat="alice", text="hello")))
    outbound = [m["text"] for m in store.messages("console:alice") if m["direction"] == "out"]
    assert outbound == [e.text for e in events if isinstance(e, Reply)] == ["hello from the dialogue"]


@pytest.mark.parametrize("typed", ["/restart", "/deny", "  /restart", "//deny", "\u2003/restart", "/ /affirm"])
def test_leading_slash_never_reaches_rasa(store, fake_screener, fake_rasa, sink, typed):
    pipeline = make_pipeline(store, fake_screener, fake_rasa, sink)
    run(pipeline.handle(Inbound(chat="alice", text=typed)))
    (_, forwarded, _), = fake_rasa.calls
    assert not forwarded.strip().startswith("/")
    assert forwarded.strip() in {"restart", "deny", "affirm"}
    # the original text is what is stored and screened
    assert store.messages("console:alice")[0]["text"] == typed


def test_slash_only_message_is_answered_without_rasa(store, fake_screener, fake_rasa, sink):
    pipeline = make_pipeline(store, fake_screener, fake_rasa, sink)
    events = run(pipeline.handle(Inbound(chat="alice", text="/")))
    assert fake_rasa.calls == []
    assert len(events) == 1 and isinstance(events[0], Reply)


def test_positive_screen_sends_card_and_alert_before_the_dialogue(store, fake_screener, fake_rasa, sink):
    pipeline = make_pipeline(store, fake_screener, fake_rasa, sink, region="UK")
    events = run(pipeline.handle(Inbound(chat="bob", text="this is RISK talk")))
    kinds = [type(e).__name__ + (":" + e.kind if isinstance(e, Reply) else "") for e in events]
    assert kinds == ["Reply:card", "Alert", "Reply:reply", "Reply:reply"]  # last: the crisis flow
    assert "116 123" in events[0].text  # UK Samaritans
    alert = events[1]
    assert alert.priority == "urgent" and alert.categories == ["self_harm"]
    assert "«RISK»" in alert.text
    # the screen's verdict travels to Rasa as metadata; the client's text goes once, as the message
    metadata = fake_rasa.calls[0][2]
    assert metadata["screening"]["escalate"] is True and metadata["region"] == "UK"
    assert "RISK" not in json.dumps(metadata)
    # durable: the alert is in the outbox and marked delivered, the case is open
    (row,) = store.alerts()
    assert row["delivered_at"] is not None
    case = store.open_case("console:bob")
    assert case["priority"] == "urgent" and json.loads(case["categories"]) == ["self_harm"]


def test_acute_positive_card_asks_client_to_stay(store, fake_screener, fake_rasa, sink):
    pipeline = make_pipeline(store, fake_screener, fake_rasa, sink)
    events = run(pipeline.handle(Inbound(chat="c", text="ACUTE now")))
    assert "stay here in this chat" in events[0].text and "911" in events[0].text
    assert events[1].priority == "imminent"


def test_rasa_refusal_still_gives_card_and_alert_for_a_positive(store, fake_screener, sink):
    refused = RasaClient(f"http://127.0.0.1:{free_port()}", timeout=2)  # nothing listens
    pipeline = make_pipeline(store, fake_screener, refused, sink)
    events = run(pipeline.handle(Inbound(chat="d", text="RISK")))
    run(refused.close())
    assert [type(e) for e in events] == [Reply, Alert, Reply]
    assert "988" in events[0].text
    assert events[2].text == FAILSAFE_TEXT
    assert store.alerts()[0]["delivered_at"] is not None


def test_rasa_refusal_on_a_negative_gives_polite_reply_and_card(store, fake_screener, sink):
    refused = RasaClient(f"http://127.0.0.1:{free_port()}", timeout=2)
    pipeline = make_pipeline(store, fake_screener, refused, sink)
    events = run(pipeline.handle(Inbound(chat="e", text="hello")))
    run(refused.close())
    assert [e.kind for e in events] == ["fallback", "card"]
    assert "988" in events[1].text
    assert "being told" not in events[1].text  # no alert was raised, so don't claim one
    assert [m["text"] for m in store.messages("console:e") if m["direction"] == "in"] == ["hello"]


def test_rasa_timeout_gives_polite_reply_and_card(store, fake_screener, sink):
    async def scenario():
        async def slow(reader, writer):
            await asyncio.sleep(5)
            writer.close()

        server = await asyncio.start_server(slow, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = RasaClient(f"http://127.0.0.1:{port}", timeout=0.5)
        try:
            return await make_pipeline(store, fake_screener, client, sink).handle(
                Inbound(chat="f", text="RISK")
            )
        finally:
            await client.close()
            server.close()

    events = run(scenario())
    assert [type(e) for e in events] == [Reply, Alert, Reply]
    assert events[2].text == FAILSAFE_TEXT


def test_rasa_server_error_gives_polite_reply(store, fake_screener, sink):
    async def scenario():
        async def error(reader, writer):
            await reader.read(65536)
            writer.write(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(error, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = RasaClient(f"http://127.0.0.1:{port}", timeout=2)
        try:
            return await make_pipeline(store, fake_screener, client, sink).handle(
                Inbound(chat="g", text="hi")
            )
        finally:
            await client.close()
            server.close()

    events = run(scenario())
    assert [e.kind for e in events] == ["fallback", "card"]


def test_same_update_is_handled_once(store, fake_screener, fake_rasa, sink):
    pipeline = make_pipeline(store, fake_screener, fake_rasa, sink)
    first = run(pipeline.handle(Inbound(chat="h", text="RISK", channel="telegram", ref=41)))
    again = run(pipeline.handle(Inbound(chat="h", text="RISK", channel="telegram", ref=41)))
    assert first and again == []
    assert len(fake_rasa.calls) == 1 and len(store.alerts()) == 1


def test_update_stored_before_a_crash_is_resumed_on_replay(store, fake_screener, fake_rasa, sink):
    # the process died right after storing the update: nothing screened, sent or paged
    store.store_inbound("telegram:9", "telegram", "RISK", ref=77)
    pipeline = make_pipeline(store, fake_screener, fake_rasa, sink)
    events = run(pipeline.handle(Inbound(chat="9", text="RISK", channel="telegram", ref=77)))
    assert [type(e) for e in events] == [Reply, Alert]  # card and alert, once
    assert fake_rasa.calls == []  # the dialogue is not replayed: it might answer twice
    assert run(pipeline.handle(Inbound(chat="9", text="RISK", channel="telegram", ref=77))) == []


def test_rasa_escalate_payload_opens_a_case_and_alerts(store, fake_screener, fake_rasa, sink):
    fake_rasa.replies = [
        RasaReply(text="I'm letting a clinician know."),
        RasaReply(custom={"escalate": {"priority": "routine", "categories": [],
                                       "reason": "The client asked to talk to a person."}}),
    ]
    pipeline = make_pipeline(store, fake_screener, fake_rasa, sink)
    events = run(pipeline.handle(Inbound(chat="i", text="can I talk to a person")))
    assert isinstance(events[1], Alert) and events[1].priority == "routine"
    assert "asked to talk to a person" in events[1].text


def test_bot_side_cannot_lower_a_case_priority(store, fake_screener, fake_rasa, sink):
    pipeline = make_pipeline(store, fake_screener, fake_rasa, sink)
    run(pipeline.handle(Inbound(chat="j", text="ACUTE")))
    fake_rasa.replies = [RasaReply(custom={"escalate": {"priority": "routine", "reason": "x"}})]
    events = run(pipeline.handle(Inbound(chat="j", text="ok")))
    assert events[-1].priority == "imminent"
    assert store.open_case("console:j")["priority"] == "imminent"


def test_a_broken_screener_escalates_for_human_review(store, fake_rasa, sink):
    class Broken:
        def screen(self, text):
            raise RuntimeError("boom")

    events = run(make_pipeline(store, Broken(), fake_rasa, sink).handle(Inbound(chat="k", text="x")))
    assert isinstance(events[1], Alert) and events[1].priority == "urgent"
    assert "screen failed" in events[1].text


def test_an_alert_the_sink_cannot_deliver_stays_in_the_outbox(store, fake_screener, fake_rasa):
    class Failing:
        async def reply(self, event):
            pass

        async def alert(self, event):
            raise ConnectionError("telegram unreachable")

    run(make_pipeline(store, fake_screener, fake_rasa, Failing()).handle(Inbound(chat="l", text="RISK")))
    (row,) = store.undelivered_alerts()
    assert row["attempts"] == 1 and row["last_error"] == "ConnectionError"


def test_positive_screen_asks_rasa_for_the_crisis_flow(store, fake_screener, fake_rasa, sink):
    pipeline = make_pipeline(store, fake_screener, fake_rasa, sink)
    events = run(pipeline.handle(Inbound(chat="m", text="ACUTE")))
    assert fake_rasa.triggered == [
        ("console:m", "EXTERNAL_screen_positive", {"risk_category": "self_harm", "risk_priority": "imminent"})
    ]
    assert events[-1].text == "first question of the flow"


@pytest.mark.parametrize("says_loop", [True, False])
def test_no_second_flow_while_a_crisis_form_runs(store, fake_screener, fake_rasa, sink, says_loop):
    fake_rasa.loop, fake_rasa.says_loop = "asq_form", says_loop
    run(make_pipeline(store, fake_screener, fake_rasa, sink).handle(Inbound(chat="n", text="RISK")))
    assert fake_rasa.triggered == []


def test_the_turns_answer_says_whether_a_form_runs_so_rasa_is_not_asked_again(store, fake_screener, fake_rasa, sink):
    pipeline = make_pipeline(store, fake_screener, fake_rasa, sink)
    run(pipeline.handle(Inbound(chat="n2", text="RISK")))
    assert fake_rasa.loop_asked == 0 and len(fake_rasa.triggered) == 1
    # an answer without the header (an older Rasa channel, a streamed answer): asked separately
    fake_rasa.says_loop = False
    run(pipeline.handle(Inbound(chat="n3", text="RISK")))
    assert fake_rasa.loop_asked == 1 and len(fake_rasa.triggered) == 2


def test_negative_screen_never_triggers_a_flow(store, fake_screener, fake_rasa, sink):
    run(make_pipeline(store, fake_screener, fake_rasa, sink).handle(Inbound(chat="o", text="hi")))
    assert fake_rasa.triggered == []


def test_safety_plan_payload_is_saved_on_the_case(store, fake_screener, fake_rasa, sink):
    pipeline = make_pipeline(store, fake_screener, fake_rasa, sink)
    run(pipeline.handle(Inbound(chat="p", text="RISK")))
    plan = {"warning_signs": "can't sleep", "coping_strategies": "walk", "distractions": "gym",
            "people_to_ask": "sister", "professionals": "988", "safe_environment": "pills to a friend"}
    fake_rasa.replies = [RasaReply(custom={"safety_plan": plan})]
    events = run(pipeline.handle(Inbound(chat="p", text="done")))
    assert events == []  # nothing is echoed to the client or paged
    case = store.open_case("console:p")
    saved = [e for e in store.case_events(case["id"]) if e["event"] == "safety_plan"]
    assert len(saved) == 1 and json.loads(saved[0]["details"]) == plan



class SlowSink(RecordingSink):
    """A sink whose sends take a moment, as Telegram's do."""

    async def reply(self, event: Reply) -> None:
        await asyncio.sleep(0.02)
        await super().reply(event)


def _cards(store, conversation_id):
    return [m for m in store.messages(conversation_id) if m["kind"] == "card"]


def test_every_positive_screen_in_a_burst_gets_its_own_card(store, fake_screener, fake_rasa):
    pipeline = make_pipeline(store, fake_screener, fake_rasa, SlowSink())

    async def burst():
        return await asyncio.gather(*(
            pipeline.handle(Inbound(chat="b", text=f"RISK number {n}", channel="telegram", ref=100 + n))
            for n in range(3)))

    run(burst())
    inbound = [m for m in store.messages("telegram:b") if m["direction"] == "in"]
    assert sorted(c["answers"] for c in _cards(store, "telegram:b")) == sorted(m["id"] for m in inbound)
    # a replayed update (Telegram sends it again) gets no second card
    assert run(pipeline.handle(Inbound(chat="b", text="RISK number 1", channel="telegram", ref=101))) == []
    assert len(_cards(store, "telegram:b")) == 3


def test_a_card_answers_its_own_message_not_the_next_ones(store, fake_screener, fake_rasa, sink):
    """Every row of a burst stored before the first card went out (here: stored, then the
    process died): each positive screen still gets its card, once (issue 12: three of twenty
    chats got one card for two risky messages when cards were found by id order)."""
    for n in range(3):
        store.store_inbound("telegram:c", "telegram", f"RISK number {n}", ref=200 + n)
    pipeline = make_pipeline(store, fake_screener, fake_rasa, sink)
    for n in range(3):
        run(pipeline.handle(Inbound(chat="c", text=f"RISK number {n}", channel="telegram", ref=200 + n)))
    inbound = [m for m in store.messages("telegram:c") if m["direction"] == "in"]
    cards = _cards(store, "telegram:c")
    assert len(cards) == 3 and sorted(c["answers"] for c in cards) == sorted(m["id"] for m in inbound)
    for n in range(3):  # replayed again: nothing more
        assert run(pipeline.handle(Inbound(chat="c", text=f"RISK number {n}", channel="telegram", ref=200 + n))) == []
    assert len(_cards(store, "telegram:c")) == 3


def test_an_empty_answer_from_rasa_gets_the_fail_safe_reply_and_card(store, fake_screener, fake_rasa, sink):
    """Rasa's REST channel answers [] when it failed on the message (its lock store gone)."""
    fake_rasa.replies = []
    pipeline = Pipeline(store, fake_screener, fake_rasa, sink, "US")
    events = run(pipeline.handle(Inbound(chat="c-empty", text="are you there?")))
    texts = [e.text for e in events if isinstance(e, Reply)]
    assert texts[0] == FAILSAFE_TEXT and "988" in texts[1]
    assert [m["text"] for m in store.messages("console:c-empty") if m["direction"] == "in"] == ["are you there?"]


def test_the_screening_gate_lets_one_in_at_a_time_in_the_order_the_messages_arrived():
    from bot.pipeline import ScreeningGate

    async def scenario():
        gate, order, inside = ScreeningGate(), [], []

        async def screen(arrived):
            async with gate.turn(arrived):
                inside.append(arrived)
                assert len(inside) == 1
                order.append(arrived)
                await asyncio.sleep(0.001)
                inside.remove(arrived)

        first = asyncio.create_task(screen(5))
        await asyncio.sleep(0)  # it holds the gate
        later = [asyncio.create_task(screen(n)) for n in (9, 7, 8)]
        cancelled = asyncio.create_task(screen(6))
        await asyncio.sleep(0)
        cancelled.cancel()
        earlier = asyncio.create_task(screen(4))  # asks last, arrived first
        await asyncio.gather(first, *later, earlier)
        await asyncio.gather(cancelled, return_exceptions=True)
        async with gate.turn(1):  # free again: entered at once
            order.append("after")
        return order

    assert run(scenario()) == [5, 4, 7, 8, 9, "after"]


def test_a_backlog_of_queued_messages_is_screened_in_arrival_order_beside_the_event_loop(store, fake_rasa, sink):
    """Forty messages queued behind their chats' previous ones are screened ahead (slowly: 20 ms
    each); the message whose turn it is, which arrived before them, is screened first although it
    asks last, and the event loop keeps turning while screens run."""
    import time

    from conftest import FakeScreener

    screened = []

    class SlowScreener(FakeScreener):
        def screen(self, text):
            time.sleep(0.02)
            screened.append(text)
            return super().screen(text)

    async def scenario():
        pipeline = make_pipeline(store, SlowScreener(), fake_rasa, sink)
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        clock = asyncio.create_task(ticker())
        backlog = [asyncio.create_task(pipeline.screen_ahead(
            Inbound(chat=f"busy{i % 5}", text=f"queued {i} RISK", channel="telegram", ref=100 + i)))
            for i in range(40)]
        await asyncio.sleep(0.05)
        events = await pipeline.handle(Inbound(chat="first", text="RISK now", channel="telegram", ref=99))
        await asyncio.gather(*backlog)
        clock.cancel()
        return events, ticks

    events, ticks = run(scenario())
    assert [e.kind for e in events if isinstance(e, Reply)][0] == "card"
    assert screened.index("RISK now") <= 3  # only the screens already running went before it
    queued = [int(t.split()[1]) for t in screened if t.startswith("queued")]
    assert queued[3:] == sorted(queued[3:])  # past the first few, in arrival order
    # 41 × 20 ms of screening: on the event loop it would have turned a handful of times at
    # most; in the screening thread it kept turning (about 160 ticks of 5 ms)
    assert ticks > 20
