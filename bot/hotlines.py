"""Hotline cards: the crisis and emergency numbers for a client's region.

The numbers are data (``config/hotlines.yml``, sourced and dated per region, see
../shared/CLINICAL.md "Hotlines"). Both the gateway (for a positive screen, without Rasa)
and the Rasa custom actions format cards through this module, so a client sees the same
card whichever path sent it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from bot import CONFIG_DIR

HOTLINES_FILE = CONFIG_DIR / "hotlines.yml"
KINDS = ("crisis", "text", "emergency", "domestic_abuse")
LINE_KEYS = {"kind", "name", "number", "how"}
REGION_KEYS = {"label", "checked", "source", "lines"}
FALLBACK_REGION = "US"


class HotlineConfigError(ValueError):
    """The hotline file is malformed; the message names the file and the region."""


@dataclass(frozen=True)
class Line:
    kind: str
    name: str
    number: str
    how: str


@dataclass(frozen=True)
class Region:
    code: str
    label: str
    checked: dt.date
    source: str
    lines: tuple[Line, ...]

    def of_kind(self, *kinds: str) -> list[Line]:
        return [line for line in self.lines if line.kind in kinds]


def load_hotlines(path: Path = HOTLINES_FILE) -> dict[str, Region]:
    """Read and validate the hotline file; raise HotlineConfigError naming what is wrong."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise HotlineConfigError(f"{path}: cannot read hotlines: {exc}") from exc
    if not isinstance(raw, dict) or set(raw) != {"regions"} or not isinstance(raw["regions"], dict):
        raise HotlineConfigError(f"{path}: expected one top-level key 'regions' mapping codes to blocks")
    regions: dict[str, Region] = {}
    for code, block in raw["regions"].items():
        where = f"{path}: region {code!r}"
        if not isinstance(block, dict):
            raise HotlineConfigError(f"{where}: expected a mapping")
        unknown = set(block) - REGION_KEYS
        missing = REGION_KEYS - set(block)
        if unknown or missing:
            raise HotlineConfigError(
                f"{where}: unknown keys {sorted(unknown)}; missing keys {sorted(missing)}"
            )
        if not isinstance(block["checked"], dt.date):
            raise HotlineConfigError(f"{where}: 'checked' must be a date (YYYY-MM-DD)")
        lines = []
        for i, line in enumerate(block["lines"] or []):
            if not isinstance(line, dict) or set(line) != LINE_KEYS:
                raise HotlineConfigError(f"{where}: line {i + 1} must have exactly {sorted(LINE_KEYS)}")
            if line["kind"] not in KINDS:
                raise HotlineConfigError(f"{where}: line {i + 1}: kind must be one of {KINDS}")
            lines.append(Line(**{k: str(v) for k, v in line.items()}))
        if not any(line.kind == "emergency" for line in lines):
            raise HotlineConfigError(f"{where}: every region needs an emergency number")
        regions[str(code).upper()] = Region(
            code=str(code).upper(),
            label=str(block["label"]),
            checked=block["checked"],
            source=str(block["source"]),
            lines=tuple(lines),
        )
    if FALLBACK_REGION not in regions:
        raise HotlineConfigError(f"{path}: the fallback region {FALLBACK_REGION} is missing")
    return regions


@lru_cache(maxsize=1)
def hotlines() -> dict[str, Region]:
    """The validated hotline table, read once per process."""
    return load_hotlines()


def region_for(code: str | None) -> Region:
    """The region block for a code; unknown or empty codes fall back to the default region."""
    table = hotlines()
    key = (code or "").strip().upper()
    if key == "GB":
        key = "UK"
    return table.get(key) or table[FALLBACK_REGION]


def hotline_card(
    code: str | None, *, abuse: bool = False, acute: bool = False, clinician_told: bool = True
) -> str:
    """The text of the hotline card for a region.

    ``abuse`` puts the domestic-abuse line first (safeguarding); ``acute`` opens with the
    emergency number and asks the client to stay in the chat (ASQ acute positive).
    ``clinician_told`` adds the line saying a clinician is being told: only pass True when
    an alert really is being raised in the same turn.
    """
    region = region_for(code)
    emergency = region.of_kind("emergency")
    crisis = region.of_kind("crisis", "text")
    abuse_lines = region.of_kind("domestic_abuse")
    out: list[str] = []
    if acute:
        out.append(
            f"If you are in danger right now, please {emergency[0].how} now. "
            "Please stay here in this chat with us."
        )
    else:
        out.append("You don't have to face this alone. You can reach someone right now:")
    ordered = (abuse_lines + crisis) if abuse else (crisis + abuse_lines)
    for line in ordered + ([] if acute else emergency):
        out.append(f"• {line.name}: {line.how}")
    if acute:
        for line in emergency:
            out.append(f"• {line.name}: {line.how}")
    if clinician_told:
        out.append("A clinician from the clinic is being told now.")
    return "\n".join(out)


def emergency_number(code: str | None) -> str:
    """The region's first emergency number, for short reminders."""
    return region_for(code).of_kind("emergency")[0].number
