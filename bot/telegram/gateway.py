"""The Telegram gateway: ingest updates and wire python-telegram-bot's handlers.

Updates are stored raw before they are acknowledged (our own long-polling loop or the
webhook answers only after the row is written), then handed to PTB's Application. A client
message becomes one ``Inbound`` and goes through ``Pipeline.handle`` like the console's and
simulate's; the clinicians' triage group is handled in ``bot.telegram.staff``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections import defaultdict
from typing import Any, AsyncIterator, Awaitable, Callable

from telegram import KeyboardButton, Message, MessageEntity, ReplyKeyboardMarkup, Update
from telegram.constants import ParseMode
from telegram.error import NetworkError, RetryAfter, TimedOut
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bot.flows_config import flows_config
from bot.pipeline import Alert, Inbound, Pipeline, Reply, Review
from bot.rasa_client import RasaClient, in_flight_for
from bot.settings import Settings
from bot.store import StorageError, Store
from bot.telegram.outbox import AlertOutbox
from bot.telegram.request import AiohttpRequest
from bot.telegram.send import PRIORITY_CARD, PRIORITY_REPLY, Sender, escape, retry_seconds
from bot.telegram.staff import Staff

log = logging.getLogger(__name__)

#: Client commands the pipeline knows; any other "/word" is text for the dialogue.
CLIENT_COMMANDS = frozenset({"start", "help", "stop"})


def client_command(message: Message, bot_username: str) -> str | None:
    """The client command a message opens with ("/help", "/stop@ThisBot"), as PTB's CommandHandler reads it."""
    entities = message.entities
    if not (message.text and entities and entities[0].type == MessageEntity.BOT_COMMAND
            and entities[0].offset == 0):
        return None
    name, *addressed = message.text[1:entities[0].length].split("@")
    if addressed and addressed[0].lower() != bot_username.lower():
        return None  # a command for another bot in the chat
    return name.lower() if name.lower() in CLIENT_COMMANDS else None


def inbound_from(update: Update, bot_username: str) -> Inbound:
    """The one ``Inbound`` of a client's Telegram message (new or edited)."""
    message = update.effective_message
    text = message.text if message.text is not None else message.caption
    if update.edited_message:
        kind = "edit"
    elif message.text is not None:
        kind = "text"
    elif message.caption is not None:
        kind = "caption"
    else:
        kind = "other"
    return Inbound(chat=str(message.chat_id), text=text or "", channel="telegram",
                   ref=update.update_id, kind=kind, command=client_command(message, bot_username))


class TelegramSink:
    """Pipeline events to Telegram: replies via the Sender, alerts via the outbox."""

    queues_alerts = True  # the outbox delivers alerts from the table, retries and re-pages

    def __init__(self, gateway: "TelegramGateway") -> None:
        self.g = gateway

    async def reply(self, event: Reply) -> None:
        markup = None
        if event.buttons:
            markup = ReplyKeyboardMarkup([[KeyboardButton(b) for b in event.buttons]],
                                         one_time_keyboard=True, resize_keyboard=True)
        priority = PRIORITY_CARD if event.kind == "card" else PRIORITY_REPLY
        await self.g.sender.send(int(event.chat), event.text, priority=priority, reply_markup=markup)

    async def alert(self, event: Alert) -> None:
        self.g.outbox.wake()

    async def review(self, event: Review) -> None:
        """A silent note in the triage group (no notification sound: it is not a page)."""
        text = (f"Review — case #{event.case} (not paged). The screen was unsure "
                f"({', '.join(event.categories) or 'risk'}); the client was asked directly. "
                "A yes or a refusal will page. /cases lists it.")
        try:
            await self.g.sender.send(self.g.settings.staff_chat_id, text, priority=PRIORITY_REPLY,
                                     disable_notification=True)
        except Exception as exc:  # noqa: BLE001 - the entry is on the queue either way
            log.warning("review note for case %s not sent: %s", event.case, type(exc).__name__)

    async def relay(self, text: str, conversation_id: str, clinician: str, message_id: int) -> None:
        case = self.g.store.open_case(conversation_id)
        number = f"#{case['id']}" if case else "(no open case)"
        body = (f"💬 Case {number} — the client writes (taken over by {escape(clinician)}):\n"
                f"<blockquote>{escape(text)}</blockquote>\nReply to this message to answer the client.")
        (sent, *_) = await self.g.sender.send(self.g.settings.staff_chat_id, body,
                                              priority=PRIORITY_CARD, parse_mode=ParseMode.HTML)
        self.g.store.set_relay_ref(message_id, sent.message_id)


