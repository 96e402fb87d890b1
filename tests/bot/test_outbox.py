"""The alert outbox on its own: delivery, back-off after a failure, re-pages of unclaimed cases."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from bot import cases, clock
from bot.escalation import MAX_BACKOFF, backoff
from bot.telegram.outbox import AlertOutbox


class FakeSender:
    def __init__(self, fail: Exception | None = None) -> None:
        self.fail = fail
        self.sent: list[tuple[str, str]] = []

    async def send(self, chat_id, text, **kwargs):
        if self.fail:
            raise self.fail
        self.sent.append((str(chat_id), text))
        return [SimpleNamespace(message_id=900 + len(self.sent))]


def outbox(store, sender, **kw) -> AlertOutbox:
    return AlertOutbox(store, sender, "-100", b"secret", **kw)


def an_alert(store) -> int:
    store.ensure_conversation("c:1", "console", "US")
    case, _ = cases.open_or_raise(store, "c:1", "urgent", ["self_harm"], details={}, message_id=None)
    return store.record_alert(case["id"], "urgent", ["self_harm"], "URGENT — case #1\nbody", None)


def test_back_off_doubles_and_is_capped():
    assert [backoff(n).total_seconds() for n in (1, 2, 3)] == [2.0, 4.0, 8.0]
    assert backoff(30).total_seconds() == MAX_BACKOFF


def test_a_failed_delivery_is_recorded_and_not_due_until_its_back_off(store):
    alert_id = an_alert(store)
    box = outbox(store, FakeSender(fail=ConnectionError()))
    assert not asyncio.run(box.deliver(store.undelivered_alerts()[0]))
    (row,) = store.undelivered_alerts()
    assert row["id"] == alert_id and row["attempts"] == 1 and row["last_error"] == "ConnectionError"
    assert row["next_attempt_at"] > clock.now().isoformat()  # the clock the outbox reads
    assert box.due() == []


def test_a_delivered_alert_records_its_message(store):
    an_alert(store)
    sender = FakeSender()
    assert asyncio.run(outbox(store, sender).deliver(store.undelivered_alerts()[0]))
    assert store.undelivered_alerts() == []
    (row,) = store.alerts()
    assert row["delivered_at"] and row["attempts"] == 1 and row["telegram_message_id"] == 901
    assert sender.sent[0][0] == "-100" and sender.sent[0][1].startswith("<b>URGENT — case #1</b>")


def test_an_unclaimed_case_is_repaged_and_the_on_call_clinician_gets_one_after_hours(store):
    an_alert(store)
    box = outbox(store, FakeSender(), repage_minutes=0, on_call="4242", after_hours=lambda: True)
    box.schedule_repages()
    repages = [a for a in store.alerts() if a["kind"] == "repage"]
    assert [a["target_chat"] for a in repages] == [None, "4242"]
    assert "RE-PAGE 1" in repages[0]["text"] and store.case(1)["pages"] == 1


def test_a_claimed_case_is_not_repaged(store):
    an_alert(store)
    cases.claim(store, frozenset({"42"}), 1, "42")
    outbox(store, FakeSender(), repage_minutes=0).schedule_repages()
    assert [a for a in store.alerts() if a["kind"] == "repage"] == []


def test_an_alert_recorded_just_before_shutdown_is_delivered_by_the_stop(store):
    """A stop with ``drain`` delivers what is due before the outbox ends, instead of leaving
    the page in the table until the next start (the gateway stops its outbox this way)."""
    async def scenario() -> int:
        sender = FakeSender()
        box = outbox(store, sender, tick=3600.0, repage_minutes=600)  # no tick until the stop
        box.start()
        await asyncio.sleep(0.05)  # the first pass has run and the loop waits
        an_alert(store)  # recorded without waking the outbox
        await box.stop(drain=5.0)
        return len(sender.sent)

    assert asyncio.run(scenario()) == 1
    assert store.undelivered_alerts() == []


def test_a_stop_without_drain_leaves_the_alert_for_the_next_start(store):
    async def scenario() -> int:
        sender = FakeSender()
        box = outbox(store, sender, tick=3600.0, repage_minutes=600)
        box.start()
        await asyncio.sleep(0.05)
        an_alert(store)
        await box.stop()
        return len(sender.sent)

    assert asyncio.run(scenario()) == 0
    assert len(store.undelivered_alerts()) == 1  # in the table: the next start delivers it
