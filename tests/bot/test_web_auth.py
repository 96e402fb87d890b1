"""Console login links and sessions, and what every response carries, over real HTTP (no browser)."""

from __future__ import annotations

import asyncio
import logging
import re

import httpx
import pytest
from web_console import ManualClock

from bot.cases import NotAllowed
from bot.servers import free_port
from bot.settings import load_settings
from bot.store import Store
from bot.web import auth
from bot.web.app import build_app, serve

CLINICIAN = "4242"


def settings_for(tmp_path, **extra):
    env = {"TRIAGE_DB": str(tmp_path / "t.db"), "TRIAGE_CLINICIANS": CLINICIAN,
           "TRIAGE_WEB_PORT": str(free_port()), **extra}
    return load_settings(env, clinic_file=None)


def test_web_settings_default_and_parse(tmp_path):
    settings = settings_for(tmp_path, TRIAGE_WEB_URL="https://triage.example.org/", TRIAGE_WEB_IDLE_HOURS="8")
    assert settings.web_idle_hours == 8.0 and auth.base_url(settings) == "https://triage.example.org"
    plain = load_settings({"TRIAGE_DB": str(tmp_path / "t.db")}, clinic_file=None)
    assert plain.web_port is None and auth.base_url(plain) == "http://127.0.0.1:8765"


def test_links_only_for_listed_clinicians_rate_limited_and_stored_as_hashes(tmp_path):
    settings = settings_for(tmp_path)
    clock = ManualClock()
    with Store(settings.db_path) as store:
        with pytest.raises(NotAllowed):
            auth.issue_link(store, settings, "666", clock)
        links = [auth.issue_link(store, settings, CLINICIAN, clock) for _ in range(auth.LINKS_PER_WINDOW)]
        with pytest.raises(auth.TooManyLinks):
            auth.issue_link(store, settings, CLINICIAN, clock)
        clock.advance(minutes=auth.LINK_MINUTES, seconds=1)
        links.append(auth.issue_link(store, settings, CLINICIAN, clock))  # the window has passed
        tokens = [link.rsplit("/", 1)[1] for link in links]
        dump = "\n".join(store.db.iterdump())
        assert not any(token in dump for token in tokens)
        actions = [e["action"] for e in store.audit_entries()]
        assert "refused:web-login-link" in actions and "refused:web-login-link-rate" in actions
        started = auth.redeem(store, settings, tokens[-1], clock)
        assert started is not None and auth.redeem(store, settings, tokens[-1], clock) is None
        session_id, _ = started
        assert session_id not in "\n".join(store.db.iterdump())


def test_without_a_session_every_page_but_the_login_page_refuses(tmp_path, caplog):
    settings = settings_for(tmp_path)

    async def scenario():
        store = Store(settings.db_path)
        runner = await serve(build_app(settings, store, None), settings.web_port)
        base = f"http://127.0.0.1:{settings.web_port}"
        try:
            async with httpx.AsyncClient(base_url=base, follow_redirects=False) as client:
                for path in ("/", "/cases/1", "/audit"):
                    response = await client.get(path)
                    assert response.status_code == 303 and response.headers["location"] == "/login"
                for path in ("/queue", "/events"):
                    assert (await client.get(path)).status_code == 401
                assert (await client.post("/cases/1/claim", data={"csrf": "x"})).status_code == 401
                page = await client.get("/login")
                assert page.status_code == 200 and "/review" in page.text and "web-login" in page.text
                csp = page.headers["content-security-policy"]
                assert "script-src 'self'" in csp and "unsafe" not in csp and "frame-ancestors 'none'" in csp
                assert page.headers["referrer-policy"] == "no-referrer"
                assert not re.search(r"<script>|<script [^>]*>[^<]", page.text)  # no inline script
                link = auth.issue_link(store, settings, CLINICIAN)
                token = link.rsplit("/", 1)[1]
                form = await client.get(f"/login/{token}")
                assert form.status_code == 200 and store.web_links_since(CLINICIAN, "") == 1
                login = await client.post("/login", data={"token": token})  # a GET (a link preview) did not spend it
                assert login.status_code == 303 and login.headers["location"] == "/"
                cookie = login.headers["set-cookie"]
                assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
                assert (await client.get("/")).status_code == 200
        finally:
            await runner.cleanup()
            store.close()
        return token, cookie

    with caplog.at_level(logging.DEBUG):
        token, cookie = asyncio.run(scenario())
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert token not in logged and cookie.split(";")[0].split("=", 1)[1] not in logged


def test_the_session_cookie_is_secure_behind_https(tmp_path):
    settings = settings_for(tmp_path, TRIAGE_WEB_URL="https://triage.example.org")

    async def scenario():
        store = Store(settings.db_path)
        runner = await serve(build_app(settings, store, None), settings.web_port)
        try:
            token = auth.issue_link(store, settings, CLINICIAN).rsplit("/", 1)[1]
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.web_port}") as client:
                return (await client.post("/login", data={"token": token})).headers["set-cookie"]
        finally:
            await runner.cleanup()
            store.close()

    assert "Secure" in asyncio.run(scenario())
