"""The alert outbox: deliver every alert to the triage group, retry until it is delivered,
and re-page unclaimed cases (ARCHITECTURE.md invariant 5).

Alerts are rows in ``alerts`` (written by bot.escalation before anything is sent). This
worker reads what is due and sends it with the Claim / Transcript / Take over / Resolve
buttons through ``bot.escalation.deliver`` (which records delivery, or the failure and the
next attempt), and on restart simply carries on from the table.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import logging
from typing import Any, Callable

from telegram import InlineKeyboardButton, InlineKeyboardMarkup
from telegram.constants import ParseMode

from bot.ask import page_unanswered
from bot.clock import now as clock_now
from bot.escalation import deliver
from bot.store import Store, now
from bot.telegram.send import PRIORITY_ALERT, Sender, escape

log = logging.getLogger(__name__)

BUTTONS = (("Claim", "claim"), ("Transcript", "transcript"), ("Take over", "takeover"), ("Resolve", "resolve"))


def sign(secret: bytes, action: str, case_id: int) -> str:
    """Callback data for a case button, signed so forged data is rejected."""
    body = f"{action}:{case_id}"
    tag = hmac.new(secret, body.encode(), hashlib.sha256).hexdigest()[:16]
    return f"{body}:{tag}"


def verify(secret: bytes, data: str) -> tuple[str, int] | None:
    """The (action, case id) of signed callback data, or None when forged or malformed."""
    try:
        action, case_text, tag = data.split(":")
        case_id = int(case_text)
    except ValueError:
        return None
    if action not in {a for _, a in BUTTONS}:
        return None
    expected = sign(secret, action, case_id).rsplit(":", 1)[1]
    return (action, case_id) if hmac.compare_digest(expected, tag) else None


def keyboard(secret: bytes, case_id: int) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(label, callback_data=sign(secret, action, case_id)) for label, action in BUTTONS[:2]],
         [InlineKeyboardButton(label, callback_data=sign(secret, action, case_id)) for label, action in BUTTONS[2:]]]
    )


def alert_html(alert: dict[str, Any]) -> str:
    """The alert as Telegram HTML: the first line bold, every piece of text escaped."""
    head, _, rest = alert["text"].partition("\n")
    stamp = alert["created_at"][:19].replace("T", " ")
    return f"<b>{escape(head)}</b>\n{escape(rest)}\nTime: {stamp} UTC"


def _parse(stamp: str) -> dt.datetime:
    return dt.datetime.fromisoformat(stamp)


class AlertOutbox:
    """Deliver alerts and re-page unclaimed cases until a clinician claims them."""

    def __init__(
        self,
        store: Store,
        sender: Sender,
        staff_chat_id: str,
        secret: bytes,
        *,
        repage_minutes: float = 5.0,
        on_call: str | None = None,
        after_hours: Callable[[], bool] = lambda: True,
        tick: float = 1.0,
        ask_timeout_minutes: float = 10.0,
        clock: Callable[[], dt.datetime] = clock_now,
    ) -> None:
        self.store = store
        self.sender = sender
        self.staff_chat_id = staff_chat_id
        self.secret = secret
        self.repage_after = dt.timedelta(minutes=repage_minutes)
        self.on_call = on_call
        self.after_hours = after_hours
        self.tick = tick
        self.ask_timeout = dt.timedelta(minutes=ask_timeout_minutes)
        self.clock = clock
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._sending: set[int] = set()
        self._stopping = False

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self.run(), name="alert-outbox")

    async def stop(self, drain: float = 0.0) -> None:
        """Stop the loop. With ``drain`` seconds, first let it finish its pass and deliver what is
        due once more (an alert recorded just before a shutdown goes out now, not at the next
        start); past ``drain`` the loop is cancelled and what is left waits in the table."""
        if not self._task:
            return
        if drain > 0:
            self._stopping = True
            self.wake()
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=drain)
            except asyncio.TimeoutError:
                log.warning("alert outbox: still delivering after %.0f s at shutdown; the rest goes out at the next start",
                            drain)
            except Exception:  # noqa: BLE001 - the run loop logs its own failures
                pass
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def run(self) -> None:
        while True:
            try:
                self.schedule_repages()
                page_unanswered(self.store, self.clock(), self.ask_timeout)
                await self.deliver_due()
                if self._stopping:
                    await self.deliver_due()  # what was recorded while the pass above ran
                    return
            except Exception:  # noqa: BLE001 - the loop must outlive any one failure
                log.exception("alert outbox pass failed; trying again")
                if self._stopping:
                    return
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.tick)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()

    def due(self) -> list[dict[str, Any]]:
        stamp = now()
        return [
            a for a in self.store.undelivered_alerts()
            if (a["next_attempt_at"] is None or a["next_attempt_at"] <= stamp) and a["id"] not in self._sending
        ]

    async def deliver_due(self) -> None:
        alerts = self.due()
        if alerts:
            await asyncio.gather(*(self.deliver(a) for a in alerts))

    async def deliver(self, alert: dict[str, Any]) -> bool:
        """Send one alert; record delivery, or the failure and when to try again."""

        async def send() -> int:
            messages = await self.sender.send(
                alert["target_chat"] or self.staff_chat_id,
                alert_html(alert),
                priority=PRIORITY_ALERT,
                parse_mode=ParseMode.HTML,
                reply_markup=keyboard(self.secret, alert["case_id"]),
            )
            return messages[-1].message_id

        self._sending.add(alert["id"])
        try:
            return await deliver(self.store, alert["id"], alert["attempts"] or 0, send)
        finally:
            self._sending.discard(alert["id"])

    def schedule_repages(self) -> None:
        """Queue a more prominent page for every open case nobody has claimed in time."""
        cutoff = self.clock() - self.repage_after
        for case in self.store.paged_open_cases():
            last = _parse(case["last_paged_at"] or case["opened_at"])
            if last > cutoff:
                continue
            pages = (case["pages"] or 0) + 1
            waited = int((self.clock() - _parse(case["opened_at"])).total_seconds() // 60)
            who = f" On call: {self.on_call} — please claim." if self.on_call else ""
            text = (
                f"{'🔴' * min(pages, 3)} RE-PAGE {pages}: {case['priority'].upper()} case #{case['id']} "
                f"is still UNCLAIMED after {waited} min.{who}\n"
                f"Categories: {case['categories']}. Press Claim, or send /claim {case['id']}."
            )
            with self.store.write():
                self.store.mark_paged(case["id"], pages)
                self.store.record_alert(case["id"], case["priority"], [], text, None, kind="repage")
                if self.on_call and self.after_hours():
                    self.store.record_alert(case["id"], case["priority"], [], text, None,
                                            kind="repage", target_chat=self.on_call)
