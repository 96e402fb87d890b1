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
their ``data`` column (``SQLTrackerStore._retrieve``), and counts the rows already stored
before every save with its whole query. ``sql_retrieve`` and ``sql_save`` below keep each
conversation's rows of its latest session (as Rasa's query returns them) and read only the
rows written since, checked against the count and highest id of the conversation's rows, so
other workers' writes are read; a save takes the number stored from them. ``tracker_copy``
copies a tracker's replayed state instead of replaying every event (the processor copies the
tracker for every action), and ``graph_run`` runs the model's graph (every parse and
prediction) node after node without dask's scheduler. Each is tested against Rasa's own
function (tests/bot/test_rasa_run.py).

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

Each save of a tracker tells the REST channel which form it has active (``save_tracker``), so
a turn's answer says so (bot/rasa_channel.py) and the gateway need not read the whole
conversation back to know whether a crisis flow is running.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import gc
import json
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


# What the SQL tracker store keeps of each conversation it read or wrote, per store: the rows of
# the latest session as JSON text (Rasa's query's rows), with the count and highest id of all the
# conversation's rows when they were read, so that the next read fetches only the rows written
# since and a save knows how many of the tracker's events are stored without Rasa's count.
ROWS_CACHE_CHARS = 64_000_000  # about 64 MB of JSON text per store, least recently used dropped


@dataclasses.dataclass
class _Rows:
    total: int  # the conversation's rows in the table, every session
    last_id: int  # their highest id
    session_start: float | None  # the latest session_started row's timestamp (None: no session)
    rows: list[tuple[Any, str]]  # (timestamp, data) of the rows Rasa's query returns, in id order
    chars: int = 0

    def extend(self, new: list[tuple[int, str, Any, str]]) -> None:
        """Add rows written after ``last_id`` (id, type_name, timestamp, data), in id order, as
        Rasa's query would then return them: only the rows at or after the latest session start."""
        self.total += len(new)
        self.last_id = max([self.last_id, *(row[0] for row in new)])
        starts = [ts for _, type_name, ts, _ in new if type_name == "session_started" and ts is not None]
        if starts:
            self.session_start = max(starts if self.session_start is None else [self.session_start, *starts])
            rows = self.rows + [(ts, data) for _, _, ts, data in new]
        else:  # the rows kept already are at or after the start
            rows = [(ts, data) for _, _, ts, data in new]
        start = self.session_start
        if start is not None:  # SQL: timestamp >= start (a NULL timestamp is not)
            rows = [(ts, data) for ts, data in rows if ts is not None and ts >= start]
        if starts:
            self.rows = rows
            self.chars = sum(len(data) for _, data in rows)
        else:
            self.rows.extend(rows)
            self.chars += sum(len(data) for _, data in rows)


def _rows_cache(store: Any) -> "collections.OrderedDict[str, _Rows]":
    cache = store.__dict__.get("_triage_rows")
    if cache is None:
        cache = store.__dict__["_triage_rows"] = collections.OrderedDict()
    return cache


def _keep_rows(store: Any, sender_id: str, kept: _Rows) -> None:
    cache = _rows_cache(store)
    cache.pop(sender_id, None)
    cache[sender_id] = kept
    total = sum(entry.chars for entry in cache.values())
    while total > ROWS_CACHE_CHARS and len(cache) > 1:
        _, dropped = cache.popitem(last=False)
        total -= dropped.chars


def _statements(store: Any) -> dict[str, Any]:
    """The store's queries of a conversation's rows, built once (building one costs more than
    SQLite takes to answer it)."""
    statements = store.__dict__.get("_triage_statements")
    if statements is None:
        import sqlalchemy as sa

        event = store.SQLEvent
        sender = event.sender_id == sa.bindparam("sender")
        columns = (event.id, event.type_name, event.timestamp, event.data)
        statements = store.__dict__["_triage_statements"] = {
            "count": sa.select(sa.func.count(event.id), sa.func.max(event.id)).where(sender),
            "since": sa.select(*columns).where(sender, event.id > sa.bindparam("after"),
                                               event.id <= sa.bindparam("last")).order_by(event.id),
            "every": sa.select(*columns).where(sender).order_by(event.id),
        }
    return statements


def _count_and_last(store: Any, session: Any, sender_id: str) -> tuple[int, int]:
    total, last = session.connection().execute(_statements(store)["count"], {"sender": sender_id}).one()
    return int(total or 0), int(last or 0)


def _current_rows(store: Any, session: Any, sender_id: str) -> _Rows:
    """The conversation's rows as they are in the table now: from what is kept, reading only the
    rows written since (checked against the count and highest id of its rows), or all of them."""
    statements, connection = _statements(store), session.connection()
    kept = _rows_cache(store).pop(sender_id, None)
    if kept is not None:
        total, last = _count_and_last(store, session, sender_id)
        if (total, last) == (kept.total, kept.last_id):
            return kept
        if last > kept.last_id and total > kept.total:
            new = connection.execute(statements["since"], {"sender": sender_id, "after": kept.last_id,
                                                           "last": last}).all()
            if len(new) == total - kept.total:  # nothing removed, nothing written before last_id
                kept.extend([tuple(row) for row in new])
                return kept
    every = connection.execute(statements["every"], {"sender": sender_id}).all()
    kept = _Rows(0, 0, None, [])
    kept.extend([tuple(row) for row in every])
    return kept


