"""The pipeline for one inbound message: every channel (console, simulate, Telegram) calls
``Pipeline.handle`` once per message.

    store (idempotent on the channel's ref) → screen → tier
      page: hotline card + alert + case;  ask: card + one direct question + non-paging case entry
    → a client command (/help, /stop), a message without text, or an edit: answered here
    → an answer to the direct question: yes / refusal → page; no → thanks; unclear → asked again
    → forward to Rasa (leading "/" neutralised, screening as metadata, with a time-out)
    → map Rasa's replies (text, buttons, {"escalate": ...} and {"ask": ...} payloads) → store

The screen and the escalation never wait on Rasa, so a positive screen reaches the client
and the clinicians even when Rasa is down, slow, or failing (ARCHITECTURE.md invariant 2).
The pipeline knows no channel's ids beyond the opaque ``Inbound.ref``."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import heapq
import itertools
import logging
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.answers import DECLINED, NO, YES, read_answer
from bot.cases import save_safety_plan
from bot.ask import ask_config
from bot.escalation import (
    AlertRecord,
    Escalation,
    deliver,
    escalate,
    evidence_from_screening,
    from_payload,
    mark_cue,
    record_review,
)
from bot.hotlines import hotline_card
from bot.rasa_client import UNKNOWN, RasaClient, RasaReply, RasaUnavailable, neutralise
from bot.store import Store, now

log = logging.getLogger(__name__)

#: Forms that are crisis flows: while one runs, a positive screen does not start another.
CRISIS_LOOPS = frozenset(
    {"asq_form", "harm_to_others_form", "safeguarding_form", "concerned_other_form", "safety_plan_form"}
)
#: Which flow a positive screen asks Rasa for: the first of these categories present.
FLOW_PRECEDENCE = ("self_harm", "lethal_means", "harm_to_others", "being_harmed", "third_party_concern")
SCREEN_INTENT = "EXTERNAL_screen_positive"

#: Rasa gets at most this much of a message (Telegram's own limit); the screen sees it all.
MAX_FORWARD_CHARS = 4096

FAILSAFE_TEXT = (
    "Sorry, I can't reply properly right now. Your message is saved and the clinic's staff "
    "can read it. If you need someone now, please use these numbers:"
)
EMPTY_TEXT = "I didn't catch any words there. You can tell me what's going on in your own words."
HELP_TEXT = (
    "I'm the clinic's automated assistant, not a person and not an emergency service. "
    "You can tell me how you're feeling or ask to talk to a person from the clinic."
)
NON_TEXT = "I can only read text messages. Please type what you'd like to say."
STOP_TEXT = "I've stopped. You can write again any time, and if you need someone now, these numbers are there for you:"
#: "/start" is Telegram's "open the chat": the dialogue reads it as a greeting, and the first
#: turn of a Rasa session carries the consent and disclosure text.
START_TEXT = "hello"


@dataclass
class Inbound:
    """One client message as a channel received it: console, simulate and Telegram alike."""

    chat: str  # the channel's chat key, e.g. "alice" or a Telegram chat id
    text: str
    channel: str = "console"
    region: str | None = None
    ref: int | None = None  # the channel's opaque delivery reference; storing is idempotent on it
    kind: str = "text"  # "text" | "edit" | "caption" | "other" (no text: voice, photo, sticker …)
    command: str | None = None  # a client command the channel recognised: "start" | "help" | "stop"
    # True when this process already stored, screened and paged it (``Pipeline.screen_ahead``)
    # while the chat's previous message was still in the dialogue: the rest of it is still to do
    screened_ahead: bool = False

    @property
    def conversation_id(self) -> str:
        return f"{self.channel}:{self.chat}"


@dataclass
class Reply:
    chat: str
    text: str
    buttons: list[str] = field(default_factory=list)
    kind: str = "reply"  # "reply" | "card" | "fallback"

    def to_json(self) -> dict[str, Any]:
        return {"type": "reply", "chat": self.chat, "text": self.text, "buttons": self.buttons}


@dataclass
class Alert:
    chat: str
    case: int
    priority: str
    categories: list[str]
    text: str
    alert_id: int

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "alert",
            "chat": self.chat,
            "case": self.case,
            "priority": self.priority,
            "categories": self.categories,
            "text": self.text,
        }


@dataclass
class Review:
    """A non-paging entry on the case queue: the screen's *ask* tier."""

    chat: str
    case: int
    categories: list[str]
    text: str

    def to_json(self) -> dict[str, Any]:
        return {"type": "review", "chat": self.chat, "case": self.case,
                "categories": self.categories, "text": self.text}


