"""Clinic opening hours: decides what counts as "after hours".

Configured in config/clinic.yml as ``timezone`` (an IANA name) and ``clinic_hours`` such as
``"mon-fri 09:00-17:00"`` (several blocks separated by ``;``, e.g.
``"mon-thu 09:00-19:00; fri 09:00-15:00"``).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_BLOCK = re.compile(r"^\s*(\w{3})(?:-(\w{3}))?\s+(\d\d):(\d\d)-(\d\d):(\d\d)\s*$")


class HoursError(ValueError):
    """The clinic hours setting is malformed."""


@dataclass(frozen=True)
class ClinicHours:
    zone: ZoneInfo
    blocks: tuple[tuple[frozenset[int], dt.time, dt.time], ...]

    def is_open(self, when: dt.datetime | None = None) -> bool:
        local = (when or dt.datetime.now(dt.timezone.utc)).astimezone(self.zone)
        return any(
            local.weekday() in days and start <= local.time() < end for days, start, end in self.blocks
        )

    def after_hours(self, when: dt.datetime | None = None) -> bool:
        return not self.is_open(when)


def parse_hours(spec: str, timezone: str) -> ClinicHours:
    """Parse ``"mon-fri 09:00-17:00; sat 10:00-12:00"`` in the given time zone."""
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise HoursError(f"unknown time zone {timezone!r}") from exc
    blocks = []
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        match = _BLOCK.match(part.lower())
        if not match or match.group(1) not in DAYS or (match.group(2) and match.group(2) not in DAYS):
            raise HoursError(f"cannot read clinic hours {part!r}: use e.g. 'mon-fri 09:00-17:00'")
        first = DAYS.index(match.group(1))
        last = DAYS.index(match.group(2) or match.group(1))
        days = frozenset(range(first, last + 1)) if first <= last else frozenset([*range(first, 7), *range(0, last + 1)])
        h1, m1, h2, m2 = (int(match.group(i)) for i in range(3, 7))
        try:
            start, end = dt.time(h1, m1), dt.time(h2, m2) if (h2, m2) != (24, 0) else dt.time.max
        except ValueError as exc:
            raise HoursError(f"cannot read clinic hours {part!r}: {exc}") from exc
        blocks.append((days, start, end))
    return ClinicHours(zone, tuple(blocks))
