"""Load: 50 concurrent chats × 40 messages, 20 % risky, through the real gateway and Rasa."""

from __future__ import annotations

import asyncio
import collections
import random
import time

import pytest
from fake_bot_api import FakeBotApi, text_update
from telegram.ext import AIORateLimiter

from bot.rasa_client import RasaClient
from bot.screening import get_screener
from bot.settings import load_settings
from bot.store import Store
from bot.telegram.gateway import TelegramGateway, running

pytestmark = [pytest.mark.rasa, pytest.mark.slow]
STAFF = -100300
RISKY = ["I want to kill myself", "I have been saving my pills for this", "my stepdad hits me every night",
         "I'm going to shoot my boss tomorrow", "my friend says she wants to end it all"]
BENIGN = ["hello", "what can you do", "I had a long day", "thanks", "are you a bot?", "ok"]


def test_fifty_chats_forty_messages_nothing_lost_nothing_misrouted(rasa_stack, tmp_path):
    random.seed(11)
    with FakeBotApi() as api:
        settings = load_settings({
            "TELEGRAM_BOT_TOKEN": "5:LOAD", "TRIAGE_TELEGRAM_BASE_URL": api.base_url,
            "TRIAGE_STAFF_CHAT_ID": str(STAFF), "TRIAGE_CLINICIANS": "1",
            "TRIAGE_DB": str(tmp_path / "load.db"), "TRIAGE_REPAGE_MINUTES": "600"}, clinic_file=None)
        risky_updates = set()
        for _ in range(40):
            for chat in range(7000, 7050):
                risky = random.random() < 0.2
                update = api.push(text_update(chat, random.choice(RISKY if risky else BENIGN)))
                if risky:
                    risky_updates.add(update["update_id"])
        total = len(api.updates)

        async def scenario():
            store = Store(settings.db_path)
            rasa = RasaClient(rasa_stack.rasa_url, timeout=60, token=rasa_stack.token)
            unlimited = AIORateLimiter(overall_max_rate=0, group_max_rate=0, max_retries=0)
            gateway = TelegramGateway(settings, store, get_screener(), rasa, rate_limiter=unlimited)
            try:
                async with running(gateway, lambda: gateway.poll(timeout=1)):
                    deadline = time.monotonic() + 900
                    while store.db["updates"].count < total or store.pending_updates():
                        assert time.monotonic() < deadline, "load not handled in time"
                        await asyncio.sleep(0.5)
                    while store.undelivered_alerts():
                        assert time.monotonic() < deadline, "alerts not delivered in time"
                        await asyncio.sleep(0.2)
            finally:
                await rasa.close()
            return store

        store = asyncio.run(scenario())
        rows = store.db.execute("select update_id, id, conversation_id from messages where update_id is not null").fetchall()
        assert sorted(r[0] for r in rows) == sorted(u["update_id"] for u in api.updates)  # each stored once
        for update_id, message_id, _ in rows:
            alerts = store.alerts_for_message(message_id)
            assert all(a["delivered_at"] for a in alerts)  # every alert delivered
            screen_alerts = [a for a in alerts if "The risk screen matched this message." in a["text"]]
            if update_id in risky_updates:  # every risky message escalated by the screen, once
                assert len(screen_alerts) == 1, update_id
        # every reply went to the chat it was meant for: what the store says went to each
        # conversation is exactly what Telegram received for that chat id
        stored = collections.defaultdict(collections.Counter)
        for conversation_id, text in store.db.execute(
                "select conversation_id, text from messages where direction = 'out'").fetchall():
            stored[conversation_id.split(":")[1]][text] += 1
        sent = collections.defaultdict(collections.Counter)
        for call in api.calls:
            if call.method == "sendMessage" and str(call.params["chat_id"]) != str(STAFF):
                sent[str(call.params["chat_id"])][call.params["text"]] += 1
        assert sent == stored
