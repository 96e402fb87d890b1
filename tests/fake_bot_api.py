"""A small fake Telegram Bot API over real HTTP on loopback, for tests.

It records every method call, serves ``getUpdates`` from updates the test pushes, answers
the send methods with well-formed ``Message`` objects, and can be told to fail (429 with
``retry_after``, 500) for a number of calls. Point the application's base URL at
``api.base_url`` (``TRIAGE_TELEGRAM_BASE_URL``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

BOT_USER = {"id": 999000, "is_bot": True, "first_name": "Clinic triage", "username": "clinic_triage_bot",
            "can_join_groups": True, "can_read_all_group_messages": False, "supports_inline_queries": False}


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    at: float = field(default_factory=time.monotonic)


class FakeBotApi:
    """Run with ``with FakeBotApi() as api:``; ``api.base_url`` ends with ``/bot``."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.by_chat: dict[str, list[Call]] = {}  # calls per chat_id, for cheap waits in benchmarks
        self.updates: list[dict[str, Any]] = []
        self.acked_offset = 0
        self._failures: dict[str, list[tuple[int, int | None]]] = {}
        self._lock = threading.Lock()
        self._message_ids = itertools.count(1000)
        self._update_ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._new_updates: asyncio.Event | None = None  # set on push: getUpdates answers at once
        # called (in the API's thread) with each call once recorded: a benchmark wakes on it
        # instead of polling, so its waits do not take the interpreter from this thread
        self.on_call: Any = None
        self.port = 0

    # -- lifecycle ------------------------------------------------------------------

    def __enter__(self) -> "FakeBotApi":
        ready = threading.Event()

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._new_updates = asyncio.Event()
            app = web.Application()
            app.router.add_route("POST", "/bot{token}/{method}", self._handle)
            app.router.add_route("GET", "/bot{token}/{method}", self._handle)
            self._runner = web.AppRunner(app, access_log=None)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            self._loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._runner.cleanup())
            self._loop.close()

        self._thread = threading.Thread(target=serve, name="fake-bot-api", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    # -- test controls ----------------------------------------------------------------

    def fail(self, method: str, status: int, times: int, retry_after: int | None = None) -> None:
        """Make the next ``times`` calls of ``method`` fail with ``status``."""
        with self._lock:
            self._failures.setdefault(method, []).extend([(status, retry_after)] * times)

    def push(self, update: dict[str, Any]) -> dict[str, Any]:
        """Queue an update for getUpdates (an update_id is assigned if missing)."""
        with self._lock:
            update.setdefault("update_id", next(self._update_ids))
            self.updates.append(update)
        if self._loop is not None and self._new_updates is not None:
            self._loop.call_soon_threadsafe(self._new_updates.set)
        return update

    def sent(self, method: str = "sendMessage", chat_id: Any = None) -> list[dict[str, Any]]:
        with self._lock:
            calls = [c for c in self.calls if c.method == method]
        if chat_id is not None:
            calls = [c for c in calls if str(c.params.get("chat_id")) == str(chat_id)]
        return [c.params for c in calls]

    def wait_for(self, predicate, timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = predicate()
            if result:
                return result
            time.sleep(0.02)
        raise AssertionError(f"timed out after {timeout} s; calls: {[c.method for c in self.calls]}")

    # -- the API ----------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await self._params(request)
        with self._lock:
            call = Call(method, params)
            self.calls.append(call)
            self.by_chat.setdefault(str(params.get("chat_id")), []).append(call)
            queue = self._failures.get(method)
            failure = queue.pop(0) if queue else None
        if self.on_call is not None:
            self.on_call(call)
        if failure:
            status, retry_after = failure
            body: dict[str, Any] = {"ok": False, "error_code": status,
                                    "description": "Too Many Requests" if status == 429 else "Internal Server Error"}
            if retry_after is not None:
                body["parameters"] = {"retry_after": retry_after}
            return web.json_response(body, status=status)
        result = await self._result(method, params)
        return web.json_response({"ok": True, "result": result})

    async def _params(self, request: web.Request) -> dict[str, Any]:
        if request.content_type == "application/json":
            raw = await request.json()
        else:
            form = await request.post()
            raw = {}
            for key, value in form.items():
                if hasattr(value, "file"):
                    raw[key] = {"filename": value.filename, "content": value.file.read().decode("utf-8", "replace")}
                else:
                    raw[key] = value
        params = {}
        for key, value in raw.items():
            if isinstance(value, str) and value[:1] in "{[":
                try:
                    value = json.loads(value)
                except ValueError:
                    pass
            params[key] = value
        return params

    async def _result(self, method: str, params: dict[str, Any]) -> Any:
        if method == "getMe":
            return BOT_USER
        if method == "getUpdates":
            offset = int(params.get("offset") or 0)
            timeout = float(params.get("timeout") or 0)
            with self._lock:
                self.acked_offset = max(self.acked_offset, offset)
            deadline = time.monotonic() + min(timeout, 1.0)
            while True:
                assert self._new_updates is not None
                self._new_updates.clear()
                with self._lock:
                    batch = [u for u in self.updates if u["update_id"] >= offset]
                left = deadline - time.monotonic()
                if batch or left <= 0:
                    return batch[: int(params.get("limit") or 100)]
                try:  # like Telegram's long poll: answer as soon as an update arrives
                    await asyncio.wait_for(self._new_updates.wait(), left)
                except asyncio.TimeoutError:
                    pass
        if method in ("sendMessage", "sendDocument", "editMessageText", "editMessageReplyMarkup"):
            chat_id = params.get("chat_id")
            message = {
                "message_id": int(params.get("message_id") or next(self._message_ids)),
                "date": int(time.time()),
                "chat": {"id": int(chat_id) if str(chat_id).lstrip("-").isdigit() else 0,
                         "type": "supergroup" if str(chat_id).startswith("-") else "private"},
                "from": BOT_USER,
            }
            if "text" in params:
                message["text"] = params["text"]
            if method == "sendDocument":
                message["document"] = {"file_id": "doc1", "file_unique_id": "doc1", "file_name": "transcript"}
            return message
        return True


# -- update factories ----------------------------------------------------------------

_msg_ids = itertools.count(1)


def user(user_id: int, name: str = "Client") -> dict[str, Any]:
    return {"id": user_id, "is_bot": False, "first_name": name}


def message(chat_id: int, user_id: int, text: str | None = None, **extra: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "message_id": next(_msg_ids),
        "date": int(time.time()),
        "chat": {"id": chat_id, "type": "supergroup" if chat_id < 0 else "private"},
        "from": user(user_id),
    }
    if text is not None:
        msg["text"] = text
        if text.startswith("/"):
            command = text.split()[0]
            msg["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
    msg.update(extra)
    return msg


def text_update(chat_id: int, text: str, user_id: int | None = None) -> dict[str, Any]:
    return {"message": message(chat_id, user_id or chat_id, text)}


def edited_update(chat_id: int, text: str) -> dict[str, Any]:
    return {"edited_message": {**message(chat_id, chat_id, text), "edit_date": int(time.time())}}


def photo_update(chat_id: int, caption: str | None = None) -> dict[str, Any]:
    extra: dict[str, Any] = {"photo": [{"file_id": "p1", "file_unique_id": "p1", "width": 10, "height": 10}]}
    if caption is not None:
        extra["caption"] = caption
    return {"message": message(chat_id, chat_id, None, **extra)}


def callback_update(user_id: int, data: str, chat_id: int, message_id: int = 1) -> dict[str, Any]:
    return {
        "callback_query": {
            "id": f"cb{next(_msg_ids)}",
            "from": user(user_id, "Staff"),
            "chat_instance": "ci",
            "data": data,
            "message": {"message_id": message_id, "date": int(time.time()),
                        "chat": {"id": chat_id, "type": "supergroup"}, "from": BOT_USER, "text": "alert"},
        }
    }
