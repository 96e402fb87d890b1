"""``triage backup DEST``: a consistent copy of the case store (and Rasa's SQLite tracker store).

SQLite's online backup API (``sqlite3.Connection.backup``) copies a database while other
processes write to it. The whole copy is one step, so it is one read transaction: it holds
every transaction committed before it began — every message the gateway acknowledged before
the backup started — and nothing half-written. The case store is in WAL mode, so the gateway
keeps writing meanwhile; Rasa's tracker store uses SQLite's rollback journal, so Rasa's writes
wait (within their busy time-out) while its copy is taken.

Each copy is written to a temporary owner-only file in DEST, switched to a self-contained
rollback-journal file, checked (``PRAGMA quick_check``), flushed to disk, and only then renamed
over ``DEST/<name>``: a failed or interrupted backup never replaces a good one. DEST is created
0700; an existing DEST that others can read is refused. Files are 0600 (they hold client text).
"""

from __future__ import annotations

import os
import sqlite3
import stat
from dataclasses import dataclass
from pathlib import Path

from bot.rasa_endpoints import DialogueStores
from bot.settings import Settings

BUSY_TIMEOUT = 30.0  # seconds to wait for a writer's lock before giving up


class BackupError(RuntimeError):
    """The backup could not be made; the message says why. No good backup was replaced."""


@dataclass
class BackedUp:
    source: Path
    copy: Path
    pages: int
    bytes: int

    def to_json(self) -> dict:
        return {"source": str(self.source), "copy": str(self.copy), "pages": self.pages, "bytes": self.bytes}


def sources(settings: Settings) -> list[Path]:
    """The SQLite files to back up: the case store, and the tracker store when it is on SQLite."""
    if settings.db_path == ":memory:":
        raise BackupError("the case store is in memory (TRIAGE_DB=:memory:): nothing to back up")
    files = [Path(settings.db_path).resolve()]
    if not files[0].is_file():
        raise BackupError(f"no case store at {files[0]}")
    tracker = DialogueStores.from_settings(settings).sqlite_path
    if tracker is not None and tracker.is_file() and tracker.stat().st_size > 0:
        files.append(tracker)
    return files


def private_dest(dest: Path) -> Path:
    """DEST as an owner-only folder: created 0700, or an existing one nobody else can read."""
    dest = dest.resolve()
    if not dest.exists():
        missing = [p for p in (*reversed(dest.parents), dest) if not p.exists()]
        for folder in missing:
            folder.mkdir(mode=0o700)
            os.chmod(folder, 0o700)
        return dest
    if not dest.is_dir():
        raise BackupError(f"{dest} is not a folder")
    info = dest.stat()
    if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
        raise BackupError(f"{dest} must be a folder only you can read (chmod 700 {dest}),"
                          " because the backup holds client messages")
    return dest


def backup_file(source: Path, dest: Path) -> BackedUp:
    """Copy one SQLite database into ``dest`` under its own name, atomically."""
    final = dest / source.name
    partial = dest / f".{source.name}.partial-{os.getpid()}"
    try:
        os.unlink(partial)
    except FileNotFoundError:
        pass
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    try:
        # mode=rw: never create the source; a missing file is an error, not an empty backup
        src = sqlite3.connect(f"{source.as_uri()}?mode=rw", uri=True, timeout=BUSY_TIMEOUT)
        try:
            dst = sqlite3.connect(partial, timeout=BUSY_TIMEOUT)
            try:
                src.backup(dst)  # pages=-1: the whole database in one read transaction
                dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
                check = dst.execute("PRAGMA quick_check").fetchone()[0]
                if check != "ok":
                    raise BackupError(f"the copy of {source} failed its check: {check}")
                pages = dst.execute("PRAGMA page_count").fetchone()[0]
            finally:
                dst.close()
        finally:
            src.close()
        for leftover in (Path(f"{partial}-journal"), Path(f"{partial}-wal"), Path(f"{partial}-shm")):
            leftover.unlink(missing_ok=True)
        os.chmod(partial, 0o600)
        with open(partial, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(partial, final)
        dir_fd = os.open(dest, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot back up {source}: {exc}") from exc
    finally:
        for leftover in (partial, Path(f"{partial}-journal")):
            Path(leftover).unlink(missing_ok=True)
    return BackedUp(source, final, pages, final.stat().st_size)


def backup(settings: Settings, dest: Path) -> list[BackedUp]:
    """Back up the case store (and the SQLite tracker store) into the folder ``dest``."""
    files = sources(settings)
    folder = private_dest(Path(dest))
    if any(f.parent == folder for f in files):
        raise BackupError(f"{folder} holds the live database; choose another folder")
    return [backup_file(f, folder) for f in files]
