"""The console's HTTP side: aiohttp (already the gateway's webhook server) and Jinja2 templates.

Every page but the log-in ones needs a session; every form carries the session's CSRF token;
every response carries a Content-Security-Policy with no inline script; every view of a
conversation is audited (``bot.review.transcript``); every action goes through the case
rules of ``bot.cases`` and so through ``authorise``. The access log is off: a login link's
token is in its path. Nothing here logs message text.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import json
import logging
from pathlib import Path
from typing import Any, Awaitable, Callable

import jinja2
from aiohttp import web

from bot import cases, clock
from bot.review import ReviewError, annotate, audit_entries, list_cases, transcript
from bot.settings import Settings
from bot.store import Store
from bot.terms import CATEGORIES, PRIORITY_RANK
from bot.web import auth
from bot.web.relay import Relay, ReplyError

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
COOKIE = "triage_session"
TAKEOVER_TEXT = "A clinician from the clinic has joined this chat. Your messages now go to them."
RELEASE_TEXT = ("The clinician has handed this chat back to the clinic's automated assistant. "
                "They have read the conversation.")
CLINICIAN_PREFIX = "🧑\u200d⚕️ Clinician: "
LABELS = {"missed_risk": "missed risk", "false_alarm": "false alarm", "confirmed": "confirmed"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
RELAY = web.AppKey("relay", object)
CLOCK = web.AppKey("clock", object)
STOPPING = web.AppKey("stopping", asyncio.Event)
TEMPLATES = web.AppKey("templates", jinja2.Environment)


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["when"] = lambda s: (s or "")[:16].replace("T", " ") + ("Z" if s else "")
    return env


def build_app(settings: Settings, store: Store, relay: Relay | None = None,
              now: Callable[[], dt.datetime] = clock.now) -> web.Application:
    """The console as an aiohttp application over ``store``; ``relay`` sends to clients and staff."""
    app = web.Application(middlewares=[_headers, _session], client_max_size=64 * 1024)
    app[SETTINGS], app[STORE], app[RELAY], app[CLOCK] = settings, store, relay, now
    app[STOPPING] = asyncio.Event()
    app[TEMPLATES] = _templates()

    async def stopping(app: web.Application) -> None:
        app[STOPPING].set()

    app.on_shutdown.append(stopping)
    app.router.add_get("/login", how_to_log_in)
    app.router.add_get("/login/{token}", login_form)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/", queue)
    app.router.add_get("/queue", queue_fragment)
    app.router.add_get("/events", events)
    app.router.add_get("/cases/{case:\\d+}", case_page)
    app.router.add_post("/cases/{case:\\d+}/{action}", case_action)
    app.router.add_get("/audit", audit)
    app.router.add_static("/static", HERE / "static", show_index=False)
    return app


PUBLIC = ("/login", "/static/")


@web.middleware
async def _headers(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = exc
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"  # a login link's token must not leak
    response.headers["X-Frame-Options"] = "DENY"
    if not request.path.startswith("/static/"):
        response.headers["Cache-Control"] = "no-store"
    if isinstance(response, web.HTTPException):
        raise response
    return response


@web.middleware
async def _session(request: web.Request, handler):
    app = request.app
    current = auth.session(app[STORE], app[SETTINGS], request.cookies.get(COOKIE), app[CLOCK])
    if current is not None and current.clinician not in app[SETTINGS].clinicians:
        current = None  # taken off the allow-list: the session no longer opens anything
    request["session"] = current
    if current is None and not request.path.startswith(PUBLIC):
        if request.method == "GET" and request.path not in ("/events", "/queue"):
            raise web.HTTPSeeOther("/login")
        raise web.HTTPUnauthorized(text="Log in first: see /login")
    if request.method == "POST" and request.path != "/login":
        form = await request.post()
        sent = str(form.get("csrf", ""))
        if not hmac.compare_digest(sent.encode(), current.csrf.encode()):
            app[STORE].audit(current.clinician, "refused:csrf", request.path)
            return _page(request, "message.html", status=403, title="Refused",
                         message="This form has expired or did not come from the console. Go back, reload and try again.")
        request["form"] = form
    return await handler(request)


def _page(request: web.Request, name: str, status: int = 200, **context: Any) -> web.Response:
    current = request.get("session")
    html = request.app[TEMPLATES].get_template(name).render(
        me=current.clinician if current else None, csrf=current.csrf if current else "", **context)
    return web.Response(text=html, content_type="text/html", status=status)


# -- logging in and out --------------------------------------------------------------------

async def how_to_log_in(request: web.Request) -> web.Response:
    return _page(request, "login.html", title="Log in")


async def login_form(request: web.Request) -> web.Response:
    """A link opens a one-button form: link previews (which fetch with GET) cannot spend it."""
    return _page(request, "login_confirm.html", title="Log in", token=request.match_info["token"])


async def login(request: web.Request) -> web.Response:
    app = request.app
    form = await request.post()
    started = auth.redeem(app[STORE], app[SETTINGS], str(form.get("token", "")), app[CLOCK])
    if started is None:
        return _page(request, "login.html", status=403, title="Log in", refused=True)
    session_id, _ = started
    response = web.HTTPSeeOther("/")
    response.set_cookie(COOKIE, session_id, httponly=True, samesite="Strict", path="/",
                        secure=auth.base_url(app[SETTINGS]).startswith("https://"))
    raise response


async def logout(request: web.Request) -> web.Response:
    auth.logout(request.app[STORE], request["session"], request.app[CLOCK])
    response = web.HTTPSeeOther("/login")
    response.del_cookie(COOKIE, path="/")
    raise response


# -- the queue -----------------------------------------------------------------------------

def _age(opened_at: str, now: dt.datetime) -> str:
    minutes = int((now - dt.datetime.fromisoformat(opened_at)).total_seconds() // 60)
    if minutes < 60:
        return f"{max(minutes, 0)} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h {minutes % 60} min"
    return f"{minutes // 1440} days"


def queue_rows(store: Store, now: dt.datetime) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(paged cases, non-paging "ask" entries): unclaimed urgent and imminent first, then by priority, oldest first."""
    rows = list_cases(store)
    for row in rows:
        row["age"] = _age(row["opened_at"], now)
        row["unclaimed_urgent"] = row["status"] == "open" and PRIORITY_RANK[row["priority"]] >= PRIORITY_RANK["urgent"]
    rows.sort(key=lambda r: (not r["unclaimed_urgent"], -PRIORITY_RANK[r["priority"]], r["opened_at"], r["id"]))
    return [r for r in rows if r["paged"]], [r for r in rows if not r["paged"]]


