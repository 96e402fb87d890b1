"""Harm to others: collect and surface the facts a clinician needs; then the ASQ.

../shared/CLINICAL.md "Harm to others": identifiable target (a relation, not a name, is
enough), plan, access to means (firearms above all), timeline, past violence (the strongest
predictor), intoxication now, voices telling them to act; and co-occurring suicidal thoughts,
so the flow ends with the ASQ. Duty to protect is the clinician's decision: the alert is only
marked for "duty-to-protect review" when a target is identifiable (or the client would not
say). The assistant never promises confidentiality and never contacts anyone itself.
"""

from __future__ import annotations

import re
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType
from rasa_sdk.executor import CollectingDispatcher

from actions.asq import ASQ_SLOTS
from actions.forms import ASK_AGAIN, ScriptedFormValidation, free_text, reset_events, yes_no_or_detail
from actions.helpers import (
    NO,
    YES,
    client_region_any,
    escalation_payload,
    latest_entities,
    mark_completed,
    yes_no,
)
from bot.hotlines import emergency_number

HTO_SLOTS = (
    "hto_target",
    "hto_plan",
    "hto_means",
    "hto_timeline",
    "hto_past_violence",
    "hto_intoxication",
    "hto_voices",
)
FACT_LABELS = {
    "hto_target": "Target (who, not a name)",
    "hto_plan": "Plan",
    "hto_means": "Access to a gun or other weapon",
    "hto_timeline": "Timeline",
    "hto_past_violence": "Past violence",
    "hto_intoxication": "Drinking or drugs today",
    "hto_voices": "Voices telling them to act",
}
_SOON = re.compile(
    r"\b(now|right now|tonight|today|this (morning|afternoon|evening)|in an hour|soon|asap|"
    r"when (he|she|they) (gets|get|comes|come) (home|back))\b",
    re.IGNORECASE,
)
_FIREARM = re.compile(r"\b(guns?|firearms?|rifles?|pistols?|shotguns?|handguns?|glock|ar-?15)\b", re.I)


def positive(value: Any) -> bool:
    """Anything but a plain "no" (a yes, a description, a refusal) counts as present."""
    return value is not None and value != NO


# "Nobody in particular" answers the target question with a no, whatever intent the NLU
# gives it; a named relation in the same answer ("no one but my brother") still counts.
_NO_TARGET = re.compile(
    r"^\W*(?:no[\s-]?one|nobody|noone|not (?:any|some)one|no(?:body)? (?:specific|particular)|"
    r"no specific (?:one|person)|no one specific|not a specific person)\b", re.IGNORECASE)


def target_identifiable(value: Any) -> bool:
    """An identifiable target — or a refusal to say, which a clinician must review too."""
    return positive(value)


def timeline_is_soon(value: Any) -> bool:
    return isinstance(value, str) and bool(_SOON.search(value))


def harm_priority(values: dict[str, Any]) -> str:
    """Imminent when it could happen soon, or a plan meets means, or voices meet either."""
    plan, means, voices = (positive(values.get(k)) for k in ("hto_plan", "hto_means", "hto_voices"))
    if timeline_is_soon(values.get("hto_timeline")) or (plan and means) or (voices and (plan or means)):
        return "imminent"
    return "urgent"


class ValidateHarmToOthersForm(ScriptedFormValidation):
    """Target, plan, means (firearms first), timeline, past violence, intoxication, voices."""

    form = "harm_to_others_form"
    slots = HTO_SLOTS

    def interpret(self, slot: str, tracker: Tracker) -> Any:
        if slot == "hto_target":
            answer = yes_no(tracker)
            text = (tracker.latest_message or {}).get("text") or ""
            if answer == NO or (_NO_TARGET.search(text) and not latest_entities(tracker, "relation")):
                return NO  # "no one in particular": decided on the words, not the NLU's guess
            if answer == YES:
                return "yes (did not say who)"
            relation = latest_entities(tracker, "relation")
            value = free_text(tracker)
            if value is ASK_AGAIN or not relation or relation[0].lower() in value.lower():
                return value
            return f"{value} [relation: {relation[0]}]"
        if slot == "hto_timeline":
            value = yes_no_or_detail(tracker)
            when = latest_entities(tracker, "time_frame")
            if isinstance(value, str) and when and value not in (YES, NO):
                return f"{value} [time: {when[0]}]"
            return value
        if slot == "hto_means":
            value = yes_no_or_detail(tracker)
            means = latest_entities(tracker, "means")
            if isinstance(value, str) and means and value not in (YES, NO):
                return f"{value} [means: {', '.join(means)}]"
            return value
        return yes_no_or_detail(tracker)


class ActionHarmToOthersResult(Action):
    """Alert a clinician with the facts (duty-to-protect review if identifiable); start the ASQ."""

    def name(self) -> str:
        return "action_harm_to_others_result"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        values = {slot: tracker.get_slot(slot) for slot in HTO_SLOTS}
        identifiable = target_identifiable(values.get("hto_target"))
        facts = {label: str(values[s]) for s, label in FACT_LABELS.items() if values.get(s) is not None}
        facts["Identifiable target"] = "yes" if identifiable else "no"
        means = str(values.get("hto_means") or "")
        if _FIREARM.search(means) or means == YES:
            facts["Firearm"] = "possible access — ask first" if means == YES else "mentioned"
        categories = ["harm_to_others"]
        if positive(values.get("hto_means")):
            categories.append("lethal_means")
        region = client_region_any(tracker)
        dispatcher.utter_message(response="utter_hto_done", emergency=emergency_number(region))
        dispatcher.utter_message(
            json_message=escalation_payload(
                priority=harm_priority(values),
                reason="Harm-to-others check completed"
                + ("; an identifiable person may be at risk." if identifiable else "; no identifiable target."),
                categories=categories,
                facts=facts,
                duty_to_protect=identifiable,
            )
        )
        # Suicidal thoughts often co-occur: the flow ends with the ASQ (CLINICAL.md).
        dispatcher.utter_message(response="utter_asq_after_harm")
        return [*reset_events(ASQ_SLOTS), mark_completed(tracker, "harm_to_others")]
