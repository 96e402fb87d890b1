"""The store: WAL, named migrations, idempotent ingest, append-only case history."""

from __future__ import annotations

import json
import os
import sqlite3
import sys

import pytest

from bot.store import Store, StorageError, migrations


def test_file_database_uses_wal_and_foreign_keys(tmp_path):
    store = Store(tmp_path / "t.db")
    assert store.db.execute("pragma journal_mode").fetchone()[0] == "wal"
    assert store.db.execute("pragma foreign_keys").fetchone()[0] == 1
    for table in ("conversations", "messages", "screenings", "cases", "case_events", "alerts", "audit_log"):
        assert store.db[table].exists()


def test_migrations_are_named_and_applied_once(tmp_path):
    path = tmp_path / "t.db"
    Store(path).close()
    store = Store(path)  # re-opening applies nothing new
    assert [m.name for m in migrations.applied(store.db)] == ["m001_initial", "m002_telegram", "m003_review", "m004_tiers",
                                                             "m005_updates_by_conversation", "m006_card_answers",
                                                             "m007_web_console"]
    assert migrations.pending(store.db) == []


def test_inbound_is_idempotent_on_update_id(store):
    first = store.store_inbound("telegram:1", "telegram", "hi", ref=7)
    again = store.store_inbound("telegram:1", "telegram", "hi", ref=7)
    assert store.conversation("telegram:1") is not None and not first.duplicate
    assert again.duplicate and again.message_id == first.message_id
    assert len(store.messages("telegram:1")) == 1


def test_unwritable_database_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StorageError, match="cannot open the database"):
        Store(blocker / "t.db")


def test_locked_database_refuses_to_store(tmp_path):
    path = tmp_path / "t.db"
    store = Store(path)
    store.db.conn.execute("pragma busy_timeout = 100")
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("begin exclusive")
    try:
        with pytest.raises(StorageError):
            store.store_inbound("c:2", "console", "hello")
    finally:
        other.execute("rollback")
        other.close()


def test_full_disk_is_a_clear_storage_error(tmp_path):
    store = Store(tmp_path / "t.db")
    pages = store.db.execute("pragma page_count").fetchone()[0]
    store.db.execute(f"pragma max_page_count = {pages + 1}")  # the file cannot grow: a full disk
    with pytest.raises(StorageError, match="full"):
        for i in range(200):
            store.store_inbound("c:1", "console", "x" * 2000, ref=i)


def test_a_reader_can_open_the_database_while_another_process_writes(tmp_path):
    import multiprocessing

    path = tmp_path / "busy.db"
    Store(path).close()
    writer = multiprocessing.get_context("spawn").Process(target=_write_a_lot, args=(str(path),))
    writer.start()
    try:
        for _ in range(60):  # what `triage cases` does while the gateway runs
            with Store(path) as store:
                store.db.execute("select count(*) from messages").fetchone()
                store.audit("cli:test", "list", "cases")
    finally:
        writer.join(60)
    assert writer.exitcode == 0


def _write_a_lot(path: str) -> None:
    with Store(path) as store:
        for i in range(300):
            store.store_inbound(f"c:{i % 7}", "console", "hello", ref=i)


def test_the_database_its_wal_and_shm_and_the_server_logs_are_owner_only_in_owner_only_dirs(tmp_path):
    tmp_path.chmod(0o755)
    old = os.umask(0o022)  # the usual umask: files 0644 and directories 0755 unless told
    try:
        path = tmp_path / "clinic" / "data" / "private.db"
        with Store(path) as store:
            store.store_inbound("c:1", "console", "something private")
            for name in (path, path.with_name("private.db-wal"), path.with_name("private.db-shm")):
                assert name.stat().st_mode & 0o777 == 0o600, name
        for directory in (tmp_path / "clinic", tmp_path / "clinic" / "data"):
            assert directory.stat().st_mode & 0o777 == 0o700, directory
        assert tmp_path.stat().st_mode & 0o777 == 0o755  # a directory that existed is left alone
        # an existing database of ours, once readable by all, is tightened
        loose = tmp_path / "loose.db"
        loose.touch(mode=0o644)
        Store(loose).close()
        assert loose.stat().st_mode & 0o777 == 0o600
        # the servers' logs (bot.servers.Child) go through the same helper
        from bot.servers import Child

        log_path = tmp_path / "logs" / "rasa.log"
        child = Child("probe", [sys.executable, "-c", "print('started')"], "http://127.0.0.1:1/", log_path)
        child.start(dict(os.environ))
        child.process.wait(30)
        assert log_path.stat().st_mode & 0o777 == 0o600
        assert log_path.parent.stat().st_mode & 0o777 == 0o700
    finally:
        os.umask(old)


def test_m005_names_the_conversation_of_updates_stored_before_it(tmp_path):
    import sqlite3 as sqlite

    from sqlite_utils import Database

    path = tmp_path / "old.db"
    conn = sqlite.connect(path)
    db = Database(conn)
    migrations.apply(db, stop_before="m005_updates_by_conversation")
    raw = {"update_id": 3, "edited_message": {"chat": {"id": 55}, "text": "x"}}
    db["updates"].insert({"update_id": 3, "raw": json.dumps(raw), "received_at": "t", "status": "done"})
    conn.close()
    with Store(path) as store:
        assert [r["conversation_id"] for r in store.db["updates"].rows] == ["telegram:55"]
        assert "telegram_chat_id" not in store.db["conversations"].columns_dict
