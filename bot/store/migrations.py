"""The named schema migrations (sqlite-utils ``Migrations``), applied in order by ``Store``.

A migration is never edited once released: a schema change is a new ``m00N_…`` function.
"""

from __future__ import annotations

import sqlite3

from sqlite_utils import Database, Migrations

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
            "kind": str,  # in: text | edit | caption | other; out: reply | card | fallback | notice | clinician
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
            "event": str,  # opened | review | raised | signal | safety_plan | claimed | takeover | release | note | annotated | resolved
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
    db["alerts"].add_column("kind", str)  # None (an alert) | "repage"
    db["alerts"].add_column("next_attempt_at", str)
    db["alerts"].add_column("telegram_message_id", int)
    db["alerts"].add_column("target_chat", str)  # None: the triage group
    db["cases"].add_column("last_paged_at", str)
    db["cases"].add_column("pages", int, not_null_default=0)
    db["conversations"].add_column("telegram_chat_id", int)  # never written; dropped by m005
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


@migrations()
def m005_updates_by_conversation(db: Database) -> None:
    """Raw updates name their conversation, so retention finds them without reading the JSON;
    ``conversations.telegram_chat_id`` (never written: the id is in the conversation id) goes."""
    db["updates"].add_column("conversation_id", str)
    db.execute(
        "update updates set conversation_id = 'telegram:' || coalesce("
        "json_extract(raw, '$.message.chat.id'), json_extract(raw, '$.edited_message.chat.id'))"
    )
    db["updates"].create_index(["conversation_id"])
    if sqlite3.sqlite_version_info >= (3, 35):  # older SQLite has no DROP COLUMN: the column stays, unused
        db.execute("alter table conversations drop column telegram_chat_id")


@migrations()
def m006_card_answers(db: Database) -> None:
    """An outbound message records the inbound message it answers (``answers``): a hotline card
    is matched to its own positive screen, not found by id order — in a burst every inbound
    row is stored before the first card goes out (issue 12)."""
    db["messages"].add_column("answers", int)
    # earlier outbound messages answer the last inbound message before them
    db.execute(
        "update messages set answers = (select max(m.id) from messages m where m.conversation_id = "
        "messages.conversation_id and m.direction = 'in' and m.id < messages.id) where direction = 'out'"
    )
    db["messages"].create_index(["answers"])


@migrations()
def m007_web_console(db: Database) -> None:
    """The clinicians' web console (issue 13): one-time login links and sessions.

    Only a SHA-256 of a link's token or a session's id is kept, so the database never holds
    a live credential. ``used_at`` marks a link spent; ``ended_at`` a session logged out.
    """
    db["web_links"].create(
        {"token_hash": str, "clinician": str, "created_at": str, "expires_at": str, "used_at": str},
        pk="token_hash",
    )
    db["web_links"].create_index(["clinician", "created_at"])
    db["web_sessions"].create(
        {"id_hash": str, "clinician": str, "csrf": str, "created_at": str, "last_seen_at": str,
         "ended_at": str},
        pk="id_hash",
    )
