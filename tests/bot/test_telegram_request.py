"""bot.telegram.request: PTB's requests on aiohttp send what PTB's own httpx requests send."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, InputFile
from telegram.error import NetworkError, TimedOut
from telegram.request import HTTPXRequest

from bot.telegram.request import AiohttpRequest
from conftest import serve_app

TOKEN = "123456:SECRET-token-never-in-a-message"


async def recording_api(seen: list, *, hang: bool = False):
    """A Bot API on a free loopback port that records each request's method, fields and files."""

    async def handle(request: web.Request) -> web.Response:
        if hang:
            await asyncio.sleep(1.5)  # far longer than the read time-out below
        fields, files = {}, {}
        if request.content_type == "multipart/form-data":
            form = await request.post()
            for name, value in form.items():
                if isinstance(value, web.FileField):
                    files[name] = (value.filename, value.content_type, value.file.read())
                else:
                    fields[name] = value
        else:
            fields = dict(await request.post())
        seen.append({"method": request.match_info["method"], "type": request.content_type,
                     "fields": fields, "files": files, "agent": request.headers.get("User-Agent")})
        result = {"message_id": 7, "date": 0, "chat": {"id": 42, "type": "private"}, "text": "ok"}
        if request.match_info["method"] == "getMe":
            result = {"id": 1, "is_bot": True, "first_name": "Triage", "username": "triage_bot"}
        return web.json_response({"ok": True, "result": result})

    app = web.Application()
    app.router.add_post("/bot{token}/{method}", handle)
    runner, base = await serve_app(app)
    return runner, f"{base}/bot"


async def calls(request) -> list:
    seen: list = []
    runner, base = await recording_api(seen)
    try:
        async with Bot(TOKEN, base_url=base, request=request, get_updates_request=request) as bot:
            buttons = InlineKeyboardMarkup([[InlineKeyboardButton("Claim", callback_data="claim:1")]])
            sent = await bot.send_message(42, "Case 1 — «urgent» & <b>", reply_markup=buttons, parse_mode="HTML")
            assert sent.message_id == 7
            await bot.send_document(-100, InputFile("# case 1\nclient text".encode(), filename="case-1.md"),
                                    caption="Transcript")
    finally:
        await runner.cleanup()
    return seen


def test_requests_carry_the_same_fields_files_and_agent_as_ptbs_own():
    ours = asyncio.run(calls(AiohttpRequest()))
    theirs = asyncio.run(calls(HTTPXRequest()))
    assert [call["method"] for call in ours] == ["getMe", "sendMessage", "sendDocument"]
    for mine, reference in zip(ours, theirs):
        assert mine["fields"] == reference["fields"]
        assert mine["files"] == reference["files"]
        assert mine["type"] == reference["type"]
        assert mine["agent"] == reference["agent"]
    assert ours[2]["files"]["document"][2] == b"# case 1\nclient text"


def test_a_silent_server_is_a_time_out_and_a_closed_port_a_network_error_without_the_token():
    async def run():
        seen: list = []
        runner, base = await recording_api(seen, hang=True)
        request = AiohttpRequest(read_timeout=0.3)
        await request.initialize()
        try:
            with pytest.raises(TimedOut):
                await request.post(f"{base}{TOKEN}/getMe")
        finally:
            await request.shutdown()
            await runner.cleanup()
        request = AiohttpRequest()
        await request.initialize()
        try:
            with pytest.raises(NetworkError) as refused:
                await request.post(f"{base}{TOKEN}/getMe")  # the server is gone
        finally:
            await request.shutdown()
        return refused.value

    refused = asyncio.run(run())
    assert not isinstance(refused, TimedOut)
    assert "SECRET" not in str(refused) and "aiohttp." in str(refused)


def test_a_request_that_is_not_initialised_says_so():
    with pytest.raises(RuntimeError, match="not initialized"):
        asyncio.run(AiohttpRequest().do_request("http://127.0.0.1:9/", "POST"))
