"""The one clock (bot/clock.py): pinned by TRIAGE_CLOCK inside and outside the clinic's hours."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from bot import cases, clock
from bot.flows_config import FLOWS_FILE, load_flows_config
from bot.telegram.outbox import AlertOutbox

SUNDAY_3AM_NEW_YORK = "2026-11-29T03:00:00-05:00"
TUESDAY_11AM_NEW_YORK = "2026-12-01T11:00:00-05:00"


@pytest.fixture(autouse=True)
def fresh_clock():
    """Each test starts its pinned clock afresh (the suite itself may run pinned to the same
    instant, whose clock has been running since the session started)."""
    clock._pinned.cache_clear()
    yield
    clock._pinned.cache_clear()


def test_unset_the_clock_is_the_systems(monkeypatch):
    monkeypatch.delenv(clock.VAR, raising=False)
    assert abs((clock.now() - dt.datetime.now(dt.timezone.utc)).total_seconds()) < 1


def test_pinned_the_clock_starts_at_the_pin_and_keeps_running(monkeypatch):
    monkeypatch.setenv(clock.VAR, SUNDAY_3AM_NEW_YORK)
    first = clock.now()
    assert first.tzinfo is not None
    assert abs((first - dt.datetime.fromisoformat(SUNDAY_3AM_NEW_YORK)).total_seconds()) < 5
    time.sleep(0.05)
    assert clock.now() > first  # timers still fire


@pytest.mark.parametrize("value", ["tomorrow", "2026-11-29T03:00:00"])
def test_a_bad_pin_is_refused_with_a_clear_message(monkeypatch, value):
    monkeypatch.setenv(clock.VAR, value)
    with pytest.raises(clock.ClockError, match="TRIAGE_CLOCK"):
        clock.now()


@pytest.mark.parametrize(("pin", "after_hours"), [(SUNDAY_3AM_NEW_YORK, True), (TUESDAY_11AM_NEW_YORK, False)])
def test_the_clinics_real_hours_follow_the_clock(monkeypatch, pin, after_hours):
    monkeypatch.setenv(clock.VAR, pin)
    assert load_flows_config(FLOWS_FILE).is_after_hours() is after_hours


def test_what_the_store_writes_and_the_re_page_timer_read_the_same_clock(monkeypatch, store):
    monkeypatch.setenv(clock.VAR, SUNDAY_3AM_NEW_YORK)
    store.ensure_conversation("c:1", "console", "US")
    case, _ = cases.open_or_raise(store, "c:1", "urgent", ["self_harm"], details={}, message_id=None)
    assert case["opened_at"].startswith("2026-11-29T08:00")  # 03:00 in New York, in UTC
    box = AlertOutbox(store, None, "-100", b"secret", repage_minutes=5)  # the default clock: bot.clock
    box.schedule_repages()
    assert not [a for a in store.alerts() if a["kind"] == "repage"]  # not yet five minutes
    monkeypatch.setenv(clock.VAR, "2026-11-29T03:06:00-05:00")  # six minutes later
    box.schedule_repages()
    assert [a["kind"] for a in store.alerts() if a["kind"] == "repage"] == ["repage"]