async def sql_retrieve(self: Any, sender_id: str, fetch_events_from_all_sessions: bool) -> Any:
    """``SQLTrackerStore._retrieve``: the same events, reading only the rows written since the last
    read of the conversation (what is kept is checked against the table's count and highest id of
    the conversation's rows, so another worker's writes are read too)."""
    from rasa.shared.core.trackers import DialogueStateTracker

    with self.session_scope() as session:
        if fetch_events_from_all_sessions:
            query = self._event_query(session, sender_id, fetch_events_from_all_sessions=True)
            data = [data for (data,) in query.with_entities(self.SQLEvent.data).all()]
        else:
            kept = _current_rows(self, session, sender_id)
            if kept.total:
                _keep_rows(self, sender_id, kept)
            data = [data for _, data in kept.rows]
    events = [ujson.loads(item) for item in data]
    if self.domain and events:
        return DialogueStateTracker.from_dict(sender_id, events, self.domain.slots)
    return None


async def sql_save(self: Any, tracker: Any) -> None:
    """``SQLTrackerStore.save`` (Rasa 3.6.21): the same rows, written the same way. How many of the
    tracker's events are stored already comes from what was kept of the conversation when the
    table has not changed since (Rasa counts the session's rows with its whole query: 6 % of a
    turn), and the written rows are added to what is kept."""
    from rasa.shared.nlu.constants import INTENT_NAME_KEY

    await self.stream_events(tracker)
    sender_id = tracker.sender_id
    with self.session_scope() as session:
        kept = _rows_cache(self).pop(sender_id, None)
        now = _count_and_last(self, session, sender_id)
        if kept is None and now == (0, 0):
            kept = _Rows(0, 0, None, [])  # a new conversation: nothing stored yet
        if kept is not None and now == (kept.total, kept.last_id):
            stored = len(kept.rows)
        else:
            kept = None
            stored = self._event_query(session, sender_id, fetch_events_from_all_sessions=False).count()
        written = []
        for unstored in list(tracker.events)[stored:]:
            data = unstored.as_dict()
            row = self.SQLEvent(
                sender_id=sender_id,
                type_name=unstored.type_name,
                timestamp=data.get("timestamp"),
                intent_name=data.get("parse_data", {}).get("intent", {}).get(INTENT_NAME_KEY),
                action_name=data.get("name"),
                data=json.dumps(data),
            )
            session.add(row)
            written.append(row)
        session.flush()  # the rows get their ids here; read before the commit expires them
        new = [(row.id, row.type_name, row.timestamp, row.data) for row in written]
        session.commit()
    if kept is not None:
        kept.extend(new)
        _keep_rows(self, sender_id, kept)


_rasa_tracker_copy: list[Any] = []
_TRACKER_STATE = frozenset({"_max_event_history", "_paused", "active_loop", "assistant_id", "events",
                            "followup_action", "is_rule_tracker", "latest_action", "latest_bot_utterance",
                            "latest_message", "model_id", "sender_id", "sender_source", "slots"})


_plain_classes: dict[type, bool] = {}


def _shallow_copy(obj: Any) -> Any:
    """``copy.copy`` of a plain object (a Slot): a new object with the same attributes."""
    cls = type(obj)
    plain = _plain_classes.get(cls)
    if plain is None:
        plain = _plain_classes[cls] = not ("__slots__" in dir(cls) or hasattr(cls, "__copy__"))
    if not plain:
        return copy.copy(obj)
    new = object.__new__(cls)
    new.__dict__.update(obj.__dict__)
    return new


def tracker_copy(self: Any) -> Any:
    """``DialogueStateTracker.copy`` without replaying every event: Rasa's copy is a new tracker
    (``init_copy``) that applies each event again (4 % of a turn in 40-turn conversations: the
    processor copies the tracker for every action it runs). The replayed state is what the
    tracker's attributes hold, so they are copied instead, as the replay leaves them: the same
    event objects, new slot objects and dicts, and no model or assistant id (``init_copy``
    sets none). Any tracker this was not checked for (a subclass, slots without a domain, an
    attribute Rasa 3.6.21 does not have) is copied Rasa's way."""
    from rasa.shared.constants import DEFAULT_SENDER_ID
    from rasa.shared.core.trackers import DialogueStateTracker

    if (type(self) is not DialogueStateTracker or type(self.slots) is not dict
            or vars(self).keys() != _TRACKER_STATE):
        return _rasa_tracker_copy[0](self)
    new = DialogueStateTracker.__new__(DialogueStateTracker)
    new.__dict__.update(vars(self))
    new.sender_id = self.sender_id or DEFAULT_SENDER_ID  # as init_copy
    new.sender_source = new.model_id = new.assistant_id = None  # init_copy sets none
    new.events = self._create_events(list(self.events))
    new.slots = {name: _shallow_copy(slot) for name, slot in self.slots.items()}
    if self.latest_action is not None:
        new.latest_action = dict(self.latest_action)
    new.active_loop = copy.copy(self.active_loop)  # a TrackerActiveLoop dataclass, or None
    return new


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


