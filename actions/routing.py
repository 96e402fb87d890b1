"""Which flow runs: the router for greetings, risk intents and the gateway's screen, and stop.

Who starts a flow: the gateway's screen through Rasa's HTTP API (``EXTERNAL_screen_positive`` with the entities
``risk_category`` and ``risk_priority``), after a page — never client text imitating an intent
(the gateway strips a leading "/"). A risk intent from the NLU alone never pages (the screener
owns escalation, ARCHITECTURE.md "Risk model"): it asks the gateway for the *ask* tier. The router sets the slot ``flow``; the rules in data/rules/flows.yml
start the matching form. A flow already completed this session is not run again: the client
gets an acknowledgement and the clinician an update instead (no ASQ twice in a row).
"""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import ActiveLoop, EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.forms import REQUESTED_SLOT

from actions.asq import ASQ_SLOTS, FACT_LABELS as ASQ_LABELS
from actions.concerned_other import CO_SLOTS, FACT_LABELS as CO_LABELS
from bot.flows_config import flows_config
from actions.forms import reset_events
from actions.harm_to_others import FACT_LABELS as HTO_LABELS, HTO_SLOTS
from actions.helpers import (
    CATEGORY_FLOW,
    CRISIS_FORMS,
    PRIORITIES,
    RISK_INTENT_CATEGORY,
    SCREEN_INTENT,
    client_region_any,
    completed,
    escalation_payload,
    latest_entities,
    latest_intent,
    mark_completed,
    screen_escalated_this_turn,
    slot_facts,
)
from actions.intake import FACT_LABELS as INTAKE_LABELS, INTAKE_SLOTS
from actions.safeguarding import FACT_LABELS as SG_LABELS, SG_SLOTS
from actions.safety_plan import SP_SLOTS
from bot.hotlines import emergency_number, hotline_card

FLOW_SLOTS = {
    "asq": ASQ_SLOTS,
    "harm_to_others": HTO_SLOTS,
    "safeguarding": SG_SLOTS,
    "concerned_other": (*CO_SLOTS, "co_relation"),
    "intake": INTAKE_SLOTS,
    "safety_plan": SP_SLOTS,
}
FLOW_INTRO = {
    "asq": "utter_asq_intro",
    "harm_to_others": "utter_hto_intro",
    "safeguarding": "utter_sg_intro",
    "concerned_other": "utter_co_intro",
}
FORM_FLOW = {
    "asq_form": "asq",
    "harm_to_others_form": "harm_to_others",
    "safeguarding_form": "safeguarding",
    "concerned_other_form": "concerned_other",
    "intake_form": "intake",
    "safety_plan_form": "safety_plan",
}
FORM_FACTS = {
    "asq_form": ASQ_LABELS,
    "harm_to_others_form": HTO_LABELS,
    "safeguarding_form": SG_LABELS,
    "concerned_other_form": CO_LABELS,
    "intake_form": INTAKE_LABELS,
}
FORM_CATEGORY = {
    "asq_form": "self_harm",
    "harm_to_others_form": "harm_to_others",
    "safeguarding_form": "being_harmed",
    "concerned_other_form": "third_party_concern",
}


def screen_category(tracker: Tracker) -> str | None:
    """The screen's primary category from the trigger's entities (or the slot they fill)."""
    found = latest_entities(tracker, "risk_category") or [tracker.get_slot("risk_category")]
    return found[0] if found and found[0] in CATEGORY_FLOW else None


def screen_priority(tracker: Tracker) -> str:
    found = latest_entities(tracker, "risk_priority") or [tracker.get_slot("risk_priority")]
    return found[0] if found and found[0] in PRIORITIES else "urgent"


