"""Deterministic risk screener: spaCy token patterns plus a small ConText engine, all from data.

Every inbound client message is screened here before anything else (ARCHITECTURE.md,
invariant 1). The screen never depends on Rasa and never raises on any ``str``.

How a message is screened (see docs/screening.md):

1. :func:`bot.screening.normalise.normalise` folds look-alikes, leetspeak, curly quotes, zero-width
   characters and letter runs, keeping an offset map to the original text; then
   :class:`bot.screening.respell.Respeller` reads text-speak, joined words, dots and spaced
   letters between words, and typos in the risk vocabulary, keeping the map;
2. the normalised text is tokenised with ``spacy.blank("en")`` (no tokenizer exceptions, so
   ``don't`` and ``gonna`` stay one token); each risk pattern of
   ``config/screening/patterns/*.jsonl`` has its own small ``Matcher``, run only when the
   message holds one of the pattern's anchor words; the context rules of
   ``config/screening/context_rules.jsonl`` run (PhraseMatcher for literals, a Matcher for
   token patterns) only when some risk pattern matched;
3. :class:`bot.screening.context.ConText` decides, per risk match, the flags negated / hypothetical /
   historical / figurative / reported / retracted / imminent and the experiencer;
4. a self-harm or harm-to-others match about another person becomes
   ``third_party_concern``; a signal escalates unless negated, hypothetical, figurative,
   reported (news, lyrics, fiction) or over (historical), except the writer's own past
   suicide attempt (ASQ item 4) and the writer's own access to a means.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import spacy
from spacy.lang.en.stop_words import STOP_WORDS
from spacy.matcher import Matcher, PhraseMatcher
from spacy.tokens import Doc

from bot.screening.context import CONTEXT_CATEGORIES, ConText, ContextRule, Flags, Span
from bot.screening.normalise import normalise, original_span
from bot.screening.respell import respeller
from bot.screening.result import CATEGORIES, ScreeningResult, Signal

__all__ = ["RuleScreener", "ScreeningConfigError"]

log = logging.getLogger(__name__)

#: Categories whose signal about another person is a concern for that person (CLINICAL.md,
#: "Concerned other"). Lethal means stay lethal means whoever holds them: access in the
#: writer's surroundings is what safety planning step 6 is about.
_THIRD_PARTY_FROM = frozenset({"self_harm", "harm_to_others"})

_TOKEN_KEYS = frozenset({
    "ORTH", "TEXT", "LOWER", "NORM", "LENGTH", "IS_ALPHA", "IS_ASCII", "IS_DIGIT", "IS_LOWER",
    "IS_PUNCT", "IS_SPACE", "IS_STOP", "LIKE_NUM", "SHAPE", "OP", "LEX",
})
_OP_RE = re.compile(r"^(\?|\*|\+|!|\{\d*,?\d*\})$")
_PATTERN_KEYS = frozenset({"id", "category", "pattern", "imminent", "explicit", "experiencer", "subsumes", "source", "note"})
_LEXICON_KEYS = frozenset({"name", "words", "source", "note"})
_RULE_KEYS = frozenset({
    "category", "literal", "pattern", "direction", "max_scope", "scope", "allowed_types",
    "terminated_by", "unless_self", "crosses", "source", "note",
})
_DIRECTIONS = frozenset({"forward", "backward", "bidirectional", "terminate", "pseudo"})
_SENTENCE_END = frozenset({".", "!", "?", "\n", "…", "...", "..", "!!", "??", "?!", "!?"})


class ScreeningConfigError(ValueError):
    """A screening data file is invalid; the message starts with ``<file>:<line>:``."""


@dataclass(frozen=True)
class _PatternSpec:
    """A risk pattern as loaded from a patterns file."""

    id: str
    category: str
    imminent: bool
    experiencer: str | None
    subsumes: frozenset[str]


def _read_jsonl(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each data line; '#' lines and blank lines are comments."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ScreeningConfigError(f"{path}:0: cannot read: {exc}") from exc
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            obj = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise ScreeningConfigError(f"{path}:{number}: bad JSON: {exc.msg} (column {exc.colno})") from exc
        if not isinstance(obj, dict):
            raise ScreeningConfigError(f"{path}:{number}: expected a JSON object")
        yield number, obj


def _check_keys(where: str, obj: dict[str, Any], allowed: frozenset[str], required: Iterable[str]) -> None:
    """Fail on unknown or missing keys."""
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise ScreeningConfigError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    missing = [k for k in required if k not in obj]
    if missing:
        raise ScreeningConfigError(f"{where}: missing key(s) {missing}")


def _str_list(where: str, key: str, value: Any, allowed: Iterable[str] | None = None) -> list[str]:
    """Return value as a list of strings, checking membership in ``allowed``."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ScreeningConfigError(f"{where}: {key!r} must be a list of strings")
    if allowed is not None:
        allowed = set(allowed)
        bad = [v for v in value if v not in allowed]
        if bad:
            raise ScreeningConfigError(f"{where}: {key!r} has unknown value(s) {bad}; allowed: {sorted(allowed)}")
    return value


