"""After-hours intake: reason, PHQ-2, GAD-2, call back, consent; a risk intent leaves it."""

from __future__ import annotations

import pytest
from rasa_sdk.events import SlotSet
from action_trackers import answer_tracker, result_tracker, run
from actions.intake import ActionIntakeResult, ValidateIntakeForm, scale_score


FORM = "intake_form"


@pytest.mark.parametrize("text, score", [("Not at all", 0), ("Several days", 1), ("more than half the days", 2),
                                         ("Nearly every day", 3), ("2", 2), ("nope", 0), ("purple", None)])
def test_scale_answers(text, score):
    assert scale_score(text) == score


def test_a_button_answer_wins_over_the_nlu():
    _, events = run(ValidateIntakeForm(), answer_tracker(FORM, "phq2_mood", "Not at all", "stop", {"intake_reason": "x", "phq2_interest": 1}))
    assert events == [SlotSet("phq2_mood", 0), SlotSet("requested_slot", "gad2_nervous")]


@pytest.mark.parametrize("intent", ["express_suicidal_ideation", "disclose_being_harmed", "EXTERNAL_screen_positive",
                                    "out_of_scope", "request_human"])
def test_risk_and_chit_chat_are_not_answers(intent):
    assert run(ValidateIntakeForm(), answer_tracker(FORM, "intake_reason", "some text", intent)) == ([], [])


def test_the_reason_is_kept_in_their_words():
    _, events = run(ValidateIntakeForm(), answer_tracker(FORM, "intake_reason", "I can't sleep since my dad died", "express_distress"))
    assert events == [SlotSet("intake_reason", "I can't sleep since my dad died"), SlotSet("requested_slot", "phq2_interest")]


DONE = {"intake_reason": "low mood", "phq2_interest": 2, "phq2_mood": 2, "gad2_nervous": 1, "gad2_worry": 0,
        "callback_how": "call 555 0134", "callback_when": "after 5pm", "consent_contact": "yes"}


def test_a_complete_intake_is_a_routine_message_with_the_scores():
    messages, events = run(ActionIntakeResult(), result_tracker(dict(DONE)))
    assert messages[0]["response"] == "utter_intake_done_contact"
    assert messages[1]["custom"]["escalate"] == {
        "priority": "routine",
        "categories": [],
        "reason": "After-hours intake: a message for the clinic.",
        "facts": {"Reason for contact (their words)": "low mood", "How to contact": "call 555 0134",
                  "When to contact": "after 5pm", "Consent to be contacted": "yes",
                  "PHQ-2": "4/6 (positive, cut-off 3)", "GAD-2": "1/6 (negative, cut-off 3)"},
        "duty_to_protect": False,
    }
    assert events == [SlotSet("completed_flows", ["intake"])]


def test_no_consent_is_respected_and_flagged():
    messages, _ = run(ActionIntakeResult(), result_tracker(dict(DONE, consent_contact="no", phq2_mood="declined")))
    assert messages[0]["response"] == "utter_intake_done_no_contact"
    payload = messages[1]["custom"]["escalate"]
    assert "NOT consent" in payload["reason"] and payload["facts"]["PHQ-2"].startswith("incomplete")
