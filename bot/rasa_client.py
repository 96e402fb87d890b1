"""The client for Rasa's REST channel, with a time-out and the "/" guard.

It speaks HTTP with aiohttp (a Rasa dependency): on this machine an httpx request over
loopback cost the client 1.03 ms of CPU and an aiohttp one 0.29 ms, and the gateway asks Rasa
once or more for every client message (bench/results/profile-findings.md).

Rasa reads a message that starts with "/" as an intent (``/deny``, ``/restart``): client
text must never drive the engine (ARCHITECTURE.md invariant 6), so ``neutralise`` removes
every leading slash (after any white space, which Rasa strips first) before forwarding.

``in_flight`` caps how many requests are in Rasa at once; the others wait their turn, first
come first served, and the wait counts towards the time-out. A Rasa worker starts every turn
it is given at once and interleaves them on one event loop, so with ten chats writing together
each turn waited on all the others and the slowest took three to four times the median. With
the gateway keeping at most one turn more in Rasa than it has workers (``in_flight_for``), the
10-chat p99 fell from 343 / 392 to 204 / 192 ms at two workers and from 552 / 397 to 196 / 223 ms
at one (300 turns a run, side by side), while the median rose by 20-30 ms
(bench/results/profile-findings.md, "Sixth round").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import async_timeout  # aiohttp's own dependency on Python 3.10 (asyncio.timeout is 3.11)

log = logging.getLogger(__name__)

# Rasa strips the text (str.strip: any Unicode white space) and then tests for a leading "/".
_LEADING_SLASHES = re.compile(r"^[\s/]+")


def neutralise(text: str) -> str:
    """Remove leading slashes (and white space around them) so Rasa sees text, not an intent."""
    return _LEADING_SLASHES.sub("", text)


class RasaUnavailable(RuntimeError):
    """Rasa did not answer in time, refused the connection, or answered with an error."""


@dataclass
class RasaReply:
    """One item of Rasa's REST channel answer."""

    text: str | None = None
    buttons: list[dict[str, Any]] = field(default_factory=list)
    custom: dict[str, Any] | None = None


UNKNOWN = "?"  # RasaTurn.active_loop when Rasa's answer did not say (a loop name has no "?")
ACTIVE_LOOP_HEADER = "X-Triage-Active-Loop"  # bot/rasa_channel.py


@dataclass
class RasaTurn:
    """Rasa's answer to one client message: its replies, and the form active once the turn was
    saved (None: none; ``UNKNOWN``: the answer did not say)."""

    replies: list[RasaReply]
    active_loop: str | None = UNKNOWN


def in_flight_for(workers: int) -> int:
    """Requests the gateway keeps in Rasa at once for ``workers`` Rasa workers: one each, and
    one more so that a worker never waits for its next turn to cross the loopback."""
    return max(1, workers) + 1


