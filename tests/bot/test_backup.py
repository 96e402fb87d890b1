"""`triage backup DEST`: SQLite's online backup, taken while another process writes.

A writer process plays the gateway: it stores each update (the point where Telegram is
acknowledged) and then the message, and notes each acknowledged update_id in a log; it also
writes Rasa-like rows into an SQLite tracker store. A backup is taken under that load; the
restored copy holds every update acknowledged before the backup started.
"""

from __future__ import annotations

import shutil
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path


from bot.cli import main
from bot.store import Store

WRITER = r"""
import sqlite3, sys, time
from pathlib import Path
from bot.store import Store

db, tracker, acks, stop = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
store = Store(db)
events = sqlite3.connect(tracker, timeout=30, isolation_level=None)  # rollback journal, as Rasa's
events.execute("create table if not exists events (id integer primary key, sender_id text, data text)")
log = open(acks, "a", buffering=1)
i = 0
while not stop.exists():
    update = {"update_id": 1000 + i, "message": {"chat": {"id": i % 7}, "text": f"message {i}"}}
    store.store_raw_updates([(1000 + i, f"telegram:{i % 7}", update)])
    log.write(f"ack {1000 + i}\n")          # acknowledged: only after it is stored
    store.store_inbound(f"telegram:{i % 7}", "telegram", f"message {i}", ref=1000 + i)
    log.write(f"msg {1000 + i}\n")
    events.execute("insert into events (sender_id, data) values (?, ?)", (f"telegram:{i % 7}", f"turn {i}"))
    log.write(f"evt {1000 + i}\n")
    i += 1
store.close()
"""


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def read_log(path: Path) -> dict[str, set[int]]:
    seen: dict[str, set[int]] = {"ack": set(), "msg": set(), "evt": set()}
    for line in path.read_text().splitlines():
        kind, _, number = line.partition(" ")
        if number.isdigit():
            seen[kind].add(int(number))
    return seen


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_backup_under_write_load_restores_every_acknowledged_message(tmp_path, monkeypatch, capsys):
    live = tmp_path / "live"
    live.mkdir(mode=0o700)
    db, tracker, acks, stop = live / "triage.db", live / "tracker.db", tmp_path / "acks.log", tmp_path / "stop"
    Store(db).close()
    monkeypatch.setenv("TRIAGE_DB", str(db))
    monkeypatch.delenv("TRIAGE_TRACKER_URL", raising=False)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(db), str(tracker), str(acks), str(stop)],
                              cwd=Path(__file__).resolve().parents[2])
    try:
        wait_for(lambda: acks.exists() and len(read_log(acks)["evt"]) >= 200, 60, "the writer to get going")
        before = read_log(acks)  # acknowledged before the backup started
        dest = tmp_path / "backups" / "tonight"
        assert main(["backup", str(dest), "--json"]) == 0
        during = read_log(acks)
        wait_for(lambda: len(read_log(acks)["ack"]) > len(during["ack"]) + 20, 60, "writes after the backup")
        assert writer.poll() is None  # the writer was never blocked out or broken
    finally:
        stop.touch()
        writer.wait(timeout=60)
    assert writer.returncode == 0
    assert '"copy"' in capsys.readouterr().out

    # owner-only: the folder (and the one created above it) 0700, the copies 0600, nothing else left
    assert mode(dest) == 0o700 and mode(dest.parent) == 0o700
    assert sorted(p.name for p in dest.iterdir()) == ["tracker.db", "triage.db"]
    assert all(mode(p) == 0o600 for p in dest.iterdir())

    # restore: the copies are whole databases on their own (no -wal needed)
    restored = tmp_path / "restored"
    restored.mkdir(mode=0o700)
    for name in ("triage.db", "tracker.db"):
        shutil.copy2(dest / name, restored / name)
    with Store(restored / "triage.db") as store:
        assert store.db.execute("pragma integrity_check").fetchone()[0] == "ok"
        updates = {r[0] for r in store.db.execute("select update_id from updates")}
        messages = {r[0] for r in store.db.execute("select update_id from messages where update_id is not null")}
    assert before["ack"] <= updates, sorted(before["ack"] - updates)[:10]
    assert before["msg"] <= messages, sorted(before["msg"] - messages)[:10]
    assert messages <= updates  # nothing half-written: a message only with its update
    events = sqlite3.connect(restored / "tracker.db")
    try:
        assert events.execute("pragma integrity_check").fetchone()[0] == "ok"
        turns = {int(r[0].split()[1]) + 1000 for r in events.execute("select data from events")}
    finally:
        events.close()
    assert before["evt"] <= turns
    # and the live files were not touched by the backup
    assert len(read_log(acks)["ack"]) > len(before["ack"])


def test_backup_refuses_a_folder_others_can_read_and_replaces_nothing(tmp_path, monkeypatch, capsys):
    db = tmp_path / "live" / "triage.db"
    Store(db).close()
    monkeypatch.setenv("TRIAGE_DB", str(db))
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    assert main(["backup", str(shared)]) == 1
    assert "chmod 700" in capsys.readouterr().err
    assert list(shared.iterdir()) == []
    # the live folder itself is refused too: a backup must be a second copy
    (tmp_path / "live").chmod(0o700)
    assert main(["backup", str(tmp_path / "live")]) == 1


def test_backup_without_a_database_fails_clearly(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TRIAGE_DB", str(tmp_path / "none" / "triage.db"))
    assert main(["backup", str(tmp_path / "dest")]) == 1
    assert "no case store" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()
