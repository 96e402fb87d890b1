"""The transcript and case store: SQLite through sqlite-utils, WAL mode, named migrations.

Every inbound update is written here before anything acts on it (ARCHITECTURE.md
invariant 5), idempotently on Telegram's ``update_id``. Case state changes are appended to
``case_events`` so the history can be replayed; ``cases`` holds the current view.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from sqlite_utils import Database, Migrations

PRIORITY_RANK = {"routine": 0, "urgent": 1, "imminent": 2}
OPEN_STATUSES = ("open", "claimed")

migrations = Migrations("triage")


@migrations()
def m001_initial(db: Database) -> None:
    db["conversations"].create(
        {
            "id": str,  # channel-qualified: "telegram:12345", "console:alice"
            "channel": str,
            "region": str,
            "created_at": str,
            "takeover_by": str,
        },
        pk="id",
    )
    db["messages"].create(
        {
            "id": int,
            "conversation_id": str,
            "direction": str,  # "in" | "out"
            "kind": str,  # "text" | "edit" | "card" | "reply" | "fallback" | "other"
            "text": str,
            "update_id": int,
            "telegram_message_id": int,
            "created_at": str,
        },
        pk="id",
        foreign_keys=[("conversation_id", "conversations", "id")],
    )
    db["messages"].create_index(["update_id"], unique=True)
    db["messages"].create_index(["conversation_id", "id"])
    db["screenings"].create(
        {
            "id": int,
            "message_id": int,
            "escalate": int,
            "priority": str,
            "categories": str,  # JSON list
            "signals": str,  # JSON list
            "created_at": str,
        },
        pk="id",
        foreign_keys=[("message_id", "messages", "id")],
    )
    db["screenings"].create_index(["message_id"])
    db["cases"].create(
        {
            "id": int,
            "conversation_id": str,
            "status": str,  # open -> claimed -> resolved
            "priority": str,
            "categories": str,  # JSON list
            "duty_to_protect": int,
            "opened_at": str,
            "updated_at": str,
            "claimed_by": str,
            "claimed_at": str,
            "resolved_by": str,
            "resolved_at": str,
            "outcome": str,
        },
        pk="id",
        foreign_keys=[("conversation_id", "conversations", "id")],
    )
    db["cases"].create_index(["conversation_id", "status"])
    db["cases"].create_index(["status", "priority"])
    db["case_events"].create(
        {
            "id": int,
            "case_id": int,
            "event": str,  # opened | raised | alerted | claimed | resolved | note ...
            "actor": str,  # "bot" or a clinician id
            "priority": str,
            "details": str,  # JSON object
            "message_id": int,
            "created_at": str,
        },
        pk="id",
        foreign_keys=[("case_id", "cases", "id")],
    )
    db["case_events"].create_index(["case_id", "id"])
    db["alerts"].create(
        {
            "id": int,
            "case_id": int,
            "message_id": int,
            "priority": str,
            "categories": str,  # JSON list
            "text": str,
            "created_at": str,
            "attempts": int,
            "last_error": str,
            "delivered_at": str,
        },
        pk="id",
        foreign_keys=[("case_id", "cases", "id")],
        defaults={"attempts": 0},
    )
    db["alerts"].create_index(["delivered_at"])
    db["audit_log"].create(
        {"id": int, "actor": str, "action": str, "target": str, "created_at": str},
        pk="id",
    )


@migrations()
def m002_telegram(db: Database) -> None:
    """Raw updates stored before they are acknowledged; alert delivery and re-page state."""
    db["updates"].create(
        {
            "update_id": int,
            "raw": str,  # the update's JSON, as Telegram sent it
            "received_at": str,
            "status": str,  # "pending" until handled, then "done"
            "handled_at": str,
        },
        pk="update_id",
    )
    db["updates"].create_index(["status"])
    db["alerts"].add_column("kind", str)  # "alert" | "repage" | "notice"
    db["alerts"].add_column("next_attempt_at", str)
    db["alerts"].add_column("telegram_message_id", int)
    db["alerts"].add_column("target_chat", str)  # None: the triage group
    db["cases"].add_column("last_paged_at", str)
    db["cases"].add_column("pages", int, not_null_default=0)
    db["conversations"].add_column("telegram_chat_id", int)
    db["messages"].add_column("relay_message_id", int)  # the staff-side copy during takeover


@migrations()
def m003_review(db: Database) -> None:
    """Clinicians' judgements: case annotations and labels on single messages."""
    db["labels"].create(
        {
            "id": int,
            "message_id": int,
            "case_id": int,
            "label": str,  # one of the screening categories, or "none"
            "kind": str,  # "missed_risk" | "false_alarm" | "confirmed"
            "actor": str,
            "created_at": str,
        },
        pk="id",
        foreign_keys=[("message_id", "messages", "id")],
    )
    db["labels"].create_index(["message_id"])
    db["audit_log"].create_index(["created_at"])
    db["cases"].create_index(["opened_at"])


