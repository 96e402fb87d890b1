"""The per-run endpoints file: tracker store, lock store, workers; owner-only, no secret on disk."""

from __future__ import annotations

import stat

import pytest
import yaml

from bot.rasa_endpoints import (
    DialogueStores,
    EndpointsError,
    redact,
    remove_endpoints,
    sqlite_url,
    write_endpoints,
)
from bot.settings import SettingsError, load_settings


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_default_tracker_is_sqlite_beside_the_case_store(tmp_path):
    settings = load_settings({"TRIAGE_DB": str(tmp_path / "data" / "triage.db")}, None)
    stores = DialogueStores.from_settings(settings)
    assert stores.sqlite_path == tmp_path / "data" / "tracker.db"
    assert stores.lock_url is None and stores.workers == 1


def test_tracker_url_wins_and_secrets_stay_out_of_reprs():
    url = "postgresql://rasa:s3cret@db.internal:5432/rasa"
    settings = load_settings({"TRIAGE_TRACKER_URL": url, "TRIAGE_LOCK_URL": "redis://:pw2@127.0.0.1:6379/2",
                              "TRIAGE_RASA_WORKERS": "2"}, None)
    stores = DialogueStores.from_settings(settings)
    assert stores.tracker_url == url and stores.workers == 2 and stores.sqlite_path is None
    for text in (repr(settings), repr(stores)):
        assert "s3cret" not in text and "pw2" not in text
    assert redact(url) == "postgresql://rasa:***@db.internal:5432/rasa"


def test_sqlite_endpoints_file_is_private_and_creates_the_tracker_owner_only(tmp_path):
    tracker = tmp_path / "new" / "tracker.db"
    env: dict[str, str] = {}
    path = write_endpoints(DialogueStores(sqlite_url(tracker)), env)
    try:
        config = yaml.safe_load(path.read_text())
        assert config["tracker_store"] == {"type": "SQL", "url": "${TRIAGE_TRACKER_URL}"}
        assert config["action_endpoint"] == {"url": "${TRIAGE_ACTION_URL}"}  # kept from config/
        assert "lock_store" not in config and "SANIC_WORKERS" not in env
        assert env["TRIAGE_TRACKER_URL"] == f"sqlite:///{tracker}"
        assert mode(path) == 0o600 and mode(path.parent) == 0o700
        assert tracker.exists() and mode(tracker) == 0o600 and mode(tracker.parent) == 0o700
    finally:
        remove_endpoints(path)
    assert not path.parent.exists()


def test_scale_out_endpoints_keep_passwords_in_the_environment_only():
    env: dict[str, str] = {}
    stores = DialogueStores("postgresql://rasa:s3cret@127.0.0.1:5433/rasa", "redis://:pw2@127.0.0.1:6380/3", 2)
    path = write_endpoints(stores, env)
    try:
        text = path.read_text()
        assert "s3cret" not in text and "pw2" not in text
        config = yaml.safe_load(text)
        assert config["lock_store"] == {"type": "bot.rasa_lock_store.AtomicRedisLockStore",
                                        "url": "127.0.0.1", "port": 6380, "db": 3,
                                        "password": "${TRIAGE_LOCK_PASSWORD}"}
        assert env["TRIAGE_LOCK_PASSWORD"] == "pw2"
        assert env["TRIAGE_TRACKER_URL"] == stores.tracker_url
        assert env["SANIC_WORKERS"] == "2"
    finally:
        remove_endpoints(path)


def test_rasa_reads_the_generated_file_as_the_stores_it_names(tmp_path):
    """Rasa's own reader substitutes the environment and builds its endpoint configs."""
    from rasa.core.utils import AvailableEndpoints, number_of_sanic_workers

    env: dict[str, str] = {"TRIAGE_ACTION_URL": "http://127.0.0.1:1/webhook"}
    stores = DialogueStores(sqlite_url(tmp_path / "tracker.db"), "redis://127.0.0.1:6380/3", 2)
    path = write_endpoints(stores, env)
    try:
        with pytest.MonkeyPatch.context() as mp:
            for key, value in env.items():
                mp.setenv(key, value)
            endpoints = AvailableEndpoints.read_endpoints(str(path))
            assert endpoints.tracker_store.type == "SQL"
            assert endpoints.tracker_store.url == f"sqlite:///{tmp_path / 'tracker.db'}"
            assert endpoints.lock_store.type == "bot.rasa_lock_store.AtomicRedisLockStore"
            assert endpoints.lock_store.kwargs["port"] == 6380
            assert number_of_sanic_workers(endpoints.lock_store) == 2  # Rasa honours SANIC_WORKERS
    finally:
        remove_endpoints(path)


@pytest.mark.parametrize("env, message", [
    ({"TRIAGE_RASA_WORKERS": "2"}, "needs TRIAGE_LOCK_URL"),
    ({"TRIAGE_RASA_WORKERS": "2", "TRIAGE_LOCK_URL": "redis://127.0.0.1/1"}, "not SQLite"),
    ({"TRIAGE_RASA_WORKERS": "0"}, "at least 1"),
    ({"TRIAGE_RASA_WORKERS": "two"}, "whole number"),
    ({"TRIAGE_LOCK_URL": "127.0.0.1:6379"}, "Redis URL"),
    ({"TRIAGE_TRACKER_URL": "tracker.db"}, "SQLAlchemy URL"),
])
def test_inconsistent_scale_settings_are_refused(env, message):
    with pytest.raises(SettingsError, match=message):
        load_settings(env, None)


def test_more_workers_without_a_lock_store_is_refused_by_the_stack_too():
    with pytest.raises(EndpointsError, match="lock store"):
        write_endpoints(DialogueStores("postgresql://127.0.0.1/rasa", None, 2), {})
