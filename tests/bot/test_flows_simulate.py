"""Every scripted flow end to end: `triage simulate` with the real screener, Rasa and actions.

One script runs all routes (one chat each, so one subprocess for the file); each test then
reads its own chat's events. Priorities are checked as the contract states them: the flow's
own escalation sets a floor, and a case's priority can only be kept or raised — so an alert's
priority is the highest of the flow's and any earlier alert for that chat (the gateway's
screen may have raised it first). Clinical ground truth: ../shared/CLINICAL.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.rasa
ROOT = Path(__file__).resolve().parents[2]
RANK = {"routine": 0, "urgent": 1, "imminent": 2}

ASQ_Q1 = "have you wished you were dead?"
ASQ_Q5 = "thoughts of killing yourself right now?"
NO4 = ["No", "No", "No", "No"]

SCRIPT: dict[str, tuple[str, list[str]]] = {
    "asq_all_no": ("US", ["I want to kill myself", *NO4]),
    "asq_one_yes": ("US", ["i keep thinking about suicide", "Yes", "No", "No", "No", "No", "No"]),
    "asq_refusal": ("US", ["i just want to sleep and never wake up", "I'd rather not say", "I'd rather not say",
                           "No", "No", "No", "No"]),
    "asq_acute": ("US", ["I want to die", "Yes", "Yes", "Yes", "No", "Yes"]),
    "hto_target": ("US", ["I want to hurt my brother", "my brother", "Yes", "Yes", "tonight", "No", "No", "No", *NO4]),
    "hto_nobody": ("US", ["i feel like stabbing someone", "no one in particular", "No", "No", "No", "No", "No", "No",
                          *NO4]),
    "safeguarding": ("UK", ["my husband hits me", "No", "Yes", "No"]),
    "concerned": ("AU", ["my friend says she wants to die", "Yes", "at her place, I'm not with her"]),
    "intake": ("US", ["I'd like to leave a message for the clinic", "I've been feeling low for weeks", "Several days",
                      "honestly I want to kill myself", "No"]),
}


@pytest.fixture(scope="module")
def events(rasa_stack, tmp_path_factory) -> dict[str, list[dict]]:
    """Run every route once; return the events by chat."""
    tmp = tmp_path_factory.mktemp("flows")
    lines = [{"chat": chat, "text": text, "region": region}
             for chat, (region, texts) in SCRIPT.items() for text in texts]
    script = tmp / "flows.jsonl"
    script.write_text("".join(json.dumps(line) + "\n" for line in lines))
    # The flows are tested on the rules' screen: which benign lines the model asks about is
    # the model card's business (tests/bot/test_tiers_live.py runs the tiers with the model).
    env = dict(os.environ, TRIAGE_RASA_URL=rasa_stack.rasa_url, TRIAGE_DB=str(tmp / "sim.db"),
               TRIAGE_SCREEN_MODEL="off")
    result = subprocess.run([sys.executable, "-m", "bot.cli", "simulate", str(script)],
                            env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    by_chat: dict[str, list[dict]] = {chat: [] for chat in SCRIPT}
    for line in result.stdout.splitlines():
        event = json.loads(line)
        by_chat[event["chat"]].append(event)
    return by_chat


def replies(events: list[dict]) -> str:
    return "\n".join(e["text"] for e in events if e["type"] == "reply")


def flow_alert(events: list[dict], reason: str) -> dict:
    """The alert a flow's action raised (found by its reason), checked against the floor rule."""
    found = [i for i, e in enumerate(events) if e["type"] == "alert" and f"Reason: {reason}" in e["text"]]
    assert found, f"no alert with reason {reason!r}; alerts: {[e['text'][:120] for e in events if e['type'] == 'alert']}"
    return events[found[-1]] | {"_index": found[-1]}


def assert_priority(events: list[dict], alert: dict, floor: str) -> None:
    """The alert carries the flow's priority, or a higher one an earlier alert already set."""
    earlier = [e["priority"] for e in events[: alert["_index"]] if e["type"] == "alert"]
    expected = max([floor, *earlier], key=RANK.__getitem__)
    assert alert["priority"] == expected


def test_asq_all_no_is_negative_reviewable_and_never_says_safe(events):
    chat = events["asq_all_no"]
    said = replies(chat)
    assert ASQ_Q1 in said and ASQ_Q5 not in said
    assert "A clinician from the clinic will read this conversation" in said
    assert "you are safe" not in said.lower() and "not at risk" not in said.lower()
    assert "safety plan" not in said
    alert = flow_alert(chat, "ASQ screen negative")
    assert "self_harm" in alert["categories"]
    assert "ASQ result: negative (all four no)" in alert["text"]
    assert_priority(chat, alert, "routine")


