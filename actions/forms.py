"""The shared machinery of the scripted forms: read the answer, ask again once, move on.

Every crisis form (ASQ, harm to others, safeguarding, concerned other, safety plan) and the
intake share one rule from ../shared/ARCHITECTURE.md invariant 4: a refusal or an unclear
answer is asked once more (``question_retries`` in config/flows.yml), then recorded as
"declined" — never as "no". The question wording is the clinic's: ``utter_ask_<slot>`` in
config/domain.yml.
"""

from __future__ import annotations

from typing import Any

from rasa_sdk import Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.forms import REQUESTED_SLOT, FormValidationAction

from bot.flows_config import flows_config
from actions.helpers import (
    DECLINED,
    NO,
    YES,
    is_fresh_answer,
    is_plain_answer,
    latest_intent,
    latest_text,
    yes_no,
)

#: Intents that interrupt any form: the form does not take the message as an answer, a rule
#: answers it (hotline card, a person, an honest "I'm a bot", stop), and the form resumes.
INTERRUPT_INTENTS = frozenset({"request_human", "ask_hotline", "bot_challenge", "help", "stop"})

#: A value the interpreter returns for a refusal or an answer it cannot read.
ASK_AGAIN = object()
#: A value the interpreter returns for a message that is not an answer at all.
NOT_AN_ANSWER = object()


class ScriptedFormValidation(FormValidationAction):
    """Validation action of one scripted form (subclasses set ``form`` and the slots)."""

    form: str = ""
    #: every slot the form may ask, in order; ``slot_order`` may leave some out
    slots: tuple[str, ...] = ()
    interrupt_intents: frozenset[str] = INTERRUPT_INTENTS

    def name(self) -> str:
        return f"validate_{self.form}"

    def slot_order(self, values: dict[str, Any]) -> list[str]:
        """The slots to ask, given the answers so far (dynamic forms override this)."""
        return list(self.slots)

    def interpret(self, slot: str, tracker: Tracker) -> Any:
        """The value to store for ``slot`` from the latest message, ASK_AGAIN or NOT_AN_ANSWER."""
        raise NotImplementedError

    def after_answer(
        self, slot: str, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker
    ) -> list[EventType]:
        """Say something at once after an answer (for example the emergency number)."""
        return []

    def is_interruption(self, tracker: Tracker) -> bool:
        """True for a message a rule should answer instead (never for a plain yes/no/pass)."""
        intent = latest_intent(tracker)
        if intent.startswith("EXTERNAL_"):
            return True
        return intent in self.interrupt_intents and not is_plain_answer(latest_text(tracker))

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        values = {slot: tracker.get_slot(slot) for slot in self.slots}
        requested = tracker.get_slot(REQUESTED_SLOT)
        events: list[EventType] = []
        if requested in self.slots and is_fresh_answer(tracker, self.form):
            value = NOT_AN_ANSWER if self.is_interruption(tracker) else self.interpret(requested, tracker)
            if value is NOT_AN_ANSWER:
                # Nothing extracted: Rasa rejects the form, a rule handles the message, and
                # the form asks the same question again afterwards.
                return []
            if value is ASK_AGAIN:
                retries = dict(tracker.get_slot("question_retries") or {})
                asked = int(retries.get(requested, 0))
                if asked < flows_config().question_retries:
                    retries[requested] = asked + 1
                    dispatcher.utter_message(response="utter_ask_again")
                    events += [SlotSet(requested, None), SlotSet("question_retries", retries)]
                    return events + [SlotSet(REQUESTED_SLOT, requested)]
                value = DECLINED
                dispatcher.utter_message(response="utter_answer_noted")
            events.append(SlotSet(requested, value))
            values[requested] = value
            tracker.slots[requested] = value
            events += self.after_answer(requested, value, dispatcher, tracker)
        next_slot = next((s for s in self.slot_order(values) if values.get(s) is None), None)
        events.append(SlotSet(REQUESTED_SLOT, next_slot))
        return events


def reset_events(slots: tuple[str, ...] | list[str]) -> list[EventType]:
    """Clear a form's slots (and the retry counts) before it runs again."""
    return [SlotSet(slot, None) for slot in slots] + [SlotSet("question_retries", None)]


MAX_ANSWER_CHARS = 300


def yes_no_or_detail(tracker: Tracker) -> Any:
    """A yes/no question where a sentence is a fine answer: "yes", "no", or the client's words."""
    answer = yes_no(tracker)
    if answer in (YES, NO):
        return answer
    text = latest_text(tracker)
    if answer == DECLINED or not text:
        return ASK_AGAIN
    return text[:MAX_ANSWER_CHARS]


def free_text(tracker: Tracker) -> Any:
    """An open question: the client's own words; a refusal is asked once more."""
    text = latest_text(tracker)
    if yes_no(tracker) == DECLINED or not text:
        return ASK_AGAIN
    return text[:MAX_ANSWER_CHARS]
