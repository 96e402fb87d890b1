"""bot.rasa_run: Rasa's validation of action-server answers, without re-checking the schema."""

from __future__ import annotations

import logging

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


@pytest.fixture
def launcher(monkeypatch):
    """rasa_run.install() as the Rasa process runs it, undone afterwards."""
    from rasa.core import tracker_store
    from rasa.shared.core.events import Event
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    monkeypatch.setattr(tracker_store, "create_engine_kwargs", tracker_store.create_engine_kwargs)
    monkeypatch.setattr(tracker_store.SQLTrackerStore, "_retrieve", tracker_store.SQLTrackerStore._retrieve)
    monkeypatch.setattr(Event, "resolve_by_type", Event.__dict__["resolve_by_type"])
    monkeypatch.setattr(jsonschema, "validate", jsonschema.validate)
    from rasa.utils import log_utils

    monkeypatch.setattr(log_utils, "_anonymizer", log_utils._anonymizer)
    import structlog

    monkeypatch.setattr(structlog.processors, "dict_tracebacks", structlog.processors.dict_tracebacks)
    for name in ("_rasa_engine_kwargs", "_rasa_resolve_by_type"):
        monkeypatch.setattr(rasa_run, name, [])
    monkeypatch.setattr(rasa_run, "_event_types", {})
    rasa_run.install()
    yield
    event.remove(Engine, "connect", rasa_run.sqlite_pragmas)


def test_an_sqlite_tracker_store_keeps_its_connection_and_writes_ahead(tmp_path, launcher):
    from rasa.core import tracker_store
    from sqlalchemy.pool import QueuePool

    store = tracker_store.SQLTrackerStore(dialect="sqlite", db=str(tmp_path / "tracker.db"))
    assert isinstance(store.engine.pool, QueuePool)
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    # PostgreSQL URLs keep Rasa's own pool settings
    assert "poolclass" not in rasa_run.sqlite_engine_kwargs("postgresql://rasa@db/rasa")


def test_events_are_read_back_as_the_same_classes_rasa_finds(launcher):
    from rasa.shared.core.events import ActionExecuted, Event, SlotSet, UserUttered
    from rasa.shared.utils.common import all_subclasses

    assert Event.resolve_by_type is rasa_run.resolve_by_type
    rasa = rasa_run._rasa_resolve_by_type[0]
    for cls in all_subclasses(Event):
        assert rasa_run.resolve_by_type(cls.type_name) is rasa(cls.type_name)
    assert rasa_run.resolve_by_type("slot") is SlotSet
    assert rasa_run.resolve_by_type("topic") is None  # Rasa's backwards compatibility
    assert rasa_run.resolve_by_type("no-such-event", default=ActionExecuted) is ActionExecuted
    with pytest.raises(ValueError):
        rasa_run.resolve_by_type("no-such-event")
    event = UserUttered("hello", {"name": "greet"})
    assert Event.from_parameters(event.as_dict()) == event


def test_rasa_log_events_never_carry_client_text(launcher, caplog):
    import structlog
    from rasa.utils.log_utils import configure_structlog

    configure_structlog(logging.INFO)
    with caplog.at_level(logging.INFO):
        structlog.get_logger().error("rest.message.received.failure", text="I want to die tonight",
                                     user_message="I want to die tonight", sender_id="telegram:1")
    written = caplog.text
    assert "rest.message.received.failure" in written and rasa_run.REDACTED in written
    assert "die tonight" not in written
    assert "telegram:1" in written  # what is not client text is still logged


def test_a_logged_traceback_shows_no_local_variables(launcher, caplog, monkeypatch):
    import structlog
    from rasa.utils import log_utils
    from rasa.utils.log_utils import configure_structlog

    monkeypatch.setattr(log_utils, "FORCE_JSON_LOGGING", "1")  # as under triage up: JSON to a file
    configure_structlog(logging.INFO)

    def handle(text):
        raise RuntimeError("lock store unavailable")

    with caplog.at_level(logging.INFO):
        try:
            handle("I want to die tonight")
        except RuntimeError:
            structlog.get_logger().exception("rest.message.received.failure")
    written = caplog.text
    assert "lock store unavailable" in written and "handle" in written  # the traceback is there
    assert "die tonight" not in written


def test_the_sql_tracker_store_reads_back_the_same_tracker(tmp_path, monkeypatch):
    import asyncio

    from rasa.core import tracker_store
    from rasa.shared.core.domain import Domain
    from rasa.shared.core.events import ActionExecuted, SessionStarted, SlotSet, UserUttered
    from rasa.shared.core.trackers import DialogueStateTracker

    from bot import CONFIG_DIR

    domain = Domain.load(str(CONFIG_DIR / "domain.yml"))
    store = tracker_store.SQLTrackerStore(domain=domain, dialect="sqlite", db=str(tmp_path / "t.db"))
    tracker = DialogueStateTracker("c1", domain.slots)
    for event in (ActionExecuted("action_session_start"), SessionStarted(), ActionExecuted("action_listen"),
                  UserUttered("old session", {"name": "greet"}), SessionStarted(),
                  ActionExecuted("action_listen"), UserUttered("hello", {"name": "greet"}),
                  SlotSet("flow", "chat"), ActionExecuted("utter_greet")):
        tracker.update(event)
    asyncio.run(store.save(tracker))
    rasa_latest = asyncio.run(store.retrieve("c1"))
    rasa_full = asyncio.run(store.retrieve_full_tracker("c1"))
    monkeypatch.setattr(tracker_store.SQLTrackerStore, "_retrieve", rasa_run.sql_retrieve)
    ours_latest = asyncio.run(store.retrieve("c1"))
    ours_full = asyncio.run(store.retrieve_full_tracker("c1"))
    assert [e.as_dict() for e in ours_latest.events] == [e.as_dict() for e in rasa_latest.events]
    assert [e.as_dict() for e in ours_full.events] == [e.as_dict() for e in rasa_full.events]
    assert len(ours_full.events) > len(ours_latest.events)  # the last session only, as Rasa's
    assert ours_latest.get_slot("flow") == "chat"
    assert asyncio.run(store.retrieve("nobody")) is None
