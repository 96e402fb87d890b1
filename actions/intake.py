"""After-hours intake: a message for the clinic, with PHQ-2 and GAD-2.

../shared/CLINICAL.md "After-hours intake": reason for contact in the client's words; the
two-question mood and anxiety screens (PHQ-2, GAD-2: each item 0–3, a total of 3 or more is
a positive screen); how and when the clinic may call back; consent to be contacted. Any risk
signal switches to the crisis flows at once: risk intents are not answers here — the form is
rejected and the routing rule starts the crisis flow. PHQ-2 is not a suicide screen, and
PHQ-9 item 9 is never used as one.
"""

from __future__ import annotations

import re
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.forms import REQUESTED_SLOT

from actions.forms import ASK_AGAIN, INTERRUPT_INTENTS, ScriptedFormValidation, free_text
from actions.helpers import (
    NO,
    RISK_INTENT_CATEGORY,
    YES,
    client_region_any,
    escalation_payload,
    latest_text,
    mark_completed,
    normalise_answer,
    yes_no,
)
from bot.hotlines import emergency_number

SCALE_SLOTS = ("phq2_interest", "phq2_mood", "gad2_nervous", "gad2_worry")
INTAKE_SLOTS = ("intake_reason", *SCALE_SLOTS, "callback_how", "callback_when", "consent_contact")
#: PHQ/GAD answer options, longest first so "more than half the days" wins over "days".
SCALE = (
    ("more than half the days", 2),
    ("more than half", 2),
    ("nearly every day", 3),
    ("almost every day", 3),
    ("every day", 3),
    ("several days", 1),
    ("a few days", 1),
    ("some days", 1),
    ("not at all", 0),
)
_DIGIT = re.compile(r"^\s*([0-3])\s*$")
FACT_LABELS = {
    "intake_reason": "Reason for contact (their words)",
    "callback_how": "How to contact",
    "callback_when": "When to contact",
    "consent_contact": "Consent to be contacted",
}
#: Risk intents leave the intake for the crisis flow; chit-chat is answered by its rule.
INTAKE_INTERRUPTS = INTERRUPT_INTENTS | frozenset(RISK_INTENT_CATEGORY) | frozenset(
    {"goodbye", "out_of_scope", "thank", "greet"}
)


def scale_score(text: str | None) -> int | None:
    """0–3 from a PHQ/GAD answer ("Several days", "2", "nope"); None if unreadable."""
    words = normalise_answer(text)
    digit = _DIGIT.match(words)
    if digit:
        return int(digit.group(1))
    for phrase, score in SCALE:
        if phrase in words:
            return score
    if words in {"no", "nope", "never", "none", "not really", "nah"}:
        return 0
    return None


def screen_total(values: dict[str, Any], items: tuple[str, str]) -> str:
    """ "4/6 (positive, ≥3)" — or "incomplete" when an item was declined."""
    scores = [values.get(item) for item in items]
    if not all(isinstance(s, int) for s in scores):
        return "incomplete (" + ", ".join(str(s) for s in scores) + ")"
    total = sum(scores)
    return f"{total}/6 ({'positive' if total >= 3 else 'negative'}, cut-off 3)"


class ValidateIntakeForm(ScriptedFormValidation):
    """Reason, PHQ-2, GAD-2, how and when to call back, consent."""

    form = "intake_form"
    slots = INTAKE_SLOTS
    interrupt_intents = INTAKE_INTERRUPTS

    def is_interruption(self, tracker: Tracker) -> bool:
        if tracker.get_slot(REQUESTED_SLOT) in SCALE_SLOTS and scale_score(latest_text(tracker)) is not None:
            return False  # "Not at all" is an answer here, whatever the NLU made of it
        return super().is_interruption(tracker)

    def interpret(self, slot: str, tracker: Tracker) -> Any:
        if slot in SCALE_SLOTS:
            score = scale_score(latest_text(tracker))
            if score is None:
                return ASK_AGAIN
            return score
        if slot == "consent_contact":
            answer = yes_no(tracker)
            return answer if answer in (YES, NO) else ASK_AGAIN
        return free_text(tracker)


class ActionIntakeResult(Action):
    """Thank the client, say what happens next, and leave the message for the clinic."""

    def name(self) -> str:
        return "action_intake_result"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        values = {slot: tracker.get_slot(slot) for slot in INTAKE_SLOTS}
        facts = {label: str(values[s]) for s, label in FACT_LABELS.items() if values.get(s) is not None}
        facts["PHQ-2"] = screen_total(values, ("phq2_interest", "phq2_mood"))
        facts["GAD-2"] = screen_total(values, ("gad2_nervous", "gad2_worry"))
        consent = values.get("consent_contact") == YES
        emergency = emergency_number(client_region_any(tracker))
        dispatcher.utter_message(
            response="utter_intake_done_contact" if consent else "utter_intake_done_no_contact",
            emergency=emergency,
        )
        dispatcher.utter_message(
            json_message=escalation_payload(
                priority="routine",
                reason="After-hours intake: a message for the clinic"
                + ("." if consent else "; the client did NOT consent to be contacted."),
                facts=facts,
            )
        )
        return [mark_completed(tracker, "intake")]


