"""Test harness for the clinicians' web console: the gateway (against the fake Bot API) and the
console served together on free loopback ports, in one event loop on a background thread, and
Debian's Chromium driven by Playwright (nothing downloads a browser)."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest

from bot import clock
from bot.servers import free_port
from bot.settings import Settings, load_settings
from bot.store import Store
from bot.telegram import gateway as telegram_gateway
from bot.telegram.gateway import TelegramGateway
from bot.web import auth
from bot.web.app import build_app, serve
from bot.web.relay import TelegramRelay

CHROMIUM = "/usr/bin/chromium"
MISSING = "Chromium is missing: install Debian's package with `apt-get install -y chromium`"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]

STAFF = -100500
CLINICIAN = 4242
OTHER_CLINICIAN = 4343
STRANGER = 666


class ManualClock:
    """The console's clock: real time plus whatever a test adds (expiry, idleness)."""

    def __init__(self) -> None:
        self.offset = dt.timedelta()

    def __call__(self) -> dt.datetime:
        return clock.now() + self.offset

    def advance(self, **delta: float) -> None:
        self.offset += dt.timedelta(**delta)


def settings_for(api, db_path, **extra: str) -> Settings:
    env = {
        "TELEGRAM_BOT_TOKEN": "123456:TEST-TOKEN",
        "TRIAGE_TELEGRAM_BASE_URL": api.base_url,
        "TRIAGE_STAFF_CHAT_ID": str(STAFF),
        "TRIAGE_CLINICIANS": f"{CLINICIAN},{OTHER_CLINICIAN}",
        "TRIAGE_DB": str(db_path),
        "TRIAGE_REGION": "UK",
        "TRIAGE_WEB_PORT": str(free_port()),
        **extra,
    }
    return load_settings(env, clinic_file=None)


class Console:
    """``with Console(settings, screener, rasa) as web:`` — gateway + console until the block ends.

    ``web.url`` is the console's base URL; ``web.clock`` its clock; ``web.link(who)`` a fresh
    login link issued on that clock.
    """

    def __init__(self, settings: Settings, screener: Any, rasa: Any) -> None:
        self.settings, self.screener, self.rasa = settings, screener, rasa
        self.clock = ManualClock()
        self.url = f"http://127.0.0.1:{settings.web_port}"
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="web-console", daemon=True)
        self.store = Store(settings.db_path)  # the test's own connection (the server has its own)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            self._error = exc
            self._ready.set()
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        store = Store(self.settings.db_path)
        gateway = TelegramGateway(self.settings, store, self.screener, self.rasa)
        try:
            async with telegram_gateway.running(gateway, lambda: gateway.poll(timeout=1)):
                app = build_app(self.settings, store, TelegramRelay(gateway.staff, self.settings.staff_chat_id),
                                self.clock)
                runner = await serve(app, self.settings.web_port)
                try:
                    self._ready.set()
                    await self._stop.wait()
                finally:
                    await runner.cleanup()
        finally:
            store.close()

    def __enter__(self) -> "Console":
        self._thread.start()
        self._ready.wait(30)
        if self._error:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        self.store.close()
        assert not self._thread.is_alive(), "the console did not stop"
        if self._error and not exc[0]:
            raise self._error

    def link(self, clinician: int = CLINICIAN) -> str:
        return auth.issue_link(self.store, self.settings, str(clinician), self.clock)


def launch(playwright, viewport: dict[str, int] | None = None):
    """A fresh Chromium (its own user-data dir) as a persistent context; close it after use."""
    if not Path(CHROMIUM).exists():
        pytest.fail(MISSING, pytrace=False)
    profile = tempfile.mkdtemp(prefix="triage-chromium-")
    context = playwright.chromium.launch_persistent_context(
        profile, executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS,
        viewport=viewport or {"width": 1024, "height": 800}, locale="en-GB",
    )
    context.set_default_timeout(15000)
    original_close = context.close

    def close() -> None:
        try:
            original_close()
        finally:
            shutil.rmtree(profile, ignore_errors=True)

    context.close = close
    return context


def log_in(page, link: str) -> None:
    """Open a login link and press its one button; land on the queue."""
    page.goto(link)
    page.click("#login")
    page.wait_for_selector("#queue")