class TelegramGateway:
    """Build and run the Telegram side of the assistant."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        screener: Any,
        rasa: RasaClient,
        rate_limiter: AIORateLimiter | None = None,
    ) -> None:
        if not settings.staff_chat_id:
            raise ValueError("TRIAGE_STAFF_CHAT_ID is required with a Telegram token")
        self.settings = settings
        self.store = store
        self.rasa = rasa
        self.secret = hashlib.sha256(b"triage-callback:" + settings.telegram_token.encode()).digest()
        self.app: Application = (
            ApplicationBuilder()
            .token(settings.telegram_token)
            .base_url(settings.telegram_base_url)
            # aiohttp instead of httpx: a quarter of the gateway's CPU was httpx (bot/telegram/request.py)
            .request(AiohttpRequest())
            .get_updates_request(AiohttpRequest(connection_pool_size=1))
            # Telegram's own limits (about 30 messages a second, 20 a minute per group); the
            # Sender retries whatever is still pushed back.
            .rate_limiter(rate_limiter or AIORateLimiter(max_retries=0))
            .updater(None)  # we poll ourselves, so nothing is acknowledged before it is stored
            .build()
        )
        self.sender = Sender(self.app.bot)
        self.outbox = AlertOutbox(
            store, self.sender, settings.staff_chat_id, self.secret,
            repage_minutes=settings.repage_minutes, on_call=settings.on_call,
            ask_timeout_minutes=settings.ask_timeout_minutes,
            after_hours=flows_config().is_after_hours,
        )
        self.pipeline = Pipeline(store, screener, rasa, TelegramSink(self), settings.region)
        self.staff = Staff(settings, store, self.sender, self.secret)
        self._locks: defaultdict[int, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._in_flight: set[int] = set()
        self._failed: set[int] = set()
        self._screened_ahead: set[int] = set()  # update ids screened and paged ahead of their turn
        self._tasks: set[asyncio.Task] = set()
        self.receiver: asyncio.Task | None = None  # set by ``running``
        self._register()

    # -- wiring ------------------------------------------------------------------------

    def _register(self) -> None:
        private = filters.ChatType.PRIVATE
        staff = filters.Chat(chat_id=int(self.settings.staff_chat_id))
        app, desk = self.app, self.staff
        # A listed clinician's /review, in a direct chat or the triage group, gets a console
        # login link by direct message; registered before the client handler (first match wins),
        # so for anyone else "/review" stays client text for the pipeline.
        listed = filters.User(user_id=[int(c) for c in self.settings.clinicians if c.isdigit()])
        app.add_handler(CommandHandler("review", desk.review_link, filters=listed & (private | staff)))
        # Every client message (new or edited, text or not) goes whole to the pipeline, which
        # screens it before anything else sees it (invariant 1).
        app.add_handler(MessageHandler(private & filters.UpdateType.MESSAGES, self.client_message))
        # The clinicians' triage group.
        for name, callback in (("cases", desk.cases), ("claim", desk.claim), ("note", desk.note),
                               ("transcript", desk.transcript), ("takeover", desk.takeover),
                               ("release", desk.release), ("resolve", desk.resolve)):
            app.add_handler(CommandHandler(name, callback, filters=staff))
        app.add_handler(MessageHandler(staff & filters.REPLY & filters.TEXT & ~filters.COMMAND, desk.reply))
        app.add_handler(CallbackQueryHandler(desk.button))
        app.add_error_handler(self.on_error)

    # -- ingest: store before acknowledging ---------------------------------------------

    def store_updates(self, updates: list[tuple[Update, dict[str, Any]]]) -> None:
        """Write raw updates (idempotent on update_id); must succeed before they are acked."""
        self.store.store_raw_updates([
            (update.update_id, f"telegram:{update.effective_chat.id}" if update.effective_chat else None, raw)
            for update, raw in updates
        ])

    def dispatch(self, update: Update) -> None:
        """Process an update in the background; one chat's updates stay in order."""
        if update.update_id in self._in_flight or self.store.update_done(update.update_id):
            return
        self._in_flight.add(update.update_id)
        task = asyncio.create_task(self._process(update))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _process(self, update: Update) -> None:
        key = update.effective_chat.id if update.effective_chat else 0
        lock = self._locks[key]
        try:
            ahead = None
            if lock.locked() and self._for_client_message(update):
                # The chat's previous message is still in the dialogue: screen this one now,
                # so its card and page never queue behind Rasa (invariant 1). It keeps its
                # place in the chat's queue: the lock is asked for before anything is awaited.
                ahead = asyncio.create_task(self._screen_ahead(update))
            async with lock:
                if ahead is not None:
                    await ahead
                await self.app.process_update(update)
            if update.update_id in self._failed:
                self._failed.discard(update.update_id)  # left pending: retried by replay
            else:
                self.store.mark_update_done(update.update_id)
        finally:
            self._in_flight.discard(update.update_id)
            self._screened_ahead.discard(update.update_id)

    def _for_client_message(self, update: Update) -> bool:
        """True when the first handler that takes the update (PTB's rule) is the client's."""
        for handlers in self.app.handlers.values():
            for handler in handlers:
                check = handler.check_update(update)
                if check is not None and check is not False:
                    return handler.callback == self.client_message
        return False

    async def _screen_ahead(self, update: Update) -> None:
        # Marked first: whatever part of it ran here (stored, screened, paged), the dialogue has
        # not, so its own turn must still answer it, even if this step fails half-way.
        self._screened_ahead.add(update.update_id)
        try:
            await self.pipeline.screen_ahead(inbound_from(update, self.app.bot.username))
        except Exception as exc:  # noqa: BLE001 - the message's own turn completes what is missing
            log.error("screening a queued message ahead of its turn failed: %s", type(exc).__name__)

    async def replay_pending(self) -> int:
        """Dispatch every stored update not yet handled (after a crash or a failure)."""
        pending = self.store.pending_updates()
        for row in pending:
            self.dispatch(Update.de_json(json.loads(row["raw"]), self.app.bot))
        return len(pending)

    async def poll(self, timeout: int = 25) -> None:
        """Long-poll getUpdates; store each batch before the next call acknowledges it."""
        await self.app.bot.delete_webhook()
        await self.replay_pending()
        offset: int | None = None
        delay = 1.0
        while True:
            try:
                updates = await self.app.bot.get_updates(
                    offset=offset, timeout=timeout, allowed_updates=Update.ALL_TYPES
                )
                delay = 1.0
            except RetryAfter as exc:
                await asyncio.sleep(retry_seconds(exc))
                continue
            except (TimedOut, NetworkError) as exc:
                log.warning("getUpdates failed (%s); retrying in %.0f s", type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            if not updates:
                continue
            try:
                self.store_updates([(u, u.to_dict()) for u in updates])
            except StorageError as exc:
                # Not stored → not acknowledged: the same batch is fetched again.
                log.error("cannot store updates; not acknowledging them: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            offset = updates[-1].update_id + 1
            for update in updates:
                self.dispatch(update)

    async def drain(self) -> None:
        """Wait until every update dispatched so far is processed."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- the client chat -------------------------------------------------------------------

    async def client_message(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Hand a client's message to the pipeline: stored, screened, escalated, answered."""
        inbound = inbound_from(update, self.app.bot.username)
        inbound.screened_ahead = update.update_id in self._screened_ahead
        await self.pipeline.handle(inbound)

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Log a handler failure (never the text) and leave the update pending for a retry."""
        log.error("handling an update failed: %s", type(context.error).__name__,
                  exc_info=(type(context.error), context.error, context.error.__traceback__))
        if isinstance(update, Update):
            self._failed.add(update.update_id)


async def serve_webhook(gateway: TelegramGateway, stop: asyncio.Event) -> None:
    """Webhook mode: answer Telegram 200 only after the update is stored (secret checked)."""
    from aiohttp import web

    settings = gateway.settings

    async def receive(request: web.Request) -> web.Response:
        if request.headers.get("X-Telegram-Bot-Api-Secret-Token") != settings.webhook_secret:
            return web.Response(status=403)
        try:
            data = await request.json()
            update = Update.de_json(data, gateway.app.bot)
        except (ValueError, TypeError, KeyError):
            return web.Response(status=400)
        try:
            gateway.store_updates([(update, data)])
        except StorageError as exc:
            log.error("cannot store an update; Telegram will retry it: %s", exc)
            return web.Response(status=503)
        gateway.dispatch(update)
        return web.Response(text="ok")

    app = web.Application(client_max_size=1 << 20)
    app.router.add_post("/telegram", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", settings.webhook_port)
    await site.start()
    await gateway.replay_pending()
    await gateway.app.bot.set_webhook(
        settings.webhook_url, secret_token=settings.webhook_secret, allowed_updates=Update.ALL_TYPES
    )
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


#: On shutdown, how long the outbox may take to deliver the alerts already recorded.
OUTBOX_DRAIN_SECONDS = 10.0


@contextlib.asynccontextmanager
async def running(
    gateway: TelegramGateway, receive: Callable[[], Awaitable[None]] | None = None
) -> AsyncIterator[TelegramGateway]:
    """Run a gateway for the block: sender, outbox and a receiver (long polling by default).

    On leaving, the receiver stops first, every update already taken is finished, the outbox
    delivers what is due once more (up to ``OUTBOX_DRAIN_SECONDS``), then it and the sender stop. ``gateway.receiver`` is the receiver's task.
    """
    async with gateway.app:
        gateway.sender.start()
        gateway.outbox.start()
        gateway.receiver = asyncio.create_task((receive or gateway.poll)())
        try:
            yield gateway
        finally:
            gateway.receiver.cancel()
            await asyncio.gather(gateway.receiver, return_exceptions=True)
            await gateway.drain()
            await gateway.outbox.stop(drain=OUTBOX_DRAIN_SECONDS)  # alerts already recorded go out first
            await gateway.sender.stop()


async def run_telegram(
    settings: Settings, rasa_url: str, rasa_token: str | None, stop: asyncio.Event, dead_child=lambda: None
) -> int:
    """Run the Telegram gateway until ``stop`` is set or a child server dies."""
    from bot.screening import get_screener

    if settings.webhook_url and not settings.webhook_secret:
        raise ValueError("TRIAGE_WEBHOOK_SECRET is required with TRIAGE_WEBHOOK_URL")
    store = Store(settings.db_path)
    # at most one turn more in Rasa than it has workers; the rest wait here, in order (bot/rasa_client.py)
    rasa = RasaClient(rasa_url, settings.rasa_timeout, rasa_token, in_flight=in_flight_for(settings.rasa_workers))
    gateway = TelegramGateway(settings, store, get_screener(), rasa)
    receive = (lambda: serve_webhook(gateway, stop)) if settings.webhook_url else None
    code = 0
    from bot.web.relay import TelegramRelay
    from bot.web.serve import console_server

    try:
        async with running(gateway, receive), console_server(
                settings, store, TelegramRelay(gateway.staff, settings.staff_chat_id)):
            receiver = gateway.receiver
            while not stop.is_set() and not receiver.done():
                if (dead := dead_child()):
                    log.error("%s", dead)
                    code = 1
                    break
                try:
                    await asyncio.wait_for(stop.wait(), timeout=0.5)
                except asyncio.TimeoutError:
                    pass
            if receiver.done() and not receiver.cancelled() and receiver.exception():
                raise receiver.exception()
    finally:
        await rasa.close()
        store.close()
    return code
