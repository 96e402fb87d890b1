"""Dialogue state survives: a restart of the servers, and a kill -9 of Rasa mid-flow.

Rasa keeps its trackers in its SQLTrackerStore on SQLite beside the case store (issue 12,
point 1). A client halfway through the ASQ must get the next ASQ question after either, not
the first-contact disclosure ("Hello … Before we start").
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import stat

import pytest

from bot.pipeline import FAILSAFE_TEXT, Inbound, Pipeline, Reply
from bot.rasa_client import RasaClient
from bot.rasa_endpoints import DialogueStores
from bot.screening import get_screener
from bot.servers import RasaStack, free_port
from bot.settings import load_settings
from bot.simulate import ScriptLine, simulate
from bot.store import Store
from conftest import RecordingSink

pytestmark = [pytest.mark.rasa, pytest.mark.slow]

RISKY = "I want to kill myself"
ASQ_Q1 = "have you wished you were dead?"
ASQ_Q2 = "would be better off if you were dead?"
ASQ_Q3 = "having thoughts about killing yourself?"
FIRST_CONTACT = "Before we start"


def settings_for(tmp_path):
    # A Rasa URL where nothing answers, so `simulate` starts (and stops) its own servers.
    return load_settings({"TRIAGE_DB": str(tmp_path / "triage.db"),
                          "TRIAGE_RASA_URL": f"http://127.0.0.1:{free_port()}"}, clinic_file=None)


def run_simulate(settings, lines: list[tuple[str, str]]) -> list[dict]:
    out = io.StringIO()
    simulate([ScriptLine(i, chat, text, None) for i, (chat, text) in enumerate(lines, 1)], settings, out)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def of(events: list[dict], chat: str) -> list[dict]:
    return [e for e in events if e["chat"] == chat]


def replies(events) -> str:
    return "\n".join(e["text"] if isinstance(e, dict) else e.text for e in events
                     if (e["type"] == "reply" if isinstance(e, dict) else isinstance(e, Reply)))


def test_simulate_twice_with_one_database_continues_the_asq(tmp_path):
    """The issue's reproduction: `triage simulate` twice, the servers stopped in between."""
    settings = settings_for(tmp_path)
    first = replies(run_simulate(settings, [("alice", RISKY), ("alice", "No")]))
    assert ASQ_Q1 in first and ASQ_Q2 in first
    tracker = tmp_path / "tracker.db"
    assert stat.S_IMODE(tracker.stat().st_mode) == 0o600  # client text: owner-only
    second = run_simulate(settings, [("alice", "No"), ("bob", "hello")])
    alice = replies(of(second, "alice"))
    assert ASQ_Q3 in alice, alice
    assert FIRST_CONTACT not in alice
    # and a client Rasa has never seen still gets the first-contact disclosure
    assert FIRST_CONTACT in replies(of(second, "bob"))


def test_kill_9_of_rasa_mid_asq_then_restart_continues_the_asq(tmp_path):
    settings = settings_for(tmp_path)
    stores = DialogueStores.from_settings(settings)
    store = Store(settings.db_path)
    sink = RecordingSink()

    async def say(stack: RasaStack, text: str):
        client = RasaClient(stack.rasa_url, timeout=30, token=stack.token)
        try:
            pipeline = Pipeline(store, get_screener(), client, sink, "US")
            return await pipeline.handle(Inbound(chat="carol", text=text, channel="telegram"))
        finally:
            await client.close()

    try:
        with RasaStack(stores=stores) as stack:
            said = replies(asyncio.run(say(stack, RISKY)))
            assert ASQ_Q1 in said and "988" in said
            assert ASQ_Q2 in replies(asyncio.run(say(stack, "No")))
            rasa = stack.children[1].process
            os.kill(rasa.pid, signal.SIGKILL)  # no chance to flush or clean up
            rasa.wait(timeout=30)
            # While Rasa is down the message is stored and answered with the fail-safe.
            down = replies(asyncio.run(say(stack, "No")))
            assert FAILSAFE_TEXT in down
        with RasaStack(stores=stores) as stack:  # the servers come back on the same tracker
            again = replies(asyncio.run(say(stack, "No")))
            assert ASQ_Q3 in again, again
            assert FIRST_CONTACT not in again
        inbound = [m["text"] for m in store.messages("telegram:carol") if m["direction"] == "in"]
        assert inbound == [RISKY, "No", "No", "No"]
    finally:
        store.close()