def test_asq_one_yes_is_non_acute_urgent_and_offers_a_safety_plan(events):
    chat = events["asq_one_yes"]
    said = replies(chat)
    assert ASQ_Q5 in said and "check in with you soon" in said and "988" in said
    assert "would you like to make a short safety plan" in said
    assert "Your clinician can make a plan with you later" in said  # the "No" is respected
    alert = flow_alert(chat, "ASQ non-acute positive")
    assert alert["categories"] == ["self_harm"] and "ASQ 1 wished dead (past few weeks): yes" in alert["text"]
    assert_priority(chat, alert, "urgent")


def test_asq_refusal_is_asked_twice_then_counts_as_yes(events):
    chat = events["asq_refusal"]
    said = replies(chat)
    assert said.count(ASQ_Q1) == 2 and "I'll ask once more" in said
    assert "you'd rather not answer" in said and ASQ_Q5 in said
    alert = flow_alert(chat, "ASQ non-acute positive")
    assert "ASQ 1 wished dead (past few weeks): declined" in alert["text"]
    assert "declined (counted as yes)" in alert["text"]
    assert_priority(chat, alert, "urgent")


def test_asq_acute_is_imminent_repeats_the_numbers_and_asks_to_stay(events):
    chat = events["asq_acute"]
    said = replies(chat)
    assert "stay here in this chat" in said and "911" in said and "988" in said
    alert = flow_alert(chat, "ASQ acute positive")
    assert alert["priority"] == "imminent" and "self_harm" in alert["categories"]


def test_harm_to_others_with_identifiable_target_is_duty_to_protect_then_asq(events):
    chat = events["hto_target"]
    said = replies(chat)
    assert "Is there a particular person" in said and "Do you have a gun" in said
    assert said.index("Do you have a gun") > said.index("Is there a particular person")
    assert ASQ_Q1 in said and said.index(ASQ_Q1) > said.index("Are you hearing voices")
    alert = flow_alert(chat, "Harm-to-others check completed; an identifiable person")
    assert "DUTY-TO-PROTECT REVIEW" in alert["text"]
    assert {"harm_to_others", "lethal_means"} <= set(alert["categories"])
    assert "Timeline: tonight" in alert["text"]
    assert alert["priority"] == "imminent"
    flow_alert(chat, "ASQ screen negative")  # the ASQ ran after it


def test_harm_to_others_without_a_target_is_urgent_without_duty_to_protect(events):
    chat = events["hto_nobody"]
    alert = flow_alert(chat, "Harm-to-others check completed; no identifiable target")
    assert "DUTY-TO-PROTECT" not in alert["text"] and "harm_to_others" in alert["categories"]
    assert_priority(chat, alert, "urgent")
    assert ASQ_Q1 in replies(chat)


def test_safeguarding_gives_emergency_and_abuse_line_and_alerts(events):
    chat = events["safeguarding"]
    said = replies(chat)
    assert "Are you safe right now?" in said and "please call 999" in said
    assert "0808 2000 247" in said
    alert = flow_alert(chat, "Safeguarding")
    assert alert["priority"] == "imminent" and "being_harmed" in alert["categories"]
    assert "Safe right now?: no" in alert["text"]


def test_concerned_other_gives_emergency_and_hotline_to_pass_on(events):
    chat = events["concerned"]
    said = replies(chat)
    assert "immediate danger" in said and "call 000" in said and "13 11 14" in said
    assert "pass on" in said
    alert = flow_alert(chat, "Concerned other")
    assert alert["priority"] == "imminent" and "third_party_concern" in alert["categories"]


def test_intake_is_interrupted_by_a_risk_message_at_once(events):
    chat = events["intake"]
    said = replies(chat)
    assert "take a message for the clinic" in said and "little interest or pleasure" in said
    risk_turn = said.index("little interest or pleasure")
    assert ASQ_Q1 in said[risk_turn:]
    assert "feeling nervous, anxious" not in said  # the intake did not go on
    assert any(e["type"] == "alert" and "self_harm" in e["categories"] for e in chat)


def test_story_tests_pass():
    """tests/test_stories.yml against the trained model (rasa test core, no servers needed)."""
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"story-results-{os.getpid()}"
    env = dict(os.environ, RASA_TELEMETRY_ENABLED="false")
    result = subprocess.run(
        [sys.executable, "-m", "rasa", "test", "core", "--model", "models/triage.tar.gz",
         "--stories", "tests/test_stories.yml", "--fail-on-prediction-errors", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((out / "story_report.json").read_text())
    assert report["conversation_accuracy"]["accuracy"] == 1.0
