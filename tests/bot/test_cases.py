"""The case rules on their own: priority merge, which events open a case, replay, authorisation."""

from __future__ import annotations

import json

import pytest

from bot import cases

CLINICIANS = frozenset({"42"})


@pytest.fixture
def conv(store):
    store.ensure_conversation("c:1", "console", "US")
    return "c:1"


def test_case_history_is_appended_and_priority_only_rises(store, conv):
    case, opened = cases.open_or_raise(store, conv, "routine", [], details={}, message_id=None)
    assert opened
    cases.open_or_raise(store, conv, "imminent", ["self_harm"], details={}, message_id=None)
    case, opened = cases.open_or_raise(store, conv, "urgent", ["lethal_means"], details={}, message_id=None)
    assert not opened and case["priority"] == "imminent"
    assert json.loads(case["categories"]) == ["lethal_means", "self_harm"]
    assert [e["event"] for e in store.case_events(case["id"])] == ["opened", "raised", "signal"]


def test_merge_keeps_or_raises_and_accumulates():
    current = {"priority": "urgent", "categories": '["self_harm"]', "duty_to_protect": 1, "paged": 1}
    changes, event = cases.merge(current, "routine", ["being_harmed"], False, True)
    assert changes["priority"] == "urgent" and event == "signal"
    assert json.loads(changes["categories"]) == ["being_harmed", "self_harm"]
    assert changes["duty_to_protect"] == 1 and changes["paged"] == 1
    changes, event = cases.merge(current, "imminent", [], False, True)
    assert changes["priority"] == "imminent" and event == "raised"


def test_a_review_entry_does_not_page_until_something_pages_for_it(store, conv):
    case, opened = cases.open_or_raise(store, conv, "routine", ["self_harm"], details={}, message_id=None, page=False)
    assert opened and not case["paged"] and store.paged_open_cases() == []
    assert [e["event"] for e in store.case_events(case["id"])] == ["review"]
    case, _ = cases.open_or_raise(store, conv, "urgent", ["self_harm"], details={}, message_id=None)
    assert case["paged"] and case["last_paged_at"] and store.paged_open_cases()[0]["id"] == case["id"]


def test_an_unknown_priority_is_refused(store, conv):
    with pytest.raises(ValueError):
        cases.open_or_raise(store, conv, "panic", [], details={}, message_id=None)


def test_a_safety_plan_opens_a_routine_case_when_none_is_open(store, conv):
    case_id = cases.save_safety_plan(store, conv, {"warning_signs": "no sleep"}, None)
    case = store.case(case_id)
    assert case["priority"] == "routine" and case["status"] == "open"
    assert [e["event"] for e in store.case_events(case_id)] == ["opened", "safety_plan"]


def test_a_safety_plan_joins_the_open_case(store, conv):
    case, _ = cases.open_or_raise(store, conv, "urgent", ["self_harm"], details={}, message_id=None)
    assert cases.save_safety_plan(store, conv, {"warning_signs": "no sleep"}, None) == case["id"]
    assert store.case(case["id"])["priority"] == "urgent"


def test_replay_rebuilds_the_state_from_the_history(store, conv):
    case, _ = cases.open_or_raise(store, conv, "urgent", ["self_harm"], details={"categories": ["self_harm"]},
                                  message_id=None)
    cases.claim(store, CLINICIANS, case["id"], "42")
    cases.resolve(store, CLINICIANS, case["id"], "42", "seen")
    state = cases.replay(store.case_events(case["id"]))
    assert state == {"status": "resolved", "priority": "urgent", "claimed_by": "42", "resolved_by": "42",
                     "outcome": "seen", "categories": ["self_harm"]}


def test_a_refusal_has_one_text_and_is_audited(store, conv):
    case, _ = cases.open_or_raise(store, conv, "urgent", [], details={}, message_id=None)
    with pytest.raises(cases.NotAllowed) as refused:
        cases.claim(store, CLINICIANS, case["id"], "666")
    assert str(refused.value) == cases.REFUSAL
    assert store.audit_entries(actor="666")[-1]["action"] == "refused:claim"
    assert store.case(case["id"])["status"] == "open"


def test_an_allowed_attempt_is_audited_unless_the_action_audits_itself(store):
    cases.authorise(store, CLINICIANS, "42", "list", "cases")
    cases.authorise(store, CLINICIANS, "42", "transcript", "case:1", audit_allowed=False)
    assert [e["action"] for e in store.audit_entries(actor="42")] == ["list"]


def test_a_claimed_case_is_not_taken_from_its_clinician(store, conv):
    both = frozenset({"42", "43"})
    case, _ = cases.open_or_raise(store, conv, "urgent", [], details={}, message_id=None)
    cases.claim(store, both, case["id"], "42")
    with pytest.raises(cases.CaseError):
        cases.claim(store, both, case["id"], "43")
    assert cases.claim(store, both, case["id"], "42")["claimed_by"] == "42"
