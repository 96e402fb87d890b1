"""The client for Rasa's REST channel, with a time-out and the "/" guard.

Rasa reads a message that starts with "/" as an intent (``/deny``, ``/restart``): client
text must never drive the engine (ARCHITECTURE.md invariant 6), so ``neutralise`` removes
every leading slash (after any white space, which Rasa strips first) before forwarding.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

import httpx

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


class RasaClient:
    """Send client messages to Rasa's REST webhook."""

    def __init__(self, base_url: str, timeout: float = 10.0, token: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._auth = {"token": token} if token else {}  # for Rasa's HTTP API, not the webhook
        self._client = httpx.AsyncClient(timeout=timeout, trust_env=False)

    async def close(self) -> None:
        await self._client.aclose()

    async def send(self, sender: str, text: str, metadata: dict[str, Any]) -> list[RasaReply]:
        """Forward one message (neutralised) and return Rasa's replies."""
        body = {"sender": sender, "message": neutralise(text), "metadata": metadata}
        try:
            response = await self._client.post(f"{self.base_url}/webhooks/rest/webhook", json=body)
            response.raise_for_status()
            items = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise RasaUnavailable(f"{type(exc).__name__}: {exc}") from exc
        if not isinstance(items, list):
            raise RasaUnavailable("Rasa answered with something other than a list of messages")
        return [parse_reply(item) for item in items if isinstance(item, dict)]

    async def active_loop(self, sender: str) -> str | None:
        """The name of the form active in the conversation, or None."""
        try:
            response = await self._client.get(
                f"{self.base_url}/conversations/{sender}/tracker",
                params={"include_events": "NONE", **self._auth},
            )
            response.raise_for_status()
            loop = (response.json().get("active_loop") or {}).get("name")
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            raise RasaUnavailable(f"{type(exc).__name__}: {exc}") from exc
        return loop if isinstance(loop, str) else None

    async def trigger_intent(
        self, sender: str, name: str, entities: dict[str, Any]
    ) -> list[RasaReply]:
        """Inject an external event (Rasa's HTTP API); return the replies it produced.

        Only the gateway calls this, with intents named ``EXTERNAL_...``; client text can
        never produce one, because leading slashes are neutralised.
        """
        try:
            response = await self._client.post(
                f"{self.base_url}/conversations/{sender}/trigger_intent",
                json={"name": name, "entities": entities},
                # the answer's tracker without its events: Rasa would otherwise write every
                # event of the conversation into it, and the gateway reads only the messages
                params={"include_events": "NONE", **self._auth},
            )
            response.raise_for_status()
            items = response.json().get("messages") or []
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            raise RasaUnavailable(f"{type(exc).__name__}: {exc}") from exc
        return [parse_reply(item) for item in items if isinstance(item, dict)]

    async def restart(self, sender: str) -> None:
        """Restart the conversation in Rasa (the gateway's decision, e.g. on /stop)."""
        try:
            response = await self._client.post(
                f"{self.base_url}/conversations/{sender}/tracker/events",
                json={"event": "restart"},
                params=self._auth,
            )
            response.raise_for_status()
        except httpx.HTTPError as exc:
            log.warning("could not restart the conversation in Rasa (%s)", type(exc).__name__)

    async def ready(self) -> bool:
        """True when Rasa answers and has a model loaded."""
        try:
            response = await self._client.get(f"{self.base_url}/status", params=self._auth, timeout=2.0)
            return response.status_code == 200 and bool(response.json().get("model_id"))
        except (httpx.HTTPError, ValueError):
            return False


def parse_reply(item: dict[str, Any]) -> RasaReply:
    """Map one REST channel message (text, buttons, custom JSON) to a RasaReply."""
    buttons = [b for b in item.get("buttons") or [] if isinstance(b, dict) and b.get("title")]
    custom = item.get("custom")
    return RasaReply(
        text=item.get("text") if isinstance(item.get("text"), str) else None,
        buttons=buttons,
        custom=custom if isinstance(custom, dict) else None,
    )