class _Compiler:
    """Validates data files and turns them into spaCy Matcher patterns."""

    def __init__(self, nlp: Any) -> None:
        self.nlp = nlp
        self.lexicons: dict[str, list[str]] = {}

    def load_lexicons(self, path: Path) -> None:
        """Load named word classes (``LEX`` in token patterns)."""
        for number, obj in _read_jsonl(path):
            where = f"{path}:{number}"
            _check_keys(where, obj, _LEXICON_KEYS, ("name", "words"))
            name = obj["name"]
            if not isinstance(name, str) or not re.fullmatch(r"[A-Z][A-Z0-9_]*", name):
                raise ScreeningConfigError(f"{where}: 'name' must be UPPER_SNAKE_CASE")
            if name in self.lexicons:
                raise ScreeningConfigError(f"{where}: lexicon {name!r} defined twice")
            words = _str_list(where, "words", obj["words"])
            if not words:
                raise ScreeningConfigError(f"{where}: lexicon {name!r} is empty")
            for word in words:
                self._check_word(where, word)
            self.lexicons[name] = sorted(set(words))

    def _check_word(self, where: str, word: str) -> None:
        """Fail when a lexicon word could never match a normalised token."""
        normal = normalise(word)[0]
        if normal != word:
            raise ScreeningConfigError(
                f"{where}: word {word!r} never matches: the normaliser turns it into {normal!r}")
        # A clitic ("'s") is checked in context: "it's" is tokenised "it", "'s".
        probe = "it" + word if word.startswith("'") else word
        tokens = [t.text for t in self.nlp.tokenizer(probe)]
        if word.startswith("'") and tokens[:1] == ["it"]:
            tokens = tokens[1:]
        if tokens != [word]:
            raise ScreeningConfigError(
                f"{where}: word {word!r} is not one token (the tokenizer gives {tokens}); "
                "use a token pattern instead")

    def token_pattern(self, where: str, pattern: Any) -> list[dict[str, Any]]:
        """Validate a token pattern and expand ``LEX`` references."""
        if not isinstance(pattern, list) or not pattern:
            raise ScreeningConfigError(f"{where}: 'pattern' must be a non-empty list of token objects")
        out: list[dict[str, Any]] = []
        for i, tok in enumerate(pattern):
            if not isinstance(tok, dict):
                raise ScreeningConfigError(f"{where}: token {i} must be an object")
            unknown = sorted(set(tok) - _TOKEN_KEYS)
            if unknown:
                raise ScreeningConfigError(f"{where}: token {i}: unknown key(s) {unknown}")
            tok = dict(tok)
            if "OP" in tok and (not isinstance(tok["OP"], str) or not _OP_RE.match(tok["OP"])):
                raise ScreeningConfigError(f"{where}: token {i}: bad OP {tok['OP']!r}")
            if "LEX" in tok:
                names = tok.pop("LEX")
                names = [names] if isinstance(names, str) else names
                _str_list(f"{where}: token {i}", "LEX", names, self.lexicons)
                if "LOWER" in tok:
                    raise ScreeningConfigError(f"{where}: token {i}: use LEX or LOWER, not both")
                words = sorted({w for n in names for w in self.lexicons[n]})
                tok["LOWER"] = {"IN": words}
            for key in ("LOWER", "ORTH", "TEXT", "NORM"):
                value = tok.get(key)
                if isinstance(value, str):
                    self._check_word(f"{where}: token {i}", value) if key != "ORTH" else None
                elif isinstance(value, dict):
                    for op, words in value.items():
                        if op in ("IN", "NOT_IN"):
                            for w in _str_list(f"{where}: token {i}", f"{key}.{op}", words):
                                if key == "LOWER":
                                    self._check_word(f"{where}: token {i}", w)
            out.append(tok)
        return out

    def literal_pattern(self, where: str, literal: Any) -> list[dict[str, Any]]:
        """Turn a literal phrase into a LOWER token pattern over normalised tokens."""
        if not isinstance(literal, str) or not literal.strip():
            raise ScreeningConfigError(f"{where}: 'literal' must be a non-empty string")
        normal = normalise(literal)[0]
        return [{"LOWER": t.text} for t in self.nlp.tokenizer(normal) if not t.is_space]

    def add(self, matcher: Matcher, key: str, where: str, pattern: list[dict[str, Any]]) -> None:
        """Add a pattern to the matcher, re-raising spaCy's validation error with file:line.

        A first token ``{"LOWER": {"IN": [...]}}`` is expanded into one pattern per word: the
        Matcher checks single values in compiled code but calls back into Python for a set.
        """
        variants = [pattern]
        first = pattern[0]
        if set(first) == {"LOWER"} and isinstance(first["LOWER"], dict) and set(first["LOWER"]) == {"IN"}:
            variants = [[{"LOWER": word}, *pattern[1:]] for word in first["LOWER"]["IN"]]
        try:
            matcher.add(key, variants)
        except Exception as exc:  # spaCy raises several types for a bad pattern
            raise ScreeningConfigError(f"{where}: invalid token pattern: {exc}".splitlines()[0]) from exc

    @staticmethod
    def anchors(pattern: list[dict[str, Any]]) -> frozenset[str] | None:
        """Return words of which every match must contain one (the smallest required set)."""
        best: frozenset[str] | None = None
        best_score = (0, 0)
        for tok in pattern:
            op = tok.get("OP", "")
            required = op in ("", "+") or re.match(r"\{[1-9]", op) is not None
            if not required:
                continue
            value = tok.get("LOWER")
            words = {value} if isinstance(value, str) else set(value.get("IN", ())) if isinstance(value, dict) else None
            if not words:
                continue
            score = (sum(w in STOP_WORDS for w in words), len(words))
            if best is None or score < best_score:
                best, best_score = frozenset(words), score
        return best