Event = Reply | Alert | Review


class Sink(Protocol):
    """Where the pipeline's events go: the console, a JSON Lines stream, or Telegram."""

    async def reply(self, event: Reply) -> None: ...

    #: True when the channel's own outbox delivers alerts from the alerts table (Telegram);
    #: otherwise ``alert`` delivers at once, through ``bot.escalation.deliver``.
    queues_alerts: bool

    async def alert(self, event: Alert) -> int | None:
        """Deliver the alert (raise if it cannot; return the channel's reference, if any),
        or, with ``queues_alerts``, hand it to the channel's outbox."""
        ...

    async def review(self, event: Review) -> None:
        """Show a non-paging queue entry (the *ask* tier); it must not page anyone."""
        ...

    async def relay(self, text: str, conversation_id: str, clinician: str, message_id: int) -> None:
        """Pass a client's message to the clinician who took over the conversation."""
        ...


class ScreenerLike(Protocol):
    def screen(self, text: str) -> Any: ...


class NoAnswer(Exception):
    """Rasa answered a client's text with no message at all."""


_screen_threads: list[concurrent.futures.ThreadPoolExecutor] = []


def _screen_thread() -> concurrent.futures.ThreadPoolExecutor:
    """The one thread every pipeline of this process screens in (the screener is not shared
    between threads)."""
    if not _screen_threads:
        _screen_threads.append(concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="screen"))
        # The screening thread and the event loop take turns at the interpreter for the screen's
        # Python parts; at Python's default (5 ms) a screen waited up to 5 ms each time it took
        # the interpreter back from a busy loop. Benchmark burst: a backlog's screening 25 -> 24 s,
        # 32.6 -> 33.9 messages a second.
        sys.setswitchinterval(0.0005)
    return _screen_threads[0]


class ScreeningGate:
    """One screen at a time; waiting screens go in the order their messages arrived (the
    channel's delivery order: Telegram's update ids), not the order they asked."""

    def __init__(self) -> None:
        self._busy = False
        self._waiting: list[tuple[float, int, asyncio.Future[None]]] = []  # a heap
        self._asked = itertools.count()

    @contextlib.asynccontextmanager
    async def turn(self, arrived: float | None = None) -> AsyncIterator[None]:
        asked = next(self._asked)
        if self._busy:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiting, (asked if arrived is None else arrived, asked, waiter))
            try:
                await waiter  # the leaving holder hands its place over
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._hand_over()  # handed over as this waiter was cancelled: pass it on
                else:
                    waiter.cancel()  # left in the heap, skipped when its place comes
                raise
        else:
            self._busy = True
        try:
            yield
        finally:
            self._hand_over()

    def _hand_over(self) -> None:
        while self._waiting:
            _, _, waiter = heapq.heappop(self._waiting)
            if not waiter.done():
                waiter.set_result(None)
                return
        self._busy = False


