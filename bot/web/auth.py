"""Login by one-time link and the sessions it starts; no passwords to keep.

A link carries a random token that works once and for ``LINK_MINUTES``; it starts a session
whose cookie ends after ``Settings.web_idle_hours`` of idleness or at logout. The store keeps
only SHA-256 hashes of tokens and session ids. Links are rate-limited per clinician. Times
come from an injectable clock (``bot.clock.now`` by default) so expiry is tested at any hour.
Never log a token, a link or a session id.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from typing import Callable

from bot import cases, clock
from bot.settings import Settings
from bot.store import Store

LINK_MINUTES = 10
#: At most this many links per clinician in ``LINK_MINUTES`` (a leaked chat cannot mint many).
LINKS_PER_WINDOW = 5
DEFAULT_PORT = 8765

Clock = Callable[[], dt.datetime]


class TooManyLinks(RuntimeError):
    """The clinician asked for too many login links in a short time."""

    def __init__(self) -> None:
        super().__init__(f"Too many login links: at most {LINKS_PER_WINDOW} in {LINK_MINUTES} minutes. "
                         "Use the newest one, or wait a few minutes.")


@dataclass(frozen=True)
class Session:
    clinician: str
    csrf: str
    id_hash: str


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def base_url(settings: Settings) -> str:
    """The console's public base URL: ``TRIAGE_WEB_URL``, else the loopback address."""
    if settings.web_url:
        return settings.web_url.rstrip("/")
    return f"http://127.0.0.1:{settings.web_port or DEFAULT_PORT}"


def issue_link(store: Store, settings: Settings, clinician: str, now: Clock = clock.now) -> str:
    """A one-time login link for an allow-listed clinician (``bot.cases.authorise``; audited)."""
    cases.authorise(store, settings.clinicians, clinician, "web-login-link", "web")
    at = now()
    if store.web_links_since(clinician, (at - dt.timedelta(minutes=LINK_MINUTES)).isoformat()) >= LINKS_PER_WINDOW:
        store.audit(clinician, "refused:web-login-link-rate", "web")
        raise TooManyLinks()
    token = secrets.token_urlsafe(32)
    store.add_web_link(digest(token), clinician, at.isoformat(),
                       (at + dt.timedelta(minutes=LINK_MINUTES)).isoformat())
    return f"{base_url(settings)}/login/{token}"


def redeem(store: Store, settings: Settings, token: str, now: Clock = clock.now) -> tuple[str, Session] | None:
    """Spend a link and start a session: (session id for the cookie, session); None if refused."""
    at = now().isoformat()
    clinician = store.spend_web_link(digest(token), at)
    if clinician is None or clinician not in settings.clinicians:
        store.audit(clinician or "unknown", "refused:web-login", "web")
        return None
    session_id = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    store.add_web_session(digest(session_id), clinician, csrf, at)
    store.audit(clinician, "web-login", "web")
    return session_id, Session(clinician, csrf, digest(session_id))


def session(store: Store, settings: Settings, session_id: str | None, now: Clock = clock.now) -> Session | None:
    """The live session for a cookie value, touched; None when unknown, ended or idle too long."""
    if not session_id:
        return None
    id_hash = digest(session_id)
    row = store.web_session(id_hash)
    if row is None:
        return None
    at = now()
    if at - dt.datetime.fromisoformat(row["last_seen_at"]) > dt.timedelta(hours=settings.web_idle_hours):
        store.end_web_session(id_hash, at.isoformat())
        return None
    store.touch_web_session(id_hash, at.isoformat())
    return Session(row["clinician"], row["csrf"], id_hash)


def logout(store: Store, current: Session, now: Clock = clock.now) -> None:
    store.end_web_session(current.id_hash, now().isoformat())
    store.audit(current.clinician, "web-logout", "web")
