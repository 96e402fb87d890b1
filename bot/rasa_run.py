"""Rasa's command line with measured fixes and no client text in its logs.

``RasaStack`` starts Rasa through this module (``python -m bot.rasa_run run ...``) instead of
``python -m rasa``; the arguments and behaviour are Rasa's own (``rasa.__main__.main``).

Client text never reaches Rasa's log (DEVELOPERS.md: never log message text at INFO or
above). Rasa's structured log events carry it under known keys (``text``, ``user_text``,
``message``…; Rasa lists them in ``rasa.utils.log_utils._anonymizer``, which rewrites them
only in Rasa Pro); here every such value is replaced by ``[client text not logged]`` before
the event is written, for example when Rasa fails on a message with Redis down. Tracebacks
are written without the frames' local variables (structlog's ``dict_tracebacks`` shows them by
default, and they hold the message and its metadata).

Fixes, each measured. Rasa validates every answer of the action server with ``jsonschema.validate``
(``RemoteAction._validate_action_result``), and ``jsonschema.validate`` first checks the
*schema itself* against its meta-schema (``check_schema``) before it checks the answer. The
schema is the same constant every time; with jsonschema 4.17's draft 2020-12 meta-schema that
check took 20 % of the Rasa process's CPU time in a profile of the gateway benchmark
(py-spy; ``bench/results/profile.txt``). ``validate`` below does the same validation of the
instance, raising the same best-matching error, but checks each distinct schema once per
process. Forked Sanic workers (``TRIAGE_RASA_WORKERS``) inherit it.

Rasa reads a tracker from its store event by event, and finds each event's class by walking
every subclass of ``Event`` (``Event.resolve_by_type``: 9 % of a turn in the profile); the
classes are looked up once here and kept by type name, the first match winning as in Rasa's
loop, with Rasa's own function for any name not found.

The SQL tracker store reads a conversation's events as ORM objects, one per row, only to take
their ``data`` column (``SQLTrackerStore._retrieve``); ``sql_retrieve`` below runs Rasa's own
query (``_event_query``: the same rows, the same order) for that column alone: 32 → 22 ms for
a conversation of 760 events here, the same tracker.

And the tracker store on SQLite (the default, ``tracker.db`` beside the case store) keeps its
connection open, as the case store does, instead of opening the file and reading its schema
for every query (SQLAlchemy 1.4 gives a file-based SQLite engine a ``NullPool``), and gets the
case store's settings: write-ahead log and ``synchronous=NORMAL`` (bot/store/store.py). A
commit then costs about 0.02 ms instead of 0.8 ms here, and survives a crash or ``kill -9`` of
Rasa (the restart tests); only a power cut can lose the last turns' dialogue state, never a
message, a card or an alert (those are in the case store).

Both policies ask for the dialogue states of the whole history at every prediction
(``Domain.states_for_tracker_history``); ``states_for_tracker_history`` below keeps each
conversation's replayed tracker and states and applies only the events that are new since
(21 % of a turn in 40-turn conversations before; a test compares it with Rasa's own function
on every prefix of every story). Stored events are parsed, and the tracker sent to the action
server is written, with ujson instead of json (a Rasa dependency; 3× json here). And once the
model is loaded the objects alive are frozen (``gc.freeze``): before, each full collection in
Rasa's process walked TensorFlow's graph and took 0.3–0.8 s.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import gc
import sqlite3
import threading
from typing import Any

import jsonschema
import ujson
import structlog
import structlog.tracebacks
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import QueuePool

_original_validate = jsonschema.validate
_validators: list[tuple[Any, Any, Any]] = []  # (schema, validator class asked for, validator)
_lock = threading.Lock()


def validate(instance: Any, schema: Any, cls: Any = None, *args: Any, **kwargs: Any) -> None:
    """``jsonschema.validate`` with the schema check and the validator kept per schema."""
    if args or kwargs:
        return _original_validate(instance, schema, cls, *args, **kwargs)
    validator = None
    for kept_schema, kept_cls, kept in _validators:  # a few schemas; dict equality is cheap
        if kept_cls is cls and (kept_schema is schema or kept_schema == schema):
            validator = kept
            break
    if validator is None:
        schema = copy.deepcopy(schema)  # kept: a caller's later change to its own dict is not
        klass = cls or jsonschema.validators.validator_for(schema)
        klass.check_schema(schema)  # raises SchemaError, as jsonschema.validate does
        validator = klass(schema)
        with _lock:
            _validators.append((schema, cls, validator))
    error = jsonschema.exceptions.best_match(validator.iter_errors(instance))
    if error is not None:
        raise error
    return None


def sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """On every new SQLite connection of an SQLAlchemy engine: WAL and synchronous=NORMAL."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        dbapi_connection.execute("PRAGMA journal_mode=WAL")
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")