def _allowed(request: web.Request, action: str, target: str) -> None:
    """The one authorisation check (``bot.cases.authorise``) for what the session asks."""
    try:
        cases.authorise(request.app[STORE], request.app[SETTINGS].clinicians, request["session"].clinician,
                        action, target, audit_allowed=False)
    except cases.NotAllowed:
        raise web.HTTPForbidden(text=cases.REFUSAL)


async def queue(request: web.Request) -> web.Response:
    _allowed(request, "queue", "cases")
    paged, asks = queue_rows(request.app[STORE], request.app[CLOCK]())
    return _page(request, "queue.html", title="Queue", paged=paged, asks=asks)


async def queue_fragment(request: web.Request) -> web.Response:
    _allowed(request, "queue", "cases")
    paged, asks = queue_rows(request.app[STORE], request.app[CLOCK]())
    return _page(request, "queue_body.html", paged=paged, asks=asks)


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: ``queue`` whenever a case opens or changes (any process may write)."""
    _allowed(request, "queue", "cases")
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                           "Content-Security-Policy": CSP})
    await response.prepare(request)
    store, stopping = request.app[STORE], request.app[STOPPING]
    seen = store.queue_version()
    await response.write(b"retry: 2000\n\n")
    beat = 0
    try:
        while not stopping.is_set():
            try:
                await asyncio.wait_for(stopping.wait(), timeout=0.5)
            except asyncio.TimeoutError:
                pass
            version = store.queue_version()
            if version != seen:
                seen = version
                await response.write(f"event: queue\ndata: {version[0]}.{version[1]}\n\n".encode())
            beat += 1
            if beat % 30 == 0:
                await response.write(b": keep-alive\n\n")
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    return response


# -- one case ------------------------------------------------------------------------------

def segments(text: str, signals: list[dict[str, Any]], highlight: list[list[int]]) -> list[dict[str, Any]]:
    """The text cut at the highlighted evidence spans, each span with the signals inside it."""
    out, last = [], 0
    for start, end in highlight:
        if start > last:
            out.append({"text": text[last:start], "mark": False})
        inside = [s for s in signals if s["start"] >= start and s["end"] <= end]
        why = "; ".join(
            f"{s.get('source', 'rule')}: {s['category']} ({s.get('cue') or text[s['start']:s['end']]})" for s in inside)
        out.append({"text": text[start:end], "mark": True, "why": why})
        last = end
    if last < len(text) or not out:
        out.append({"text": text[last:], "mark": False})
    return out


def _flags(signal: dict[str, Any]) -> str:
    flags = [name for name in ("negated", "hypothetical", "historical", "attempt", "figurative") if signal.get(name)]
    if signal.get("experiencer") not in (None, "self"):
        flags.append(f"about {signal['experiencer']}")
    return ", ".join(flags)


def case_view(record: dict[str, Any]) -> dict[str, Any]:
    """The transcript record shaped for the page: segments, answers, safety plans, timeline."""
    for m in record["messages"]:
        screening = m["screening"] = m.get("screening")
        m["segments"] = segments(m["text"] or "", screening["signals"] if screening else [],
                                 screening["highlight"] if screening else [])
        if screening:
            for s in screening["signals"]:
                s["flags"] = _flags(s)
    answers, plans, timeline = [], [], []
    for e in record["history"]:
        details = e["details"]
        if e["event"] == "safety_plan":
            plans.append({"at": e["at"], "items": list(details.items())})
            continue
        if isinstance(details.get("facts"), dict) and details["facts"]:
            answers.append({"at": e["at"], "source": details.get("source") or details.get("reason") or "",
                            "facts": list(details["facts"].items())})
        summary = {k: v for k, v in details.items() if k not in ("facts",)}
        timeline.append({**e, "summary": ", ".join(f"{k}: {v if isinstance(v, str) else json.dumps(v)}"
                                                   for k, v in summary.items())})
    why = [{"message": m["id"], "text": seg["text"], "why": seg["why"]}
           for m in record["messages"] for seg in m["segments"] if seg["mark"]]
    return {**record, "why": why, "answers": answers, "plans": plans, "timeline": timeline}


async def case_page(request: web.Request) -> web.Response:
    app = request.app
    case_id = int(request.match_info["case"])
    me = request["session"].clinician
    _allowed(request, "transcript", f"case:{case_id}")
    try:
        record = transcript(app[STORE], case_id, me)  # audits this view with the clinician's id
    except LookupError:
        raise web.HTTPNotFound(text=f"There is no case #{case_id}.")
    conversation = app[STORE].conversation(record["case"]["conversation_id"]) or {}
    notice = request.query.get("done") or ""
    error = request.query.get("error") or ""
    return _page(request, "case.html", title=f"Case #{case_id}", view=case_view(record),
                 taken_over_by=conversation.get("takeover_by"), categories=CATEGORIES, labels=LABELS,
                 can_reply=app[RELAY] is not None, notice=notice, error=error)


async def case_action(request: web.Request) -> web.Response:
    """Claim, note, take over, release, resolve, reply, label: the case rules, then back to the page."""
    app = request.app
    store, relay, settings = app[STORE], app[RELAY], app[SETTINGS]
    case_id = int(request.match_info["case"])
    action = request.match_info["action"]
    form = request["form"]
    me = request["session"].clinician
    done = ""
    try:
        if action == "claim":
            cases.claim(store, settings.clinicians, case_id, me)
            done = f"You claimed case #{case_id}."
            await _tell_staff(relay, f"Case #{case_id} claimed by {me} (web console).")
        elif action == "note":
            cases.note(store, settings.clinicians, case_id, me, str(form.get("text", "")))
            done = "Note added."
        elif action == "takeover":
            case = cases.takeover(store, settings.clinicians, case_id, me)
            done = "You have taken over the chat: the client's messages come to you."
            await _tell_staff(relay, f"{me} has taken over case #{case_id} (web console).")
            await _tell_client(relay, case["conversation_id"], TAKEOVER_TEXT, "notice")
        elif action == "release":
            case = cases.release(store, settings.clinicians, case_id, me)
            done = "Handed back to the bot."
            await _tell_staff(relay, f"Case #{case_id} handed back to the bot by {me} (web console).")
            await _tell_client(relay, case["conversation_id"], RELEASE_TEXT, "notice")
        elif action == "resolve":
            case = cases.resolve(store, settings.clinicians, case_id, me, str(form.get("outcome", "")))
            done = f"Case #{case_id} resolved."
            await _tell_staff(relay, f"Case #{case_id} resolved by {me} (web console): {case['outcome']}")
        elif action == "reply":
            done = await _reply(request, case_id, me, str(form.get("text", "")))
        elif action == "label":
            done = _label(request, case_id, me, form)
        else:
            raise web.HTTPNotFound()
    except cases.NotAllowed:
        raise web.HTTPForbidden(text=cases.REFUSAL)
    except (cases.CaseError, ReviewError, ReplyError, LookupError) as exc:
        raise web.HTTPSeeOther(f"/cases/{case_id}?" + _query(error=str(exc)))
    raise web.HTTPSeeOther(f"/cases/{case_id}?" + _query(done=done))


def _query(**values: str) -> str:
    from urllib.parse import urlencode

    return urlencode(values)


async def _tell_staff(relay: Relay | None, text: str) -> None:
    if relay is None:
        return
    try:
        await relay.to_staff(text)
    except Exception as exc:  # noqa: BLE001 - the case changed either way; the group note is a courtesy
        log.warning("console note to the triage group not sent: %s", type(exc).__name__)


async def _tell_client(relay: Relay | None, conversation_id: str, text: str, kind: str) -> None:
    if relay is None:
        return
    try:
        await relay.to_client(conversation_id, text, kind)
    except ReplyError:
        pass  # a console client is told by the console that serves them


async def _reply(request: web.Request, case_id: int, me: str, text: str) -> str:
    store, relay = request.app[STORE], request.app[RELAY]
    case = store.case(case_id)
    if case is None:
        raise LookupError(f"there is no case #{case_id}")
    conversation_id = case["conversation_id"]
    _allowed(request, "reply", conversation_id)
    store.audit(me, "reply", conversation_id)
    if (store.conversation(conversation_id) or {}).get("takeover_by") != me:
        raise cases.CaseError("take over the chat first: then your replies reach the client")
    if not text.strip():
        raise cases.CaseError("type the reply first")
    if relay is None:
        raise ReplyError("this console cannot reach clients: serve it with `triage up` (TRIAGE_WEB_PORT set)")
    await relay.to_client(conversation_id, CLINICIAN_PREFIX + text.strip(), "clinician")
    return "Reply sent to the client."


def _label(request: web.Request, case_id: int, me: str, form) -> str:
    store, settings = request.app[STORE], request.app[SETTINGS]
    cases.authorise(store, settings.clinicians, me, "label", f"case:{case_id}", audit_allowed=False)
    kind = str(form.get("kind", ""))
    message = str(form.get("message", ""))
    category = str(form.get("category", "")) or "none"
    if kind not in LABELS:
        raise ReviewError("choose missed risk, false alarm or confirmed")
    spec = f"{message}:{category}"
    annotate(store, case_id, me, missed=[spec] if kind == "missed_risk" else [],
             false_alarms=[spec] if kind == "false_alarm" else [],
             confirmed=[spec] if kind == "confirmed" else [])  # audits itself
    return f"Message #{message} labelled {LABELS[kind]}."


# -- the audit log -------------------------------------------------------------------------

async def audit(request: web.Request) -> web.Response:
    _allowed(request, "audit", "audit")
    who = request.query.get("who", "").strip() or None
    case_text = request.query.get("case", "").strip().lstrip("#")
    case = int(case_text) if case_text.isdigit() else None
    request.app[STORE].audit(request["session"].clinician, "audit", "audit")
    rows = audit_entries(request.app[STORE], who, case=case)
    return _page(request, "audit.html", title="Audit log", rows=list(reversed(rows))[:500], who=who or "",
                 case=case or "")


# -- serving -------------------------------------------------------------------------------

async def serve(app: web.Application, port: int, host: str = "127.0.0.1") -> web.AppRunner:
    """Start serving ``app``; return the runner (``await runner.cleanup()`` stops it)."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)  # the access log would hold login tokens
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
