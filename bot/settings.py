"""Settings: environment variables of ARCHITECTURE.md over ``config/clinic.yml``.

A value set in the environment wins over the file; the file wins over the defaults.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from bot import CONFIG_DIR

CLINIC_FILE = CONFIG_DIR / "clinic.yml"

# variable -> (settings field, default)
ENV_VARS: dict[str, tuple[str, Any]] = {
    "TELEGRAM_BOT_TOKEN": ("telegram_token", None),
    "TRIAGE_TELEGRAM_BASE_URL": ("telegram_base_url", "https://api.telegram.org/bot"),
    "TRIAGE_STAFF_CHAT_ID": ("staff_chat_id", None),
    "TRIAGE_CLINICIANS": ("clinicians", ""),
    "TRIAGE_DB": ("db_path", "var/triage.db"),
    "TRIAGE_REGION": ("region", "US"),
    "TRIAGE_RASA_URL": ("rasa_url", "http://127.0.0.1:5005"),
    "TRIAGE_ACTION_URL": ("action_url", "http://127.0.0.1:5055"),
    "TRIAGE_RASA_TIMEOUT": ("rasa_timeout", 10.0),
    "TRIAGE_RASA_TOKEN": ("rasa_token", None),  # Rasa's --auth-token, for its HTTP API
    "TRIAGE_ON_CALL": ("on_call", None),
    "TRIAGE_REPAGE_MINUTES": ("repage_minutes", 5.0),
    "TRIAGE_ASK_TIMEOUT_MINUTES": ("ask_timeout_minutes", 10.0),
    "TRIAGE_WEBHOOK_URL": ("webhook_url", None),
    "TRIAGE_WEBHOOK_SECRET": ("webhook_secret", None),
    "TRIAGE_WEBHOOK_PORT": ("webhook_port", 8443),
    # the clinicians' web console (issue 13)
    "TRIAGE_WEB_PORT": ("web_port", None),  # `triage web` uses 8765 when unset; `triage up` serves it only when set
    "TRIAGE_WEB_URL": ("web_url", None),  # the public base URL in login links (behind TLS)
    "TRIAGE_WEB_IDLE_HOURS": ("web_idle_hours", 12.0),  # a session ends after a shift of idleness
    # Rasa's dialogue state and scale-out (bot/rasa_endpoints.py); the URLs may hold passwords.
    "TRIAGE_TRACKER_URL": ("tracker_url", None),
    "TRIAGE_LOCK_URL": ("lock_url", None),
    "TRIAGE_RASA_WORKERS": ("rasa_workers", 1),
}
SECRET_KEYS = ("telegram_token", "webhook_secret", "rasa_token", "tracker_url", "lock_url")  # environment only, never printed
FILE_KEYS = {name for name, _ in ENV_VARS.values()} - set(SECRET_KEYS)


class SettingsError(ValueError):
    """A setting is malformed; the message names the variable or file."""


@dataclass(frozen=True)
class Settings:
    telegram_token: str | None = None
    telegram_base_url: str = "https://api.telegram.org/bot"
    staff_chat_id: str | None = None
    clinicians: frozenset[str] = field(default_factory=frozenset)
    db_path: str = "var/triage.db"
    region: str = "US"
    rasa_url: str = "http://127.0.0.1:5005"
    action_url: str = "http://127.0.0.1:5055"
    rasa_timeout: float = 10.0
    rasa_token: str | None = None  # Rasa's HTTP API token (``triage up`` makes one when unset)
    on_call: str | None = None  # Telegram user id of the on-call clinician
    repage_minutes: float = 5.0
    ask_timeout_minutes: float = 10.0  # an unanswered direct question pages after this
    webhook_url: str | None = None  # set → webhook mode instead of long polling
    webhook_secret: str | None = None
    webhook_port: int = 8443
    web_port: int | None = None
    web_url: str | None = None
    web_idle_hours: float = 12.0
    tracker_url: str | None = None  # SQLAlchemy URL; unset → SQLite beside db_path (tracker.db)
    lock_url: str | None = None  # redis://host:port/db → Rasa's RedisLockStore
    rasa_workers: int = 1  # Sanic workers of the Rasa server (more than 1 needs lock_url)

    def __repr__(self) -> str:  # never print the token, the secret or a password in a URL
        shown = {k: v for k, v in self.__dict__.items() if k not in SECRET_KEYS}
        for key in SECRET_KEYS:
            shown[key] = "***" if getattr(self, key) else None
        return f"Settings({shown})"


def load_settings(
    env: Mapping[str, str] | None = None, clinic_file: Path | None = CLINIC_FILE
) -> Settings:
    """Build the settings from the environment and the clinic file."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {name: default for name, default in ENV_VARS.values()}
    if clinic_file is not None and clinic_file.exists():
        try:
            raw = yaml.safe_load(clinic_file.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise SettingsError(f"{clinic_file}: not valid YAML: {exc}") from exc
        if not isinstance(raw, dict):
            raise SettingsError(f"{clinic_file}: expected a mapping of settings")
        unknown = set(raw) - FILE_KEYS
        if unknown:
            raise SettingsError(
                f"{clinic_file}: unknown keys {sorted(unknown)}; allowed: {sorted(FILE_KEYS)}"
            )
        values.update({k: v for k, v in raw.items() if v is not None})
    for var, (name, _default) in ENV_VARS.items():
        if env.get(var):
            values[name] = env[var]
    for name, kind, what in (("rasa_timeout", float, "TRIAGE_RASA_TIMEOUT must be a number of seconds"),
                             ("repage_minutes", float, "TRIAGE_REPAGE_MINUTES must be a number of minutes"),
                             ("ask_timeout_minutes", float, "TRIAGE_ASK_TIMEOUT_MINUTES must be a number of minutes"),
                             ("webhook_port", int, "TRIAGE_WEBHOOK_PORT must be a port number"),
                             ("web_idle_hours", float, "TRIAGE_WEB_IDLE_HOURS must be a number of hours"),
                             ("rasa_workers", int, "TRIAGE_RASA_WORKERS must be a whole number")):
        try:
            values[name] = kind(values[name])
        except (TypeError, ValueError) as exc:
            raise SettingsError(what) from exc
    if values["web_port"] is not None:
        try:
            values["web_port"] = int(values["web_port"])
        except (TypeError, ValueError) as exc:
            raise SettingsError("TRIAGE_WEB_PORT must be a port number") from exc
    if values["on_call"] is not None:
        values["on_call"] = str(values["on_call"])
    clinicians = values["clinicians"]
    if isinstance(clinicians, str):
        clinicians = [c for c in clinicians.replace(" ", "").split(",") if c]
    values["clinicians"] = frozenset(str(c) for c in clinicians)
    values["region"] = str(values["region"]).upper()
    values["staff_chat_id"] = (
        str(values["staff_chat_id"]) if values["staff_chat_id"] is not None else None
    )
    values["db_path"] = str(values["db_path"])  # relative paths are relative to the cwd
    _check_dialogue_stores(values)
    return Settings(**values)


def _check_dialogue_stores(values: dict[str, Any]) -> None:
    """The tracker URL, lock URL and worker count make sense together (never echoes a URL)."""
    if values["tracker_url"] is not None and "://" not in str(values["tracker_url"]):
        raise SettingsError("TRIAGE_TRACKER_URL must be an SQLAlchemy URL, e.g. postgresql://user@host/db")
    if values["lock_url"] is not None and not str(values["lock_url"]).startswith(("redis://", "rediss://")):
        raise SettingsError("TRIAGE_LOCK_URL must be a Redis URL, e.g. redis://127.0.0.1:6379/1")
    if values["rasa_workers"] < 1:
        raise SettingsError("TRIAGE_RASA_WORKERS must be at least 1")
    if values["rasa_workers"] > 1:
        # Rasa runs one worker unless the lock store is shared (rasa/core/utils.py
        # number_of_sanic_workers); workers must share the tracker store too, and SQLite is
        # not a store several processes should write at once.
        if not values["lock_url"]:
            raise SettingsError("TRIAGE_RASA_WORKERS > 1 needs TRIAGE_LOCK_URL (Redis, Rasa's RedisLockStore)")
        if not values["tracker_url"] or str(values["tracker_url"]).startswith("sqlite"):
            raise SettingsError("TRIAGE_RASA_WORKERS > 1 needs TRIAGE_TRACKER_URL on a database server"
                                " (PostgreSQL), not SQLite")
