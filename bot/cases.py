"""The case lifecycle as clinicians drive it: open → claimed → resolved, plus takeover.

Only allow-listed clinicians act on cases (ARCHITECTURE.md invariant 3). Every attempt,
allowed or refused, is written to the audit log. The bot side never calls these: it can
only open or raise a case (bot.escalation).
"""

from __future__ import annotations

from typing import Any

from bot.storage import OPEN_STATUSES, Store
from bot.storage import now as _now


class NotAllowed(PermissionError):
    """The actor is not an allow-listed clinician."""


class CaseError(ValueError):
    """The case does not exist or is not in a state that allows the action."""


def authorise(store: Store, clinicians: frozenset[str], actor: str, action: str, target: str) -> None:
    """Refuse (and audit) anyone outside the allow-list; audit the allowed attempt too."""
    if actor not in clinicians:
        store.audit(actor, f"refused:{action}", target)
        raise NotAllowed(f"only the clinic's clinicians may {action} cases")
    store.audit(actor, action, target)


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
    return store.transition_case(
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
    return store.transition_case(
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
    return store.transition_case(case_id, "note", actor, {}, {"note": text.strip()})


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
    return store.transition_case(case_id, "takeover", actor, changes, {})


def release(store: Store, clinicians: frozenset[str], case_id: int, actor: str) -> dict[str, Any]:
    """Hand the conversation back to the bot."""
    authorise(store, clinicians, actor, "release", f"case:{case_id}")
    case = _case(store, case_id)
    store.set_takeover(case["conversation_id"], None)
    return store.transition_case(case_id, "release", actor, {}, {})
