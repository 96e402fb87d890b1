"""Fault injection: a killed gateway, a killed Rasa, a dead action server — nothing is lost."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fake_bot_api import FakeBotApi, text_update

from bot.pipeline import FAILSAFE_TEXT
from bot.rasa_client import RasaClient
from bot.screening import get_screener
from bot.servers import RasaStack
from bot.settings import load_settings
from bot.store import Store
from bot.telegram.gateway import TelegramGateway, running

pytestmark = [pytest.mark.rasa, pytest.mark.slow]
STAFF = -100900
RISKY = "I want to kill myself tonight"
BENIGN = "hello, I had a long day"


def env_for(api, db: Path, rasa_url: str) -> dict[str, str]:
    return {"TELEGRAM_BOT_TOKEN": "9:FAULTS", "TRIAGE_TELEGRAM_BASE_URL": api.base_url,
            "TRIAGE_STAFF_CHAT_ID": str(STAFF), "TRIAGE_CLINICIANS": "1", "TRIAGE_DB": str(db),
            "TRIAGE_RASA_URL": rasa_url, "TRIAGE_REPAGE_MINUTES": "60"}


def wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (result := predicate()):
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_gateway_killed_mid_load_loses_no_update_and_repeats_no_alert(rasa_stack, tmp_path):
    db = tmp_path / "kill.db"
    with FakeBotApi() as api:
        risky_ids = set()
        for i in range(90):
            chat = 2000 + i % 15
            text = RISKY if i % 4 == 0 else BENIGN
            update = api.push(text_update(chat, text))
            if text == RISKY:
                risky_ids.add(update["update_id"])
        env = dict(os.environ, **env_for(api, db, rasa_stack.rasa_url))
        command = [sys.executable, "-m", "bot.cli", "gateway"]
        first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            def done() -> int:
                if not db.exists():
                    return 0
                with Store(db) as store:
                    return store.db.execute("select count(*) from updates where status = 'done'").fetchone()[0]
            wait(lambda: done() >= 20, 120, "some updates handled")
        finally:
            first.send_signal(signal.SIGKILL)  # mid-load, no chance to clean up
            first.wait()
        second = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait(lambda: done() == 90, 240, "every update handled after the restart")
            wait(lambda: api.acked_offset > max(u["update_id"] for u in api.updates), 30, "all acked")
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(timeout=60) == 0
        with Store(db) as store:
            rows = store.db.execute("select update_id, id from messages where update_id is not null").fetchall()
            assert sorted(u for u, _ in rows) == sorted(u["update_id"] for u in api.updates)  # each once
            for update_id, message_id in rows:
                alerts = store.alerts_for_message(message_id)
                assert all(a["delivered_at"] for a in alerts)
                # the screen's alert: exactly once per risky message, even when replayed
                # (the flows in Rasa may add their own alerts for the same message)
                screen = [a for a in alerts if "The risk screen matched this message." in a["text"]]
                assert len(screen) == (1 if update_id in risky_ids else 0), update_id
            staff_alerts = [m for m in api.sent(chat_id=STAFF) if "case #" in m["text"]]
            assert len(staff_alerts) >= len(risky_ids)


def test_rasa_and_action_server_dying_mid_load_keep_cards_and_alerts_flowing(tmp_path):
    stack = RasaStack().start()
    try:
        with FakeBotApi() as api:
            settings = load_settings(env_for(api, tmp_path / "f.db", stack.rasa_url), clinic_file=None)

            async def scenario():
                store = Store(settings.db_path)
                rasa = RasaClient(stack.rasa_url, timeout=5, token=stack.token)
                gateway = TelegramGateway(settings, store, get_screener(), rasa)
                async with running(gateway, lambda: gateway.poll(timeout=1)):

                    async def send_and_wait(chat, text, replies):
                        api.push(text_update(chat, text))
                        deadline = time.monotonic() + 60
                        while len(api.sent(chat_id=chat)) < replies:
                            assert time.monotonic() < deadline, api.sent(chat_id=chat)
                            await asyncio.sleep(0.05)
                        return [m["text"] for m in api.sent(chat_id=chat)]

                    try:
                        assert await send_and_wait(3001, BENIGN, 1)
                        stack.children[0].stop()  # the action server dies
                        staff = len(api.sent(chat_id=STAFF))
                        texts = await send_and_wait(3002, RISKY, 1)
                        assert "988" in texts[0]
                        await until_async(lambda: len(api.sent(chat_id=STAFF)) > staff)
                        stack.children[1].process.send_signal(signal.SIGKILL)  # Rasa dies too
                        staff = len(api.sent(chat_id=STAFF))
                        texts = await send_and_wait(3003, RISKY, 2)
                        assert "988" in texts[0] and FAILSAFE_TEXT in texts
                        await until_async(lambda: len(api.sent(chat_id=STAFF)) > staff)
                        texts = await send_and_wait(3004, BENIGN, 2)
                        assert texts[0] == FAILSAFE_TEXT and "988" in texts[1]
                    finally:
                        await rasa.close()
                        store.close()

            asyncio.run(scenario())
    finally:
        stack.stop()


async def until_async(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)