@migrations()
def m004_tiers(db: Database) -> None:
    """The screen's tiers (issue 10): page / ask / none, the model's scores, the open question.

    ``cases.paged`` is 0 for a case opened by the *ask* tier alone (a non-paging entry on the
    queue: never re-paged) and becomes 1 when anything pages for it.
    ``conversations.ask_state`` holds the direct question waiting for the client's answer.
    """
    db["screenings"].add_column("tier", str)
    db["screenings"].add_column("scores", str)  # JSON: "risk" and per category
    db["screenings"].add_column("ask_categories", str)  # JSON list
    db["cases"].add_column("paged", int, not_null_default=1)
    db["conversations"].add_column("ask_state", str)


def now() -> str:
    """The current UTC time as an ISO 8601 string with microseconds."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class StoredInbound:
    """The result of storing an inbound message."""

    message_id: int
    duplicate: bool  # True when this update_id was stored before (already handled)
    first_contact: bool


class StorageError(RuntimeError):
    """The database could not be written; the inbound update must not be acknowledged."""


class Store:
    """Thin, typed operations over the SQLite database."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=10, isolation_level=None)
            self.db = Database(conn)
            self.db.execute("PRAGMA foreign_keys = ON")
            if self.path != ":memory:":
                if self.db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    self.db.enable_wal()
                self.db.execute("PRAGMA synchronous = NORMAL")
            # Opening a database another process is writing must not write: migrate only when
            # something is pending (the gateway and `triage cases` share one file).
            if migrations.pending(self.db):
                with self.write():
                    migrations.apply(self.db)
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"cannot open the database at {self.path}: {exc}") from exc

    def close(self) -> None:
        self.db.close()

    @contextlib.contextmanager
    def write(self) -> Iterator[Database]:
        """A write transaction that takes the write lock up front (BEGIN IMMEDIATE).

        A deferred transaction that reads and then writes can fail at once with "database is
        locked" when another process wrote in between (WAL snapshots); taking the lock first
        makes it wait for the busy time-out instead. Nested use becomes a savepoint.
        """
        if self.db.conn.in_transaction:
            with self.db.atomic():
                yield self.db
            return
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            if self.db.conn.in_transaction:
                self.db.execute("ROLLBACK")
            raise
        else:
            self.db.execute("COMMIT")

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- conversations and messages ------------------------------------------------------

    def ensure_conversation(self, conversation_id: str, channel: str, region: str | None) -> bool:
        """Create the conversation if new; return True when it was created (first contact)."""
        table = self.db["conversations"]
        before = self.db.execute(
            "select 1 from conversations where id = ?", [conversation_id]
        ).fetchone()
        if before:
            return False
        table.insert(
            {
                "id": conversation_id,
                "channel": channel,
                "region": region,
                "created_at": now(),
                "takeover_by": None,
            },
            ignore=True,
        )
        return True

    def store_inbound(
        self,
        conversation_id: str,
        channel: str,
        text: str,
        *,
        region: str | None = None,
        update_id: int | None = None,
        telegram_message_id: int | None = None,
        kind: str = "text",
    ) -> StoredInbound:
        """Store an inbound message durably; idempotent on ``update_id``."""
        try:
            with self.write():
                if update_id is not None:
                    row = self.db.execute(
                        "select id from messages where update_id = ?", [update_id]
                    ).fetchone()
                    if row:
                        return StoredInbound(row[0], duplicate=True, first_contact=False)
                first = self.ensure_conversation(conversation_id, channel, region)
                message_id = self._insert_message(
                    conversation_id, "in", kind, text, update_id, telegram_message_id
                )
        except sqlite3.Error as exc:
            raise StorageError(f"cannot store the inbound message: {exc}") from exc
        return StoredInbound(message_id, duplicate=False, first_contact=first)

    def store_outbound(
        self,
        conversation_id: str,
        text: str,
        *,
        kind: str = "reply",
        telegram_message_id: int | None = None,
    ) -> int:
        """Store a message sent to the client."""
        return self._insert_message(conversation_id, "out", kind, text, None, telegram_message_id)

    def _insert_message(
        self,
        conversation_id: str,
        direction: str,
        kind: str,
        text: str,
        update_id: int | None,
        telegram_message_id: int | None,
    ) -> int:
        table = self.db["messages"]
        table.insert(
            {
                "conversation_id": conversation_id,
                "direction": direction,
                "kind": kind,
                "text": text,
                "update_id": update_id,
                "telegram_message_id": telegram_message_id,
                "created_at": now(),
            }
        )
        return int(table.last_pk)

    def messages(self, conversation_id: str) -> list[dict[str, Any]]:
        """Every message of a conversation, oldest first."""
        return list(
            self.db["messages"].rows_where(
                "conversation_id = ?", [conversation_id], order_by="id"
            )
        )

    def message_text(self, message_id: int) -> str | None:
        rows = list(self.db["messages"].rows_where("id = ?", [message_id], select="text"))
        return rows[0]["text"] if rows else None

    def conversation(self, conversation_id: str) -> dict[str, Any] | None:
        rows = list(self.db["conversations"].rows_where("id = ?", [conversation_id]))
        return rows[0] if rows else None

    # -- raw Telegram updates (stored before they are acknowledged) ---------------------

    def store_raw_updates(self, updates: list[dict[str, Any]]) -> None:
        """Write raw updates in one transaction; an update seen before is left as it is."""
        stamp = now()
        try:
            with self.write():
                self.db["updates"].insert_all(
                    (
                        {"update_id": u["update_id"], "raw": json.dumps(u, ensure_ascii=False),
                         "received_at": stamp, "status": "pending", "handled_at": None}
                        for u in updates
                    ),
                    ignore=True,
                )
        except sqlite3.Error as exc:
            raise StorageError(f"cannot store updates: {exc}") from exc

    def update_done(self, update_id: int) -> bool:
        return bool(self.db.execute(
            "select 1 from updates where update_id = ? and status = 'done'", [update_id]).fetchone())

    def mark_update_done(self, update_id: int) -> None:
        self.db.execute(
            "update updates set status = 'done', handled_at = ? where update_id = ?", [now(), update_id]
        )

    def pending_updates(self) -> list[dict[str, Any]]:
        return list(self.db["updates"].rows_where("status = 'pending'", order_by="update_id"))

    # -- screening --------------------------------------------------------------------

    def store_screening(self, message_id: int, result: dict[str, Any]) -> int:
        """Store a screening result (the contract's JSON object) for an inbound message."""
        table = self.db["screenings"]
        table.insert(
            {
                "message_id": message_id,
                "escalate": int(bool(result.get("escalate"))),
                "priority": result.get("priority"),
                "categories": json.dumps(result.get("categories", [])),
                "signals": json.dumps(result.get("signals", []), ensure_ascii=False),
                "tier": result.get("tier") or ("page" if result.get("escalate") else "none"),
                "scores": json.dumps(result["scores"]) if result.get("scores") is not None else None,
                "ask_categories": json.dumps(result.get("ask_categories") or []),
                "created_at": now(),
            }
        )
        return int(table.last_pk)

    def screening_for(self, message_id: int) -> dict[str, Any] | None:
        """The stored screening result of a message, in the contract's shape, if any."""
        rows = list(self.db["screenings"].rows_where("message_id = ?", [message_id], limit=1))
        if not rows:
            return None
        row = rows[0]
        return {
            "escalate": bool(row["escalate"]),
            "categories": json.loads(row["categories"]),
            "signals": json.loads(row["signals"]),
            "priority": row["priority"],
            "tier": row["tier"] or ("page" if row["escalate"] else "none"),
            "ask_categories": json.loads(row["ask_categories"] or "[]"),
            **({"scores": json.loads(row["scores"])} if row["scores"] else {}),
        }

    def card_sent_after(self, conversation_id: str, message_id: int) -> bool:
        """True when a hotline card went out in this conversation after the message."""
        return bool(
            self.db.execute(
                "select 1 from messages where conversation_id = ? and id > ? and direction = 'out'"
                " and kind = 'card' limit 1",
                [conversation_id, message_id],
            ).fetchone()
        )

    def alerts_for_message(self, message_id: int) -> list[dict[str, Any]]:
        return list(self.db["alerts"].rows_where("message_id = ?", [message_id], order_by="id"))

    # -- cases and alerts -------------------------------------------------------------

    def open_case(self, conversation_id: str) -> dict[str, Any] | None:
        """The conversation's open or claimed case, if any."""
        rows = list(
            self.db["cases"].rows_where(
                "conversation_id = ? and status in ('open', 'claimed')",
                [conversation_id],
                order_by="id desc",
                limit=1,
            )
        )
        return rows[0] if rows else None

    def case(self, case_id: int) -> dict[str, Any] | None:
        rows = list(self.db["cases"].rows_where("id = ?", [case_id]))
        return rows[0] if rows else None

    def open_or_raise_case(
        self,
        conversation_id: str,
        priority: str,
        categories: Iterable[str],
        *,
        details: dict[str, Any],
        message_id: int | None,
        duty_to_protect: bool = False,
        actor: str = "bot",
        page: bool = True,
    ) -> tuple[dict[str, Any], bool]:
        """Open a case, or raise the open one; never lower a priority. Return (case, opened).

        ``page=False`` records a non-paging entry (the screen's *ask* tier): the case is on
        the queue but is not re-paged until something pages for it.
        """
        if priority not in PRIORITY_RANK:
            raise ValueError(f"unknown priority {priority!r}")
        stamp = now()
        with self.write():
            current = self.open_case(conversation_id)
            if current is None:
                table = self.db["cases"]
                table.insert(
                    {
                        "conversation_id": conversation_id,
                        "status": "open",
                        "priority": priority,
                        "categories": json.dumps(sorted(set(categories))),
                        "duty_to_protect": int(duty_to_protect),
                        "opened_at": stamp,
                        "updated_at": stamp,
                        "paged": int(page),
                    }
                )
                case_id = int(table.last_pk)
                self._case_event(case_id, "opened" if page else "review", actor, priority, details, message_id)
                return self.case(case_id), True
            case_id = current["id"]
            old_rank = PRIORITY_RANK[current["priority"]]
            new_priority = priority if PRIORITY_RANK[priority] > old_rank else current["priority"]
            merged = sorted(set(json.loads(current["categories"] or "[]")) | set(categories))
            changes = {
                "priority": new_priority,
                "categories": json.dumps(merged),
                "duty_to_protect": int(bool(current["duty_to_protect"]) or duty_to_protect),
                "updated_at": stamp,
                "paged": int(bool(current["paged"]) or page),
            }
            if page and not current["paged"]:  # the re-page clock starts at the first page
                changes["last_paged_at"] = stamp
            self.db["cases"].update(case_id, changes)
            event = "raised" if new_priority != current["priority"] else "signal" if page else "review"
            self._case_event(case_id, event, actor, new_priority, details, message_id)
            return self.case(case_id), False

    def _case_event(
        self,
        case_id: int,
        event: str,
        actor: str,
        priority: str | None,
        details: dict[str, Any],
        message_id: int | None,
    ) -> None:
        self.db["case_events"].insert(
            {
                "case_id": case_id,
                "event": event,
                "actor": actor,
                "priority": priority,
                "details": json.dumps(details, ensure_ascii=False),
                "message_id": message_id,
                "created_at": now(),
            }
        )

    def save_safety_plan(
        self, conversation_id: str, plan: dict[str, Any], message_id: int | None
    ) -> int:
        """Save a Stanley-Brown safety plan on the conversation's case (opening one if none)."""
        with self.write():
            case = self.open_case(conversation_id)
            if case is None:
                case, _ = self.open_or_raise_case(
                    conversation_id, "routine", [], details={"reason": "safety plan saved"},
                    message_id=message_id,
                )
            self._case_event(case["id"], "safety_plan", "bot", None, plan, message_id)
        return int(case["id"])

    def transition_case(
        self, case_id: int, event: str, actor: str, changes: dict[str, Any], details: dict[str, Any]
    ) -> dict[str, Any]:
        """Apply a clinician's change to a case and append the event, in one transaction."""
        with self.write():
            self.db["cases"].update(case_id, {**changes, "updated_at": now()})
            self._case_event(case_id, event, actor, self.case(case_id)["priority"], details, None)
        return self.case(case_id)

    def cases_by_status(self, statuses: Iterable[str]) -> list[dict[str, Any]]:
        """Cases in the given statuses, most urgent first, then oldest first."""
        statuses = list(statuses)
        marks = ", ".join("?" for _ in statuses)
        return list(
            self.db.query(
                f"""select * from cases where status in ({marks})
                order by case priority when 'imminent' then 0 when 'urgent' then 1 else 2 end,
                opened_at""",
                statuses,
            )
        )

    def paged_open_cases(self) -> list[dict[str, Any]]:
        """Open (unclaimed) cases that something paged for: the ones the outbox re-pages."""
        return [c for c in self.cases_by_status(["open"]) if c["paged"]]

    def ask_state(self, conversation_id: str) -> dict[str, Any] | None:
        """The direct question waiting for this conversation's answer, if any."""
        row = self.conversation(conversation_id)
        return json.loads(row["ask_state"]) if row and row.get("ask_state") else None

    def pending_asks(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(conversation, ask state) for every direct question still waiting for its answer."""
        rows = self.db["conversations"].rows_where("ask_state is not null", order_by="id")
        return [(row, json.loads(row["ask_state"])) for row in rows]

    def set_ask_state(self, conversation_id: str, state: dict[str, Any] | None) -> None:
        self.db["conversations"].update(
            conversation_id, {"ask_state": json.dumps(state) if state is not None else None})

    def set_takeover(self, conversation_id: str, clinician: str | None) -> None:
        self.db["conversations"].update(conversation_id, {"takeover_by": clinician})

    def replay_case(self, case_id: int) -> dict[str, Any]:
        """Rebuild a case's state from its event history alone (the audit of the cases row)."""
        state: dict[str, Any] = {"status": None, "priority": None, "claimed_by": None,
                                 "resolved_by": None, "outcome": None, "categories": set()}
        for event in self.case_events(case_id):
            details = json.loads(event["details"] or "{}")
            kind = event["event"]
            if kind in ("opened", "review") and state["status"] is None:
                state["status"] = "open"
            if kind in ("opened", "raised", "signal", "review") and event["priority"]:
                state["priority"] = event["priority"]
                state["categories"] |= set(details.get("categories") or [])
            elif kind in ("claimed", "takeover") and state["status"] == "open":
                state.update(status="claimed", claimed_by=event["actor"])
            elif kind == "resolved":
                state.update(status="resolved", resolved_by=event["actor"], outcome=details.get("outcome"))
                state["claimed_by"] = state["claimed_by"] or event["actor"]
        state["categories"] = sorted(state["categories"])
        return state

    def case_events(self, case_id: int) -> list[dict[str, Any]]:
        return list(self.db["case_events"].rows_where("case_id = ?", [case_id], order_by="id"))

    def record_alert(
        self,
        case_id: int,
        priority: str,
        categories: list[str],
        text: str,
        message_id: int | None,
    ) -> int:
        """Put an alert in the outbox (undelivered until ``mark_alert_delivered``)."""
        table = self.db["alerts"]
        table.insert(
            {
                "case_id": case_id,
                "message_id": message_id,
                "priority": priority,
                "categories": json.dumps(categories),
                "text": text,
                "created_at": now(),
                "attempts": 0,
            }
        )
        return int(table.last_pk)

    def mark_alert_delivered(self, alert_id: int) -> None:
        self.db.execute(
            "update alerts set delivered_at = ?, attempts = attempts + 1 where id = ?",
            [now(), alert_id],
        )

    def mark_alert_failed(self, alert_id: int, error: str) -> None:
        self.db.execute(
            "update alerts set attempts = attempts + 1, last_error = ? where id = ?",
            [error[:500], alert_id],
        )

    def undelivered_alerts(self) -> list[dict[str, Any]]:
        return list(self.db["alerts"].rows_where("delivered_at is null", order_by="id"))

    def alerts(self, case_id: int | None = None) -> list[dict[str, Any]]:
        if case_id is None:
            return list(self.db["alerts"].rows_where(order_by="id"))
        return list(self.db["alerts"].rows_where("case_id = ?", [case_id], order_by="id"))

    # -- audit ------------------------------------------------------------------------

    def audit(self, actor: str, action: str, target: str) -> None:
        self.db["audit_log"].insert(
            {"actor": actor, "action": action, "target": target, "created_at": now()}
        )
