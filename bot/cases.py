"""The case rules: how a case opens and rises (the bot side), how clinicians move it
open → claimed → resolved (plus takeover), and how its history replays to its state.

The bot can only open or raise a case, never lower or close one (ARCHITECTURE.md
invariant 3): ``open_or_raise`` merges priorities upward and is what ``bot.escalation``
calls. Only allow-listed clinicians act on cases; ``authorise`` is the one check, and every
attempt, allowed or refused, is written to the audit log. The store only keeps the rows.
"""

from __future__ import annotations

import json
from typing import Any, Iterable

from bot.store import Store
from bot.store import now as _now
from bot.terms import OPEN_STATUSES, PRIORITY_RANK


#: The one answer to anyone outside the allow-list, whatever they tried.
REFUSAL = "Sorry, only the clinic's listed clinicians can do that."


class NotAllowed(PermissionError):
    """The actor is not an allow-listed clinician."""

    def __init__(self) -> None:
        super().__init__(REFUSAL)


class CaseError(ValueError):
    """The case does not exist or is not in a state that allows the action."""


def authorise(
    store: Store, clinicians: frozenset[str], actor: str, action: str, target: str, *, audit_allowed: bool = True
) -> None:
    """The one check for every clinician action: refuse (and audit) anyone outside the allow-list.

    The allowed attempt is audited too, unless the caller goes on to an action that audits
    itself (``audit_allowed=False``).
    """
    if actor not in clinicians:
        store.audit(actor, f"refused:{action}", target)
        raise NotAllowed()
    if audit_allowed:
        store.audit(actor, action, target)


# -- the bot side: open, raise, save a safety plan ----------------------------------------

def merge(current: dict[str, Any], priority: str, categories: Iterable[str], duty_to_protect: bool,
          page: bool) -> tuple[dict[str, Any], str]:
    """The changes a new signal makes to an open case, and the event that records them.

    The priority only keeps or rises, categories and duty-to-protect accumulate, and a case
    once paged stays paged. The event is ``raised`` when the priority rose, else ``signal``
    for a page or ``review`` for a non-paging entry.
    """
    higher = PRIORITY_RANK[priority] > PRIORITY_RANK[current["priority"]]
    new_priority = priority if higher else current["priority"]
    changes = {
        "priority": new_priority,
        "categories": json.dumps(sorted(set(json.loads(current["categories"] or "[]")) | set(categories))),
        "duty_to_protect": int(bool(current["duty_to_protect"]) or duty_to_protect),
        "paged": int(bool(current["paged"]) or page),
    }
    if page and not current["paged"]:  # the re-page clock starts at the first page
        changes["last_paged_at"] = _now()
    return changes, "raised" if higher else "signal" if page else "review"


def open_or_raise(
    store: Store,
    conversation_id: str,
    priority: str,
    categories: Iterable[str],
    *,
    details: dict[str, Any],
    message_id: int | None,
    duty_to_protect: bool = False,
    actor: str = "bot",
    page: bool = True,
) -> tuple[dict[str, Any], bool]:
    """Open a case, or raise the open one; never lower a priority. Return (case, opened).

    ``page=False`` records a non-paging entry (the screen's *ask* tier): the case is on
    the queue but is not re-paged until something pages for it.
    """
    if priority not in PRIORITY_RANK:
        raise ValueError(f"unknown priority {priority!r}")
    categories = list(categories)
    with store.write():
        current = store.open_case(conversation_id)
        if current is None:
            fields = {"status": "open", "priority": priority, "categories": json.dumps(sorted(set(categories))),
                      "duty_to_protect": int(duty_to_protect), "paged": int(page)}
            return store.create_case(conversation_id, fields, "opened" if page else "review", actor,
                                     details, message_id), True
        changes, event = merge(current, priority, categories, duty_to_protect, page)
        return store.change_case(current["id"], event, actor, changes, details, message_id), False


def save_safety_plan(store: Store, conversation_id: str, plan: dict[str, Any], message_id: int | None) -> int:
    """Save a Stanley-Brown safety plan on the conversation's case; a plan with no case open
    opens a routine one (the plan is for the clinician to read). Return the case id."""
    with store.write():
        case = store.open_case(conversation_id)
        if case is None:
            case, _ = open_or_raise(store, conversation_id, "routine", [],
                                    details={"reason": "safety plan saved"}, message_id=message_id)
        store.add_case_event(case["id"], "safety_plan", "bot", None, plan, message_id)
    return int(case["id"])