class ActionRoute(Action):
    """Pick the flow for a greeting, a risk intent, a screen trigger, or a request to leave a message."""

    def name(self) -> str:
        return "action_route"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        intent = latest_intent(tracker)
        active = (tracker.active_loop or {}).get("name")
        if intent in RISK_INTENT_CATEGORY or intent == SCREEN_INTENT:
            return self.route_risk(intent, active, dispatcher, tracker)
        if active:  # a greeting mid-form: say hello, the form resumes
            return [SlotSet("flow", "chat")]
        region = client_region_any(tracker)
        if intent == "leave_message":
            dispatcher.utter_message(response="utter_intake_intro", emergency=emergency_number(region))
            return [*reset_events(INTAKE_SLOTS), SlotSet("flow", "intake")]
        done = completed(tracker)
        config = flows_config()
        if config.is_after_hours() and not done:
            dispatcher.utter_message(
                response="utter_after_hours",
                hours=config.hours_description,
                emergency=emergency_number(region),
            )
            return [*reset_events(INTAKE_SLOTS), SlotSet("flow", "intake")]
        return [SlotSet("flow", "chat")]

    def route_risk(
        self, intent: str, active: str | None, dispatcher: CollectingDispatcher, tracker: Tracker
    ) -> list[EventType]:
        from_screen = intent == SCREEN_INTENT
        category = screen_category(tracker) if from_screen else RISK_INTENT_CATEGORY[intent]
        category = category or "self_harm"  # an unknown category gets the suicide screen
        flow = CATEGORY_FLOW[category]
        region = client_region_any(tracker)
        events: list[EventType] = []
        if active and active not in CRISIS_FORMS:  # e.g. the intake: a risk signal wins at once
            events += [ActiveLoop(None), SlotSet(REQUESTED_SLOT, None)]
        categories = [category]
        if latest_entities(tracker, "means") and "lethal_means" not in categories:
            categories.append("lethal_means")

        if not from_screen and not screen_escalated_this_turn(tracker):
            # ARCHITECTURE.md "Risk model": the screener is the only owner of escalation. The
            # NLU's guess alone never pages: mid-flow it is left to the flow; otherwise the
            # gateway asks the client one direct question (card, non-paging queue entry), and
            # a yes or a refusal there becomes the page and starts this flow.
            if active in CRISIS_FORMS:
                return events + [SlotSet("flow", "acknowledge")]
            dispatcher.utter_message(json_message={"ask": {
                "categories": categories,
                "reason": f"The dialogue's NLU read a possible risk ({intent}) that the screen did not find.",
            }})
            return events + [SlotSet("flow", "acknowledge")]

        if flow in completed(tracker) or (active in CRISIS_FORMS):
            # Not twice in a row: acknowledge, and keep the clinician informed.
            dispatcher.utter_message(response="utter_risk_acknowledged", emergency=emergency_number(region))
            dispatcher.utter_message(
                json_message=escalation_payload(
                    priority=screen_priority(tracker) if from_screen else "urgent",
                    reason=f"New risk disclosure ({category}) "
                    + (f"during the {FORM_FLOW[active].replace('_', ' ')} flow"
                       if active in CRISIS_FORMS
                       else f"after the {flow.replace('_', ' ')} flow was already completed this session")
                    + "; not repeated — please review.",
                    categories=categories,
                )
            )
            return events + [SlotSet("flow", "acknowledge")]

        dispatcher.utter_message(response=FLOW_INTRO[flow])
        events += reset_events(FLOW_SLOTS[flow])
        if flow == "concerned_other":
            relation = latest_entities(tracker, "relation")
            events.append(SlotSet("co_relation", relation[0] if relation else None))
        return events + [SlotSet("flow", flow)]


class ActionStopFlow(Action):
    """Stop the questions when asked — and, in a risk flow, tell a clinician (invariant 4)."""

    def name(self) -> str:
        return "action_stop_flow"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        active = (tracker.active_loop or {}).get("name")
        if not active:
            dispatcher.utter_message(response="utter_stop_ack")
            return []
        events: list[EventType] = [ActiveLoop(None), SlotSet(REQUESTED_SLOT, None)]
        region = client_region_any(tracker)
        if active in FORM_CATEGORY:
            facts = slot_facts(tracker, FORM_FACTS[active])
            facts["Stopped at"] = str(tracker.get_slot(REQUESTED_SLOT))
            dispatcher.utter_message(response="utter_flow_stopped_risk")
            dispatcher.utter_message(text=hotline_card(region, clinician_told=True))
            dispatcher.utter_message(
                json_message=escalation_payload(
                    priority="urgent",
                    reason=f"The client stopped the {FORM_FLOW[active].replace('_', ' ')} questions "
                    "before the end; unanswered questions count as positive (a refusal is not a no).",
                    categories=[FORM_CATEGORY[active]],
                    facts=facts,
                )
            )
            events.append(mark_completed(tracker, FORM_FLOW[active]))
        elif active == "intake_form":
            facts = slot_facts(tracker, INTAKE_LABELS)
            dispatcher.utter_message(response="utter_intake_stopped", emergency=emergency_number(region))
            if facts:
                dispatcher.utter_message(
                    json_message=escalation_payload(
                        priority="routine",
                        reason="After-hours intake stopped early: a partial message for the clinic.",
                        facts=facts,
                    )
                )
        else:  # the safety plan: never forced
            dispatcher.utter_message(response="utter_safety_plan_stopped")
        return events
