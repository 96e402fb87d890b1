"""The clinicians' triage group: case commands, the buttons under alerts, replies to relayed messages.

Every action goes through ``cases.authorise`` (one allow-list check, one refusal text, every
refusal audited); the case rules themselves live in ``bot.cases``.
"""

from __future__ import annotations

from typing import Any, Callable

from telegram import InputFile, LinkPreviewOptions, Update
from telegram.ext import ContextTypes

from bot import cases
from bot.review import case_summary, transcript_markdown
from bot.settings import Settings
from bot.store import Store
from bot.telegram.outbox import verify
from bot.telegram.send import PRIORITY_CARD, Sender
from bot.terms import OPEN_STATUSES

TAKEOVER_TEXT = "A clinician from the clinic has joined this chat. Your messages now go to them."
RELEASE_TEXT = "The clinician has handed this chat back to the clinic's automated assistant. They have read the conversation."
CLINICIAN_PREFIX = "🧑‍⚕️ Clinician: "

#: Case actions a command or a button may ask for, and the case rule that carries each out.
ACTIONS: dict[str, Callable[..., dict[str, Any]]] = {
    "claim": cases.claim, "takeover": cases.takeover, "release": cases.release, "resolve": cases.resolve,
}


def chat_of(conversation_id: str) -> int:
    """The Telegram chat id of a ``telegram:<id>`` conversation."""
    return int(conversation_id.split(":", 1)[1])


def actor_of(update: Update) -> str:
    """The Telegram user behind an update, as the audit log names them."""
    return str(update.effective_user.id) if update.effective_user else "unknown"


def case_arg(context: ContextTypes.DEFAULT_TYPE) -> int | None:
    """The case number a command names first (``/claim 12`` or ``/claim #12``)."""
    try:
        return int(context.args[0].lstrip("#"))
    except (IndexError, ValueError):
        return None


