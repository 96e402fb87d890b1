"""bot.rasa_run: Rasa's validation of action-server answers, without re-checking the schema."""

from __future__ import annotations

import collections
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
    monkeypatch.setattr(tracker_store.SQLTrackerStore, "save", tracker_store.SQLTrackerStore.save)
    from rasa.shared.core.trackers import DialogueStateTracker

    monkeypatch.setattr(DialogueStateTracker, "copy", DialogueStateTracker.copy)
    monkeypatch.setattr(Event, "resolve_by_type", Event.__dict__["resolve_by_type"])
    from rasa.shared.core.domain import Domain

    monkeypatch.setattr(Domain, "states_for_tracker_history", Domain.states_for_tracker_history)
    from rasa.utils.endpoints import EndpointConfig

    monkeypatch.setattr(EndpointConfig, "session", EndpointConfig.session)
    from rasa.engine.runner.dask import DaskGraphRunner

    monkeypatch.setattr(DaskGraphRunner, "run", DaskGraphRunner.run)
    from rasa.core import run

    monkeypatch.setattr(run, "load_agent_on_start", run.load_agent_on_start)
    monkeypatch.setattr(jsonschema, "validate", jsonschema.validate)
    from rasa.utils import log_utils

    monkeypatch.setattr(log_utils, "_anonymizer", log_utils._anonymizer)
    import structlog

    monkeypatch.setattr(structlog.processors, "dict_tracebacks", structlog.processors.dict_tracebacks)
    for name in ("_rasa_engine_kwargs", "_rasa_resolve_by_type", "_rasa_tracker_copy", "_rasa_graph_run",
                 "_rasa_states_for_tracker_history",
                 "_rasa_endpoint_session", "_rasa_load_agent_on_start"):
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


def _turn(step, *, new_session=False):
    from rasa.shared.core.events import ActionExecuted, SessionStarted, SlotSet, UserUttered

    events = [ActionExecuted("action_session_start"), SessionStarted()] if new_session else []
    return events + [ActionExecuted("action_listen"), UserUttered(f"message {step}", {"name": "greet"}),
                     SlotSet("flow", f"chat{step}"), ActionExecuted("utter_greet")]


def test_the_kept_rows_give_rasas_own_trackers_and_rows_across_workers_and_sessions(tmp_path, monkeypatch):
    """Two workers (two stores on one file, as two Sanic processes) take turns on the same
    conversations, sessions start, and a third party adds rows behind their backs (a worker that
    runs Rasa's own code, and an event with no timestamp): after every turn the stored rows are
    the ones Rasa's own save writes to a second file, and every read gives the tracker Rasa's
    own read gives."""
    import asyncio
    import random
    import sqlite3

    from rasa.core import tracker_store
    from rasa.shared.core.domain import Domain
    from rasa.shared.core.events import SlotSet

    from bot import CONFIG_DIR

    domain = Domain.load(str(CONFIG_DIR / "domain.yml"))
    store_class = tracker_store.SQLTrackerStore
    rasa_retrieve, rasa_save = store_class._retrieve, store_class.save

    class Rasa(store_class):  # Rasa's own read and save
        _retrieve, save = rasa_retrieve, rasa_save

    class Ours(store_class):
        _retrieve, save = rasa_run.sql_retrieve, rasa_run.sql_save

    ours_db, rasa_db = str(tmp_path / "ours.db"), str(tmp_path / "rasa.db")
    workers = [Ours(domain=domain, dialect="sqlite", db=ours_db) for _ in range(2)]
    stranger = Rasa(domain=domain, dialect="sqlite", db=ours_db)
    reference = Rasa(domain=domain, dialect="sqlite", db=rasa_db)
    reader = Rasa(domain=domain, dialect="sqlite", db=ours_db)
    rng = random.Random(3)

    async def run():
        from rasa.shared.core.trackers import DialogueStateTracker

        for number in range(4):  # each conversation starts the same in both files
            start = DialogueStateTracker(f"c{number}", domain.slots)
            for event in _turn(-number, new_session=True):
                start.update(event)
            await workers[0].save(start)
            await reference.save(start)
        for step in range(120):
            sender = f"c{rng.randrange(4)}"
            worker = rng.choice(workers + [stranger])
            ours = await worker.get_or_create_tracker(sender)
            theirs = await reference.get_or_create_tracker(sender)
            assert [e.as_dict() for e in ours.events] == [e.as_dict() for e in theirs.events]
            assert [e.as_dict() for e in ours.events] == [e.as_dict() for e in (await reader.retrieve(sender)).events]
            events = _turn(step, new_session=rng.random() < 0.1)
            if step % 17 == 5:
                events.append(SlotSet("flow", "no time"))
                events[-1].timestamp = None
            for tracker in (ours, theirs):
                for event in events:  # the same events (and times) in both
                    tracker.update(event)
            await worker.save(ours)
            await reference.save(theirs)

    asyncio.run(run())
    columns = "sender_id, type_name, intent_name, action_name, data"
    ours_rows = sqlite3.connect(ours_db).execute(f"SELECT {columns} FROM events ORDER BY id").fetchall()
    rasa_rows = sqlite3.connect(rasa_db).execute(f"SELECT {columns} FROM events ORDER BY id").fetchall()
    assert ours_rows == rasa_rows and len(ours_rows) > 400
    assert all(worker.__dict__["_triage_rows"] for worker in workers)  # what was kept was used


