"""Sending to Telegram: priority order, retries with back-off, and Telegram's size limit.

Every outbound Telegram message goes through one ``Sender``: alerts to clinicians first,
then hotline cards, then routine replies, so that under flood control a page to a human
is never stuck behind chit-chat. PTB's ``AIORateLimiter`` (set on the Application) paces
the calls; the Sender retries what still fails (429 ``retry_after``, 5xx, network errors).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import html
import itertools
import logging
from dataclasses import dataclass, field
from typing import Any

from telegram import Bot, Message
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TimedOut

log = logging.getLogger(__name__)

MAX_MESSAGE = 4096  # Telegram's limit for one message's text
PRIORITY_ALERT, PRIORITY_CARD, PRIORITY_REPLY = 0, 1, 2


def split_text(text: str, limit: int = MAX_MESSAGE) -> list[str]:
    """Split text into pieces under ``limit``, at paragraph, line or word breaks if possible."""
    pieces: list[str] = []
    rest = text
    while len(rest) > limit:
        cut = max(rest.rfind("\n\n", 0, limit), rest.rfind("\n", 0, limit), rest.rfind(" ", 0, limit))
        if cut <= limit // 2:
            cut = limit
        pieces.append(rest[:cut])
        rest = rest[cut:].lstrip("\n ") if cut < limit else rest[cut:]
    pieces.append(rest)
    return [p for p in pieces if p] or [""]


def escape(text: str) -> str:
    """Escape client text for Telegram's HTML parse mode."""
    return html.escape(text, quote=False)


def retry_seconds(exc: RetryAfter) -> float:
    value: Any = exc.retry_after
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


class SendFailed(RuntimeError):
    """Telegram did not take the message within the retry budget (or refused it for good)."""


@dataclass(order=True)
class _Job:
    priority: int
    seq: int
    chat_id: int | str = field(compare=False)
    text: str = field(compare=False)
    kwargs: dict[str, Any] = field(compare=False)
    future: asyncio.Future = field(compare=False)


class Sender:
    """A priority queue of sends worked by a few tasks."""

    def __init__(self, bot: Bot, workers: int = 4, retry_budget: float = 60.0) -> None:
        self.bot = bot
        self.workers = workers
        self.retry_budget = retry_budget
        self._queue: asyncio.PriorityQueue[_Job] = asyncio.PriorityQueue()
        self._seq = itertools.count()
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._work(), name=f"sender-{i}") for i in range(self.workers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def send(
        self, chat_id: int | str, text: str, *, priority: int = PRIORITY_REPLY, **kwargs: Any
    ) -> list[Message]:
        """Send a text (split if too long; any buttons go on the last piece); wait until sent."""
        pieces = split_text(text)
        sent: list[Message] = []
        for i, piece in enumerate(pieces):
            extra = dict(kwargs)
            if i < len(pieces) - 1:
                extra.pop("reply_markup", None)
            future = asyncio.get_running_loop().create_future()
            await self._queue.put(_Job(priority, next(self._seq), chat_id, piece, extra, future))
            sent.append(await future)
        return sent

    async def _work(self) -> None:
        while True:
            job = await self._queue.get()
            try:
                message = await self._send_with_retries(job)
            except Exception as exc:  # noqa: BLE001 - handed to the waiting caller
                if not job.future.done():
                    job.future.set_exception(exc)
            else:
                if not job.future.done():
                    job.future.set_result(message)
            finally:
                self._queue.task_done()

    async def _send_with_retries(self, job: _Job) -> Message:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.retry_budget
        delay = 0.5
        while True:
            try:
                return await self.bot.send_message(job.chat_id, job.text, **job.kwargs)
            except RetryAfter as exc:
                wait = retry_seconds(exc)
            except (TimedOut, NetworkError) as exc:
                if isinstance(exc, BadRequest):
                    raise SendFailed(f"Telegram refused the message: {exc.message}") from exc
                wait = delay
                delay = min(delay * 2, 10.0)
            except Forbidden as exc:  # the client blocked the bot: retrying cannot help
                raise SendFailed(f"Telegram refused the message: {exc.message}") from exc
            if loop.time() + wait > deadline:
                raise SendFailed("Telegram did not take the message within the retry budget")
            log.warning("send to Telegram failed; retrying in %.1f s", wait)
            await asyncio.sleep(wait)