class Staff:
    """Handlers for the clinicians' triage group."""

    def __init__(self, settings: Settings, store: Store, sender: Sender, secret: bytes) -> None:
        self.settings = settings
        self.store = store
        self.sender = sender
        self.secret = secret

    def _allowed(self, actor: str, action: str, target: str, *, audit_allowed: bool = True) -> bool:
        try:
            cases.authorise(self.store, self.settings.clinicians, actor, action, target,
                            audit_allowed=audit_allowed)
        except cases.NotAllowed:
            return False
        return True

    async def _answer(self, update: Update, text: str) -> None:
        await self.sender.send(update.effective_chat.id, text, priority=PRIORITY_CARD,
                               reply_to_message_id=update.effective_message.message_id)

    async def cases(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """List open cases, most urgent first."""
        if not self._allowed(actor_of(update), "list", "cases"):
            await self._answer(update, cases.REFUSAL)
            return
        rows = self.store.cases_by_status(OPEN_STATUSES)
        await self._answer(update, "\n".join(case_summary(c) for c in rows) or "No open cases.")

    async def claim(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/claim N: take ownership of a case."""
        await self._by_command(update, context, "claim", "/claim N")

    async def takeover(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/takeover N: the client's messages come to you; reply to them to answer."""
        await self._by_command(update, context, "takeover", "/takeover N")

    async def release(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/release N: hand the chat back to the bot."""
        await self._by_command(update, context, "release", "/release N")

    async def transcript(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/transcript N: the conversation as a document (audited)."""
        await self._by_command(update, context, "transcript", "/transcript N")

    async def note(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/note N text: add a note to the case history."""
        case_id = case_arg(context)
        if case_id is None:
            await self._answer(update, "Usage: /note N text")
            return
        case = await self._act(update, cases.note, case_id, actor_of(update), " ".join(context.args[1:]))
        if case:
            await self._answer(update, f"Noted on case #{case_id}.")

    async def resolve(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/resolve N outcome: close the case with what happened."""
        case_id = case_arg(context)
        if case_id is None:
            await self._answer(update, "Usage: /resolve N outcome")
            return
        await self.do("resolve", update, case_id, " ".join(context.args[1:]))

    async def _by_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE, action: str, usage: str) -> None:
        case_id = case_arg(context)
        if case_id is None:
            await self._answer(update, f"Usage: {usage}")
            return
        await self.do(action, update, case_id)

    async def _act(self, update: Update, action: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any] | None:
        """Run a case rule for a clinician; answer the refusal or the rule's objection."""
        try:
            return action(self.store, self.settings.clinicians, *args)
        except cases.NotAllowed:
            await self._answer(update, cases.REFUSAL)
        except (cases.CaseError, LookupError) as exc:
            await self._answer(update, str(exc))
        return None

    async def do(self, action: str, update: Update, case_id: int, outcome: str = "") -> None:
        """Carry out a case action for the person behind an update and report it."""
        actor = actor_of(update)
        name = update.effective_user.full_name if update.effective_user else actor
        if action == "transcript":
            # Only a refusal is audited here: reading the transcript audits the access.
            if not self._allowed(actor, "transcript", f"case:{case_id}", audit_allowed=False):
                await self._answer(update, cases.REFUSAL)
                return
            try:
                text = transcript_markdown(self.store, case_id, actor)
            except LookupError as exc:
                await self._answer(update, str(exc))
                return
            await self.sender.bot.send_document(
                update.effective_chat.id,
                InputFile(text.encode("utf-8"), filename=f"case-{case_id}.md"),
                caption=f"Transcript of case #{case_id}",
            )
            return
        args: tuple[Any, ...] = (case_id, actor, outcome) if action == "resolve" else (case_id, actor)
        case = await self._act(update, ACTIONS[action], *args)
        if case is None:
            return
        on_telegram = case["conversation_id"].startswith("telegram:")
        if action == "claim":
            await self._answer(update, f"Case #{case_id} claimed by {name}.")
        elif action == "takeover":
            await self._answer(update, f"{name} has taken over case #{case_id}. Reply to the client's relayed messages to answer.")
            if on_telegram:
                await self.to_client(case["conversation_id"], TAKEOVER_TEXT, "notice")
        elif action == "release":
            await self._answer(update, f"Case #{case_id} handed back to the bot.")
            if on_telegram:
                await self.to_client(case["conversation_id"], RELEASE_TEXT, "notice")
        elif action == "resolve":
            await self._answer(update, f"Case #{case_id} resolved by {name}: {case['outcome']}")

    async def review_link(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/review: a one-time login link to the web console, by direct message (never logged)."""
        from bot.web.auth import TooManyLinks, issue_link

        actor = actor_of(update)
        try:
            link = issue_link(self.store, self.settings, actor)
        except cases.NotAllowed:
            await self._answer(update, cases.REFUSAL)
            return
        except TooManyLinks as exc:
            await self.sender.send(int(actor), str(exc), priority=PRIORITY_CARD)
            return
        await self.sender.send(int(actor), f"Your login link for the clinic's console (works once, for 10 minutes):\n{link}",
                               priority=PRIORITY_CARD, link_preview_options=LinkPreviewOptions(is_disabled=True))

    async def to_client(self, conversation_id: str, text: str, kind: str) -> None:
        """Send a clinician's or the clinic's own message to a client, and store it."""
        await self.sender.send(chat_of(conversation_id), text, priority=PRIORITY_CARD)
        self.store.store_outbound(conversation_id, text, kind=kind)

    async def reply(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A clinician's reply to a relayed client message goes to that client."""
        replied = update.effective_message.reply_to_message
        conversation_id = self.store.relayed_conversation(replied.message_id)
        if conversation_id is None:
            return  # an ordinary conversation in the group
        if not self._allowed(actor_of(update), "reply", conversation_id):
            await self._answer(update, cases.REFUSAL)
            return
        await self.to_client(conversation_id, CLINICIAN_PREFIX + update.effective_message.text, "clinician")

    async def button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Claim / Transcript / Take over / Resolve buttons under an alert."""
        query = update.callback_query
        parsed = verify(self.secret, query.data or "")
        actor = actor_of(update)
        if parsed is None:
            self.store.audit(actor, "refused:forged-button", (query.data or "")[:64])
            await query.answer("This button is not valid.", show_alert=True)
            return
        action, case_id = parsed
        if not self._allowed(actor, action, f"case:{case_id}", audit_allowed=False):
            await query.answer(cases.REFUSAL, show_alert=True)
            return
        if action == "resolve":
            await query.answer(f"Send /resolve {case_id} followed by the outcome.", show_alert=True)
            return
        await query.answer()
        await self.do(action, update, case_id)  # the case rule audits the action itself
