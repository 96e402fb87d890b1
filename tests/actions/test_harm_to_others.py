"""Harm to others: the facts, the duty-to-protect mark, the priority, and the ASQ after it."""

from __future__ import annotations

import pytest
from rasa_sdk.events import SlotSet

from action_trackers import answer_tracker, result_tracker, run
from actions.harm_to_others import ActionHarmToOthersResult, ValidateHarmToOthersForm, harm_priority


FORM = "harm_to_others_form"
ALL_NO = {"hto_target": "no", "hto_plan": "no", "hto_means": "no", "hto_timeline": "no",
          "hto_past_violence": "no", "hto_intoxication": "no", "hto_voices": "no"}


def test_a_relation_is_an_identifiable_target():
    entities = [{"entity": "relation", "value": "my ex", "start": 3, "end": 8}]
    _, events = run(ValidateHarmToOthersForm(), answer_tracker(FORM, "hto_target", "it's my ex", "inform", entities=entities))
    assert events == [SlotSet("hto_target", "it's my ex"), SlotSet("requested_slot", "hto_plan")]


def test_means_keep_the_clients_words():
    _, events = run(ValidateHarmToOthersForm(), answer_tracker(FORM, "hto_means", "my dad's gun in the closet", "inform",
                                                              {"hto_target": "no", "hto_plan": "yes"}))
    assert events == [SlotSet("hto_means", "my dad's gun in the closet"), SlotSet("requested_slot", "hto_timeline")]


@pytest.mark.parametrize("values, priority", [
    (ALL_NO, "urgent"),
    (dict(ALL_NO, hto_timeline="tonight"), "imminent"),
    (dict(ALL_NO, hto_plan="yes", hto_means="a knife"), "imminent"),
    (dict(ALL_NO, hto_voices="yes", hto_plan="declined"), "imminent"),
    (dict(ALL_NO, hto_plan="yes"), "urgent"),
])
def test_priority(values, priority):
    assert harm_priority(values) == priority


def test_identifiable_target_marks_duty_to_protect_and_starts_the_asq():
    slots = dict(ALL_NO, hto_target="my brother", hto_plan="yes", hto_means="yes", hto_timeline="tonight")
    messages, events = run(ActionHarmToOthersResult(), result_tracker(slots, region="AU"))
    assert messages[0]["response"] == "utter_hto_done" and messages[0]["emergency"] == "000"
    payload = messages[1]["custom"]["escalate"]
    assert payload["duty_to_protect"] is True and payload["priority"] == "imminent"
    assert payload["categories"] == ["harm_to_others", "lethal_means"]
    assert payload["facts"]["Target (who, not a name)"] == "my brother"
    assert payload["facts"]["Firearm"] == "possible access — ask first"
    assert messages[2]["response"] == "utter_asq_after_harm"
    assert SlotSet("asq_q1", None) in events and events[-1] == SlotSet("completed_flows", ["harm_to_others"])


def test_no_identifiable_target_is_urgent_without_duty_to_protect():
    messages, _ = run(ActionHarmToOthersResult(), result_tracker(dict(ALL_NO)))
    payload = messages[1]["custom"]["escalate"]
    assert payload == {
        "priority": "urgent",
        "categories": ["harm_to_others"],
        "reason": "Harm-to-others check completed; no identifiable target.",
        "facts": {"Target (who, not a name)": "no", "Plan": "no", "Access to a gun or other weapon": "no",
                  "Timeline": "no", "Past violence": "no", "Drinking or drugs today": "no",
                  "Voices telling them to act": "no", "Identifiable target": "no"},
        "duty_to_protect": False,
    }


def test_a_refusal_to_name_the_target_is_reviewed_too():
    messages, _ = run(ActionHarmToOthersResult(), result_tracker(dict(ALL_NO, hto_target="declined")))
    assert messages[1]["custom"]["escalate"]["duty_to_protect"] is True