class Pipeline:
    """Handle inbound messages end to end."""

    def __init__(
        self,
        store: Store,
        screener: ScreenerLike,
        rasa: RasaClient,
        sink: Sink,
        default_region: str = "US",
    ) -> None:
        self.store = store
        self.screener = screener
        self.rasa = rasa
        self.sink = sink
        self.default_region = default_region
        # Messages are screened one at a time, in a thread of their own, in the order they
        # arrived. A burst (a backlog after an outage, many chats at once) dispatches hundreds of
        # queued messages together. Screened on the event loop, they held it for the whole backlog
        # (12-13 s at the start of the benchmark's burst): replies waited to be sent, chats' next
        # turns waited, and Rasa sat idle. In the thread, the encoder (ONNX runtime, which
        # releases the interpreter) runs beside the loop, which keeps forwarding and sending. In
        # arrival order, not the order the screens were asked for: a chat's first message (its
        # turn, which the dialogue waits on) asks later than messages queued behind others.
        self._screening = ScreeningGate()

    async def handle(self, inbound: Inbound) -> list[Event]:
        """Run one message through the pipeline; return the events in the order emitted.

        Every channel calls this once per message. The screen (and a page) comes first in
        ``_intake``; what follows depends on the message: a client command (the channel
        recognises them, even in an edit), a message without text, an edit (screened only:
        the dialogue already answered the original), or text for the dialogue (or for the
        clinician who took over).
        """
        turn = await self._intake(inbound)
        if inbound.command == "help":
            await self._help(turn)
        elif inbound.command == "stop":
            await self._stop(turn)
        elif not turn.converse:
            pass  # resumed after a crash, or the direct question is this turn's reply
        elif inbound.command == "start":
            turn.said = START_TEXT
            await self._converse(turn)
        elif inbound.kind in ("caption", "other"):
            await self._non_text(turn)
        elif inbound.kind != "edit":
            await self._converse(turn)
        return turn.events

    async def _help(self, turn: "Turn") -> None:
        """Explain the assistant and show the hotline card."""
        await turn.reply(HELP_TEXT)
        if not turn.card_sent:
            await turn.card(clinician_told=False)

    async def _stop(self, turn: "Turn") -> None:
        """End the bot conversation; with a case open, repeat the card and tell the clinician."""
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

    async def _non_text(self, turn: "Turn") -> None:
        """Voice, photos, stickers, files: say we read only text, and show the card."""
        await turn.reply(NON_TEXT)
        if not turn.card_sent:
            await turn.card(clinician_told=False)

    async def screen_ahead(self, inbound: Inbound) -> None:
        """Store, screen and (if the screen pages) send the card and the page now.

        A channel that keeps one chat's messages in order calls this for a message that must
        wait behind the chat's previous one (still in the dialogue, with Rasa slow or a burst
        queued): the card and the page never wait on Rasa (invariant 1). The message then goes
        through ``handle`` in its turn, with ``inbound.screened_ahead`` set, and nothing is done
        twice (the ask tier and the dialogue run there, in order).
        """
        await self._record(inbound)

    async def _intake(self, inbound: Inbound) -> "Turn":
        """Store, screen and (if positive) escalate one message: the half that never waits on Rasa.

        Replaying an update that was stored but not fully handled (a crash) resumes it:
        the screen, card and alert are done if they were not, and nothing is done twice.
        """
        turn = await self._record(inbound)
        screening = turn.screening
        if not screening["escalate"] and screening.get("tier") == "ask" and not turn.resumed:
            case = self.store.open_case(inbound.conversation_id)
            if case is not None and case["paged"]:
                pass  # a clinician is already paged for this chat (and a crisis flow may be running)
            elif self.store.ask_state(inbound.conversation_id) is None:
                await turn.ask(screening.get("ask_categories") or ["self_harm"],
                               screening.get("reason") or "The screen is unsure about this message.",
                               evidence=[f"{', '.join(screening.get('ask_categories') or [])}: "
                                         f"{mark_cue(inbound.text, 0, len(inbound.text))}"], forward=True)
                turn.converse = False  # the question is this turn's reply; a "no" forwards the message
        return turn

    async def _record(self, inbound: Inbound) -> "Turn":
        """Store and screen one message; on a positive screen, the card and the page."""
        region = (inbound.region or self.default_region).upper()
        # Store before anything acts on it. A StorageError propagates: the caller must
        # not acknowledge the update (invariant 5).
        stored = self.store.store_inbound(
            inbound.conversation_id,
            inbound.channel,
            inbound.text,
            region=region,
            ref=inbound.ref,
            kind=inbound.kind,
        )
        turn = Turn(self, inbound, region, stored.message_id)
        screening = self.store.screening_for(stored.message_id) if stored.duplicate else None
        if stored.duplicate and not inbound.screened_ahead:
            log.info("message %s was stored before; resuming it", inbound.ref)
            turn.resumed = True
            turn.converse = False  # the dialogue may have run; never answer twice
        if screening is None:
            # Screen first; never depends on Rasa (invariant 1).
            async with self._screening.turn(inbound.ref):
                screening = await asyncio.get_running_loop().run_in_executor(
                    _screen_thread(), self._screen, inbound.text)
            self.store.store_screening(stored.message_id, screening)
        turn.screening = screening
        if screening["escalate"]:
            categories = screening["categories"]
            priority = screening.get("priority") or "urgent"
            # The card and the page go out side by side: a slow or throttled send to the
            # client must not hold back the page to a clinician, nor the other way round.
            steps = []
            if not self.store.card_sent_for(stored.message_id):
                steps.append(turn.card(
                    abuse="being_harmed" in categories and "self_harm" not in categories,
                    acute=priority == "imminent",
                ))
            if not self.store.alerts_for_message(stored.message_id):
                steps.append(turn.escalate(
                    Escalation(
                        priority=priority,
                        categories=categories,
                        reason=screening.get("reason") or "The risk screen matched this message.",
                        evidence=evidence_from_screening(inbound.text, screening),
                        source="screen",
                    )
                ))
            turn.card_sent = True
            await asyncio.gather(*steps)
        return turn

    async def _converse(self, turn: "Turn") -> None:
        """The dialogue: relay to a clinician who took over, or ask Rasa."""
        inbound, screening = turn.inbound, turn.screening
        conversation = self.store.conversation(inbound.conversation_id)
        if conversation and conversation["takeover_by"]:
            await self.sink.relay(turn.said, inbound.conversation_id, conversation["takeover_by"], turn.message_id)
            return
        pending = self.store.ask_state(inbound.conversation_id)
        if pending is not None and await self._answer(turn, pending):
            return
        if await self._to_rasa(turn, turn.said, screening) and screening["escalate"]:
            await self._start_crisis_flow(turn, screening, turn.rasa_loop)

    async def _to_rasa(self, turn: "Turn", text: str, screening: dict[str, Any]) -> bool:
        """Send one client text to Rasa and emit its replies; False when Rasa did not answer."""
        forwarded = neutralise(text)[:MAX_FORWARD_CHARS]
        if not forwarded.strip():
            await turn.reply(EMPTY_TEXT, kind="fallback")
            return False
        # What the actions read of the screen (actions/helpers.py), not the text again, its
        # signals or scores: Rasa keeps the metadata in every user event of the tracker, reads
        # it back and sends it to the action server on every turn
        summary = {key: screening.get(key) for key in ("escalate", "tier", "categories", "priority")}
        metadata = {"screening": summary, "region": turn.region, "channel": turn.inbound.channel}
        try:
            answer = await self.rasa.turn(turn.inbound.conversation_id, forwarded, metadata)
            replies, turn.rasa_loop = answer.replies, answer.active_loop
            if not replies:
                # Every flow answers each message; Rasa's REST channel answers an empty list
                # when it failed on the message (e.g. its lock store went away): fail safe.
                raise RasaUnavailable("Rasa answered with no messages") from NoAnswer()
        except RasaUnavailable as exc:
            log.warning("Rasa unavailable (%s); sent the fail-safe reply", type(exc.__cause__).__name__)
            await turn.reply(FAILSAFE_TEXT, kind="fallback")
            if not turn.card_sent:
                await turn.card(clinician_told=False)
            return False
        await turn.dialogue(replies)
        return True

    async def _answer(self, turn: "Turn", pending: dict[str, Any]) -> bool:
        """Read the client's answer to the direct question; return True when the turn is done.

        Yes, a refusal, or an answer still unclear after the retries → a page (invariant 4),
        then Rasa runs the crisis flow. No → thanks. A message the screen pages for anyway
        settles the question too (its page went out in intake) and goes on to Rasa.
        """
        conversation_id = turn.inbound.conversation_id
        categories = pending.get("categories") or ["self_harm"]
        if turn.screening.get("escalate"):
            self.store.set_ask_state(conversation_id, None)
            return False
        answer = read_answer(turn.said)
        config = ask_config()
        if answer is None and pending.get("asked", 1) <= config.retries:
            self.store.set_ask_state(conversation_id, {**pending, "asked": pending.get("asked", 1) + 1, "asked_at": now()})
            await turn.reply(f"{config.reask} {config.question(categories)}", buttons=["Yes", "No"])
            return True
        self.store.set_ask_state(conversation_id, None)
        if answer == NO:
            await turn.reply(config.thanks_no)
            # The message the question interrupted goes to the dialogue now, so a client who
            # wanted, say, to leave a message for the clinic carries on where they were.
            held = self.store.message_text(pending["message_id"]) if pending.get("forward") else None
            if held:
                await self._to_rasa(turn, held, self.store.screening_for(pending["message_id"]) or {"escalate": False})
            return True
        said = {YES: "yes", DECLINED: "declined to answer"}.get(answer, "gave no clear answer")
        priority = "routine" if set(categories) <= {"third_party_concern"} else "urgent"
        await turn.escalate(Escalation(
            priority=priority,
            categories=categories,
            reason=f"Asked directly (“{pending.get('question', '')}”), the client {said}.",
            evidence=[f"answer: {mark_cue(turn.said, 0, len(turn.said))}",
                      *pending.get("evidence", [])],
            source="ask",
        ))
        await self._start_crisis_flow(turn, {"categories": categories, "priority": priority})
        return True

    async def _start_crisis_flow(self, turn: "Turn", screening: dict[str, Any], loop: str | None = UNKNOWN) -> None:
        """Ask Rasa to run the crisis flow for a positive screen unless one is running.

        Rasa decides the dialogue (it may, for example, acknowledge instead of repeating a
        flow just finished); the gateway only makes sure Rasa knows what the screen found.
        ``loop`` is the form active after the message's own turn, as Rasa's answer gave it;
        when it is not known, Rasa is asked (its whole tracker, every session: slower).
        """
        primary = next((c for c in FLOW_PRECEDENCE if c in screening["categories"]), None)
        if primary is None:
            return
        conversation_id = turn.inbound.conversation_id
        try:
            if loop == UNKNOWN:
                loop = await self.rasa.active_loop(conversation_id)
            if loop in CRISIS_LOOPS:
                return
            replies = await self.rasa.trigger_intent(
                conversation_id,
                SCREEN_INTENT,
                {"risk_category": primary, "risk_priority": screening.get("priority") or "urgent"},
            )
        except RasaUnavailable as exc:
            # The card and the alert already went out; the clinician has the case.
            log.warning("could not start the crisis flow in Rasa (%s)", type(exc.__cause__).__name__)
            return
        await turn.dialogue(replies)

    def _screen(self, text: str) -> dict[str, Any]:
        """Screen a message; if the screener itself fails, fail safe to a human review."""
        try:
            return self.screener.screen(text).to_dict()
        except Exception:  # noqa: BLE001 - a broken screener must page a human, not drop
            log.exception("the screener failed; escalating for human review")
            return {
                "text": text,
                "escalate": True,
                "categories": [],
                "signals": [],
                "priority": "urgent",
                "reason": "The risk screen failed on this message: a clinician must read it.",
            }


