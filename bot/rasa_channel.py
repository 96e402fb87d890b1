"""Rasa's REST channel, whose answer also says which form is active once the turn is done.

The gateway starts a crisis flow after a positive screen unless one is running already
(``Pipeline._start_crisis_flow``). It used to ask Rasa with ``GET /conversations/{id}/tracker``
after the turn: Rasa rebuilds that tracker from every event of every session of the
conversation, so the question cost about 17 µs of Rasa's CPU per stored event — 3 ms at 10
turns, 57 ms at 400 — on every risky message, for ever growing with the client's history
(bench/results/profile-findings.md). The turn itself has the answer: the tracker Rasa saves at
its end. This channel is Rasa's ``RestInput`` (same name, same URL, same request, same JSON
body) with one response header, ``X-Triage-Active-Loop``: the name of the form active when the
turn's tracker was saved, empty for none. Absent (a streamed answer, a turn that failed before
saving), the gateway asks with the GET as before.

Rasa loads it from ``config/credentials.yml``; ``bot/rasa_run.py`` has the tracker's save tell
it what was saved (``record_saved``).
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any, Awaitable, Callable

from rasa.core.channels import rest
from sanic import Blueprint
from sanic.request import Request
from sanic.response import HTTPResponse

ACTIVE_LOOP_HEADER = "X-Triage-Active-Loop"

# The turn being answered by this request, if any: Sanic runs a request's middleware, its
# handler and Rasa's whole turn (awaited, not a new task) in the same task and context.
_TURN: ContextVar[dict[str, str] | None] = ContextVar("triage_rest_turn", default=None)


def record_saved(tracker: Any) -> None:
    """Called after each save of a tracker: keep its active form for this request's answer."""
    seen = _TURN.get()
    if seen is not None and seen.get("sender") == tracker.sender_id:
        loop = tracker.active_loop
        seen["active_loop"] = loop.name if loop is not None and isinstance(loop.name, str) else ""


class RestInput(rest.RestInput):
    """``rest``: Rasa's REST channel, plus the ``X-Triage-Active-Loop`` header."""

    @classmethod
    def name(cls) -> str:
        return "rest"

    def blueprint(self, on_new_message: Callable[[Any], Awaitable[Any]]) -> Blueprint:
        blueprint = super().blueprint(on_new_message)

        @blueprint.middleware("request")
        async def begin(request: Request) -> None:
            turn: dict[str, str] = {}
            if request.method == "POST" and request.path.endswith("/webhook"):
                try:
                    body = request.json
                except Exception:  # noqa: BLE001 - Rasa's own handler answers a bad body
                    body = None
                sender = body.get("sender") if isinstance(body, dict) else None
                if isinstance(sender, str):
                    turn["sender"] = sender
            request.ctx.triage_turn = turn
            _TURN.set(turn)

        @blueprint.middleware("response")
        async def end(request: Request, response: Any) -> None:
            _TURN.set(None)
            turn = getattr(request.ctx, "triage_turn", None) or {}
            if isinstance(response, HTTPResponse) and "active_loop" in turn:
                response.headers[ACTIVE_LOOP_HEADER] = turn["active_loop"]

        return blueprint
