"""bot.rasa_run: Rasa's validation of action-server answers, without re-checking the schema."""

from __future__ import annotations

import jsonschema
import pytest
from rasa.core.actions.action import RemoteAction

from bot import rasa_run
from bot.servers import RasaStack


@pytest.fixture
def installed(monkeypatch):
    monkeypatch.setattr(jsonschema, "validate", rasa_run.validate)
    rasa_run._validators.clear()
    yield
    rasa_run._validators.clear()


def remote_action() -> RemoteAction:
    return RemoteAction("action_route", None)


def test_rasa_still_accepts_a_valid_answer_and_rejects_a_malformed_one(installed):
    action = remote_action()
    good = {"events": [{"event": "slot", "name": "flow", "value": "chat"}], "responses": [{"text": "hi"}]}
    assert action._validate_action_result(good) is True
    bad = {"events": [{"name": "flow"}], "responses": []}  # an event without its "event" key
    with pytest.raises(jsonschema.ValidationError) as cached:
        action._validate_action_result(bad)
    # the same error jsonschema's own validate raises (Rasa adds its hint to the message)
    with pytest.raises(jsonschema.ValidationError) as original:
        rasa_run._original_validate(bad, action.action_response_format_spec())
    assert cached.value.message.startswith(original.value.message)


def test_the_schema_is_checked_once_per_process_not_once_per_answer(installed, monkeypatch):
    checks = []
    klass = jsonschema.validators.validator_for(remote_action().action_response_format_spec())
    real = klass.check_schema
    monkeypatch.setattr(klass, "check_schema", classmethod(lambda cls, schema: (checks.append(1), real(schema))))
    action = remote_action()
    for _ in range(5):
        assert action._validate_action_result({"events": [], "responses": []})
    assert len(checks) == 1


def test_an_invalid_schema_is_still_refused(installed):
    with pytest.raises(jsonschema.SchemaError):
        rasa_run.validate({}, {"type": "no-such-type"})


def test_the_stack_runs_rasa_through_the_launcher():
    stack = RasaStack()
    rasa = next(c for c in stack.children if c.name == "Rasa server")
    assert rasa.command[1:4] == ["-m", "bot.rasa_run", "run"]


def test_an_sqlite_tracker_store_keeps_its_connection_and_writes_ahead(tmp_path, monkeypatch):
    from rasa.core import tracker_store
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    from sqlalchemy.pool import QueuePool

    monkeypatch.setattr(tracker_store, "create_engine_kwargs", tracker_store.create_engine_kwargs)
    monkeypatch.setattr(rasa_run, "_rasa_engine_kwargs", [])
    monkeypatch.setattr(jsonschema, "validate", jsonschema.validate)
    rasa_run.install()
    try:
        store = tracker_store.SQLTrackerStore(dialect="sqlite", db=str(tmp_path / "tracker.db"))
        assert isinstance(store.engine.pool, QueuePool)
        with store.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        # PostgreSQL URLs keep Rasa's own pool settings
        assert "poolclass" not in rasa_run.sqlite_engine_kwargs("postgresql://rasa@db/rasa")
    finally:
        event.remove(Engine, "connect", rasa_run.sqlite_pragmas)