def test_the_kept_rows_are_bounded(tmp_path, monkeypatch):
    import asyncio

    from rasa.core import tracker_store
    from rasa.shared.core.domain import Domain

    from bot import CONFIG_DIR

    domain = Domain.load(str(CONFIG_DIR / "domain.yml"))

    class Ours(tracker_store.SQLTrackerStore):
        _retrieve, save = rasa_run.sql_retrieve, rasa_run.sql_save

    store = Ours(domain=domain, dialect="sqlite", db=str(tmp_path / "t.db"))
    monkeypatch.setattr(rasa_run, "ROWS_CACHE_CHARS", 5_000)

    async def run():
        for number in range(12):
            tracker = await store.get_or_create_tracker(f"chat-{number}")
            for event in _turn(number, new_session=True):
                tracker.update(event)
            await store.save(tracker)
            assert (await store.retrieve(f"chat-{number}")).get_slot("flow") == f"chat{number}"

    asyncio.run(run())
    kept = store.__dict__["_triage_rows"]
    assert sum(entry.chars for entry in kept.values()) <= 5_000 and "chat-11" in kept
    assert 1 < len(kept) < 12


def test_a_tracker_copy_is_rasas_own_copy(story_trackers):
    """Every prefix of every story: the copy has the state Rasa's replaying copy has, and changing
    the copy (a new event, a loop interrupted) leaves the original as it was."""
    from rasa.shared.core.events import ActionExecuted, SlotSet
    from rasa.shared.core.trackers import DialogueStateTracker

    domain, trackers = story_trackers
    rasa_copy = DialogueStateTracker.copy

    def state(tracker):
        out = {}
        for name, value in vars(tracker).items():
            if name == "events":
                value = [e.as_dict() for e in value]
            elif name == "slots":
                value = {key: (type(slot), vars(slot)) for key, slot in value.items()}
            elif name in ("latest_message", "latest_bot_utterance"):
                placeholder = not any(value is event for event in tracker.events)
                value = value.as_dict()
                if placeholder:  # UserUttered.empty(), BotUttered.empty(): made at the copy's time
                    value.pop("timestamp")
            out[name] = value
        return out

    compared = 0
    for story in trackers:
        events = list(story.events)
        for k in range(1, len(events) + 1):
            tracker = DialogueStateTracker.from_events("c", events[:k], domain.slots)
            tracker.model_id = "model"  # the processor sets it; neither copy keeps it
            before = state(tracker)
            ours = rasa_run.tracker_copy(tracker)
            assert state(ours) == state(rasa_copy(tracker))
            assert ours.model_id is None
            ours.update(SlotSet(next(iter(domain.slots)).name, "changed"))
            ours.update(ActionExecuted("action_listen"))
            if ours.active_loop is not None:
                ours.active_loop.is_interrupted = not ours.active_loop.is_interrupted
            assert state(tracker) == before
            compared += 1
    assert compared > 500


def test_an_unusual_tracker_is_copied_rasas_way(monkeypatch):
    from rasa.shared.core.trackers import DialogueStateTracker

    calls = []
    monkeypatch.setattr(rasa_run, "_rasa_tracker_copy", [lambda tracker: calls.append(tracker) or "rasa's"])
    tracker = DialogueStateTracker("c", None)  # no domain: slots of any name
    assert rasa_run.tracker_copy(tracker) == "rasa's"
    tracker = DialogueStateTracker("c", [])
    tracker.something_new = 1
    assert rasa_run.tracker_copy(tracker) == "rasa's" and len(calls) == 2


