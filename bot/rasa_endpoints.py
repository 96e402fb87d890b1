"""Where Rasa keeps dialogue state, and how it scales out: a per-run endpoints file.

Rasa's own engines, configured from the settings (ARCHITECTURE.md "Scale path"):

* **Tracker store** — Rasa's ``SQLTrackerStore``. By default an SQLite file beside the case
  store (``<directory of TRIAGE_DB>/tracker.db``), created owner-only (0600; SQLite gives its
  journal the same mode). ``TRIAGE_TRACKER_URL`` (an SQLAlchemy URL, e.g.
  ``postgresql://rasa@db.internal:5432/rasa``) puts it elsewhere. A conversation then survives a
  restart of the servers, or a ``kill -9`` of Rasa: Rasa saves the tracker after every turn.
* **Lock store** — with ``TRIAGE_LOCK_URL`` (``redis://host:port/db``) Rasa's
  ``RedisLockStore`` (its ticket steps made atomic: ``bot/rasa_lock_store.py``), so one
  conversation's turns never run at once, whichever worker gets them.
* **Workers** — ``TRIAGE_RASA_WORKERS=N`` runs N Sanic workers on one port (Rasa reads
  ``SANIC_WORKERS`` and honours it only with a lock store that is not in memory:
  ``rasa.core.utils.number_of_sanic_workers``).

The endpoints file is written per run into a fresh owner-only directory and removed when the
stack stops. It starts from ``config/endpoints.yml`` (the action server) and adds the stores.
Secrets never reach the file or a command line: the tracker URL and the Redis password reach
the Rasa process through its environment (readable only by its owner), and Rasa substitutes
``${...}`` when it reads the file.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

import yaml

from bot import CONFIG_DIR

if TYPE_CHECKING:
    from bot.settings import Settings

TRACKER_FILE = "tracker.db"
TRACKER_VAR = "TRIAGE_TRACKER_URL"
LOCK_PASSWORD_VAR = "TRIAGE_LOCK_PASSWORD"
WORKERS_VAR = "SANIC_WORKERS"  # rasa.constants.ENV_SANIC_WORKERS
#: Rasa's RedisLockStore with atomic ticket operations (bot/rasa_lock_store.py explains why)
LOCK_STORE_CLASS = "bot.rasa_lock_store.AtomicRedisLockStore"


class EndpointsError(ValueError):
    """The tracker or lock store settings cannot be used; the message never holds a password."""


@dataclass(frozen=True)
class DialogueStores:
    """Rasa's tracker store, lock store and number of workers for one stack."""

    tracker_url: str | None = None  # SQLAlchemy URL; None keeps the trackers in memory
    lock_url: str | None = None  # redis:// URL; None keeps the locks in memory (one worker)
    workers: int = 1

    def __repr__(self) -> str:  # the URLs may hold passwords
        return (f"DialogueStores(tracker={redact(self.tracker_url)}, lock={redact(self.lock_url)},"
                f" workers={self.workers})")

    @classmethod
    def from_settings(cls, settings: "Settings") -> "DialogueStores":
        """The stores the settings ask for: SQLite beside the database unless a URL is set."""
        tracker = settings.tracker_url
        if tracker is None and settings.db_path != ":memory:":
            tracker = sqlite_url(Path(settings.db_path).resolve().parent / TRACKER_FILE)
        return cls(tracker, settings.lock_url, settings.rasa_workers)

    @property
    def sqlite_path(self) -> Path | None:
        """The tracker's SQLite file, or None when the trackers live elsewhere."""
        if not self.tracker_url or not self.tracker_url.startswith("sqlite"):
            return None
        from sqlalchemy.engine import make_url

        database = make_url(self.tracker_url).database
        return Path(database).resolve() if database and database != ":memory:" else None


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{Path(path).resolve()}"


def redact(url: str | None) -> str | None:
    """A URL with any password replaced by ***, for messages and logs."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def private_file(path: Path) -> None:
    """Create ``path`` (and missing parent folders) owner-only: folders 0700, the file 0600."""
    missing = [p for p in reversed(path.parents) if not p.exists()]
    for folder in missing:
        folder.mkdir(mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)


def lock_store_config(lock_url: str) -> tuple[dict, dict[str, str]]:
    """Rasa's ``lock_store`` section for a redis URL, and the environment its password needs."""
    parts = urlsplit(lock_url)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise EndpointsError("the lock store URL must look like redis://host:port/db")
    try:
        port = parts.port or 6379
        db = int(parts.path.strip("/") or 1)
    except ValueError as exc:
        raise EndpointsError("the lock store URL has a bad port or database number") from exc
    config: dict = {"type": LOCK_STORE_CLASS, "url": parts.hostname, "port": port, "db": db}
    env: dict[str, str] = {}
    if parts.username:
        config["username"] = unquote(parts.username)
    if parts.password:
        config["password"] = "${%s}" % LOCK_PASSWORD_VAR
        env[LOCK_PASSWORD_VAR] = unquote(parts.password)
    if parts.scheme == "rediss":
        config["use_ssl"] = True
    return config, env


def write_endpoints(stores: DialogueStores, env: dict[str, str]) -> Path:
    """Write this run's endpoints file; add what Rasa needs to ``env`` (the child's environment).

    Returns the file's path; ``remove_endpoints`` deletes it and its folder.
    """
    endpoints = yaml.safe_load((CONFIG_DIR / "endpoints.yml").read_text(encoding="utf-8")) or {}
    if stores.tracker_url:
        if stores.sqlite_path is not None:
            private_file(stores.sqlite_path)
            url = sqlite_url(stores.sqlite_path)  # absolute: Rasa runs in the project folder
        else:
            url = stores.tracker_url
        endpoints["tracker_store"] = {"type": "SQL", "url": "${%s}" % TRACKER_VAR}
        env[TRACKER_VAR] = url
    if stores.lock_url:
        endpoints["lock_store"], extra = lock_store_config(stores.lock_url)
        env.update(extra)
    if stores.workers > 1:
        if not stores.lock_url:
            raise EndpointsError("more than one Rasa worker needs a Redis lock store (TRIAGE_LOCK_URL)")
        env[WORKERS_VAR] = str(stores.workers)
    else:
        env.pop(WORKERS_VAR, None)
    folder = Path(tempfile.mkdtemp(prefix="triage-rasa-"))  # 0700
    path = folder / "endpoints.yml"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("# Written by bot/rasa_endpoints.py for one run of the Rasa server.\n")
        yaml.safe_dump(endpoints, handle, sort_keys=False)
    return path


def remove_endpoints(path: Path | None) -> None:
    if path is not None and path.parent.name.startswith("triage-rasa-"):
        shutil.rmtree(path.parent, ignore_errors=True)
