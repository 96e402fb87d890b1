"""The one clock: every "now" the assistant reads (timestamps, clinic hours, re-page timers).

``TRIAGE_CLOCK`` (an ISO date and time with its UTC offset, e.g. ``2026-11-29T03:00:00-05:00``)
starts the clock at that instant; it then runs at the real pace, so timers still fire. Tests
and drills use it to pin the clinic's clock inside or outside opening hours — the whole suite
passes pinned to 03:00 on a Sunday — and child servers (the action server reads the clinic's
hours) inherit it. Unset, the clock is the system's.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import time

VAR = "TRIAGE_CLOCK"


class ClockError(ValueError):
    """TRIAGE_CLOCK is not an ISO date and time with a UTC offset."""


@functools.lru_cache(maxsize=8)
def _pinned(value: str) -> tuple[dt.datetime, float]:
    try:
        start = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise ClockError(f"{VAR}={value!r}: expected an ISO date and time, e.g. 2026-11-29T03:00:00-05:00") from exc
    if start.tzinfo is None:
        raise ClockError(f"{VAR}={value!r}: give the UTC offset (e.g. -05:00 or +00:00)")
    return start.astimezone(dt.timezone.utc), time.monotonic()


def now() -> dt.datetime:
    """The current time, aware, in UTC (``TRIAGE_CLOCK`` moves its start)."""
    value = os.environ.get(VAR, "").strip()
    if not value:
        return dt.datetime.now(dt.timezone.utc)
    start, at = _pinned(value)
    return start + dt.timedelta(seconds=time.monotonic() - at)


def stamp() -> str:
    """``now()`` as the ISO text the database stores."""
    return now().isoformat(timespec="microseconds")