@pytest.fixture(scope="module")
def story_trackers():
    """The project's stories, rules and test stories as Rasa's training trackers."""
    from rasa.core.training import load_data
    from rasa.shared.core.domain import Domain

    from bot import CONFIG_DIR

    root = CONFIG_DIR.parent
    domain = Domain.load(str(CONFIG_DIR / "domain.yml"))
    paths = (root / "data" / "stories", root / "data" / "rules", root / "tests" / "test_stories.yml")
    return domain, [t for path in paths for t in load_data(str(path), domain, augmentation_factor=0)]


def test_the_kept_states_of_a_history_are_rasas_own_at_every_turn(story_trackers, monkeypatch):
    """Every prefix of every story, turn after turn as a conversation grows (so the kept states are
    reused), after a revert and a restart (so they are not), and after a caller changed the states
    it was given: the same states as Rasa's own Domain.states_for_tracker_history."""
    from rasa.shared.core.domain import Domain
    from rasa.shared.core.events import ActionReverted, Restarted, UserUtteranceReverted
    from rasa.shared.core.trackers import DialogueStateTracker

    domain, trackers = story_trackers
    rasa = Domain.states_for_tracker_history
    monkeypatch.setattr(rasa_run, "_states_cache", rasa_run.collections.OrderedDict())
    slot = next(iter(domain.slots)).name
    flags = [{}, {"omit_unset_slots": True},
             {"ignore_rule_only_turns": True, "rule_only_data": {"slots": [slot], "active_loops": ["asq_form"]}}]
    computed = collections.Counter()
    real = Domain.get_active_state
    monkeypatch.setattr(Domain, "get_active_state", lambda self, *a, **k: (computed.update([who]), real(self, *a, **k))[1])
    compared = 0
    for number, story in enumerate(trackers):
        events = list(story.events)
        histories = [events[:k] for k in range(1, len(events) + 1)]
        histories += [events + [UserUtteranceReverted()], events + [ActionReverted()], events + [Restarted()] + events[:3]]
        for history in histories:
            tracker = DialogueStateTracker.from_events(f"c{number % 7}", history, domain.slots)
            tracker.is_rule_tracker = story.is_rule_tracker
            for kwargs in flags:
                who = "ours"
                ours = rasa_run.states_for_tracker_history(domain, tracker, **kwargs)
                who = "rasa"
                assert ours == rasa(domain, tracker, **kwargs)
                for state in ours:  # as Rasa's featurizers do to the list they are given
                    state.get("user", {}).pop("text", None)
                    state.get("user", {}).pop("intent", None)
                who = "ours"
                again = rasa_run.states_for_tracker_history(domain, tracker, **kwargs)
                who = "rasa"
                assert again == rasa(domain, tracker, **kwargs)
                compared += 1
    assert compared > 1000
    assert computed["ours"] < computed["rasa"] / 2  # the kept states were used


def test_the_kept_states_are_bounded(story_trackers, monkeypatch):
    from rasa.shared.core.trackers import DialogueStateTracker

    domain, trackers = story_trackers
    monkeypatch.setattr(rasa_run, "_states_cache", rasa_run.collections.OrderedDict())
    monkeypatch.setattr(rasa_run, "STATES_CACHE_SIZE", 5)
    for number in range(20):
        tracker = DialogueStateTracker.from_events(f"chat-{number}", list(trackers[0].events), domain.slots)
        rasa_run.states_for_tracker_history(domain, tracker)
    assert len(rasa_run._states_cache) == 5
    assert all(key[0].startswith("chat-1") for key in rasa_run._states_cache)


def test_the_launcher_keeps_the_states_of_each_history(launcher):
    from rasa.engine.runner.dask import DaskGraphRunner
    from rasa.shared.core.domain import Domain
    from rasa.shared.core.trackers import DialogueStateTracker

    assert DaskGraphRunner.run is rasa_run.graph_run
    assert DialogueStateTracker.copy is rasa_run.tracker_copy

    assert Domain.states_for_tracker_history is rasa_run.states_for_tracker_history
    assert rasa_run._rasa_states_for_tracker_history[0] is not rasa_run.states_for_tracker_history