_rasa_engine_kwargs: list[Any] = []  # Rasa's own create_engine_kwargs, once installed


def sqlite_engine_kwargs(url: Any) -> dict[str, Any]:
    """``create_engine`` arguments for a tracker store: a pooled connection for an SQLite file."""
    kwargs = dict(_rasa_engine_kwargs[0](url))  # PostgreSQL: Rasa's pool settings, unchanged
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        # each Sanic worker runs its tracker store's queries on its one event-loop thread
        kwargs.setdefault("poolclass", QueuePool)
        kwargs.setdefault("connect_args", {"check_same_thread": False})
    return kwargs


_event_types: dict[str, Any] = {}
_rasa_resolve_by_type: list[Any] = []  # Rasa's own Event.resolve_by_type, once installed


def resolve_by_type(type_name: str, default: Any = None) -> Any:
    """``Event.resolve_by_type`` with the event classes kept by type name."""
    found = _event_types.get(type_name)
    if found is None:
        from rasa.shared.core.events import Event
        from rasa.shared.utils.common import all_subclasses

        for cls in all_subclasses(Event):  # Rasa's order: the first class of a name wins
            _event_types.setdefault(cls.type_name, cls)
        found = _event_types.get(type_name)
    return found if found is not None else _rasa_resolve_by_type[0](type_name, default)


REDACTED = "[client text not logged]"
_TEXT_KEYS = (
    "text", "response_text", "user_text", "slot_values", "parse_data_text", "parse_data_entities",
    "prediction_events", "tracker_latest_message", "prefilled_slots", "message", "response",
    "slot_candidates", "rasa_event", "rasa_events", "tracker_states", "current_states",
    "old_states", "successes", "current_entity", "next_entity", "states", "entity", "token_text",
    "user_message", "json_message",
)


