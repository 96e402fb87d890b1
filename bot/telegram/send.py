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
import warnings
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
    with warnings.catch_warnings():  # PTB 22 warns that the int form is deprecated
        warnings.simplefilter("ignore")
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
    deadline: float = field(compare=False, default=0.0)


class Sender:
    """A priority queue of sends worked by a few tasks.

    When Telegram pushes back (429 with ``retry_after``, a 5xx, a network error) every
    worker pauses and the message goes back into the queue, so when sending resumes the
    queue drains in priority order: alerts, then hotline cards, then replies.
    """

    def __init__(self, bot: Bot, workers: int = 4, retry_budget: float = 60.0) -> None:
        self.bot = bot
        self.workers = workers
        self.retry_budget = retry_budget
        self._queue: asyncio.PriorityQueue[_Job] = asyncio.PriorityQueue()
        self._seq = itertools.count()
        self._tasks: list[asyncio.Task] = []
        self._paused_until = 0.0
        self._backoff = 0.5

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
        loop = asyncio.get_running_loop()
        pieces = split_text(text)
        sent: list[Message] = []
        for i, piece in enumerate(pieces):
            extra = dict(kwargs)
            if i < len(pieces) - 1:
                extra.pop("reply_markup", None)
            future = loop.create_future()
            job = _Job(priority, next(self._seq), chat_id, piece, extra, future, loop.time() + self.retry_budget)
            await self._queue.put(job)
            sent.append(await future)
        return sent

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while (wait := self._paused_until - loop.time()) > 0:
                await asyncio.sleep(wait)  # paused before taking a job: order is kept
            job = await self._queue.get()
            try:
                message = await self.bot.send_message(job.chat_id, job.text, **job.kwargs)
            except RetryAfter as exc:
                self._push_back(job, retry_seconds(exc), exc)
            except Forbidden as exc:  # the client blocked the bot: retrying cannot help
                job.future.set_exception(SendFailed(f"Telegram refused the message: {exc.message}"))
            except BadRequest as exc:
                job.future.set_exception(SendFailed(f"Telegram refused the message: {exc.message}"))
            except (TimedOut, NetworkError) as exc:
                self._push_back(job, self._backoff, exc)
                self._backoff = min(self._backoff * 2, 10.0)
            except Exception as exc:  # noqa: BLE001 - handed to the waiting caller
                job.future.set_exception(exc)
            else:
                self._backoff = 0.5
                job.future.set_result(message)
            finally:
                self._queue.task_done()

    def _push_back(self, job: _Job, wait: float, exc: Exception) -> None:
        """Pause every worker for ``wait`` seconds and queue the job again (or give up)."""
        loop = asyncio.get_running_loop()
        if loop.time() + wait > job.deadline:
            job.future.set_exception(SendFailed("Telegram did not take the message within the retry budget"))
            return
        self._paused_until = max(self._paused_until, loop.time() + wait)
        log.warning("Telegram pushed back (%s); pausing sends for %.1f s", type(exc).__name__, wait)
        self._queue.put_nowait(job)