def replay(events: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Rebuild a case's state from its event history alone (the audit of the cases row)."""
    state: dict[str, Any] = {"status": None, "priority": None, "claimed_by": None,
                             "resolved_by": None, "outcome": None, "categories": set()}
    for event in events:
        details = json.loads(event["details"] or "{}")
        kind = event["event"]
        if kind in ("opened", "review") and state["status"] is None:
            state["status"] = "open"
        if kind in ("opened", "raised", "signal", "review") and event["priority"]:
            state["priority"] = event["priority"]
            state["categories"] |= set(details.get("categories") or [])
        elif kind in ("claimed", "takeover") and state["status"] == "open":
            state.update(status="claimed", claimed_by=event["actor"])
        elif kind == "resolved":
            state.update(status="resolved", resolved_by=event["actor"], outcome=details.get("outcome"))
            state["claimed_by"] = state["claimed_by"] or event["actor"]
    state["categories"] = sorted(state["categories"])
    return state


# -- the clinicians' side ------------------------------------------------------------------

def _case(store: Store, case_id: int) -> dict[str, Any]:
    case = store.case(case_id)
    if case is None:
        raise CaseError(f"there is no case #{case_id}")
    return case


def claim(store: Store, clinicians: frozenset[str], case_id: int, actor: str) -> dict[str, Any]:
    """Claim an open case; a case claimed by someone else is not taken from them."""
    authorise(store, clinicians, actor, "claim", f"case:{case_id}")
    case = _case(store, case_id)
    if case["status"] == "resolved":
        raise CaseError(f"case #{case_id} is already resolved")
    if case["status"] == "claimed":
        if case["claimed_by"] == actor:
            return case
        raise CaseError(f"case #{case_id} is already claimed by {case['claimed_by']}")
    return store.change_case(
        case_id, "claimed", actor, {"status": "claimed", "claimed_by": actor, "claimed_at": _now()}, {}
    )


def resolve(
    store: Store, clinicians: frozenset[str], case_id: int, actor: str, outcome: str
) -> dict[str, Any]:
    """Resolve a case with the clinician's outcome; ends any takeover of its conversation."""
    authorise(store, clinicians, actor, "resolve", f"case:{case_id}")
    case = _case(store, case_id)
    if case["status"] == "resolved":
        raise CaseError(f"case #{case_id} is already resolved")
    if not outcome.strip():
        raise CaseError("say the outcome: /resolve N what happened")
    store.set_takeover(case["conversation_id"], None)
    return store.change_case(
        case_id,
        "resolved",
        actor,
        {"status": "resolved", "resolved_by": actor, "resolved_at": _now(), "outcome": outcome.strip(),
         "claimed_by": case["claimed_by"] or actor, "claimed_at": case["claimed_at"] or _now()},
        {"outcome": outcome.strip()},
    )


def note(store: Store, clinicians: frozenset[str], case_id: int, actor: str, text: str) -> dict[str, Any]:
    """Add a clinician's note to the case history."""
    authorise(store, clinicians, actor, "note", f"case:{case_id}")
    _case(store, case_id)
    if not text.strip():
        raise CaseError("say the note: /note N text")
    return store.change_case(case_id, "note", actor, {}, {"note": text.strip()})


def takeover(store: Store, clinicians: frozenset[str], case_id: int, actor: str) -> dict[str, Any]:
    """Route the client's messages to this clinician instead of the bot; claims the case."""
    authorise(store, clinicians, actor, "takeover", f"case:{case_id}")
    case = _case(store, case_id)
    if case["status"] not in OPEN_STATUSES:
        raise CaseError(f"case #{case_id} is resolved")
    conversation = store.conversation(case["conversation_id"])
    if conversation["takeover_by"] and conversation["takeover_by"] != actor:
        raise CaseError(f"case #{case_id} is already taken over by {conversation['takeover_by']}")
    store.set_takeover(case["conversation_id"], actor)
    changes = {} if case["status"] == "claimed" else {
        "status": "claimed", "claimed_by": actor, "claimed_at": _now()}
    return store.change_case(case_id, "takeover", actor, changes, {})


def release(store: Store, clinicians: frozenset[str], case_id: int, actor: str) -> dict[str, Any]:
    """Hand the conversation back to the bot."""
    authorise(store, clinicians, actor, "release", f"case:{case_id}")
    case = _case(store, case_id)
    store.set_takeover(case["conversation_id"], None)
    return store.change_case(case_id, "release", actor, {}, {})