def _make_nlp() -> Any:
    """Return a blank English pipeline whose tokenizer keeps contractions and slang whole."""
    nlp = spacy.blank("en")
    nlp.tokenizer.rules = {}
    return nlp


class RuleScreener:
    """Screens messages with patterns and context rules loaded from ``config_dir``."""

    def __init__(self, config_dir: Path | None = None) -> None:
        """Load and validate every data file; raise ScreeningConfigError naming file:line."""
        if config_dir is None:
            from bot import CONFIG_DIR

            config_dir = CONFIG_DIR / "screening"
        self.config_dir = Path(config_dir)
        self.respeller = respeller(self.config_dir)  # how people type (bot.screening.respell)
        self.nlp = _make_nlp()
        # One small Matcher per risk pattern, run only when the message contains one of the
        # pattern's anchor words (a word every match must contain): most patterns are skipped
        # for most messages. Literal context rules go to a PhraseMatcher, the rest to a Matcher.
        self._target_matchers: list[Matcher] = []
        self._anchor_index: dict[str, list[int]] = {}
        self._unanchored: list[int] = []
        self.context_matcher = Matcher(self.nlp.vocab, validate=True)
        self.phrase_matcher = PhraseMatcher(self.nlp.vocab, attr="LOWER")
        compiler = _Compiler(self.nlp)
        lexicons = self.config_dir / "lexicons.jsonl"
        if lexicons.exists():
            compiler.load_lexicons(lexicons)
        self._patterns: dict[int, _PatternSpec] = {}
        self._rules: dict[int, ContextRule] = {}
        # patterns that say the ASQ's own words (a wish to die, killing oneself, suicide, an
        # attempt): when they escalate they always page; the model never demotes them to "ask"
        self.explicit: set[str] = set()
        self._load_patterns(compiler)
        self._load_rules(compiler)
        self.context = ConText(self._rules)
        self._self_reflexive = frozenset(compiler.lexicons.get("REFLEXIVE_SELF", ()))
        self._other_reflexive = frozenset(compiler.lexicons.get("REFLEXIVE_OTHER", ()))
        log.info("screener loaded: %d patterns, %d context rules", len(self._patterns), len(self._rules))

    def _load_patterns(self, compiler: _Compiler) -> None:
        """Load every ``patterns/*.jsonl`` file."""
        directory = self.config_dir / "patterns"
        files = sorted(directory.glob("*.jsonl")) if directory.is_dir() else []
        if not files:
            raise ScreeningConfigError(f"{directory}:0: no pattern files (*.jsonl)")
        seen: set[str] = set()
        for path in files:
            for number, obj in _read_jsonl(path):
                where = f"{path}:{number}"
                _check_keys(where, obj, _PATTERN_KEYS, ("id", "category", "pattern"))
                pid, category = obj["id"], obj["category"]
                if not isinstance(pid, str) or not pid or pid in seen:
                    raise ScreeningConfigError(f"{where}: 'id' must be a unique non-empty string")
                seen.add(pid)
                if category not in CATEGORIES:
                    raise ScreeningConfigError(f"{where}: unknown category {category!r}; allowed: {list(CATEGORIES)}")
                imminent = obj.get("imminent", False)
                if not isinstance(imminent, bool):
                    raise ScreeningConfigError(f"{where}: 'imminent' must be true or false")
                if not isinstance(obj.get("explicit", False), bool):
                    raise ScreeningConfigError(f"{where}: 'explicit' must be true or false")
                if obj.get("explicit"):
                    self.explicit.add(pid)
                experiencer = obj.get("experiencer")
                if experiencer not in (None, "self", "other"):
                    raise ScreeningConfigError(f"{where}: 'experiencer' must be \"self\" or \"other\"")
                subsumes = frozenset(_str_list(where, "subsumes", obj.get("subsumes", []), CATEGORIES))
                for key in ("source", "note"):
                    if key in obj and not isinstance(obj[key], str):
                        raise ScreeningConfigError(f"{where}: {key!r} must be a string")
                pattern = compiler.token_pattern(where, obj["pattern"])
                key = f"T{len(self._patterns)}"
                matcher = Matcher(self.nlp.vocab, validate=True)
                compiler.add(matcher, key, where, pattern)
                index = len(self._target_matchers)
                self._target_matchers.append(matcher)
                anchors = compiler.anchors(pattern)
                if anchors is None:
                    self._unanchored.append(index)
                for word in anchors or ():
                    self._anchor_index.setdefault(word, []).append(index)
                self._patterns[self.nlp.vocab.strings[key]] = _PatternSpec(pid, category, imminent, experiencer, subsumes)

    def _load_rules(self, compiler: _Compiler) -> None:
        """Load ``context_rules.jsonl`` (medspaCy ConText style)."""
        path = self.config_dir / "context_rules.jsonl"
        if not path.exists():
            raise ScreeningConfigError(f"{path}:0: missing context rules file")
        for number, obj in _read_jsonl(path):
            where = f"{path}:{number}"
            _check_keys(where, obj, _RULE_KEYS, ("category", "direction"))
            category, direction = obj["category"], obj["direction"]
            if category not in CONTEXT_CATEGORIES:
                raise ScreeningConfigError(f"{where}: unknown category {category!r}; allowed: {sorted(CONTEXT_CATEGORIES)}")
            if direction not in _DIRECTIONS:
                raise ScreeningConfigError(f"{where}: unknown direction {direction!r}; allowed: {sorted(_DIRECTIONS)}")
            if ("literal" in obj) == ("pattern" in obj):
                raise ScreeningConfigError(f"{where}: give exactly one of 'literal' or 'pattern'")
            max_scope = obj.get("max_scope")
            if max_scope is not None and (not isinstance(max_scope, int) or isinstance(max_scope, bool) or max_scope < 1):
                raise ScreeningConfigError(f"{where}: 'max_scope' must be a positive integer")
            scope = obj.get("scope", "sentence")
            if scope not in ("sentence", "message"):
                raise ScreeningConfigError(f"{where}: 'scope' must be \"sentence\" or \"message\"")
            unless_self = obj.get("unless_self", False)
            if not isinstance(unless_self, bool):
                raise ScreeningConfigError(f"{where}: 'unless_self' must be true or false")
            allowed = frozenset(_str_list(where, "allowed_types", obj.get("allowed_types", list(CATEGORIES)), CATEGORIES))
            terminated_by = frozenset(_str_list(where, "terminated_by", obj.get("terminated_by", []), CONTEXT_CATEGORIES))
            crosses = frozenset(_str_list(where, "crosses", obj.get("crosses", [])))
            key = f"C{len(self._rules)}"
            if "literal" in obj:
                pattern = compiler.literal_pattern(where, obj["literal"])
                label = obj["literal"]
                self.phrase_matcher.add(key, [self.nlp.tokenizer(" ".join(t["LOWER"] for t in pattern))])
            else:
                pattern = compiler.token_pattern(where, obj["pattern"])
                label = f"line {number}"
                compiler.add(self.context_matcher, key, where, pattern)
            self._rules[self.nlp.vocab.strings[key]] = ContextRule(
                category=category, direction=direction, max_scope=max_scope, scope=scope,
                allowed_types=allowed, terminated_by=terminated_by, unless_self=unless_self, label=str(label),
                crosses=crosses,
            )

    def screen(self, text: str) -> ScreeningResult:
        """Screen one message; never raises (a failure fails closed: escalate, urgent)."""
        try:
            return self._screen(text)
        except Exception as exc:  # pragma: no cover - the property tests keep this unreachable
            log.error("screening failed (%s); failing closed", type(exc).__name__)
            return ScreeningResult(text=text if isinstance(text, str) else str(text), escalate=True,
                                   categories=[], signals=[], priority="urgent", tier="page",
                                   reason="The risk screen failed on this message: a clinician must read it.")

    def _screen(self, text: str) -> ScreeningResult:
        """Screen one message (may raise on a defect; see :meth:`screen`)."""
        if not isinstance(text, str):
            raise TypeError("text must be a str")
        normal, offsets = self.respeller.respell(*normalise(text), text)
        if not normal.strip():
            return ScreeningResult(text=text)
        doc = self.nlp.tokenizer(normal)
        candidates = set(self._unanchored)
        index = self._anchor_index
        for word in {t.lower_ for t in doc}:
            if word in index:
                candidates.update(index[word])
        targets = [(Span(start, end), self._patterns[match_id])
                   for i in sorted(candidates)
                   for match_id, start, end in self._target_matchers[i](doc)]
        if not targets:
            return ScreeningResult(text=text)
        modifiers = [(Span(start, end), self._rules[match_id])
                     for matcher in (self.phrase_matcher, self.context_matcher)
                     for match_id, start, end in matcher(doc)]
        targets = _dedupe_targets(targets)
        sentences = _sentence_ids(doc)
        self.context.prepare(modifiers, sentences)
        signals: list[Signal] = []
        for span, spec in targets:
            flags = self.context.flags(span, spec.category)
            experiencer = spec.experiencer or self._reflexive_experiencer(doc, span) or flags.experiencer
            signals.append(self._signal(text, doc, offsets, span, spec, flags, experiencer))
        signals.sort(key=lambda s: (s.start, CATEGORIES.index(s.category)))
        return _result(text, signals)

    def _reflexive_experiencer(self, doc: Doc, span: Span) -> str | None:
        """Return 'other' for 'himself'/'herself'… inside the cue, 'self' for 'myself'."""
        lowers = [doc[i].lower_ for i in range(span.start, span.end)]
        if any(w in self._other_reflexive for w in lowers):
            return "other"
        if any(w in self._self_reflexive for w in lowers):
            return "self"
        return None

    @staticmethod
    def _signal(text: str, doc: Doc, offsets: list[int], span: Span, spec: _PatternSpec,
                flags: Flags, experiencer: str) -> Signal:
        """Build a Signal with offsets into the original text."""
        n_start = doc[span.start].idx
        last = doc[span.end - 1]
        n_end = last.idx + len(last.text)
        start, end = original_span(text, offsets, n_start, n_end)
        category = spec.category
        if experiencer == "other" and category in _THIRD_PARTY_FROM:
            category = "third_party_concern"
        return Signal(
            category=category, cue=text[start:end], start=start, end=end,
            negated=flags.negated, hypothetical=flags.hypothetical, experiencer=experiencer,
            historical=flags.historical, figurative=flags.figurative,
            imminent=spec.imminent or flags.imminent, retracted=flags.retracted,
            reported=flags.reported, attempt=flags.attempt, rule=spec.id,
        )


