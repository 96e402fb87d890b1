"""`triage up` with TRIAGE_WEB_PORT serves the console beside the Telegram gateway (run_telegram)."""

from __future__ import annotations

import asyncio

import httpx
from fake_bot_api import FakeBotApi, text_update
from web_console import CLINICIAN, STAFF, settings_for

from bot.servers import free_port
from bot.telegram.gateway import run_telegram


def test_the_telegram_gateway_serves_the_console_when_the_port_is_set(tmp_path):
    with FakeBotApi() as api:
        settings = settings_for(api, tmp_path / "t.db")

        async def scenario():
            stop = asyncio.Event()
            gateway = asyncio.create_task(run_telegram(settings, f"http://127.0.0.1:{free_port()}", None, stop))
            try:
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.web_port}") as client:
                    for _ in range(300):
                        try:
                            page = await client.get("/login")
                            break
                        except httpx.ConnectError:
                            await asyncio.sleep(0.1)
                    assert page.status_code == 200 and "/review" in page.text
                api.push(text_update(STAFF, "/review", user_id=CLINICIAN))
                for _ in range(300):
                    if [m for m in api.sent(chat_id=CLINICIAN) if f"127.0.0.1:{settings.web_port}/login/" in m["text"]]:
                        break
                    await asyncio.sleep(0.05)
                else:
                    raise AssertionError("no login link by direct message")
            finally:
                stop.set()
                assert await gateway == 0

        asyncio.run(scenario())
