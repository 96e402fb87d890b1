"""Shared fixtures. Live Rasa servers start once per session and are always stopped."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import pytest

os.environ["RASA_TELEMETRY_ENABLED"] = "false"


def _always_open_flows_file() -> str:
    """config/flows.yml with the clinic open all day, every day, for the servers tests start.

    Whether a greeting starts the after-hours intake depends on the clock; the live tests
    must pass at any hour (the after-hours routing is tested with an injected clock in
    tests/actions/test_routing.py). Child servers inherit TRIAGE_FLOWS_FILE.
    """
    import tempfile
    from pathlib import Path

    import yaml

    from bot.flows_config import DAYS, FLOWS_FILE

    raw = yaml.safe_load(FLOWS_FILE.read_text(encoding="utf-8"))
    raw["clinic_hours"]["open"] = {day: "00:00-24:00" for day in DAYS}
    import atexit
    import shutil

    folder = tempfile.mkdtemp(prefix="triage-test-flows-")
    atexit.register(shutil.rmtree, folder, True)
    path = Path(folder) / "flows.yml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return str(path)


os.environ["TRIAGE_FLOWS_FILE"] = _always_open_flows_file()

from bot.pipeline import Alert, Reply  # noqa: E402
from bot.rasa_client import UNKNOWN, RasaReply, RasaTurn, RasaUnavailable  # noqa: E402
from bot.store import Store  # noqa: E402


@dataclass
class FakeResult:
    """A screening result with the contract's shape, for pipeline tests."""

    text: str
    escalate: bool
    categories: list[str]
    priority: str | None
    signals: list[dict[str, Any]] = field(default_factory=list)
    tier: str = ""
    ask_categories: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "escalate": self.escalate,
            "tier": self.tier or ("page" if self.escalate else "none"),
            "categories": self.categories,
            "signals": self.signals,
            "priority": self.priority,
            "ask_categories": self.ask_categories,
        }


class FakeScreener:
    """Flags any message containing "RISK" as self_harm (urgent), "ACUTE" as imminent; "UNSURE" asks."""

    def screen(self, text: str) -> FakeResult:
        for word, priority in (("ACUTE", "imminent"), ("RISK", "urgent")):
            at = text.find(word)
            if at >= 0:
                signal = {"category": "self_harm", "cue": word, "start": at, "end": at + len(word),
                          "negated": False, "hypothetical": False, "experiencer": "self",
                          "historical": False, "figurative": False}
                return FakeResult(text, True, ["self_harm"], priority, [signal])
        if "UNSURE" in text:
            return FakeResult(text, False, [], None, tier="ask", ask_categories=["self_harm"])
        return FakeResult(text, False, [], None)


class FakeRasa:
    """Records what the gateway forwards; answers with canned replies or fails."""

    def __init__(self, store: Store | None = None) -> None:
        self.store = store
        self.calls: list[tuple[str, str, dict]] = []
        self.stored_at_call: list[bool] = []
        self.replies: list[RasaReply] = [RasaReply(text="hello from the dialogue")]
        self.fail: Exception | None = None
        self.loop: str | None = None
        self.says_loop = True  # the turn's answer says which form is active (bot/rasa_channel.py)
        self.loop_asked = 0  # times asked for the active form separately (GET tracker)
        self.triggered: list[tuple[str, str, dict]] = []
        self.trigger_replies: list[RasaReply] = [RasaReply(text="first question of the flow")]

    async def send(self, sender: str, text: str, metadata: dict) -> list[RasaReply]:
        self.calls.append((sender, text, metadata))
        if self.store is not None:
            texts = [m["text"] for m in self.store.messages(sender) if m["direction"] == "in"]
            self.stored_at_call.append(bool(texts))
        if self.fail:
            raise RasaUnavailable(str(self.fail)) from self.fail
        return list(self.replies)

    async def turn(self, sender: str, text: str, metadata: dict) -> RasaTurn:
        replies = await self.send(sender, text, metadata)
        return RasaTurn(replies, self.loop if self.says_loop else UNKNOWN)

    async def active_loop(self, sender: str) -> str | None:
        self.loop_asked += 1
        if self.fail:
            raise RasaUnavailable(str(self.fail)) from self.fail
        return self.loop

    async def trigger_intent(self, sender: str, name: str, entities: dict) -> list[RasaReply]:
        self.triggered.append((sender, name, entities))
        return list(self.trigger_replies)

    async def close(self) -> None:
        pass


class RecordingSink:
    def __init__(self) -> None:
        self.events: list[Reply | Alert] = []

    async def reply(self, event: Reply) -> None:
        self.events.append(event)

    async def alert(self, event: Alert) -> None:
        self.events.append(event)

    async def review(self, event) -> None:
        self.events.append(event)


async def serve_app(app: Any) -> tuple[Any, str]:
    """Serve an aiohttp ``web.Application`` on a free loopback port: (runner to clean up, base URL)."""
    from aiohttp import web

    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"


@pytest.fixture
def store(tmp_path) -> Store:
    s = Store(tmp_path / "triage.db")
    yield s
    s.close()


@pytest.fixture(scope="session")
def rasa_stack(tmp_path_factory):
    """The real action server and Rasa server on free loopback ports, for the whole session.

    Dialogue state is kept as `triage up` keeps it, in Rasa's SQLTrackerStore on SQLite (a
    fresh file each session).
    """
    from bot.rasa_endpoints import DialogueStores, sqlite_url
    from bot.servers import RasaStack

    tracker = tmp_path_factory.mktemp("rasa-tracker") / "tracker.db"
    stack = RasaStack(stores=DialogueStores(sqlite_url(tracker)))
    stack.start()
    # Commands the tests run (``triage simulate``, a gateway process) read their settings from
    # the environment, as a deployment's would: the token of this stack's Rasa HTTP API too.
    os.environ["TRIAGE_RASA_TOKEN"] = stack.token
    yield stack
    os.environ.pop("TRIAGE_RASA_TOKEN", None)
    stack.stop()


@pytest.fixture
def fake_screener() -> FakeScreener:
    return FakeScreener()


@pytest.fixture
def fake_rasa(store) -> FakeRasa:
    return FakeRasa(store)


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()
