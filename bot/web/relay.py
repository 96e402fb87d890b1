"""Where the console's messages go: to the client and to the triage group, through the same
send path the Telegram staff takeover uses (``bot.telegram.staff.Staff.to_client``), or, in
console mode, to the terminal that is the client's chat."""

from __future__ import annotations

import sys
from typing import Protocol, TextIO

from bot.store import Store


class Relay(Protocol):
    async def to_client(self, conversation_id: str, text: str, kind: str) -> None:
        """Send a clinician's or the clinic's message to the client, and store it."""

    async def to_staff(self, text: str) -> None:
        """Tell the triage group what happened on the console (no client text)."""


class ReplyError(ValueError):
    """The client's channel cannot be reached from here."""


class TelegramRelay:
    """Through the gateway's ``Staff`` (its Sender: priority, retries, Telegram's limits)."""

    def __init__(self, staff, staff_chat_id: str) -> None:
        self.staff = staff
        self.staff_chat_id = staff_chat_id

    async def to_client(self, conversation_id: str, text: str, kind: str) -> None:
        if not conversation_id.startswith("telegram:"):
            raise ReplyError("this client is not on Telegram; reply from the console that runs their chat")
        await self.staff.to_client(conversation_id, text, kind)

    async def to_staff(self, text: str) -> None:
        from bot.telegram.send import PRIORITY_CARD

        await self.staff.sender.send(self.staff_chat_id, text, priority=PRIORITY_CARD, disable_notification=True)


class ConsoleRelay:
    """Console mode (``triage up`` without a token): the terminal is the client's chat."""

    def __init__(self, store: Store, out: TextIO = sys.stdout) -> None:
        self.store = store
        self.out = out

    async def to_client(self, conversation_id: str, text: str, kind: str) -> None:
        if not conversation_id.startswith("console:"):
            raise ReplyError("this client is on Telegram; run the console with the gateway that holds the token")
        self.out.write("clinician> " + "\n           ".join(text.splitlines() or [""]) + "\n")
        self.out.flush()
        self.store.store_outbound(conversation_id, text, kind=kind)

    async def to_staff(self, text: str) -> None:
        self.out.write(f"[console] {text}\n")
        self.out.flush()