class Turn:
    """One inbound message being handled: its screening and the events emitted, in order."""

    def __init__(self, pipeline: Pipeline, inbound: Inbound, region: str, message_id: int):
        self.p = pipeline
        self.inbound = inbound
        self.region = region
        self.message_id = message_id
        self.said = inbound.text  # what the dialogue reads (a greeting for "/start")
        self.events: list[Event] = []
        self.card_sent = False
        self.converse = True
        self.resumed = False  # stored before by a run that may have answered it (a replay)
        self.screening: dict[str, Any] = {}
        self.rasa_loop: str | None = UNKNOWN  # the form active after Rasa's turn, if it said

    async def reply(self, text: str, *, buttons: list[str] | None = None, kind: str = "reply") -> None:
        event = Reply(self.inbound.chat, text, buttons or [], kind)
        self.events.append(event)
        await self.p.sink.reply(event)  # stored once sent, so a replay knows what went out
        self.p.store.store_outbound(self.inbound.conversation_id, text, kind=kind, answers=self.message_id)

    async def dialogue(self, replies: list[RasaReply]) -> None:
        """Turn Rasa's replies into events: text and buttons, escalations, safety plans."""
        for item in replies:
            custom = item.custom or {}
            if isinstance(custom.get("escalate"), dict):
                await self.escalate(from_payload(custom["escalate"]))
            elif isinstance(custom.get("ask"), dict):
                # Rasa's NLU guessed a risk the screen did not page for: at most the ask tier.
                case = self.p.store.open_case(self.inbound.conversation_id)
                if (self.p.store.ask_state(self.inbound.conversation_id) is None and not self.screening.get("escalate")
                        and not (case is not None and case["paged"])):
                    raw = custom["ask"].get("categories")
                    categories = [c for c in raw if isinstance(c, str)] if isinstance(raw, list) else []
                    await self.ask(categories or ["self_harm"],
                                   str(custom["ask"].get("reason") or "The dialogue guessed a risk the screen did not find."),
                                   evidence=[f"nlu: {mark_cue(self.said, 0, len(self.said))}"])
            elif isinstance(custom.get("safety_plan"), dict):
                save_safety_plan(self.p.store, self.inbound.conversation_id, custom["safety_plan"], self.message_id)
            elif item.text:
                await self.reply(item.text, buttons=[str(b["title"]) for b in item.buttons])

    async def ask(self, categories: list[str], reason: str, evidence: list[str], forward: bool = False) -> None:
        """The ask tier: the card, a non-paging entry on the queue, and the direct question."""
        conversation_id = self.inbound.conversation_id
        if not self.card_sent and not self.p.store.card_sent_for(self.message_id):
            await self.card(abuse="being_harmed" in categories and "self_harm" not in categories,
                            clinician_told=False)
        case_id = record_review(self.p.store, conversation_id, categories, reason, evidence, self.message_id)
        event = Review(self.inbound.chat, case_id, categories, reason)
        self.events.append(event)
        await self.p.sink.review(event)
        question = ask_config().question(categories)
        self.p.store.set_ask_state(conversation_id, {
            "categories": categories, "question": question, "asked": 1,
            "message_id": self.message_id, "evidence": evidence[:3], "asked_at": now(), "forward": forward,
        })
        await self.reply(question, buttons=["Yes", "No"])

    async def card(self, *, abuse: bool = False, acute: bool = False, clinician_told: bool = True) -> None:
        text = hotline_card(self.region, abuse=abuse, acute=acute, clinician_told=clinician_told)
        await self.reply(text, kind="card")
        self.card_sent = True

    async def escalate(self, escalation: Escalation) -> AlertRecord:
        record = escalate(
            self.p.store,
            self.inbound.conversation_id,
            self.inbound.chat,
            self.region,
            escalation,
            self.message_id,
        )
        event = Alert(
            self.inbound.chat,
            record.case_id,
            record.priority,
            record.categories,
            record.text,
            record.alert_id,
        )
        self.events.append(event)
        if getattr(self.p.sink, "queues_alerts", False):
            await self.p.sink.alert(event)  # the channel's outbox delivers it (and retries)
        else:
            await deliver(self.p.store, record.alert_id, 0, lambda: self.p.sink.alert(event))
        return record
