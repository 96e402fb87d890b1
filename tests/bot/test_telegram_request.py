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
                     "fields": fields, "files": files, "agent": request.headers.get("User-Agent"),
                     # a request sent to a proxy names the whole URL (RFC 9112, 3.2.2)
                     "proxied_to": request.host if request.raw_path.startswith("http://") else None,
                     "proxy_auth": request.headers.get("Proxy-Authorization")})
        result = {"message_id": 7, "date": 0, "chat": {"id": 42, "type": "private"}, "text": "ok"}
        if request.match_info["method"] == "getMe":
            result = {"id": 1, "is_bot": True, "first_name": "Triage", "username": "triage_bot"}
        return web.json_response({"ok": True, "result": result})

    app = web.Application()
    app.router.add_post("/bot{token}/{method}", handle)
    runner, base = await serve_app(app)
    return runner, f"{base}/bot"


async def calls(request, *, base_url: str | None = None) -> list:
    """getMe, a message with buttons and a document, sent through ``request`` to a recording API.

    With ``base_url`` the bot is pointed there instead (a host only a proxy can reach)."""
    seen: list = []
    runner, base = await recording_api(seen)
    try:
        async with Bot(TOKEN, base_url=base_url or base, request=request, get_updates_request=request) as bot:
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


def use_proxy(monkeypatch, proxy: str | None, no_proxy: str | None = None) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    if proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy)
    if no_proxy:
        monkeypatch.setenv("NO_PROXY", no_proxy)


@pytest.mark.parametrize("make", [AiohttpRequest, HTTPXRequest], ids=["ours", "ptbs-httpx"])
def test_the_environments_proxy_carries_every_request_with_its_password(monkeypatch, make):
    """A clinic behind an outbound proxy sets HTTP(S)_PROXY: the bot's requests go through it."""

    async def run():
        seen: list = []
        runner, proxy = await recording_api(seen)  # it answers as the Bot API would, as a proxy
        use_proxy(monkeypatch, proxy.replace("http://", "http://clinic:s3cret@").removesuffix("/bot"))
        try:
            # a host this machine cannot resolve: only the proxy can reach it
            async with Bot(TOKEN, base_url="http://api.telegram.invalid/bot", request=make(),
                           get_updates_request=make()) as bot:
                await bot.send_message(42, "hello")
        finally:
            await runner.cleanup()
        return seen

    seen = asyncio.run(run())
    assert [call["method"] for call in seen] == ["getMe", "sendMessage"]
    assert {call["proxied_to"] for call in seen} == {"api.telegram.invalid"}
    assert {call["proxy_auth"] for call in seen} == {"Basic Y2xpbmljOnMzY3JldA=="}  # clinic:s3cret


def test_no_proxy_sends_requests_to_its_hosts_directly(monkeypatch):
    use_proxy(monkeypatch, "http://127.0.0.1:9", no_proxy="127.0.0.1")  # port 9: nothing listens
    seen = asyncio.run(calls(AiohttpRequest()))
    assert [call["method"] for call in seen] == ["getMe", "sendMessage", "sendDocument"]
    assert {call["proxied_to"] for call in seen} == {None}


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
