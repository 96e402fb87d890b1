"""Small pure helpers shared by the custom actions."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Tracker

PRIORITIES = ("routine", "urgent", "imminent")


def message_metadata(tracker: Tracker) -> dict[str, Any]:
    """The metadata the gateway attached to the latest user message (region, screening)."""
    meta = (tracker.latest_message or {}).get("metadata") or {}
    return meta if isinstance(meta, dict) else {}


def client_region(tracker: Tracker) -> str | None:
    """The client's hotline region as sent by the gateway, if any."""
    region = message_metadata(tracker).get("region")
    return region if isinstance(region, str) and region else None


def escalation_payload(
    *,
    priority: str,
    reason: str,
    categories: list[str] | None = None,
    facts: dict[str, Any] | None = None,
    duty_to_protect: bool = False,
) -> dict[str, Any]:
    """Build the custom JSON payload the gateway turns into a case update and an alert.

    Actions can only ask to open or raise a case: the gateway never lowers a priority or
    closes a case on the bot's word (ARCHITECTURE.md invariant 3).
    """
    if priority not in PRIORITIES:
        raise ValueError(f"priority must be one of {PRIORITIES}, not {priority!r}")
    return {
        "escalate": {
            "priority": priority,
            "categories": list(categories or []),
            "reason": reason,
            "facts": dict(facts or {}),
            "duty_to_protect": duty_to_protect,
        }
    }
