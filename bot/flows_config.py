"""The clinic's hours and the flows' tunables (``config/flows.yml``).

Read by the Rasa actions (after-hours intake, question retries) and by the gateway's alert
outbox (after hours, re-pages also go to the on-call clinician by direct message).

Validated when loaded: an unknown key or a malformed value raises FlowsConfigError naming
the file and the key, so the action server fails at start-up instead of mid-conversation.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from bot import clock

FLOWS_FILE = Path(__file__).resolve().parent.parent / "config" / "flows.yml"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
TOP_KEYS = {"clinic_hours", "question_retries"}
HOURS_KEYS = {"time_zone", "open", "description"}
_SPAN = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")


class FlowsConfigError(ValueError):
    """config/flows.yml is malformed; the message names the file and the key."""


@dataclass(frozen=True)
class FlowsConfig:
    time_zone: ZoneInfo
    open_hours: dict[str, tuple[dt.time, dt.time]]  # weekday → (opens, closes)
    hours_description: str
    question_retries: int

    def is_open(self, when: dt.datetime) -> bool:
        """True when the clinic is staffed at ``when`` (an aware datetime)."""
        local = when.astimezone(self.time_zone)
        span = self.open_hours.get(DAYS[local.weekday()])
        if span is None:
            return False
        opens, closes = span
        return opens <= local.time() < closes

    def is_after_hours(self, when: dt.datetime | None = None) -> bool:
        return not self.is_open(when or clock.now())


def _time(text: str) -> dt.time:
    hour, minute = (int(x) for x in text.split(":"))
    return dt.time.max if hour == 24 else dt.time(hour, minute)


def load_flows_config(path: Path = FLOWS_FILE) -> FlowsConfig:
    """Read and validate the flows file; raise FlowsConfigError naming what is wrong."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise FlowsConfigError(f"{path}: cannot read the flows config: {exc}") from exc
    if not isinstance(raw, dict):
        raise FlowsConfigError(f"{path}: expected a mapping with keys {sorted(TOP_KEYS)}")
    unknown, missing = set(raw) - TOP_KEYS, TOP_KEYS - set(raw)
    if unknown or missing:
        raise FlowsConfigError(f"{path}: unknown keys {sorted(unknown)}; missing keys {sorted(missing)}")
    retries = raw["question_retries"]
    if not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= 3:
        raise FlowsConfigError(f"{path}: question_retries must be an integer from 0 to 3, not {retries!r}")
    hours = raw["clinic_hours"]
    if not isinstance(hours, dict):
        raise FlowsConfigError(f"{path}: clinic_hours must be a mapping")
    unknown, missing = set(hours) - HOURS_KEYS, HOURS_KEYS - set(hours)
    if unknown or missing:
        raise FlowsConfigError(
            f"{path}: clinic_hours: unknown keys {sorted(unknown)}; missing keys {sorted(missing)}"
        )
    try:
        zone = ZoneInfo(str(hours["time_zone"]))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise FlowsConfigError(f"{path}: clinic_hours.time_zone: unknown time zone {hours['time_zone']!r}") from exc
    open_block = hours["open"] or {}
    if not isinstance(open_block, dict):
        raise FlowsConfigError(f"{path}: clinic_hours.open must map weekdays to \"HH:MM-HH:MM\"")
    spans: dict[str, tuple[dt.time, dt.time]] = {}
    for day, span in open_block.items():
        if day not in DAYS:
            raise FlowsConfigError(f"{path}: clinic_hours.open.{day}: unknown weekday (use {', '.join(DAYS)})")
        match = _SPAN.match(str(span))
        if not match:
            raise FlowsConfigError(f"{path}: clinic_hours.open.{day}: expected \"HH:MM-HH:MM\", not {span!r}")
        opens, closes = (_time(part) for part in str(span).split("-"))
        if not opens < closes:
            raise FlowsConfigError(f"{path}: clinic_hours.open.{day}: closes before it opens")
        spans[day] = (opens, closes)
    if not isinstance(hours["description"], str) or not hours["description"].strip():
        raise FlowsConfigError(f"{path}: clinic_hours.description must be a non-empty string")
    return FlowsConfig(zone, spans, hours["description"].strip(), retries)


@lru_cache(maxsize=1)
def flows_config() -> FlowsConfig:
    """The validated flows config, read once per process (``TRIAGE_FLOWS_FILE`` overrides the path)."""
    return load_flows_config(Path(os.environ.get("TRIAGE_FLOWS_FILE") or FLOWS_FILE))
