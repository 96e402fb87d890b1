"""The clinicians' web console in a real browser: Debian's Chromium driven by Playwright, the
console and the gateway on loopback, the Telegram side played by the fake Bot API."""

from __future__ import annotations

import json
import logging
import os
import struct
import time
from pathlib import Path

import pytest
from fake_bot_api import FakeBotApi, text_update
from web_console import CLINICIAN, OTHER_CLINICIAN, STAFF, STRANGER, Console, launch, log_in, settings_for

from bot import cli
from bot.web.app import CLINICIAN_PREFIX, TAKEOVER_TEXT

CLIENT = 1001
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def playwright():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture
def api():
    with FakeBotApi() as fake:
        yield fake


@pytest.fixture
def web(api, tmp_path, fake_screener):
    from conftest import FakeRasa

    with Console(settings_for(api, tmp_path / "t.db"), fake_screener, FakeRasa()) as console:
        yield console


@pytest.fixture
def page(playwright):
    context = launch(playwright)
    try:
        yield context.new_page()
    finally:
        context.close()


def until(predicate, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def new_case(web, api, text: str = "RISK", client: int = CLIENT) -> int:
    """A client message the screen pages for; the case's number once it is open."""
    before = len(web.store.find_cases())
    api.push(text_update(client, text))
    until(lambda: len(web.store.find_cases()) > before)
    return web.store.find_cases()[-1]["id"] if before == 0 else max(c["id"] for c in web.store.find_cases())


def test_login_link_from_the_cli_works_once_and_not_for_strangers(web, page, monkeypatch, capsys):
    for var, value in (("TRIAGE_DB", web.settings.db_path), ("TRIAGE_CLINICIANS", f"{CLINICIAN},{OTHER_CLINICIAN}"),
                       ("TRIAGE_WEB_URL", web.url), ("TELEGRAM_BOT_TOKEN", "")):
        monkeypatch.setenv(var, value)
    assert cli.main(["web-login", "--clinician", str(STRANGER)]) == 2
    refused = capsys.readouterr()
    assert refused.out == "" and "only the clinic's listed clinicians" in refused.err
    assert cli.main(["web-login", "--clinician", str(CLINICIAN)]) == 0
    link = capsys.readouterr().out.strip()
    assert link.startswith(web.url + "/login/")
    log_in(page, link)
    assert page.locator("header").inner_text().count(str(CLINICIAN)) == 1
    page.context.clear_cookies()
    page.goto(link)
    page.click("#login")
    assert page.locator("#refused").is_visible()  # the second time: refused
    page.goto(web.url + "/")
    assert page.url.endswith("/login")  # no session: only the how-to page


def test_link_expires_after_ten_minutes_and_a_session_after_a_shift_idle(web, page):
    stale = web.link()
    web.clock.advance(minutes=10, seconds=1)
    page.goto(stale)
    page.click("#login")
    assert page.locator("#refused").is_visible()
    log_in(page, web.link())
    cookie = next(c for c in page.context.cookies() if c["name"] == "triage_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and not cookie["secure"]  # http on loopback
    web.clock.advance(hours=11)
    page.goto(web.url + "/")
    assert page.locator("#queue").is_visible()  # in use within the shift
    web.clock.advance(hours=12, minutes=1)
    page.goto(web.url + "/")
    assert page.url.endswith("/login")  # a shift of idleness ends it


def test_review_command_sends_a_clinician_a_link_by_direct_message(web, api, page):
    api.push(text_update(STAFF, "/review", user_id=CLINICIAN))
    api.push(text_update(STRANGER, "/review"))  # from anyone else it is client text
    sent = until(lambda: [m for m in api.sent(chat_id=CLINICIAN) if "/login/" in m["text"]])
    assert sent[0]["link_preview_options"]
    link = sent[0]["text"].split()[-1]
    until(lambda: web.store.messages(f"telegram:{STRANGER}"))
    assert not [m for m in api.sent(chat_id=STRANGER) if "/login/" in m["text"]]
    log_in(page, link)
    assert page.locator("h1").inner_text() == "Queue"


def test_queue_shows_a_new_case_without_a_reload(web, api, page):
    log_in(page, web.link())
    page.evaluate("window.notReloaded = true")
    assert "None." in page.locator("#paged").inner_text()
    case = new_case(web, api, "ACUTE tonight")
    page.wait_for_selector(f"#paged a[href='/cases/{case}']")
    assert page.evaluate("window.notReloaded") is True
    assert "IMMINENT" in page.locator("#paged").inner_text()
    api.push(text_update(CLIENT + 1, "UNSURE maybe"))  # the ask tier: its own list, not paged
    page.wait_for_selector("#asks a[href^='/cases/']")
    assert page.evaluate("window.notReloaded") is True


def test_claim_on_the_page_is_seen_in_telegram_and_the_reverse(web, api, page):
    first = new_case(web, api, "RISK", CLIENT)
    second = new_case(web, api, "RISK", CLIENT + 1)
    log_in(page, web.link())
    page.click(f"a[href='/cases/{first}']")
    page.click("#claim")
    assert f"claimed by {CLINICIAN}" in page.locator("#status").inner_text()
    until(lambda: [m for m in api.sent(chat_id=STAFF) if f"Case #{first} claimed by {CLINICIAN} (web console)" in m["text"]])
    page.goto(web.url + "/")
    page.evaluate("window.notReloaded = true")
    api.push(text_update(STAFF, f"/claim {second}", user_id=OTHER_CLINICIAN))
    page.locator("#paged li", has_text=f"claimed by {OTHER_CLINICIAN}").wait_for()
    assert page.evaluate("window.notReloaded") is True
    page.click(f"a[href='/cases/{second}']")
    page.wait_for_selector("#claim", state="detached")  # nothing to claim: it is someone else's


def test_takeover_reply_typed_on_the_page_reaches_the_client(web, api, page):
    case = new_case(web, api)
    log_in(page, web.link())
    page.goto(f"{web.url}/cases/{case}")
    page.click("#takeover")
    until(lambda: [m for m in api.sent(chat_id=CLIENT) if m["text"] == TAKEOVER_TEXT])
    page.fill("#reply-text", "I'm here with you. Are you safe right now?")
    page.click("#reply")
    assert page.locator("#notice").inner_text() == "Reply sent to the client."
    until(lambda: [m for m in api.sent(chat_id=CLIENT)
                   if m["text"] == CLINICIAN_PREFIX + "I'm here with you. Are you safe right now?"])
    api.push(text_update(CLIENT, "yes, I'm home"))  # the client's answer is relayed, not sent to Rasa
    until(lambda: [m for m in api.sent(chat_id=STAFF) if "yes, I'm home" in m["text"]])
    page.click("#release")
    until(lambda: not web.store.conversation(f"telegram:{CLIENT}")["takeover_by"])


def test_client_text_is_escaped_everywhere_and_never_logged(web, api, page, caplog):
    caplog.set_level(logging.DEBUG)
    hostile = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2"><b>RISK</b> & "quotes"'
    case = new_case(web, api, hostile)
    link = web.link()
    log_in(page, link)
    page.goto(f"{web.url}/cases/{case}")
    text = page.locator(".msg.in .text").first
    assert text.inner_text() == hostile
    assert text.locator("script, img, b").count() == 0
    assert text.locator("mark").inner_text() == "RISK"  # the evidence span, highlighted
    assert page.evaluate("typeof window.pwned") == "undefined"
    csp = page.request.get(f"{web.url}/cases/{case}").headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    session = next(c["value"] for c in page.context.cookies() if c["name"] == "triage_session")
    for record in caplog.records:
        if record.name.startswith(("bot", "aiohttp")):
            line = record.getMessage()
            assert "pwned" not in line and link.rsplit("/", 1)[1] not in line and session not in line


def test_a_form_without_the_session_csrf_token_is_refused(web, api, page):
    case = new_case(web, api)
    log_in(page, web.link())
    page.goto(f"{web.url}/cases/{case}")
    page.evaluate("document.querySelectorAll('input[name=csrf]').forEach(i => i.value = 'forged')")
    page.click("#claim")
    assert page.locator("h1").inner_text() == "Refused"
    assert web.store.case(case)["status"] == "open"
    assert any(e["action"] == "refused:csrf" and e["actor"] == str(CLINICIAN) for e in web.store.audit_entries())


def test_every_view_is_audited_and_the_audit_page_filters(web, api, page):
    case = new_case(web, api)
    other = new_case(web, api, "RISK", CLIENT + 1)
    log_in(page, web.link())
    page.goto(f"{web.url}/cases/{case}")
    page.goto(f"{web.url}/cases/{other}")
    views = [e for e in web.store.audit_entries(str(CLINICIAN)) if e["action"] == "transcript"]
    assert [e["target"] for e in views] == [f"case:{case}", f"case:{other}"]
    page.goto(f"{web.url}/audit")
    page.fill("input[name=case]", str(case))
    page.fill("input[name=who]", str(CLINICIAN))
    page.click("form.filters button")
    rows = page.locator("table.audit tbody tr").all_inner_texts()
    assert rows and all(f"case:{case}" in r and str(CLINICIAN) in r for r in rows)
    assert any("transcript" in r for r in rows)


def test_a_label_on_the_page_is_exported_for_the_risk_model(web, api, page, monkeypatch, capsys):
    case = new_case(web, api, "RISK but I am fine")
    log_in(page, web.link())
    page.goto(f"{web.url}/cases/{case}")
    form = page.locator(".msg.in .label-form").first
    form.locator("select[name=kind]").select_option("false_alarm")
    form.locator("button").click()
    assert "labelled false alarm" in page.locator("#notice").inner_text()
    assert "label: false alarm" in page.locator(".msg.in").first.inner_text()
    monkeypatch.setenv("TRIAGE_DB", web.settings.db_path)
    assert cli.main(["export-labels"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows == [{"text": "RISK but I am fine", "label": "none"}]


def _png_size(path: Path) -> tuple[int, int]:
    width, height = struct.unpack(">II", path.read_bytes()[16:24])
    return width, height


def test_a_new_clinician_on_a_phone_claims_reads_notes_and_resolves(web, api, playwright, tmp_path):
    """The issue's "done when", in a phone-sized window; saves the README's screenshot."""
    new_case(web, api, "RISK")
    newest = new_case(web, api, "I bought pills and I RISK it tonight", CLIENT + 1)
    context = launch(playwright, viewport=PHONE)
    try:
        page = context.new_page()
        log_in(page, web.link())
        page.click(f"#paged a[href='/cases/{newest}']")
        page.click("#claim")
        mark = page.locator(".msg.in mark").first
        assert mark.inner_text() == "RISK" and "self_harm" in mark.get_attribute("title")
        assert "Screen: page" in page.locator(".msg.in details summary").first.inner_text()
        assert "“RISK” — rule: self_harm" in page.locator("#why").inner_text()
        page.fill("#note-text", "Called back, safe with sister tonight")
        page.click("#note")
        page.fill("#outcome", "Safety plan reviewed by phone; follow-up tomorrow")
        shot = Path(os.environ.get("TRIAGE_SCREENSHOT", tmp_path / "console-phone.png"))
        page.screenshot(path=str(shot))  # the viewport: what the phone shows
        page.click("#resolve")
        assert "resolved" in page.locator("#status").inner_text()
        timeline = page.locator("#timeline").inner_text()
        assert "note by 4242" in timeline and "resolved by 4242" in timeline
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # no sideways scrolling
    finally:
        context.close()
    assert _png_size(shot) == (PHONE["width"], PHONE["height"])
    case = web.store.case(newest)
    assert case["status"] == "resolved" and case["claimed_by"] == str(CLINICIAN)
