"""The transcript and case store: SQLite through sqlite-utils, WAL mode, named migrations.

The only code that speaks SQL: every other module calls a named method here. Every inbound
message is written before anything acts on it (ARCHITECTURE.md invariant 5), idempotently
on the channel's opaque ref (for Telegram, the update id). Case changes are appended to
``case_events`` beside the ``cases`` row; what a change is (priority merge, which events
open a case, replay) is decided by ``bot.cases``, not here.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from sqlite_utils import Database

from bot import clock
from bot.files import private_file
from bot.store.migrations import migrations
from bot.terms import OPEN_STATUSES, PRIORITIES


#: SQL ordering of cases by priority, most urgent first (from the vocabulary's order).
URGENT_FIRST = "case priority " + " ".join(
    f"when '{p}' then {rank}" for rank, p in enumerate(reversed(PRIORITIES))) + f" else {len(PRIORITIES)} end"


def _where(conditions: list[tuple[str, Any]]) -> tuple[list[str], list[Any]]:
    """The SQL conditions whose value is given (not None or empty), and their parameters."""
    given = [(clause, value) for clause, value in conditions if value]
    return [clause for clause, _ in given], [value for _, value in given]


def now() -> str:
    """The current UTC time as an ISO 8601 string with microseconds (bot.clock)."""
    return clock.stamp()


@dataclass(frozen=True)
class StoredInbound:
    """The result of storing an inbound message."""

    message_id: int
    duplicate: bool  # True when this ref was stored before: the message is resumed, not handled anew


class StorageError(RuntimeError):
    """The database could not be written; the inbound update must not be acknowledged."""


class Store:
    """Thin, typed operations over the SQLite database."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        try:
            if self.path != ":memory:":
                # The database holds client text: owner-only (SQLite gives its -wal and -shm
                # files the same mode), in a directory created owner-only (bot.files).
                private_file(self.path)
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

    def ensure_conversation(self, conversation_id: str, channel: str, region: str | None) -> None:
        """Create the conversation if it is new."""
        self.db["conversations"].insert(
            {
                "id": conversation_id,
                "channel": channel,
                "region": region,
                "created_at": now(),
                "takeover_by": None,
            },
            ignore=True,
        )

    def store_inbound(
        self,
        conversation_id: str,
        channel: str,
        text: str,
        *,
        region: str | None = None,
        ref: int | None = None,
        kind: str = "text",
    ) -> StoredInbound:
        """Store an inbound message durably; idempotent on the channel's ``ref``."""
        try:
            with self.write():
                if ref is not None:
                    row = self.db.execute(
                        "select id from messages where update_id = ?", [ref]
                    ).fetchone()
                    if row:
                        return StoredInbound(row[0], duplicate=True)
                self.ensure_conversation(conversation_id, channel, region)
                message_id = self._insert_message(conversation_id, "in", kind, text, ref)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot store the inbound message: {exc}") from exc
        return StoredInbound(message_id, duplicate=False)

    def store_outbound(
        self,
        conversation_id: str,
        text: str,
        *,
        kind: str = "reply",
        answers: int | None = None,
    ) -> int:
        """Store a message sent to the client; ``answers`` is the inbound message it answers."""
        return self._insert_message(conversation_id, "out", kind, text, None, answers)

    def _insert_message(
        self,
        conversation_id: str,
        direction: str,
        kind: str,
        text: str,
        ref: int | None,
        answers: int | None = None,
    ) -> int:
        table = self.db["messages"]
        table.insert(
            {
                "conversation_id": conversation_id,
                "direction": direction,
                "kind": kind,
                "text": text,
                "answers": answers,
                "update_id": ref,  # the column keeps its first name: the channel's delivery ref
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

    def set_relay_ref(self, message_id: int, ref: int) -> None:
        """Remember the staff-side copy of a client message relayed during a takeover."""
        self.db["messages"].update(message_id, {"relay_message_id": ref})

    def relayed_conversation(self, ref: int) -> str | None:
        """The conversation whose message was relayed to the staff side as ``ref``, if any."""
        row = next(iter(self.db["messages"].rows_where("relay_message_id = ?", [ref], limit=1)), None)
        return row["conversation_id"] if row else None

    # -- a channel's raw updates (stored before they are acknowledged) -----------------

    def store_raw_updates(self, updates: list[tuple[int, str | None, dict[str, Any]]]) -> None:
        """Write raw updates — (update id, conversation id or None, the update's JSON) — in one
        transaction; an update seen before is left as it is."""
        stamp = now()
        try:
            with self.write():
                self.db["updates"].insert_all(
                    (
                        {"update_id": ref, "conversation_id": conversation_id,
                         "raw": json.dumps(raw, ensure_ascii=False),
                         "received_at": stamp, "status": "pending", "handled_at": None}
                        for ref, conversation_id, raw in updates
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

    def card_sent_for(self, message_id: int) -> bool:
        """True when the hotline card answering this inbound message went out (and was stored)."""
        return bool(
            self.db.execute(
                "select 1 from messages where answers = ? and direction = 'out' and kind = 'card' limit 1",
                [message_id],
            ).fetchone()
        )

    def alerts_for_message(self, message_id: int) -> list[dict[str, Any]]:
        return list(self.db["alerts"].rows_where("message_id = ?", [message_id], order_by="id"))

    # -- cases and alerts -------------------------------------------------------------

    def open_case(self, conversation_id: str) -> dict[str, Any] | None:
        """The conversation's open or claimed case, if any."""
        rows = list(
            self.db["cases"].rows_where(
                f"conversation_id = ? and status in ({', '.join('?' for _ in OPEN_STATUSES)})",
                [conversation_id, *OPEN_STATUSES],
                order_by="id desc",
                limit=1,
            )
        )
        return rows[0] if rows else None

    def case(self, case_id: int) -> dict[str, Any] | None:
        rows = list(self.db["cases"].rows_where("id = ?", [case_id]))
        return rows[0] if rows else None

    def create_case(
        self,
        conversation_id: str,
        fields: dict[str, Any],
        event: str,
        actor: str,
        details: dict[str, Any],
        message_id: int | None,
    ) -> dict[str, Any]:
        """Insert a case row and its first event, in one transaction; return the case."""
        stamp = now()
        with self.write():
            table = self.db["cases"]
            table.insert({"conversation_id": conversation_id, "opened_at": stamp, "updated_at": stamp, **fields})
            case_id = int(table.last_pk)
            self.add_case_event(case_id, event, actor, fields.get("priority"), details, message_id)
        return self.case(case_id)

    def change_case(
        self,
        case_id: int,
        event: str,
        actor: str,
        changes: dict[str, Any],
        details: dict[str, Any],
        message_id: int | None = None,
    ) -> dict[str, Any]:
        """Apply changes to a case and append the event, in one transaction; return the case."""
        with self.write():
            self.db["cases"].update(case_id, {**changes, "updated_at": now()})
            self.add_case_event(case_id, event, actor, self.case(case_id)["priority"], details, message_id)
        return self.case(case_id)

    def add_case_event(
        self,
        case_id: int,
        event: str,
        actor: str,
        priority: str | None,
        details: dict[str, Any],
        message_id: int | None,
    ) -> None:
        """Append one event to a case's history."""
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

    def cases_by_status(self, statuses: Iterable[str]) -> list[dict[str, Any]]:
        """Cases in the given statuses, most urgent first, then oldest first."""
        statuses = list(statuses)
        marks = ", ".join("?" for _ in statuses)
        return list(self.db.query(
            f"select * from cases where status in ({marks}) order by {URGENT_FIRST}, opened_at", statuses))

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

    def case_events(self, case_id: int) -> list[dict[str, Any]]:
        return list(self.db["case_events"].rows_where("case_id = ?", [case_id], order_by="id"))

    def record_alert(
        self,
        case_id: int,
        priority: str,
        categories: list[str],
        text: str,
        message_id: int | None,
        *,
        kind: str | None = None,
        target_chat: str | None = None,
    ) -> int:
        """Put an alert in the outbox (undelivered until ``alert_delivered``).

        ``kind`` is None for an alert (read as "alert") or "repage"; ``target_chat`` None
        means the triage group.
        """
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
                "kind": kind,
                "target_chat": target_chat,
            }
        )
        return int(table.last_pk)

    def alert_delivered(self, alert_id: int, ref: int | None = None) -> None:
        """Record an alert's delivery (one more attempt) and the channel's reference to it."""
        self.db.execute(
            "update alerts set delivered_at = ?, attempts = attempts + 1, telegram_message_id = ? where id = ?",
            [now(), ref, alert_id],
        )

    def alert_failed(self, alert_id: int, error: str, retry_at: str | None = None) -> None:
        """Record a failed attempt and when to try again (None: at the next pass)."""
        self.db.execute(
            "update alerts set attempts = attempts + 1, last_error = ?, next_attempt_at = ? where id = ?",
            [error[:500], retry_at, alert_id],
        )

    def mark_paged(self, case_id: int, pages: int) -> None:
        """Count one more page for an unclaimed case and restart its re-page clock."""
        self.db["cases"].update(case_id, {"pages": pages, "last_paged_at": now()})

    def undelivered_alerts(self) -> list[dict[str, Any]]:
        return list(self.db["alerts"].rows_where("delivered_at is null", order_by="id"))

    def alerts(self, case_id: int | None = None) -> list[dict[str, Any]]:
        if case_id is None:
            return list(self.db["alerts"].rows_where(order_by="id"))
        return list(self.db["alerts"].rows_where("case_id = ?", [case_id], order_by="id"))

    # -- review: case lists, transcripts, labels, retention ----------------------------

    def find_cases(
        self,
        statuses: Iterable[str] | None = None,
        priority: str | None = None,
        category: str | None = None,
        opened_from: str | None = None,
        opened_before: str | None = None,
    ) -> list[dict[str, Any]]:
        """Cases matching every filter given (None: any), most urgent first, then oldest first."""
        where, params = _where([
            ("priority = ?", priority),
            ("exists (select 1 from json_each(cases.categories) where value = ?)", category),
            ("opened_at >= ?", opened_from),
            ("opened_at < ?", opened_before),
        ])
        if statuses is not None:
            statuses = list(statuses)
            where.append(f"status in ({', '.join('?' for _ in statuses)})")
            params += statuses
        sql = "select * from cases" + (" where " + " and ".join(where) if where else "")
        return list(self.db.query(sql + f" order by {URGENT_FIRST}, opened_at, id", params))

    def screenings_of(self, conversation_id: str) -> dict[int, dict[str, Any]]:
        """The stored screening rows of a conversation's messages, by message id."""
        return {row["message_id"]: row for row in self.db.query(
            "select s.* from screenings s join messages m on m.id = s.message_id"
            " where m.conversation_id = ?", [conversation_id])}

    def labels_of(self, conversation_id: str) -> list[dict[str, Any]]:
        """The clinicians' labels on a conversation's messages, oldest first."""
        return list(self.db.query(
            "select l.* from labels l join messages m on m.id = l.message_id"
            " where m.conversation_id = ? order by l.id", [conversation_id]))

    def add_labels(self, case_id: int, actor: str, labels: Iterable[tuple[int, str, str]]) -> None:
        """Label messages of a case: (message id, category or "none", kind) each."""
        self.db["labels"].insert_all(
            {"message_id": message_id, "case_id": case_id, "label": label, "kind": kind,
             "actor": actor, "created_at": now()}
            for message_id, label, kind in labels)

    def labelled_messages(self) -> list[dict[str, Any]]:
        """Every label with its message's text (id, text, label, kind), oldest label first."""
        return list(self.db.query(
            "select m.id, m.text, l.label, l.kind from labels l join messages m on m.id = l.message_id"
            " order by l.id"))

    def purge_resolved(self, cutoff: str, dry_run: bool = False) -> dict[str, int]:
        """Delete cases resolved before ``cutoff`` with every record of their conversations.

        A conversation that still has an open, claimed or recently resolved case keeps all
        its records. Raw updates of a purged conversation go too (they carry its text).
        Returns the counts of cases, conversations and messages (to be) deleted.
        """
        cases = list(self.db.query(
            "select id, conversation_id from cases where status = 'resolved' and resolved_at < ?", [cutoff]))
        keep = {r["conversation_id"] for r in self.db.query(
            "select conversation_id from cases where status != 'resolved' or resolved_at >= ?", [cutoff])}
        drop = sorted({c["conversation_id"] for c in cases} - keep)
        counts = {"cases": len(cases), "conversations": len(drop), "messages": 0}
        marks = ",".join("?" for _ in drop)
        if drop:
            counts["messages"] = self.db.execute(
                f"select count(*) from messages where conversation_id in ({marks})", drop).fetchone()[0]
        if dry_run:
            return counts
        case_ids = [c["id"] for c in cases]
        with self.write():
            if case_ids:
                cm = ",".join("?" for _ in case_ids)
                for table in ("case_events", "alerts", "labels"):
                    self.db.execute(f"delete from {table} where case_id in ({cm})", case_ids)
                self.db.execute(f"delete from cases where id in ({cm})", case_ids)
            if drop:
                msg_ids = f"select id from messages where conversation_id in ({marks})"
                self.db.execute(f"delete from labels where message_id in ({msg_ids})", drop)
                self.db.execute(f"delete from screenings where message_id in ({msg_ids})", drop)
                self.db.execute(f"delete from messages where conversation_id in ({marks})", drop)
                self.db.execute(f"delete from conversations where id in ({marks})", drop)
                self.db.execute(
                    f"delete from updates where status = 'done' and conversation_id in ({marks})", drop)
        return counts

    # -- audit ------------------------------------------------------------------------

    def audit(self, actor: str, action: str, target: str) -> None:
        self.db["audit_log"].insert(
            {"actor": actor, "action": action, "target": target, "created_at": now()}
        )

    def audit_entries(
        self, actor: str | None = None, since: str | None = None, target: str | None = None
    ) -> list[dict[str, Any]]:
        """Audit log entries, oldest first, by one actor, from a time on and/or on one target."""
        where, params = _where([("actor = ?", actor), ("created_at >= ?", since), ("target = ?", target)])
        sql = "select * from audit_log" + (" where " + " and ".join(where) if where else "") + " order by id"
        return list(self.db.query(sql, params))

    # -- the web console: one-time login links and sessions (hashes only) --------------

    def add_web_link(self, token_hash: str, clinician: str, created_at: str, expires_at: str) -> None:
        self.db["web_links"].insert({"token_hash": token_hash, "clinician": clinician, "created_at": created_at,
                                     "expires_at": expires_at, "used_at": None})

    def web_links_since(self, clinician: str, since: str) -> int:
        """How many login links were issued for a clinician from ``since`` on (the rate limit)."""
        return self.db["web_links"].count_where("clinician = ? and created_at >= ?", [clinician, since])

    def spend_web_link(self, token_hash: str, at: str) -> str | None:
        """Mark an unused, unexpired link spent and return its clinician; None if it cannot be used."""
        with self.write():
            row = next(iter(self.db["web_links"].rows_where(
                "token_hash = ? and used_at is null and expires_at > ?", [token_hash, at])), None)
            if row is None:
                return None
            self.db["web_links"].update(token_hash, {"used_at": at})
        return row["clinician"]

    def add_web_session(self, id_hash: str, clinician: str, csrf: str, at: str) -> None:
        self.db["web_sessions"].insert({"id_hash": id_hash, "clinician": clinician, "csrf": csrf,
                                        "created_at": at, "last_seen_at": at, "ended_at": None})

    def web_session(self, id_hash: str) -> dict[str, Any] | None:
        """A session that has not been ended (idleness is judged by the caller's clock)."""
        return next(iter(self.db["web_sessions"].rows_where("id_hash = ? and ended_at is null", [id_hash])), None)

    def touch_web_session(self, id_hash: str, at: str) -> None:
        self.db["web_sessions"].update(id_hash, {"last_seen_at": at})

    def end_web_session(self, id_hash: str, at: str) -> None:
        self.db["web_sessions"].update(id_hash, {"ended_at": at})

    def queue_version(self) -> tuple[int, int]:
        """Changes to the case queue so far (last case event, last case): grows when a case opens or changes."""
        row = self.db.execute(
            "select (select coalesce(max(id), 0) from case_events), (select coalesce(max(id), 0) from cases)"
        ).fetchone()
        return int(row[0]), int(row[1])