def _dedupe_targets(targets: list[tuple[Span, _PatternSpec]]) -> list[tuple[Span, _PatternSpec]]:
    """Keep the longest match where matches of one category overlap; apply ``subsumes``.

    A shorter overlapping match marked imminent passes its imminence to the match kept.
    Linear in the number of matches (token occupancy), so long messages stay fast.
    """
    targets.sort(key=lambda t: (-(t[0].end - t[0].start), t[0].start))
    owner: dict[str, dict[int, int]] = {}
    subsumed: dict[str, dict[int, int]] = {}
    kept: list[tuple[Span, _PatternSpec]] = []
    for span, spec in targets:
        taken = owner.setdefault(spec.category, {})
        clash = next((taken[i] for i in range(span.start, span.end) if i in taken), None)
        if clash is not None:
            if spec.imminent and not kept[clash][1].imminent:
                other, ospec = kept[clash]
                kept[clash] = (other, _PatternSpec(ospec.id, ospec.category, True, ospec.experiencer, ospec.subsumes))
            continue
        cover = subsumed.get(spec.category, {})
        first, last = cover.get(span.start), cover.get(span.end - 1)
        if first is not None and first == last:
            continue
        index = len(kept)
        kept.append((span, spec))
        for i in range(span.start, span.end):
            taken[i] = index
        for category in spec.subsumes:
            marks = subsumed.setdefault(category, {})
            for i in range(span.start, span.end):
                marks.setdefault(i, index)
    return kept


def _sentence_ids(doc: Doc) -> list[int]:
    """Return a sentence number per token (split after . ! ? and line breaks)."""
    ids: list[int] = []
    current = 0
    for tok in doc:
        ids.append(current)
        text = tok.text
        if text in _SENTENCE_END or "\n" in text or (tok.is_punct and text[0] in ".!?"):
            current += 1
    return ids


def _result(text: str, signals: list[Signal]) -> ScreeningResult:
    """Combine signals into categories, escalate and priority."""
    escalating = [s for s in signals if s.escalates]
    present = {s.category for s in escalating}
    categories = [c for c in CATEGORIES if c in present]
    if not escalating:
        return ScreeningResult(text=text, escalate=False, categories=[], signals=signals, priority=None)
    if any(s.imminent for s in escalating):
        priority = "imminent"
    elif present - {"third_party_concern"}:
        priority = "urgent"
    else:
        priority = "routine"
    return ScreeningResult(text=text, escalate=True, categories=categories, signals=signals, priority=priority,
                           tier="page")
