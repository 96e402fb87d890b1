"""Console mode with TRIAGE_WEB_PORT: the clinicians' console beside the terminal chat, and a
reply typed on the page reaches the client at the terminal (no Telegram at all)."""

from __future__ import annotations

import asyncio
import io
import os
import re

import httpx

from bot import cases
from bot.console import run_console
from bot.servers import free_port
from bot.settings import load_settings
from bot.store import Store
from bot.web import auth

CLINICIAN = "4242"


def test_reply_on_the_page_reaches_the_console_client(tmp_path):
    port = free_port()
    settings = load_settings({"TRIAGE_DB": str(tmp_path / "t.db"), "TRIAGE_CLINICIANS": CLINICIAN,
                              "TRIAGE_WEB_PORT": str(port), "TRIAGE_RASA_URL": f"http://127.0.0.1:{free_port()}"},
                             clinic_file=None)
    with Store(settings.db_path) as store:
        store.ensure_conversation("console:client", "console", "UK")
        case, _ = cases.open_or_raise(store, "console:client", "urgent", ["self_harm"], details={}, message_id=None)
        link = auth.issue_link(store, settings, CLINICIAN)
    out = io.StringIO()
    read_end, write_end = os.pipe()  # the terminal's input: open until the test is done

    async def scenario():
        stop = asyncio.Event()
        console = asyncio.create_task(run_console(settings, None, stdin=os.fdopen(read_end), out=out, stop=stop))
        base = f"http://127.0.0.1:{port}"
        try:
            async with httpx.AsyncClient(base_url=base) as client:
                for _ in range(100):
                    try:
                        form = await client.get(link.replace(auth.base_url(settings), ""))
                        break
                    except httpx.ConnectError:
                        await asyncio.sleep(0.1)
                token = re.search(r'name="token" value="([^"]+)"', form.text).group(1)
                await client.post("/login", data={"token": token}, follow_redirects=True)
                page = await client.get(f"/cases/{case['id']}")
                csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
                await client.post(f"/cases/{case['id']}/takeover", data={"csrf": csrf})
                done = await client.post(f"/cases/{case['id']}/reply", data={"csrf": csrf, "text": "I'm here. <b>Safe?</b>"},
                                         follow_redirects=True)
                assert "Reply sent to the client." in done.text
        finally:
            stop.set()
            os.close(write_end)
            assert await console == 0

    asyncio.run(scenario())
    assert "clinician> 🧑\u200d⚕️ Clinician: I'm here. <b>Safe?</b>" in out.getvalue()  # the terminal shows text as typed
    with Store(settings.db_path) as store:
        sent = [m for m in store.messages("console:client") if m["kind"] == "clinician"]
        assert [m["text"] for m in sent] == ["🧑\u200d⚕️ Clinician: I'm here. <b>Safe?</b>"]
        assert store.conversation("console:client")["takeover_by"] == CLINICIAN
