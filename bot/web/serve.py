"""Running the console: beside a gateway (``triage up`` with ``TRIAGE_WEB_PORT``) or alone (``triage web``)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import sys
from typing import AsyncIterator

from bot.settings import Settings
from bot.store import Store
from bot.web.auth import DEFAULT_PORT, base_url
from bot.web.relay import Relay


@contextlib.asynccontextmanager
async def console_server(settings: Settings, store: Store, relay: Relay | None,
                         port: int | None = None) -> AsyncIterator[None]:
    """Serve the console on 127.0.0.1 for the block (nothing when no port is given or set)."""
    from bot.web.app import build_app, serve

    port = port or settings.web_port
    if not port:
        yield
        return
    runner = await serve(build_app(settings, store, relay), port)
    sys.stderr.write(f"triage: clinicians' console at {base_url(settings)} (listening on 127.0.0.1:{port})\n")
    try:
        yield
    finally:
        await runner.cleanup()


async def run_web(settings: Settings, stop: asyncio.Event) -> int:
    """``triage web``: the console alone; with a Telegram token it reaches clients and the triage group."""
    from bot.web.relay import TelegramRelay

    store = Store(settings.db_path)
    port = settings.web_port or DEFAULT_PORT
    try:
        if settings.telegram_token and settings.staff_chat_id:
            from telegram import Bot

            from bot.telegram.send import Sender
            from bot.telegram.staff import Staff

            bot = Bot(settings.telegram_token, base_url=settings.telegram_base_url)
            secret = hashlib.sha256(b"triage-callback:" + settings.telegram_token.encode()).digest()
            async with bot:
                sender = Sender(bot)
                sender.start()
                try:
                    relay = TelegramRelay(Staff(settings, store, sender, secret), settings.staff_chat_id)
                    async with console_server(settings, store, relay, port):
                        await stop.wait()
                finally:
                    await sender.stop()
        else:
            async with console_server(settings, store, None, port):
                await stop.wait()
    finally:
        store.close()
    return 0
