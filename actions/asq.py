"""The ASQ brief suicide screen (NIMH Ask Suicide-Screening Questions).

../shared/CLINICAL.md "Brief suicide screen: ASQ": questions 1–4; question 5 only if any of
1–4 is yes or refused. Routing, exactly:
- all "no" → screen negative (still reviewable: a routine alert carries the answers; the
  assistant never tells the client they are safe);
- any "yes" or refusal to 1–4 and "no" to 5 → non-acute positive → alert *urgent*;
- "yes" to 5 (or a refusal of 5: a refusal is not a "no") → acute → alert *imminent*, hotline
  and emergency numbers repeated, the client asked to stay in the chat.
A refusal or unclear answer is asked once more (config/flows.yml question_retries), then
recorded as "declined", which counts as "yes" (ARCHITECTURE.md invariant 4). The wording is
the clinic's (utter_ask_asq_* in config/domain.yml). The C-SSRS is deliberately not scripted.
"""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.forms import ASK_AGAIN, ScriptedFormValidation
from actions.helpers import (
    DECLINED,
    NO,
    YES,
    client_region_any,
    escalation_payload,
    latest_intent,
    latest_text,
    mark_completed,
    yes_no,
)
from bot.hotlines import hotline_card

QUESTIONS = ("asq_q1", "asq_q2", "asq_q3", "asq_q4")
ASQ_SLOTS = (*QUESTIONS, "asq_attempt", "asq_q5")
#: Fact labels for the clinician's alert.
FACT_LABELS = {
    "asq_q1": "ASQ 1 wished dead (past few weeks)",
    "asq_q2": "ASQ 2 family better off if dead (past few weeks)",
    "asq_q3": "ASQ 3 thoughts of killing self (past week)",
    "asq_q4": "ASQ 4 ever tried to kill self",
    "asq_attempt": "ASQ 4 how and when",
    "asq_q5": "ASQ 5 thoughts of killing self right now",
}
SUICIDAL_INTENTS = frozenset({"express_suicidal_ideation", "express_self_harm"})
NEGATIVE, NON_ACUTE, ACUTE = "negative", "non_acute", "acute"


def positive(value: Any) -> bool:
    """A "yes" or a refusal (declined) counts as positive; only a "no" is negative."""
    return value in (YES, DECLINED)


def asq_route(answers: dict[str, Any]) -> str:
    """CLINICAL.md's routing from the answers: negative, non_acute or acute."""
    if not any(positive(answers.get(q)) for q in QUESTIONS):
        return NEGATIVE
    return ACUTE if positive(answers.get("asq_q5")) else NON_ACUTE


class ValidateAsqForm(ScriptedFormValidation):
    """Read each ASQ answer; ask question 5 only after a yes or a refusal to 1–4."""

    form = "asq_form"
    slots = ASQ_SLOTS

    def slot_order(self, values: dict[str, Any]) -> list[str]:
        order = list(QUESTIONS)
        if values.get("asq_q4") == YES:
            order.append("asq_attempt")
        if any(positive(values.get(q)) for q in QUESTIONS):
            order.append("asq_q5")
        return order

    def interpret(self, slot: str, tracker: Tracker) -> Any:
        answer = yes_no(tracker)
        if slot == "asq_attempt":  # a detail, not a screening item: a refusal is accepted
            return DECLINED if answer in (DECLINED, NO) else latest_text(tracker)[:300]
        if answer in (YES, NO):
            return answer
        if latest_intent(tracker) in SUICIDAL_INTENTS:
            return YES  # "yeah I want to die" answers the question
        return ASK_AGAIN  # refused or unclear: asked once more, then "declined"


class ActionAsqResult(Action):
    """Score the ASQ, tell the client what happens next, and alert a clinician."""

    def name(self) -> str:
        return "action_asq_result"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        answers = {slot: tracker.get_slot(slot) for slot in ASQ_SLOTS}
        route = asq_route(answers)
        region = client_region_any(tracker)
        facts = {label: str(answers[s]) for s, label in FACT_LABELS.items() if answers.get(s) is not None}
        declined = [FACT_LABELS[q] for q in (*QUESTIONS, "asq_q5") if answers.get(q) == DECLINED]
        if declined:
            facts["declined (counted as yes)"] = "; ".join(declined)
        if route == NEGATIVE:
            facts["ASQ result"] = "negative (all four no)"
            dispatcher.utter_message(response="utter_asq_negative")
            dispatcher.utter_message(text=hotline_card(region, clinician_told=True))
            payload = escalation_payload(
                priority="routine",
                reason="ASQ screen negative after a risk signal; a clinician may still override.",
                categories=["self_harm"],
                facts=facts,
            )
        elif route == NON_ACUTE:
            facts["ASQ result"] = "non-acute positive"
            dispatcher.utter_message(response="utter_asq_non_acute")
            dispatcher.utter_message(text=hotline_card(region, clinician_told=True))
            payload = escalation_payload(
                priority="urgent",
                reason="ASQ non-acute positive: a brief suicide safety assessment is needed.",
                categories=["self_harm"],
                facts=facts,
            )
        else:
            facts["ASQ result"] = "ACUTE positive (thoughts of killing self right now)"
            dispatcher.utter_message(response="utter_asq_acute")
            dispatcher.utter_message(text=hotline_card(region, acute=True, clinician_told=True))
            payload = escalation_payload(
                priority="imminent",
                reason="ASQ acute positive: thoughts of killing themselves right now. "
                "The client was asked to stay in the chat.",
                categories=["self_harm"],
                facts=facts,
            )
        dispatcher.utter_message(json_message=payload)
        offer = route != NEGATIVE
        if offer:  # Stanley-Brown safety plan: offered, never forced (CLINICAL.md)
            dispatcher.utter_message(response="utter_offer_safety_plan")
        return [
            SlotSet("asq_result", route),
            SlotSet("safety_plan_offered", offer),
            mark_completed(tracker, "asq"),
        ]