class RasaClient:
    """Send client messages to Rasa's REST webhook.

    ``in_flight``: at most that many requests at once (0: no limit); the rest wait in the order
    they were asked, and a request's ``timeout`` runs from when it was asked, waiting included.
    """

    def __init__(self, base_url: str, timeout: float = 10.0, token: str | None = None,
                 in_flight: int = 0) -> None:
        if in_flight < 0:
            raise ValueError("in_flight must be 0 (no limit) or more")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.in_flight = in_flight
        self._auth = {"token": token} if token else {}  # for Rasa's HTTP API, not the webhook
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None
        self._slots: asyncio.Semaphore | None = None  # FIFO: in 3.10.13 a newcomer never passes a waiter

    def _client(self) -> aiohttp.ClientSession:
        """The session of the running event loop (made on first use: a session belongs to one loop)."""
        session, loop = self._session, asyncio.get_running_loop()
        if session is None or session.closed or self._session_loop is not loop:
            self._session_loop = loop
            session = self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout), trust_env=False,
                json_serialize=json.dumps)
            # a semaphore belongs to the loop it first waited on, as the session does
            self._slots = asyncio.Semaphore(self.in_flight) if self.in_flight else None
        return session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def _call(self, method: str, path: str, *, json_body: Any = None,
                    params: dict[str, str] | None = None, timeout: float | None = None,
                    headers: dict[str, str] | None = None) -> Any:
        """One request; its answer's JSON. Any failure (refused, timed out, an error status, an
        answer that is not JSON) is ``RasaUnavailable``, caused by what went wrong. ``headers``,
        if given, gets the answer's headers (names in lower case)."""
        session = self._client()
        try:
            # one deadline for waiting for a place and the request: a stalled Rasa fails every
            # queued message after the time-out, not after the sum of those ahead of it
            async with async_timeout.timeout(self.timeout if timeout is None else timeout):
                async with self._slots or contextlib.nullcontext():
                    async with session.request(method, f"{self.base_url}{path}",
                                               params=params or None, json=json_body) as response:
                        body = await response.read()
                        if headers is not None:
                            headers.update((name.lower(), value) for name, value in response.headers.items())
                        if response.status >= 400:
                            raise RasaUnavailable(f"Rasa answered {response.status}") from RasaHTTPError(response.status)
            return json.loads(body) if body else None
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            # the class only: an aiohttp error can quote the URL, and an API call's holds the token
            raise RasaUnavailable(type(exc).__name__) from exc

    async def turn(self, sender: str, text: str, metadata: dict[str, Any]) -> RasaTurn:
        """Forward one message (neutralised): Rasa's replies, and the form active after the
        turn when Rasa's answer says it (``X-Triage-Active-Loop``, bot/rasa_channel.py)."""
        body = {"sender": sender, "message": neutralise(text), "metadata": metadata}
        headers: dict[str, str] = {}
        items = await self._call("POST", "/webhooks/rest/webhook", json_body=body, headers=headers)
        if not isinstance(items, list):
            raise RasaUnavailable("Rasa answered with something other than a list of messages")
        replies = [parse_reply(item) for item in items if isinstance(item, dict)]
        loop = headers.get(ACTIVE_LOOP_HEADER.lower())
        return RasaTurn(replies, UNKNOWN if loop is None else (loop or None))

    async def active_loop(self, sender: str) -> str | None:
        """The name of the form active in the conversation, or None."""
        state = await self._call("GET", f"/conversations/{sender}/tracker",
                                 params={"include_events": "NONE", **self._auth})
        try:
            loop = (state.get("active_loop") or {}).get("name")
        except AttributeError as exc:
            raise RasaUnavailable(f"{type(exc).__name__}: {exc}") from exc
        return loop if isinstance(loop, str) else None

    async def trigger_intent(
        self, sender: str, name: str, entities: dict[str, Any]
    ) -> list[RasaReply]:
        """Inject an external event (Rasa's HTTP API); return the replies it produced.

        Only the gateway calls this, with intents named ``EXTERNAL_...``; client text can
        never produce one, because leading slashes are neutralised.
        """
        answer = await self._call(
            "POST", f"/conversations/{sender}/trigger_intent",
            json_body={"name": name, "entities": entities},
            # the answer's tracker without its events: Rasa would otherwise write every
            # event of the conversation into it, and the gateway reads only the messages
            params={"include_events": "NONE", **self._auth},
        )
        try:
            items = answer.get("messages") or []
        except AttributeError as exc:
            raise RasaUnavailable(f"{type(exc).__name__}: {exc}") from exc
        return [parse_reply(item) for item in items if isinstance(item, dict)]

    async def restart(self, sender: str) -> None:
        """Restart the conversation in Rasa (the gateway's decision, e.g. on /stop)."""
        try:
            await self._call("POST", f"/conversations/{sender}/tracker/events",
                             json_body={"event": "restart"}, params=self._auth or None)
        except RasaUnavailable as exc:
            log.warning("could not restart the conversation in Rasa (%s)", type(exc.__cause__).__name__)

    async def ready(self) -> bool:
        """True when Rasa answers and has a model loaded."""
        try:
            status = await self._call("GET", "/status", params=self._auth or None, timeout=2.0)
        except RasaUnavailable:
            return False
        return isinstance(status, dict) and bool(status.get("model_id"))


class RasaHTTPError(RuntimeError):
    """Rasa answered with an error status (the cause of a ``RasaUnavailable``)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


def parse_reply(item: dict[str, Any]) -> RasaReply:
    """Map one REST channel message (text, buttons, custom JSON) to a RasaReply."""
    buttons = [b for b in item.get("buttons") or [] if isinstance(b, dict) and b.get("title")]
    custom = item.get("custom")
    return RasaReply(
        text=item.get("text") if isinstance(item.get("text"), str) else None,
        buttons=buttons,
        custom=custom if isinstance(custom, dict) else None,
    )
