"""The screening result of ARCHITECTURE.md ("Screening result", "Risk model"), shared by both readers.

A :class:`Signal` is one piece of evidence with its context flags and where it came from
(``source``: ``"rule"`` for a risk pattern, ``"model"`` for the learned model's sentence).
A :class:`ScreeningResult` carries the decision: ``tier`` is ``page``, ``ask`` or ``none``;
``escalate`` is true only for ``page``.

Whether one signal escalates has one answer, :attr:`Signal.escalates`; the JSON form carries
it as ``"escalates"`` so that the alert's evidence and the transcript's highlights quote
exactly the signals the screen paged for (:func:`escalates` reads it back).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from bot.terms import CATEGORIES, PRIORITIES, TIERS  # noqa: F401 - re-exported for the screening modules


@dataclass(frozen=True)
class Signal:
    """One piece of evidence: a cue in the original text, its category and context flags."""

    category: str
    cue: str
    start: int
    end: int
    negated: bool = False
    hypothetical: bool = False
    experiencer: str = "self"
    historical: bool = False
    figurative: bool = False
    imminent: bool = False
    retracted: bool = False
    reported: bool = False
    attempt: bool = False  # the cue tells of a suicide attempt ("tried to", "attempted", "overdosed")
    rule: str = ""
    source: str = "rule"  # "rule" | "model"
    score: float | None = None  # the model's probability, for a model signal

    @property
    def escalates(self) -> bool:
        """Return True when this signal makes the screen positive on its own."""
        if self.negated or self.hypothetical or self.figurative or self.reported:
            return False
        if not self.historical:
            return True
        # Risk that is over (docs/labelling.md, `past`) does not page; it asks at most. Except the
        # writer's own suicide attempt, at any time: a yes to ASQ item 4 is a positive screen
        # (CLINICAL.md); and the writer's own access to a means, which stays in the home.
        if self.experiencer != "self":
            return False
        return (self.category == "self_harm" and self.attempt) or self.category == "lethal_means"

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready form of the contract (plus imminent/retracted/reported/attempt/rule/source)."""
        out = {
            "category": self.category, "cue": self.cue, "start": self.start, "end": self.end,
            "negated": self.negated, "hypothetical": self.hypothetical,
            "experiencer": self.experiencer, "historical": self.historical,
            "figurative": self.figurative, "imminent": self.imminent,
            "retracted": self.retracted, "reported": self.reported, "attempt": self.attempt, "rule": self.rule,
            "source": self.source, "escalates": self.escalates,
        }
        if self.score is not None:
            out["score"] = round(self.score, 4)
        return out


def escalates(signal: dict[str, Any]) -> bool:
    """Whether a signal in its JSON form escalates: as the screen said, or (for a result stored
    before the screen wrote it down) as :attr:`Signal.escalates` says of its flags."""
    if "escalates" in signal:
        return bool(signal["escalates"])
    known = {f.name for f in fields(Signal)}
    return Signal(**{k: v for k, v in signal.items() if k in known}).escalates


@dataclass(frozen=True)
class ScreeningResult:
    """The screening result of ARCHITECTURE.md for one message."""

    text: str
    escalate: bool = False
    categories: list[str] = field(default_factory=list)
    signals: list[Signal] = field(default_factory=list)
    priority: str | None = None
    tier: str = "none"  # "page" | "ask" | "none"
    scores: dict[str, float] | None = None  # the model's probabilities: "risk", per category, "page" when read
    ask_categories: list[str] = field(default_factory=list)  # what the "ask" tier asks about
    reason: str | None = None  # one line for the clinician: why this tier

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready screening result."""
        out: dict[str, Any] = {
            "text": self.text, "escalate": self.escalate, "tier": self.tier,
            "categories": list(self.categories),
            "signals": [s.to_dict() for s in self.signals], "priority": self.priority,
        }
        if self.ask_categories:
            out["ask_categories"] = list(self.ask_categories)
        if self.scores is not None:
            out["scores"] = {k: round(v, 4) for k, v in self.scores.items()}
        if self.reason:
            out["reason"] = self.reason
        return out
