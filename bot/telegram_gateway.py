"""The Telegram gateway: python-telegram-bot wiring, the client chat and the triage group.

Updates are stored raw before they are acknowledged (our own long-polling loop or the
webhook answers only after the row is written), then handed to PTB's Application. Handler
order matters: the screen runs in group -1, before any other handler sees a message.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections import defaultdict
from typing import Any

from telegram import InputFile, Update
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

from bot import cases
from bot.escalation import Escalation
from bot.flows_config import flows_config
from bot.hotlines import hotline_card
from bot.outbox import AlertOutbox, verify
from bot.pipeline import Alert, Inbound, Pipeline, Reply, Review, Turn
from bot.rasa_client import RasaClient
from bot.review import case_summary, transcript_markdown
from bot.settings import Settings
from bot.storage import OPEN_STATUSES, StorageError, Store
from bot.telegram_send import PRIORITY_CARD, PRIORITY_REPLY, Sender, escape, retry_seconds

log = logging.getLogger(__name__)

HELP_TEXT = (
    "I'm the clinic's automated assistant, not a person and not an emergency service. "
    "You can tell me how you're feeling or ask to talk to a person from the clinic."
)
NON_TEXT = "I can only read text messages. Please type what you'd like to say."
STOP_TEXT = "I've stopped. You can write again any time, and if you need someone now, these numbers are there for you:"
TAKEOVER_TEXT = "A clinician from the clinic has joined this chat. Your messages now go to them."
RELEASE_TEXT = "The clinician has handed this chat back to the clinic's automated assistant. They have read the conversation."
CLINICIAN_PREFIX = "🧑‍⚕️ Clinician: "


def chat_of(conversation_id: str) -> int:
    """The Telegram chat id of a ``telegram:<id>`` conversation."""
    return int(conversation_id.split(":", 1)[1])


class TelegramSink:
    """Pipeline events to Telegram: replies via the Sender, alerts via the outbox."""

    def __init__(self, gateway: "TelegramGateway") -> None:
        self.g = gateway

    async def reply(self, event: Reply) -> None:
        markup = None
        if event.buttons:
            from telegram import KeyboardButton, ReplyKeyboardMarkup

            markup = ReplyKeyboardMarkup([[KeyboardButton(b) for b in event.buttons]],
                                         one_time_keyboard=True, resize_keyboard=True)
        priority = PRIORITY_CARD if event.kind == "card" else PRIORITY_REPLY
        await self.g.sender.send(int(event.chat), event.text, priority=priority, reply_markup=markup)

    async def alert(self, event: Alert) -> bool:
        self.g.outbox.wake()  # the outbox delivers (and retries) it from the alerts table
        return False

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

    async def relay(self, inbound: Inbound, clinician: str, message_id: int) -> None:
        case = self.g.store.open_case(inbound.conversation_id)
        number = f"#{case['id']}" if case else "(no open case)"
        text = (f"💬 Case {number} — the client writes (taken over by {escape(clinician)}):\n"
                f"<blockquote>{escape(inbound.text)}</blockquote>\nReply to this message to answer the client.")
        (sent, *_) = await self.g.sender.send(self.g.settings.staff_chat_id, text,
                                              priority=PRIORITY_CARD, parse_mode=ParseMode.HTML)
        self.g.store.db["messages"].update(message_id, {"relay_message_id": sent.message_id})


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
        self._turns: dict[int, Turn] = {}
        self._locks: defaultdict[int, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._in_flight: set[int] = set()
        self._failed: set[int] = set()
        self._tasks: set[asyncio.Task] = set()
        self._register()

    # -- wiring ------------------------------------------------------------------------

    def _register(self) -> None:
        private = filters.ChatType.PRIVATE
        staff = filters.Chat(chat_id=int(self.settings.staff_chat_id))
        app = self.app
        # Group -1 runs first, for every client message (new or edited): store + screen +
        # escalate. Order matters: nothing may see client text before the screen.
        app.add_handler(MessageHandler(private & filters.UpdateType.MESSAGES, self.screen_gate), group=-1)
        # Client chat.
        app.add_handler(CommandHandler("start", self.client_start, filters=private))
        app.add_handler(CommandHandler("help", self.client_help, filters=private))
        app.add_handler(CommandHandler("stop", self.client_stop, filters=private))
        app.add_handler(MessageHandler(private & filters.TEXT & filters.UpdateType.MESSAGE, self.client_text))
        app.add_handler(MessageHandler(private & ~filters.TEXT & filters.UpdateType.MESSAGE, self.client_non_text))
        # The clinicians' triage group.
        for name, callback in (("cases", self.staff_cases), ("claim", self.staff_claim),
                               ("note", self.staff_note), ("transcript", self.staff_transcript),
                               ("takeover", self.staff_takeover), ("release", self.staff_release),
                               ("resolve", self.staff_resolve)):
            app.add_handler(CommandHandler(name, callback, filters=staff))
        app.add_handler(MessageHandler(staff & filters.REPLY & filters.TEXT & ~filters.COMMAND, self.staff_reply))
        app.add_handler(CallbackQueryHandler(self.staff_button))
        app.add_error_handler(self.on_error)

    # -- ingest: store before acknowledging ---------------------------------------------

    def store_updates(self, updates: list[dict[str, Any]]) -> None:
        """Write raw updates (idempotent on update_id); must succeed before they are acked."""
        self.store.store_raw_updates(updates)

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
        try:
            async with self._locks[key]:
                await self.app.process_update(update)
            if update.update_id in self._failed:
                self._failed.discard(update.update_id)  # left pending: retried by replay
            else:
                self.store.mark_update_done(update.update_id)
        finally:
            self._turns.pop(update.update_id, None)
            self._in_flight.discard(update.update_id)

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
                self.store_updates([u.to_dict() for u in updates])
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

    # -- client handlers -----------------------------------------------------------------

    async def screen_gate(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Store and screen every client message before anything else (invariants 1, 2, 5)."""
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
        inbound = Inbound(
            chat=str(message.chat_id), text=text or "", channel="telegram",
            update_id=update.update_id, telegram_message_id=message.message_id, kind=kind,
        )
        self._turns[update.update_id] = await self.pipeline.intake(inbound)

    async def client_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Hand a client's text to the dialogue (or to the clinician who took over)."""
        turn = self._turns.get(update.update_id)
        if turn is not None and turn.converse:
            await self.pipeline.converse(turn)

    async def client_start(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Greet a client: the dialogue opens with the consent and disclosure text."""
        turn = self._turns.get(update.update_id)
        if turn is not None and turn.converse:
            # "/start" is Telegram's "open the chat": the dialogue reads it as a greeting, and
            # the first turn of a Rasa session carries the consent and disclosure text.
            turn.inbound.text = "hello"
            await self.pipeline.converse(turn)

    async def client_help(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Explain the assistant and show the hotline card."""
        turn = self._turns.get(update.update_id)
        if turn is None:
            return
        await turn.reply(HELP_TEXT)
        if not turn.card_sent:
            await turn.card(clinician_told=False)

    async def client_stop(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """End the bot conversation; with a case open, repeat the card and tell the clinician."""
        turn = self._turns.get(update.update_id)
        if turn is None:
            return
        conversation_id = turn.inbound.conversation_id
        case = self.store.open_case(conversation_id)
        await turn.reply(STOP_TEXT if case else "I've stopped. You can write again any time.")
        if case:
            if not turn.card_sent:
                await turn.card()
            await turn.escalate(Escalation(
                priority=case["priority"], categories=[], source="gateway",
                reason="The client sent /stop while this case is open: the bot has stopped replying.",
            ))
        await self.rasa.restart(conversation_id)

    async def client_non_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Voice, photos, stickers, files: say we read only text, and show the card."""
        turn = self._turns.get(update.update_id)
        if turn is None or not turn.converse:
            return
        await turn.reply(NON_TEXT)
        if not turn.card_sent:
            await turn.card(clinician_told=False)

    # -- staff handlers ------------------------------------------------------------------

    def _actor(self, update: Update) -> str:
        return str(update.effective_user.id) if update.effective_user else "unknown"

    async def _answer(self, update: Update, text: str) -> None:
        await self.sender.send(update.effective_chat.id, text, priority=PRIORITY_CARD,
                               reply_to_message_id=update.effective_message.message_id)

    async def _staff_action(self, update: Update, action, *args: Any) -> dict[str, Any] | None:
        try:
            return action(self.store, self.settings.clinicians, *args)
        except cases.NotAllowed:
            await self._answer(update, "Sorry, only the clinic's listed clinicians can do that.")
        except (cases.CaseError, LookupError) as exc:
            await self._answer(update, str(exc))
        return None

    def _case_arg(self, context: ContextTypes.DEFAULT_TYPE) -> int | None:
        try:
            return int(context.args[0].lstrip("#"))
        except (IndexError, ValueError):
            return None

    async def staff_cases(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """List open cases, most urgent first."""
        actor = self._actor(update)
        try:
            cases.authorise(self.store, self.settings.clinicians, actor, "list", "cases")
        except cases.NotAllowed:
            await self._answer(update, "Sorry, only the clinic's listed clinicians can do that.")
            return
        rows = self.store.cases_by_status(OPEN_STATUSES)
        await self._answer(update, "\n".join(case_summary(c) for c in rows) or "No open cases.")

    async def staff_claim(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/claim N: take ownership of a case."""
        await self._by_command(update, context, "claim", "/claim N")

    async def staff_takeover(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/takeover N: the client's messages come to you; reply to them to answer."""
        await self._by_command(update, context, "takeover", "/takeover N")

    async def staff_release(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/release N: hand the chat back to the bot."""
        await self._by_command(update, context, "release", "/release N")

    async def staff_transcript(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/transcript N: the conversation as a document (audited)."""
        await self._by_command(update, context, "transcript", "/transcript N")

    async def staff_note(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/note N text: add a note to the case history."""
        case_id = self._case_arg(context)
        if case_id is None:
            await self._answer(update, "Usage: /note N text")
            return
        case = await self._staff_action(update, cases.note, case_id, self._actor(update), " ".join(context.args[1:]))
        if case:
            await self._answer(update, f"Noted on case #{case_id}.")

    async def staff_resolve(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/resolve N outcome: close the case with what happened."""
        case_id = self._case_arg(context)
        if case_id is None:
            await self._answer(update, "Usage: /resolve N outcome")
            return
        await self.do("resolve", update, case_id, " ".join(context.args[1:]))

    async def _by_command(self, update: Update, context, action: str, usage: str) -> None:
        case_id = self._case_arg(context)
        if case_id is None:
            await self._answer(update, f"Usage: {usage}")
            return
        await self.do(action, update, case_id)

    async def do(self, action: str, update: Update, case_id: int, outcome: str = "") -> None:
        """Carry out a case action for the person behind an update and report it."""
        actor = self._actor(update)
        name = update.effective_user.full_name if update.effective_user else actor
        if action == "transcript":
            if actor not in self.settings.clinicians:
                self.store.audit(actor, "refused:transcript", f"case:{case_id}")
                await self._answer(update, "Sorry, only the clinic's listed clinicians can do that.")
                return
            try:
                text = transcript_markdown(self.store, case_id, actor)
            except LookupError as exc:
                await self._answer(update, str(exc))
                return
            await self.app.bot.send_document(
                update.effective_chat.id,
                InputFile(text.encode("utf-8"), filename=f"case-{case_id}.md"),
                caption=f"Transcript of case #{case_id}",
            )
            return
        function = {"claim": cases.claim, "takeover": cases.takeover, "release": cases.release,
                    "resolve": cases.resolve}[action]
        args: tuple[Any, ...] = (case_id, actor, outcome) if action == "resolve" else (case_id, actor)
        case = await self._staff_action(update, function, *args)
        if case is None:
            return
        client_chat = chat_of(case["conversation_id"]) if case["conversation_id"].startswith("telegram:") else None
        if action == "claim":
            await self._answer(update, f"Case #{case_id} claimed by {name}.")
        elif action == "takeover":
            await self._answer(update, f"{name} has taken over case #{case_id}. Reply to the client's relayed messages to answer.")
            if client_chat:
                await self._to_client(case["conversation_id"], TAKEOVER_TEXT, "notice")
        elif action == "release":
            await self._answer(update, f"Case #{case_id} handed back to the bot.")
            if client_chat:
                await self._to_client(case["conversation_id"], RELEASE_TEXT, "notice")
        elif action == "resolve":
            await self._answer(update, f"Case #{case_id} resolved by {name}: {case['outcome']}")

    async def _to_client(self, conversation_id: str, text: str, kind: str) -> None:
        await self.sender.send(chat_of(conversation_id), text, priority=PRIORITY_CARD)
        self.store.store_outbound(conversation_id, text, kind=kind)

    async def staff_reply(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A clinician's reply to a relayed client message goes to that client."""
        actor = self._actor(update)
        replied = update.effective_message.reply_to_message
        row = next(iter(self.store.db["messages"].rows_where(
            "relay_message_id = ?", [replied.message_id], limit=1)), None)
        if row is None:
            return  # an ordinary conversation in the group
        try:
            cases.authorise(self.store, self.settings.clinicians, actor, "reply", row["conversation_id"])
        except cases.NotAllowed:
            await self._answer(update, "Sorry, only the clinic's listed clinicians can answer clients.")
            return
        await self._to_client(row["conversation_id"], CLINICIAN_PREFIX + update.effective_message.text, "clinician")

    async def staff_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Claim / Transcript / Take over / Resolve buttons under an alert."""
        query = update.callback_query
        parsed = verify(self.secret, query.data or "")
        actor = self._actor(update)
        if parsed is None:
            self.store.audit(actor, "refused:forged-button", (query.data or "")[:64])
            await query.answer("This button is not valid.", show_alert=True)
            return
        action, case_id = parsed
        if actor not in self.settings.clinicians:
            self.store.audit(actor, f"refused:{action}", f"case:{case_id}")
            await query.answer("Sorry, only the clinic's listed clinicians can act on cases.", show_alert=True)
            return
        if action == "resolve":
            await query.answer(f"Send /resolve {case_id} followed by the outcome.", show_alert=True)
            return
        await query.answer()
        await self.do(action, update, case_id)

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
            gateway.store_updates([data])
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


async def run_telegram(settings: Settings, rasa_url: str, stop: asyncio.Event, dead_child=lambda: None) -> int:
    """Run the Telegram gateway until ``stop`` is set or a child server dies."""
    from bot.screening import get_screener

    if settings.webhook_url and not settings.webhook_secret:
        raise ValueError("TRIAGE_WEBHOOK_SECRET is required with TRIAGE_WEBHOOK_URL")
    store = Store(settings.db_path)
    rasa = RasaClient(rasa_url, settings.rasa_timeout)
    gateway = TelegramGateway(settings, store, get_screener(), rasa)
    code = 0
    async with gateway.app:
        gateway.sender.start()
        gateway.outbox.start()
        receiver = asyncio.create_task(
            serve_webhook(gateway, stop) if settings.webhook_url else gateway.poll()
        )
        try:
            while not stop.is_set() and not receiver.done():
                if (dead := dead_child()):
                    log.error("%s", dead)
                    code = 1
                    break
                try:
                    await asyncio.wait_for(stop.wait(), timeout=0.5)
                except asyncio.TimeoutError:
                    pass
            if receiver.done() and receiver.exception():
                raise receiver.exception()
        finally:
            receiver.cancel()
            await asyncio.gather(receiver, return_exceptions=True)
            await gateway.drain()
            await gateway.outbox.stop()
            await gateway.sender.stop()
            await rasa.close()
            store.close()
    return code
