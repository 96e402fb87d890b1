"""Escalation on its own: evidence from the screen's answer, Rasa payloads, the alert it records."""

from __future__ import annotations

from bot.escalation import Escalation, escalate, evidence_from_screening, format_alert, from_payload, mark_cue
from bot.screening.result import Signal, escalates

TEXT = "I want to die. my song says 'kill yourself'. I will never hurt myself"


def signal(cue: str, **flags) -> dict:
    start = TEXT.index(cue)
    return Signal("self_harm", cue, start, start + len(cue), **flags).to_dict()


def test_the_screen_says_which_signals_escalate_and_evidence_quotes_only_those():
    result = {"categories": ["self_harm"], "signals": [
        signal("want to die"), signal("kill yourself", reported=True), signal("hurt myself", negated=True)]}
    assert [s["escalates"] for s in result["signals"]] == [True, False, False]
    evidence = evidence_from_screening(TEXT, result)
    assert evidence == [f"self_harm: {mark_cue(TEXT, 2, 13)}"]  # the quoted lyric is not evidence


def test_a_result_stored_before_escalates_was_written_reads_the_flags():
    old = {k: v for k, v in signal("kill yourself", reported=True).items() if k != "escalates"}
    assert not escalates(old)
    assert escalates({k: v for k, v in signal("want to die").items() if k != "escalates"})


def test_evidence_leaves_out_categories_the_screen_did_not_page_for():
    other = Signal("harm_to_others", "kill", 0, 4).to_dict()
    assert evidence_from_screening("kill", {"categories": ["self_harm"], "signals": [other]}) == []


def test_a_malformed_payload_falls_back_to_safe_values():
    escalation = from_payload({"priority": "whenever", "categories": "self_harm", "facts": "x"})
    assert escalation.priority == "urgent" and escalation.categories == []
    assert escalation.facts == {"facts": "x"} and escalation.source == "rasa"


def test_escalate_opens_then_raises_the_case_and_records_each_alert(store):
    store.store_inbound("console:a", "console", "first words")
    first = escalate(store, "console:a", "a", "US", Escalation("urgent", ["self_harm"], "screen"), None)
    second = escalate(store, "console:a", "a", "US",
                      Escalation("routine", ["lethal_means"], "dialogue", duty_to_protect=True), None)
    assert first.opened and not second.opened and first.case_id == second.case_id
    assert second.priority == "urgent"  # never lowered
    assert "(new)" in first.text and "(updated" in second.text and "first words" in first.text
    assert "DUTY-TO-PROTECT" in second.text
    assert [a["id"] for a in store.undelivered_alerts()] == [first.alert_id, second.alert_id]


def test_alert_text_names_priority_chat_region_and_reason():
    case = {"id": 7, "priority": "imminent", "opened_at": "2026-01-01T00:00:00"}
    text = format_alert(case, Escalation("imminent", ["self_harm"], "plan and means", ["self_harm: «x»"]),
                        "alice", "UK", True, ["hello"])
    assert text.splitlines()[0] == "IMMINENT — case #7 (new)"
    assert "Chat: alice · region UK" in text and "Reason: plan and means" in text and "  › hello" in text
