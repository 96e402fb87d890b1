"""The risk screen: normalise → rules (spaCy patterns + ConText) and the learned model → tiers.

Modules: :mod:`.normalise` (look-alikes, leetspeak, offsets), :mod:`.context` (ConText flags),
:mod:`.rules` (the deterministic reader), :mod:`.model` (encoder + head), :mod:`.screener`
(the decision: page / ask / none), :mod:`.evaluation` (``triage eval``), :mod:`.data` (the
stance-labelled data and the held-out guard), :mod:`.training` (``triage train-screener``).
"""

from bot.screening.result import CATEGORIES, PRIORITIES, TIERS, ScreeningResult, Signal
from bot.screening.rules import RuleScreener, ScreeningConfigError
from bot.screening.screener import Screener, get_screener

__all__ = [
    "CATEGORIES",
    "PRIORITIES",
    "TIERS",
    "RuleScreener",
    "Screener",
    "ScreeningConfigError",
    "ScreeningResult",
    "Signal",
    "get_screener",
]
