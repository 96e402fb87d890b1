"""A small ConText engine (after medspaCy's ConText): rules are data, scope is the sentence.

A *modifier* is a context-rule match (``config/screening/context_rules.jsonl``). It modifies a
risk match (*target*) that lies in its scope:

- ``forward``: targets after it, ``backward``: before it, ``bidirectional``: either side;
- the scope is the modifier's sentence (or the whole message with ``"scope": "message"``),
  at most ``max_scope`` tokens away, and is cut by a ``terminate`` modifier (``but``,
  ``and`` …) other than those listed in the rule's ``crosses`` (a fronted time clause reaches
  past its comma: "when I was 14, he …"), or by a modifier of a category listed in the
  rule's ``terminated_by``;
- ``pseudo`` rules cancel any other modifier they overlap ("can't stop" is not a negation,
  "asking for a friend" is not another person); when a pseudo rule's category is a flag
  (``FIGURATIVE`` …) a target it overlaps gets that flag ("end it with him", "shoot him a
  text"), unless the rule says ``unless_self`` and the sentence has a first-person word;
- a modifier inside the target's own words is ignored ("I don't want to live" is one cue),
  except the experiencer and IMMINENT, which may sit inside it;
- ``unless_self``: the rule does not apply when the sentence has a first-person word
  (SELF_EXPERIENCER): "is it normal to want to die?" is a question about the topic, "is it
  bad that I want to die?" is a disclosure;
- ``HISTORICAL`` (the risk is over: "years ago", "when I was 14", "used to") gives way to a
  ``CURRENT`` or ``IMMINENT`` modifier in the target's scope ("again", "still", "these days",
  "tonight"): a past mention next to a current one is current. ``ATTEMPT`` ("tried to",
  "attempted", "overdosed") marks a cue as an attempt: the writer's own past attempt still
  escalates (ASQ item 4);
- experiencer: the closest SELF/OTHER_EXPERIENCER modifier before the target (or at its first
  token: the subject), else the closest after it, else "self"; a pronoun inside the cue is its
  object ("hurt people") and does not count.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass

__all__ = ["CONTEXT_CATEGORIES", "ConText", "ContextRule", "Flags", "Span"]

CONTEXT_CATEGORIES = frozenset({
    "NEGATED_EXISTENCE", "HYPOTHETICAL", "HISTORICAL", "FIGURATIVE", "REPORTED", "RETRACTION",
    "IMMINENT", "OTHER_EXPERIENCER", "SELF_EXPERIENCER", "TERMINATE", "PSEUDO", "CURRENT", "ATTEMPT",
})
_FLAG_OF = {
    "NEGATED_EXISTENCE": "negated", "HYPOTHETICAL": "hypothetical", "HISTORICAL": "historical",
    "FIGURATIVE": "figurative", "REPORTED": "reported", "RETRACTION": "retracted",
    "IMMINENT": "imminent", "CURRENT": "current", "ATTEMPT": "attempt",
}
_INSIDE_OK = frozenset({"IMMINENT", "HISTORICAL", "SELF_EXPERIENCER", "OTHER_EXPERIENCER", "ATTEMPT", "CURRENT"})
_EXPERIENCER = {"SELF_EXPERIENCER": "self", "OTHER_EXPERIENCER": "other"}
#: Sentence-scope modifiers further than this many tokens from a target are not considered
#: (keeps a 100k-character message linear; no sentence rule reaches that far in practice).
WINDOW = 40


@dataclass(frozen=True)
class Span:
    """A token span ``[start, end)`` of the normalised document."""

    start: int
    end: int

    def overlaps(self, other: "Span") -> bool:
        """Return True when the spans share a token."""
        return self.start < other.end and other.start < self.end

    def contains(self, other: "Span") -> bool:
        """Return True when ``other`` lies within this span."""
        return self.start <= other.start and other.end <= self.end


@dataclass(frozen=True)
class ContextRule:
    """One context rule as loaded from the data file."""

    category: str
    direction: str
    max_scope: int | None = None
    scope: str = "sentence"
    allowed_types: frozenset[str] = frozenset()
    terminated_by: frozenset[str] = frozenset()
    unless_self: bool = False
    label: str = ""
    crosses: frozenset[str] = frozenset()  # terminator literals this rule's scope passes over


@dataclass
class Flags:
    """The context of one target."""

    negated: bool = False
    hypothetical: bool = False
    historical: bool = False
    figurative: bool = False
    reported: bool = False
    retracted: bool = False
    imminent: bool = False
    current: bool = False  # a cue that the risk is happening now ("again", "still", "these days")
    attempt: bool = False  # the cue is an attempt ("tried to", "attempted", "overdosed")
    experiencer: str = "self"


class ConText:
    """Applies context rules to risk matches within one document at a time."""

    def __init__(self, rules: dict[int, ContextRule]) -> None:
        """Keep the rules (keyed by matcher id; the screener resolves matches to rules)."""
        self.rules = rules
        self._mods: list[tuple[Span, ContextRule]] = []
        self._global: list[tuple[Span, ContextRule]] = []
        self._pseudo: list[tuple[Span, ContextRule]] = []
        self._pseudo_starts: list[int] = []
        self._sentences: list[int] = []
        self._starts: list[int] = []
        self._terminators: list[tuple[Span, ContextRule]] = []
        self._term_starts: list[int] = []
        self._by_category: dict[str, list[Span]] = {}
        self._cat_starts: dict[str, list[int]] = {}

    def prepare(self, modifiers: list[tuple[Span, ContextRule]], sentences: list[int]) -> None:
        """Resolve pseudo rules and nested matches for one document and index them."""
        self._sentences = sentences
        modifiers = sorted(modifiers, key=lambda m: (m[0].start, -(m[0].end - m[0].start)))
        self._pseudo = [(s, r) for s, r in modifiers if r.direction == "pseudo"]
        self._pseudo_starts = [s.start for s, _ in self._pseudo]
        pseudo_tokens = {i for p, _ in self._pseudo for i in range(p.start, p.end)}
        kept: list[tuple[Span, ContextRule]] = []
        reach = -1  # end of the longest modifier kept so far that starts earliest
        reach_start = -1
        for span, rule in modifiers:
            if rule.direction == "pseudo" or any(i in pseudo_tokens for i in range(span.start, span.end)):
                continue
            # A modifier strictly inside a longer one ("my" inside "my friend") gives way to it.
            if reach_start <= span.start and span.end <= reach and (reach_start, reach) != (span.start, span.end):
                continue
            if span.end > reach:
                reach_start, reach = span.start, span.end
            kept.append((span, rule))
        local = [(s, r) for s, r in kept if r.scope != "message"]
        # Message-scope rules only need their first and last occurrence per rule.
        first: dict[int, tuple[Span, ContextRule]] = {}
        last: dict[int, tuple[Span, ContextRule]] = {}
        for span, rule in kept:
            if rule.scope == "message":
                first.setdefault(id(rule), (span, rule))
                last[id(rule)] = (span, rule)
        self._global = list({(s.start, s.end, id(r)): (s, r) for s, r in [*first.values(), *last.values()]}.values())
        self._mods = local
        self._starts = [s.start for s, _ in local]
        self._terminators = [(s, r) for s, r in kept if r.direction == "terminate"]
        self._by_category: dict[str, list[Span]] = {}
        for span, rule in kept:
            self._by_category.setdefault(rule.category, []).append(span)
        self._term_starts = [s.start for s, _ in self._terminators]
        self._cat_starts = {c: [s.start for s in spans] for c, spans in self._by_category.items()}

    def _sentence(self, token: int) -> int:
        """Return the sentence number of a token."""
        return self._sentences[min(token, len(self._sentences) - 1)]

    @staticmethod
    def _any_within(starts: list[int], spans: list, lo: int, hi: int) -> bool:
        """Return True when one of ``spans`` (sorted by start) lies within tokens ``[lo, hi)``."""
        i = bisect_left(starts, lo)
        while i < len(starts) and starts[i] < hi:
            span = spans[i][0] if isinstance(spans[i], tuple) else spans[i]
            if span.end <= hi:
                return True
            i += 1
        return False

    def _cut(self, rule: ContextRule, lo: int, hi: int) -> bool:
        """Return True when a terminating modifier lies within tokens ``[lo, hi)``."""
        if rule.crosses:
            i = bisect_left(self._term_starts, lo)
            while i < len(self._term_starts) and self._term_starts[i] < hi:
                span, term = self._terminators[i]
                if span.end <= hi and term.label not in rule.crosses:
                    return True
                i += 1
        elif self._any_within(self._term_starts, self._terminators, lo, hi):
            return True
        return any(self._any_within(self._cat_starts[c], self._by_category[c], lo, hi)
                   for c in rule.terminated_by if c in self._by_category)

    def _in_scope(self, span: Span, rule: ContextRule, target: Span) -> int | None:
        """Return the token distance when ``target`` is in the modifier's scope, else None."""
        if span.overlaps(target):
            if rule.category in _INSIDE_OK:
                return 0
            # A modifier reaching into the cue from outside still counts ("not thinking" +
            # "thinking about killing myself"); one wholly inside the cue's words does not.
            if rule.direction in ("forward", "bidirectional") and span.start < target.start:
                return 0
            if rule.direction in ("backward", "bidirectional") and span.end > target.end:
                return 0
            return None
        message = rule.scope == "message"
        results: list[int] = []
        if rule.direction in ("forward", "bidirectional") and span.end <= target.start:
            gap = target.start - span.end
            if rule.max_scope is None or gap < rule.max_scope:
                if message or (self._sentence(span.start) == self._sentence(target.start)
                               and not self._cut(rule, span.end, target.start)):
                    results.append(gap)
        if rule.direction in ("backward", "bidirectional") and target.end <= span.start:
            gap = span.start - target.end
            if rule.max_scope is None or gap < rule.max_scope:
                if message or (self._sentence(span.start) == self._sentence(target.end - 1)
                               and not self._cut(rule, target.end, span.start)):
                    results.append(gap)
        return min(results) if results else None

    def _candidates(self, target: Span) -> list[tuple[Span, ContextRule]]:
        """Return the modifiers near enough to ``target`` to matter, plus message-scope ones."""
        lo = bisect_left(self._starts, target.start - WINDOW)
        hi = bisect_right(self._starts, target.end + WINDOW)
        return self._mods[lo:hi] + self._global

    def flags(self, target: Span, category: str) -> Flags:
        """Return the context flags and experiencer of one target of ``category``."""
        flags = Flags()
        sentence = self._sentence(target.start)
        candidates = self._candidates(target)
        self_in_sentence = any(
            r.category == "SELF_EXPERIENCER" and self._sentence(s.start) == sentence for s, r in candidates)
        lo = bisect_left(self._pseudo_starts, target.start - WINDOW)
        hi = bisect_left(self._pseudo_starts, target.end)
        for span, rule in self._pseudo[lo:hi]:
            if rule.unless_self and self_in_sentence:
                continue  # "abusive men" in general, but "I keep dating abusive men" is the writer's
            if span.overlaps(target) and rule.category in _FLAG_OF and category in rule.allowed_types:
                setattr(flags, _FLAG_OF[rule.category], True)
        best_before: tuple[int, str] | None = None
        best_after: tuple[int, str] | None = None
        for span, rule in candidates:
            if rule.direction == "terminate" or category not in rule.allowed_types:
                continue
            if rule.unless_self and self_in_sentence:
                continue
            distance = self._in_scope(span, rule, target)
            if distance is None:
                continue
            if rule.category in _EXPERIENCER:
                who = _EXPERIENCER[rule.category]
                if span.start > target.start and span.end <= target.end:
                    continue  # an object inside the cue ("hurt people") is not its subject
                if span.start <= target.start:
                    if best_before is None or distance < best_before[0]:
                        best_before = (distance, who)
                elif best_after is None or distance < best_after[0]:
                    best_after = (distance, who)
            elif rule.category in _FLAG_OF:
                setattr(flags, _FLAG_OF[rule.category], True)
        chosen = best_before or best_after
        if chosen is not None:
            flags.experiencer = chosen[1]
        if flags.historical and (flags.current or flags.imminent):
            # "I tried years ago and I'm doing it again", "used to, and still do": not over
            flags.historical = False
        return flags