def redact(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """A structlog processor: the values that can hold client text are not logged."""
    for key in _TEXT_KEYS:
        if event_dict.get(key) not in (None, "", [], {}):
            event_dict[key] = REDACTED
    return event_dict


async def sql_retrieve(self: Any, sender_id: str, fetch_events_from_all_sessions: bool) -> Any:
    """``SQLTrackerStore._retrieve``, loading the events' JSON column only."""
    from rasa.shared.core.trackers import DialogueStateTracker

    with self.session_scope() as session:
        query = self._event_query(session, sender_id, fetch_events_from_all_sessions=fetch_events_from_all_sessions)
        events = [ujson.loads(data) for (data,) in query.with_entities(self.SQLEvent.data).all()]
    if self.domain and events:
        return DialogueStateTracker.from_dict(sender_id, events, self.domain.slots)
    return None


# What states_for_tracker_history keeps of each conversation between predictions, by
# (sender, tracker kind, the states' flags), for one domain at a time (_states_domain: a model
# loaded in its place starts afresh).
_states_cache: "collections.OrderedDict[tuple[Any, ...], _History]" = collections.OrderedDict()
_states_domain: list[Any] = []
STATES_CACHE_SIZE = 600  # about 200 conversations × the two policies' sets of flags
_rasa_states_for_tracker_history: list[Any] = []


def _same_event(a: Any, b: Any) -> bool:
    """The same stored event: the identical object, or the same type and time and the same content
    that a dialogue state reads (Rasa's own ``__eq__`` pickles entities and bot messages to compare
    them, and cost more than the states it saves)."""
    if a is b:
        return True
    if type(a) is not type(b) or a.timestamp != b.timestamp:
        return False
    return _state_content(a) == _state_content(b)


_STATE_CONTENT: dict[type, Any] = {}


def _state_content(event: Any) -> Any:
    if not _STATE_CONTENT:
        from rasa.shared.core import events

        _STATE_CONTENT.update({
            events.UserUttered: lambda e: (e.text, e.intent_name, e.entities, e.use_text_for_featurization),
            events.SlotSet: lambda e: (e.key, e.value),
            events.ActionExecuted: lambda e: (e.action_name, e.action_text, e.hide_rule_turn),
            events.ActiveLoop: lambda e: e.name,
            events.BotUttered: lambda e: e.text,
        })
    content = _STATE_CONTENT.get(type(event))  # exact types: a subclass is compared whole
    return content(event) if content is not None else event.as_dict()


def _copy_states(states: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A copy of a list of states that callers may change (Rasa's featurizers delete keys from the
    sub-states). A state is a dict of sub-state dicts whose values are strings, numbers and tuples;
    sub-states shared between states stay shared, as in Rasa's own list."""
    copies: dict[int, dict[str, Any]] = {}
    out = []
    for state in states:
        new = {}
        for kind, sub in state.items():
            copied = copies.get(id(sub))
            if copied is None:
                copied = copies[id(sub)] = dict(sub)
            new[kind] = copied
        out.append(new)
    return out


@dataclasses.dataclass
class _History:
    """What ``states_for_tracker_history`` keeps of one conversation for one set of flags."""

    events: list[Any]  # the applied events it was computed from
    steps: list[tuple[Any, ...]]  # per ActionExecuted: (index, state or None, hidden, last ML action)
    states: list[dict[str, Any]]  # the states before each ActionExecuted (Rasa's, unchanged)
    tracker: Any  # the replayed tracker after every event (the one Rasa's generator ends with)
    turn_was_hidden: bool
    last_ml_action_sub_state: Any
    raw: list[Any] = dataclasses.field(default_factory=list)  # the tracker's events, reverted ones too
    loop_names: frozenset[str] = frozenset()  # the loops those events activate


_kinds: dict[type, str] = {}


def _kind(event: Any) -> str:
    """How ``DialogueStateTracker.applied_events`` treats an event's class (isinstance, kept per class)."""
    kind = _kinds.get(type(event))
    if kind is None:
        from rasa.shared.core import events

        if isinstance(event, (events.Restarted, events.SessionStarted, events.ActionReverted,
                              events.UserUtteranceReverted)):
            kind = "rewinds"
        elif isinstance(event, events.ActiveLoop):
            kind = "loop"
        elif isinstance(event, events.ActionExecuted):
            kind = "action"
        else:
            kind = "other"
        _kinds[type(event)] = kind
    return kind


def _applied_after(kept: _History, raw: list[Any]) -> list[Any] | None:
    """The applied events of ``raw`` when it is ``kept.raw`` and then events that
    ``applied_events`` only appends: no restart, session start or revert, no loop not active
    before, no execution of a loop action (those rewind earlier events). Otherwise None."""
    if len(raw) < len(kept.raw):
        return None
    for old, new in zip(kept.raw, raw):
        if not _same_event(old, new):
            return None
    added = raw[len(kept.raw):]
    for event in added:
        kind = _kind(event)
        if (kind == "rewinds" or (kind == "loop" and event.name and event.name not in kept.loop_names)
                or (kind == "action" and event.action_name in kept.loop_names)):
            return None
    return kept.events + added


def states_for_tracker_history(
    self: Any,
    tracker: Any,
    omit_unset_slots: bool = False,
    ignore_rule_only_turns: bool = False,
    rule_only_data: Any = None,
) -> list[dict[str, Any]]:
    """``Domain.states_for_tracker_history`` (Rasa 3.6.21), continuing from what a previous call for
    the same conversation computed instead of replaying the whole history.

    A state before an action depends only on the events applied before it. When the events extend
    the previous call's (the same conversation a prediction or a turn later), its replayed tracker
    and states are kept and only the new events are applied; otherwise the tracker is replayed
    from the start and the states of the longest matching prefix are reused. Either way the states
    after that are computed by Rasa's own steps in Rasa's order. Each policy asks for the states of
    the whole history at every prediction (two policies, two or three predictions a turn): 21 % of
    Rasa's time per turn in 40-turn conversations went to recomputing the same states
    (bench/results/profile-findings.md)."""
    from rasa.shared.core import constants
    from rasa.shared.core.events import ActionExecuted

    key = (tracker.sender_id, tracker.is_rule_tracker, omit_unset_slots, ignore_rule_only_turns,
           repr(rule_only_data))
    with _lock:
        if not _states_domain or _states_domain[0] is not self:
            _states_cache.clear()
            _states_domain[:] = [self]
        kept = _states_cache.pop(key, None)  # taken: a concurrent call for it starts afresh
    raw = list(tracker.events)
    applied = _applied_after(kept, raw) if kept is not None else None
    appended = applied is not None  # only events that applied_events appends: the same loops
    if appended:
        same = len(kept.events)
    else:
        applied = tracker.applied_events()
        same = 0
        if kept is not None:
            for old, new in zip(kept.events, applied):
                if not _same_event(old, new):
                    break
                same += 1

    if kept is not None and same == len(kept.events):  # the same history, or a longer one
        history = kept
        start = len(kept.events)
    else:
        history = _History([], [], [], tracker.init_copy(), False, None)
        start = 0
    states = history.states
    old_steps = kept.steps if kept is not None and history is not kept else ()

    def step(tr: Any, hide_rule_turn: bool, states: list[dict[str, Any]]) -> None:
        # Rasa 3.6.21, Domain.states_for_tracker_history, one turn of its loop
        if ignore_rule_only_turns:
            if not history.turn_was_hidden:
                history.last_ml_action_sub_state = self._get_prev_action_sub_state(tr)
            if not tr.followup_action and not tr.latest_action_name == tr.active_loop_name:
                history.turn_was_hidden = hide_rule_turn
            if history.turn_was_hidden:
                return
        state = self.get_active_state(tr, omit_unset_slots=omit_unset_slots)
        if ignore_rule_only_turns:
            self._remove_rule_only_features(state, rule_only_data)
            if states:
                self._substitute_rule_only_user_input(state, states[-1])
            if history.last_ml_action_sub_state:
                state[constants.PREVIOUS_ACTION] = history.last_ml_action_sub_state
        states.append(self._clean_state(state))

    tr = history.tracker
    for index in range(start, len(applied)):
        event = applied[index]
        if isinstance(event, ActionExecuted):  # generate_all_prior_trackers yields before each
            number = len(history.steps)
            reuse = old_steps[number] if number < len(old_steps) and index < same else None
            if reuse is not None:
                _, state, history.turn_was_hidden, history.last_ml_action_sub_state = reuse
                if state is not None:
                    states.append(state)
            else:
                before = len(states)
                step(tr, event.hide_rule_turn, states)
                state = states[-1] if len(states) > before else None
            history.steps.append((index, state, history.turn_was_hidden, history.last_ml_action_sub_state))
        tr.update(event)
    history.events = list(applied)
    if not appended:
        history.loop_names = frozenset(e.name for e in raw if _kind(e) == "loop" and e.name)
    history.raw = raw
    # the tracker after every event: its state is not kept (the next event changes it)
    hidden, last_ml = history.turn_was_hidden, history.last_ml_action_sub_state
    result = list(states)
    step(tr, False, result)
    history.turn_was_hidden, history.last_ml_action_sub_state = hidden, last_ml
    with _lock:
        if _states_domain and _states_domain[0] is not self:
            return _copy_states(result)  # another model was loaded meanwhile: not kept
        _states_cache[key] = history
        while len(_states_cache) > STATES_CACHE_SIZE:
            _states_cache.popitem(last=False)
    return _copy_states(result)


_rasa_endpoint_session: list[Any] = []


def endpoint_session(self: Any) -> Any:
    """``EndpointConfig.session`` (Rasa 3.6.21) with request bodies written by ujson."""
    import aiohttp
    from rasa.utils.endpoints import DEFAULT_REQUEST_TIMEOUT

    auth = aiohttp.BasicAuth(self.basic_auth["username"], self.basic_auth["password"]) if self.basic_auth else None
    return aiohttp.ClientSession(headers=self.headers, auth=auth,
                                 timeout=aiohttp.ClientTimeout(total=DEFAULT_REQUEST_TIMEOUT),
                                 json_serialize=ujson.dumps)


_rasa_load_agent_on_start: list[Any] = []


async def load_agent_on_start(*args: Any, **kwargs: Any) -> Any:
    """``rasa.core.run.load_agent_on_start``, then the loaded model's objects are moved out of the
    garbage collector's way (``gc.freeze``): they live as long as the process, and every full
    collection walked them all, TensorFlow's graph included."""
    agent = await _rasa_load_agent_on_start[0](*args, **kwargs)
    gc.collect()
    gc.freeze()
    return agent


def install() -> None:
    """Put the cached ``validate`` where Rasa imports it from (``from jsonschema import validate``)
    and give SQLite tracker stores their settings."""
    jsonschema.validate = validate
    from rasa.utils import log_utils

    log_utils._anonymizer = redact  # the first processor configure_structlog puts in the chain
    structlog.processors.dict_tracebacks = structlog.processors.ExceptionRenderer(
        structlog.tracebacks.ExceptionDictTransformer(show_locals=False))
    if not event.contains(Engine, "connect", sqlite_pragmas):
        event.listen(Engine, "connect", sqlite_pragmas)
    from rasa.core import tracker_store

    if not _rasa_engine_kwargs:
        _rasa_engine_kwargs.append(tracker_store.create_engine_kwargs)
        tracker_store.create_engine_kwargs = sqlite_engine_kwargs
        tracker_store.SQLTrackerStore._retrieve = sql_retrieve
    from rasa.shared.core.events import Event

    if not _rasa_resolve_by_type:
        _rasa_resolve_by_type.append(Event.resolve_by_type)
        Event.resolve_by_type = staticmethod(resolve_by_type)
    from rasa.core import run

    if not _rasa_load_agent_on_start:
        _rasa_load_agent_on_start.append(run.load_agent_on_start)
        run.load_agent_on_start = load_agent_on_start
    from rasa.utils.endpoints import EndpointConfig

    if not _rasa_endpoint_session:
        _rasa_endpoint_session.append(EndpointConfig.session)
        EndpointConfig.session = endpoint_session
    from rasa.shared.core.domain import Domain

    if not _rasa_states_for_tracker_history:
        _rasa_states_for_tracker_history.append(Domain.states_for_tracker_history)
        Domain.states_for_tracker_history = states_for_tracker_history


def main() -> None:
    install()
    from rasa.__main__ import main as rasa_main

    rasa_main()


if __name__ == "__main__":
    main()
