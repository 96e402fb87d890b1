"""``triage simulate``: run the full pipeline over a JSON Lines script, print JSON Lines events.

Input, one object a line: ``{"chat": "alice", "text": "hello"}`` with an optional
``"region": "UK"``. Output, in order: ``reply`` and ``alert`` events (ARCHITECTURE.md
"Simulation script and events"). All events of one input line are written before the next
line is processed. Uses a Rasa server already answering at ``TRIAGE_RASA_URL``, or starts
the Rasa and action servers on free loopback ports and stops them afterwards.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Iterable, TextIO

from bot.pipeline import Alert, Inbound, Pipeline, Reply, Review
from bot.rasa_client import RasaClient
from bot.rasa_endpoints import DialogueStores
from bot.screening import get_screener
from bot.servers import RasaStack, rasa_is_up
from bot.settings import Settings
from bot.store import Store

SCRIPT_KEYS = {"chat", "text", "region"}


class ScriptError(ValueError):
    """The script has malformed lines; the message lists each with its line number."""


@dataclass
class ScriptLine:
    number: int
    chat: str
    text: str
    region: str | None


def parse_script(lines: Iterable[str], source: str = "<script>") -> list[ScriptLine]:
    """Validate a whole script before anything runs; raise ScriptError naming every bad line."""
    parsed: list[ScriptLine] = []
    errors: list[str] = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            errors.append(f"{source}:{number}: not JSON ({exc.msg})")
            continue
        if not isinstance(obj, dict):
            errors.append(f"{source}:{number}: expected a JSON object")
            continue
        where = f"{source}:{number}"
        chat, text, region = obj.get("chat"), obj.get("text"), obj.get("region")
        problems = []
        if set(obj) - SCRIPT_KEYS:
            problems.append(f"unknown keys {sorted(set(obj) - SCRIPT_KEYS)}")
        if not isinstance(chat, (str, int)) or isinstance(chat, bool) or str(chat) == "":
            problems.append("'chat' must be a non-empty string")
        if not isinstance(text, str):
            problems.append("'text' must be a string")
        if region is not None and not isinstance(region, str):
            problems.append("'region' must be a string")
        if problems:
            errors.extend(f"{where}: {problem}" for problem in problems)
        else:
            parsed.append(ScriptLine(number, str(chat), text, region))
    if errors:
        raise ScriptError("\n".join(errors))
    return parsed


class JsonLinesSink:
    """Write each event as one JSON object a line, flushed at once."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    async def reply(self, event: Reply) -> None:
        self._write(event.to_json())

    queues_alerts = False

    async def alert(self, event: Alert) -> None:
        self._write(event.to_json())

    async def review(self, event: Review) -> None:
        self._write(event.to_json())

    async def relay(self, text: str, conversation_id: str, clinician: str, message_id: int) -> None:
        self._write({"type": "relay", "chat": conversation_id.split(":", 1)[1], "clinician": clinician})

    def _write(self, obj: dict) -> None:
        self.out.write(json.dumps(obj, ensure_ascii=False) + "\n")
        self.out.flush()


async def run_script(
    script: list[ScriptLine], settings: Settings, rasa_url: str, rasa_token: str | None, out: TextIO
) -> None:
    """Run a parsed script through the pipeline against the Rasa server at ``rasa_url``."""
    store = Store(settings.db_path)
    rasa = RasaClient(rasa_url, settings.rasa_timeout, rasa_token)
    pipeline = Pipeline(store, get_screener(), rasa, JsonLinesSink(out), settings.region)
    try:
        for line in script:
            await pipeline.handle(
                Inbound(chat=line.chat, text=line.text, channel="simulate", region=line.region)
            )
    finally:
        await rasa.close()
        store.close()


def simulate(script: list[ScriptLine], settings: Settings, out: TextIO = sys.stdout) -> None:
    """Run the script, starting (and afterwards stopping) Rasa if none is answering."""
    import asyncio

    if rasa_is_up(settings.rasa_url, settings.rasa_token):
        asyncio.run(run_script(script, settings, settings.rasa_url, settings.rasa_token, out))
        return
    sys.stderr.write("triage simulate: starting the Rasa and action servers (takes a while)…\n")
    with RasaStack(token=settings.rasa_token, stores=DialogueStores.from_settings(settings)) as stack:
        asyncio.run(run_script(script, settings, stack.rasa_url, stack.token, out))  # state kept beside the db
