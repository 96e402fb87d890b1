"""The screen: rules and the learned model together, one decision in three tiers.

ARCHITECTURE.md "Risk model": the rules (:mod:`bot.screening.rules`) find explicit cues with
evidence spans and context; the model (:mod:`bot.screening.model`) scores what no rule names.
The decision (the page model, :mod:`bot.screening.stack`, reads the rules' result and the
model's scores together and gives one probability that the message is risky):

- ``page`` — an imminent or explicit rule signal (a pattern marked ``explicit``, the ASQ's own
  words, always pages whatever the model reads); an escalating rule signal whose page-model
  probability reaches the ``rule_floor`` of one of its patterns (floors per pattern, chosen on
  validation for the patterns whose pages on real text are often not risk — topic words such as
  "abusive" in an advice column — while the dev set's explicit sentences still page; a pattern
  without a floor always pages); or, where the rules found no cue at all, a page-model
  probability at or above the page threshold, or a model risk at or above ``risk_page`` (above
  every non-risk message of validation and of the dev set: the model's most confident readings
  page whatever the page model reads). ``escalate`` is true: card, alert, crisis flow.
- ``ask`` — an escalating rule signal below its floors, or a model risk score at or above the
  ask threshold. The client gets the card and one direct question; a clinician sees a
  non-paging entry on the case queue; a yes or a refusal becomes a page. A cue the rules read
  as negated, hypothetical, figurative, reported or past is never paged by the model: it asks
  at most.
- ``none``.

The thresholds come from ``config/screening/model/head.json``, chosen on validation data by
``triage train-screener`` and written in the model card. Without a model (``model_dir=None``)
the screen is the rules alone, in two tiers.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from bot.screening.model import ModelScore, RiskModel
from bot.screening.result import CATEGORIES, ScreeningResult, Signal
from bot.screening.rules import RuleScreener
from bot.screening.stack import features as page_features

log = logging.getLogger(__name__)

MODEL_REASON = ("The risk model read this message as risky (score {risk:.2f}, page score {score:.2f}); "
                "no explicit rule matched.")
ASK_REASON = "The screen is unsure (model score {score:.2f}): the client was asked directly."
DEMOTED_REASON = ("An explicit cue matched but the model reads it as unlikely (page score {score:.2f}): "
                  "the client was asked directly.")


def default_model_dir() -> Path:
    from bot import CONFIG_DIR

    return CONFIG_DIR / "screening" / "model"


class Screener:
    """Screen messages with the rules and, when present, the model; never raises on a str."""

    def __init__(self, config_dir: Path | None = None, model_dir: Path | None | bool = True) -> None:
        """Load the rules from ``config_dir`` and the model from ``model_dir``.

        ``model_dir=True`` (the default) loads the committed model; ``None`` or ``False``
        screens with the rules alone.
        """
        self.rules = RuleScreener(config_dir)
        if model_dir is True:
            model_dir = default_model_dir()
        self.model: RiskModel | None = RiskModel(Path(model_dir)) if model_dir else None

    @property
    def thresholds(self) -> dict[str, Any]:
        return dict(self.model.thresholds) if self.model else {}

    def screen(self, text: str) -> ScreeningResult:
        """Screen one message; a failure of either reader fails closed (page, urgent)."""
        ruled = self.rules.screen(text)
        if self.model is None or not isinstance(text, str) or not text.strip():
            return ruled
        try:
            return self.decide(text, ruled, self.model.score(text))
        except Exception as exc:  # noqa: BLE001 - a broken model must not silence the rules
            log.error("the risk model failed (%s); the rules decide this message", type(exc).__name__)
            return ruled

    def _screen(self, text: str) -> ScreeningResult:
        """Screen without the safety net (tests: a defect in either reader must surface here)."""
        ruled = self.rules._screen(text)
        if self.model is None or not text.strip():
            return ruled
        return self.decide(text, ruled, self.model.score(text))

    def decide(self, text: str, ruled: ScreeningResult, score: ModelScore) -> ScreeningResult:
        """Combine a rules result and a model score into the tiered result."""
        assert self.model is not None
        t = self.model.thresholds
        scores = {"risk": score.risk, **score.scores}
        rules = {s.rule for s in ruled.signals if s.escalates}
        if ruled.escalate and (not rules or rules & self.rules.explicit
                               or any(s.imminent for s in ruled.signals if s.escalates)):
            return replace(ruled, tier="page", scores=scores)
        if ruled.escalate or not ruled.signals:
            p = self.model.page_model.probability(page_features(ruled, score.risk, score.scores, text))
            scores["page"] = p
        if ruled.escalate:
            floors = t.get("rule_floor", {})
            if any(p >= floors.get(r, 0.0) for r in rules):
                return replace(ruled, tier="page", scores=scores)
            return replace(ruled, escalate=False, tier="ask", priority=None, categories=[],
                           ask_categories=list(ruled.categories), scores=scores,
                           reason=DEMOTED_REASON.format(score=p))
        if not ruled.signals and (p >= t["page"] or score.risk >= t.get("risk_page", 2.0)):
            categories = self.model.categories(score)
            signals = self._model_signals(text, categories, score)
            priority = "routine" if set(categories) <= {"third_party_concern"} else "urgent"
            ordered = [c for c in CATEGORIES if c in categories]
            return replace(ruled, escalate=True, tier="page", categories=ordered, signals=signals,
                           priority=priority, scores=scores, reason=MODEL_REASON.format(risk=score.risk, score=p))
        if score.risk >= t["ask"]:
            categories = [c for c in CATEGORIES if c in self.model.categories(score)]
            return replace(ruled, tier="ask", scores=scores, ask_categories=categories,
                           reason=ASK_REASON.format(score=score.risk))
        return replace(ruled, tier="none", scores=scores)

    def _model_signals(self, text: str, categories: list[str], score: ModelScore) -> list[Signal]:
        """One model signal per category, pointing at the sentence that carried the score."""
        assert self.model is not None
        start, end = self.model.riskiest_sentence(text)
        return [
            Signal(category=c, cue=text[start:end], start=start, end=end, source="model",
                   rule="model", score=score.scores.get(c, score.risk))
            for c in categories
        ]


@functools.lru_cache(maxsize=1)
def get_screener() -> Screener:
    """Return the process-wide screener (rules from ``config/screening``, the committed model).

    ``TRIAGE_SCREEN_MODEL=off`` screens with the rules alone (two tiers, no *ask* from the
    model): for tests of the dialogue flows, and for a clinic that wants no learned model.
    """
    import os

    screener = Screener(model_dir=None if os.environ.get("TRIAGE_SCREEN_MODEL", "").lower() == "off" else True)
    screener.rules.respeller.warm()  # the word segmenter loads in the background, not on a client's message
    return screener