def test_requests_to_the_action_server_carry_the_same_json(launcher):
    """Rasa's calls to the action server (EndpointConfig.request) write their bodies with ujson:
    the same document, parsed back, as json.dumps writes, with the endpoint's headers and auth."""
    import asyncio
    import json

    from aiohttp import web
    from rasa.utils.endpoints import EndpointConfig

    from conftest import serve_app

    received, raw = [], []

    async def handler(request):
        raw.append(await request.read())
        received.append((await request.json(), request.headers.get("Authorization"), request.headers.get("X-Clinic")))
        return web.json_response({"events": [], "responses": []})

    body = {"next_action": "action_route", "tracker": {"sender_id": "c1", "latest_message": {
        "text": "I can't sleep / again, é \u2028", "intent": {"confidence": 0.1 + 0.2}}, "events": [{"timestamp": 1764515143.4815366}]}}

    async def run():
        app = web.Application()
        app.router.add_post("/webhook", handler)
        runner, base = await serve_app(app)
        try:
            endpoint = EndpointConfig(f"{base}/webhook", headers={"X-Clinic": "one"},
                                      basic_auth={"username": "rasa", "password": "pw"})
            return await endpoint.request(json=body, method="post")
        finally:
            await runner.cleanup()

    assert asyncio.run(run()) == {"events": [], "responses": []}
    assert received[0][0] == json.loads(json.dumps(body))
    assert received[0][1].startswith("Basic ") and received[0][2] == "one"
    assert EndpointConfig.session is rasa_run.endpoint_session
    assert b"\\/" in raw[0]  # written by ujson, which escapes "/" (json.dumps does not)


def test_the_loaded_model_is_kept_out_of_the_garbage_collectors_way(launcher, monkeypatch):
    """Once Rasa has loaded its model, the objects alive are frozen (gc.freeze): full collections
    no longer walk TensorFlow's graph, which took 0.3-0.8 s each in the Rasa process here."""
    import asyncio
    import gc

    from rasa.core import run

    assert run.load_agent_on_start is rasa_run.load_agent_on_start
    loaded = object()

    async def rasa_load(*args, **kwargs):
        return loaded if args == ("model.tar.gz",) and kwargs == {"endpoints": None} else None

    monkeypatch.setattr(rasa_run, "_rasa_load_agent_on_start", [rasa_load])
    try:
        assert asyncio.run(run.load_agent_on_start("model.tar.gz", endpoints=None)) is loaded
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_the_kept_states_start_afresh_with_another_model(story_trackers, monkeypatch):
    """A model loaded in place of the running one (another domain) never gets the states kept for
    the old one, even for the same conversation and events."""
    from rasa.shared.core.domain import Domain
    from rasa.shared.core.trackers import DialogueStateTracker

    domain, trackers = story_trackers
    monkeypatch.setattr(rasa_run, "_states_cache", rasa_run.collections.OrderedDict())
    monkeypatch.setattr(rasa_run, "_states_domain", [])
    story = next(t for t in trackers if not t.is_rule_tracker)
    tracker = DialogueStateTracker.from_events("chat", list(story.events), domain.slots)
    rasa_run.states_for_tracker_history(domain, tracker)
    assert len(rasa_run._states_cache) == 1
    other = Domain.from_dict(domain.as_dict())
    assert rasa_run.states_for_tracker_history(other, tracker) == Domain.states_for_tracker_history(other, tracker)
    assert rasa_run._states_domain == [other] and len(rasa_run._states_cache) == 1


def test_the_graph_runs_without_dask_to_rasas_own_results(story_trackers, monkeypatch):
    """The trained model, parsing messages and predicting the next action of every story prefix:
    the same intents, entities, scores and predictions with the nodes run in order as with dask."""
    import asyncio
    import json

    from rasa.core.agent import Agent
    from rasa.core.channels import UserMessage
    from rasa.engine.runner.dask import DaskGraphRunner
    from rasa.shared.core.trackers import DialogueStateTracker

    from bot.servers import latest_model

    _, trackers = story_trackers
    agent = Agent.load(str(latest_model()))
    processor = agent.processor
    texts = ["hi", "what are your hours", "yes", "no", "I want to kill myself", "my friend is not safe",
             "can a clinician call me back", "I don't know", "stop", "thanks, bye"]
    histories = [list(story.events)[:k] for story in trackers[:40] for k in range(1, len(story.events) + 1, 3)]

    async def outputs():
        parsed = [await processor.parse_message(UserMessage(text)) for text in texts]
        predicted = []
        for events in histories:
            tracker = DialogueStateTracker.from_events("c", events, agent.domain.slots)
            prediction = processor._predict_next_with_tracker(tracker)
            predicted.append((prediction.max_confidence_index, prediction.policy_name,
                              [round(p, 6) for p in prediction.probabilities]))
        return json.dumps([parsed, predicted], sort_keys=True, default=str)

    dask_calls = []
    original = DaskGraphRunner.run
    monkeypatch.setattr(DaskGraphRunner, "run", lambda self, *a, **k: (dask_calls.append(1), original(self, *a, **k))[1])
    rasas = asyncio.run(outputs())
    assert dask_calls
    monkeypatch.setattr(DaskGraphRunner, "run", rasa_run.graph_run)
    ours = asyncio.run(outputs())
    assert ours == rasas
    assert len(histories) > 100
