"""Console mode: the terminal is the client's chat; clinician alerts print in a box.

This is the embedded default a newcomer runs first (``make run`` without a Telegram token).
Alerts are stored in the database like any other and are marked delivered once printed.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from typing import TextIO

from bot.pipeline import Alert, Inbound, Pipeline, Reply, Review
from bot.rasa_client import RasaClient
from bot.screening import get_screener
from bot.servers import RasaStack
from bot.settings import Settings
from bot.store import Store

ALERT_RULE = "!" * 64


class ConsoleSink:
    """Print replies as the bot's side of the chat and alerts as a distinct block."""

    def __init__(self, out: TextIO = sys.stdout) -> None:
        self.out = out

    async def reply(self, event: Reply) -> None:
        lines = event.text.splitlines() or [""]
        self.out.write("bot> " + "\n     ".join(lines) + "\n")
        if event.buttons:
            self.out.write("     " + "  ".join(f"[{b}]" for b in event.buttons) + "\n")
        self.out.flush()

    queues_alerts = False

    async def alert(self, event: Alert) -> None:
        """Print the alert: delivered (the person at the terminal is also the clinic)."""
        head = f" CLINICIAN ALERT · {event.priority.upper()} · case #{event.case} "
        self.out.write(f"\n{head:!^64}\n")
        for line in event.text.splitlines():
            self.out.write(f"! {line}\n")
        self.out.write(ALERT_RULE + "\n\n")
        self.out.flush()

    async def review(self, event: Review) -> None:
        self.out.write(f"\n[review · case #{event.case} · not paged] {', '.join(event.categories)}: {event.text}\n\n")
        self.out.flush()

    async def relay(self, text: str, conversation_id: str, clinician: str, message_id: int) -> None:
        self.out.write(f"(relayed to clinician {clinician})\n")
        self.out.flush()


def _start_reader(stream: TextIO, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue) -> None:
    """Read lines on a daemon thread (so a dead child can end the session mid-prompt)."""

    def read() -> None:
        for line in stream:
            loop.call_soon_threadsafe(queue.put_nowait, line.rstrip("\r\n"))
        loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=read, name="console-stdin", daemon=True).start()


async def run_console(
    settings: Settings,
    stack: RasaStack | None = None,
    *,
    user: str = "client",
    stdin: TextIO = sys.stdin,
    out: TextIO = sys.stdout,
    stop: asyncio.Event | None = None,
) -> int:
    """Chat in the terminal until end of input or ``stop``; return the exit code.

    Returns 1 (after saying which) if a child server of ``stack`` dies.
    """
    store = Store(settings.db_path)
    rasa = (RasaClient(stack.rasa_url, settings.rasa_timeout, stack.token) if stack
            else RasaClient(settings.rasa_url, settings.rasa_timeout, settings.rasa_token))
    sink = ConsoleSink(out)
    pipeline = Pipeline(store, get_screener(), rasa, sink, settings.region)
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    _start_reader(stdin, asyncio.get_running_loop(), queue)
    stop = stop or asyncio.Event()
    out.write(
        "Console mode: you are the client, writing to the clinic's assistant.\n"
        f"Clinician alerts print between rows of '!' and are stored in {settings.db_path}.\n"
        "Type a message and press Enter; Ctrl-D or Ctrl-C to quit.\n"
    )
    out.flush()
    code = 0
    from bot.web.relay import ConsoleRelay
    from bot.web.serve import console_server

    web = console_server(settings, store, ConsoleRelay(store, out))
    await web.__aenter__()  # TRIAGE_WEB_PORT set: the clinicians' console beside the chat
    try:
        while not stop.is_set():
            if stack is not None and (dead := stack.dead_child()):
                sys.stderr.write(f"triage up: {dead}\n")
                code = 1
                break
            try:
                line = await asyncio.wait_for(queue.get(), timeout=0.5)
            except asyncio.TimeoutError:
                continue
            if line is None:
                break
            await pipeline.handle(Inbound(chat=user, text=line, channel="console"))
    finally:
        await web.__aexit__(None, None, None)
        await rasa.close()
        store.close()
    return code