_rasa_graph_run: list[Any] = []


def _run_order(self: Any, targets: tuple[str, ...]) -> tuple[list[tuple[str, Any, tuple[str, ...]]], Any]:
    """The nodes that ``targets`` need, each after the nodes it needs: (name, node, its parents)."""
    kept = self.__dict__.setdefault("_triage_orders", {})
    order = kept.get(targets)
    if order is None:
        schema = self._graph_schema.minimal_graph_schema(list(targets))
        steps: list[tuple[str, Any, tuple[str, ...]]] = []
        placed: set[str] = set()

        def place(name: str) -> None:  # depth first: every parent before its child
            if name in placed or name not in schema.nodes:
                return
            placed.add(name)
            parents = tuple(schema.nodes[name].needs.values())
            for parent in parents:
                place(parent)
            steps.append((name, self._instantiated_nodes[name], parents))

        for target in targets:
            place(target)
        order = kept[targets] = (steps, frozenset(schema.nodes))
    return order


def graph_run(self: Any, inputs: dict[str, Any] | None = None, targets: list[str] | None = None) -> dict[str, Any]:
    """``DaskGraphRunner.run`` (Rasa 3.6.21) without dask: the same nodes, called with the same
    inputs, each once, in an order where every node comes after the nodes it needs.

    Rasa hands the graph to ``dask.get`` (dask's synchronous scheduler) at every parse and every
    prediction; the scheduling itself, apart from the nodes' work, took 7.6 % of Rasa's time per
    turn (py-spy, bench/results/profile-findings.md). The nodes are Rasa's ``GraphNode`` objects,
    which run their hooks and wrap their errors as under dask; an input is passed to a node as
    dask passes it, ``(name, value)``."""
    from rasa.engine.exceptions import GraphRunError

    run_targets = tuple(targets if targets else self._graph_schema.target_names)
    steps, names = _run_order(self, run_targets)
    results: dict[str, Any] = {}
    for name, value in (inputs or {}).items():
        if isinstance(value, str) and value in names:
            raise GraphRunError(
                f"Input value '{value}' clashes with a node name. Make sure that none of the input names "
                f"passed to the `run` method are the same as node names in the graph schema.")
        results[name] = (name, value)
    try:
        for name, node, parents in steps:
            results[name] = node(*[results[parent] for parent in parents])
        return dict(results[target] for target in run_targets)
    except RuntimeError as exc:
        raise GraphRunError("Error running runner.") from exc


_rasa_endpoint_session: list[Any] = []


def endpoint_session(self: Any) -> Any:
    """``EndpointConfig.session`` (Rasa 3.6.21) with request bodies written by ujson."""
    import aiohttp
    from rasa.utils.endpoints import DEFAULT_REQUEST_TIMEOUT

    auth = aiohttp.BasicAuth(self.basic_auth["username"], self.basic_auth["password"]) if self.basic_auth else None
    return aiohttp.ClientSession(headers=self.headers, auth=auth,
                                 timeout=aiohttp.ClientTimeout(total=DEFAULT_REQUEST_TIMEOUT),
                                 json_serialize=ujson.dumps)


_rasa_save_tracker: list[Any] = []


async def save_tracker(self: Any, tracker: Any) -> None:
    """``MessageProcessor.save_tracker``, then the REST channel is told which form the saved
    tracker has active, for its answer's header (bot/rasa_channel.py)."""
    await _rasa_save_tracker[0](self, tracker)
    from bot.rasa_channel import record_saved

    record_saved(tracker)


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
        tracker_store.SQLTrackerStore.save = sql_save
    from rasa.shared.core.trackers import DialogueStateTracker

    if not _rasa_tracker_copy:
        _rasa_tracker_copy.append(DialogueStateTracker.copy)
        DialogueStateTracker.copy = tracker_copy
    from rasa.shared.core.events import Event

    if not _rasa_resolve_by_type:
        _rasa_resolve_by_type.append(Event.resolve_by_type)
        Event.resolve_by_type = staticmethod(resolve_by_type)
    from rasa.core import run

    if not _rasa_load_agent_on_start:
        _rasa_load_agent_on_start.append(run.load_agent_on_start)
        run.load_agent_on_start = load_agent_on_start
    from rasa.engine.runner.dask import DaskGraphRunner

    if not _rasa_graph_run:
        _rasa_graph_run.append(DaskGraphRunner.run)
        DaskGraphRunner.run = graph_run
    from rasa.utils.endpoints import EndpointConfig

    if not _rasa_endpoint_session:
        _rasa_endpoint_session.append(EndpointConfig.session)
        EndpointConfig.session = endpoint_session
    from rasa.core.processor import MessageProcessor

    if not _rasa_save_tracker:
        _rasa_save_tracker.append(MessageProcessor.save_tracker)
        MessageProcessor.save_tracker = save_tracker
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
