"""Hotline cards and requests for a human."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher

from actions.helpers import client_region, escalation_payload
from bot.hotlines import hotline_card


class ActionHotlineCard(Action):
    """Send the hotline card for the client's region (no clinician is paged by this alone)."""

    def name(self) -> str:
        return "action_hotline_card"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        dispatcher.utter_message(text=hotline_card(client_region(tracker), clinician_told=False))
        return []


class ActionRequestHuman(Action):
    """Tell the client a clinician is being told, show the card, and page a clinician."""

    def name(self) -> str:
        return "action_request_human"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        dispatcher.utter_message(response="utter_human_requested")
        dispatcher.utter_message(text=hotline_card(client_region(tracker), clinician_told=True))
        dispatcher.utter_message(
            json_message=escalation_payload(
                priority="routine", reason="The client asked to talk to a person."
            )
        )
        return []
