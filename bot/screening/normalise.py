"""Normalise client text for screening while keeping an offset map back to the original.

``normalise(text)`` returns ``(normalised, offsets)``: ``offsets[i]`` is the index in ``text``
of the character that produced ``normalised[i]`` (``len(offsets) == len(normalised)``).
Characters that were removed (zero-width and bidi controls, variation selectors, combining
marks, the extra letters of a collapsed run) have no entry; one original character may
produce several normalised ones (NFKC ``ﬁ`` → ``fi``), which then share its index.
Use :func:`original_span` to map a normalised ``[start, end)`` back to the original text.

Steps, each chosen against a failure mode in CLINICAL.md ("How these systems fail":
curly apostrophes and look-alike characters that defeat keyword matching):

1. NFKC per character; diacritics dropped when the rest is plain ASCII (``kíll`` → ``kill``,
   fullwidth and mathematical letters → ASCII);
2. format characters removed (zero-width space/joiner, bidi controls, soft hyphen, BOM),
   variation selectors and combining marks removed; other control characters → space;
3. curly quotes and look-alike apostrophes → ``'`` and ``"``;
4. confusable Cyrillic/Greek letters → Latin (``kіll mуsеlf`` → ``kill myself``);
5. lower case;
6. leetspeak inside words: single digits ``1 3 0 4 5 7`` and ``@ $`` (and ``! |`` between
   letters) become letters when the word also has a letter — never multi-digit numbers
   (``30pills``, ``ar15``) nor a number with a unit (``800mg``, ``3am``);
7. runs of three or more of the same letter collapse to one (``diiiie`` → ``die``); runs of
   white space become one space (or one line break).
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["normalise", "original_span"]

_QUOTES = {
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "\u02bc": "'",
    "\u02b9": "'", "\u0060": "'", "\u00b4": "'", "\uff07": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"', "\u00ab": '"',
    "\u00bb": '"',
}

# Lower-case forms only: upper case is lowered before this table is consulted.
_CONFUSABLES = {
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p",
    "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i", "ј": "j", "һ": "h",
    "ԁ": "d", "ӏ": "l", "ɡ": "g", "ԛ": "q", "ԝ": "w", "ү": "y", "ո": "n", "ս": "u", "ь": "b",
    "п": "n", "г": "r", "л": "n", "и": "u", "д": "d", "з": "3", "ч": "4",
    # Greek
    "α": "a", "β": "b", "γ": "y", "δ": "d", "ε": "e", "ζ": "z", "η": "n", "ι": "i", "κ": "k",
    "μ": "u", "ν": "v", "ο": "o", "ρ": "p", "σ": "o", "ς": "s", "τ": "t", "υ": "u", "χ": "x",
    "ω": "w", "ί": "i", "ό": "o", "έ": "e", "ά": "a", "ύ": "u",
    # Latin look-alikes NFKC leaves alone
    "ı": "i", "ł": "l", "ø": "o", "đ": "d", "ħ": "h", "ŀ": "l", "ß": "ss",
}

_LEET = {"1": "i", "3": "e", "0": "o", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"}
_LEET_INNER = {"!": "i", "|": "l"}
_WORD_RE = re.compile(r"[a-z0-9@$!|]+")
_UNIT_RE = re.compile(
    r"\d+(?:[.,]\d+)?(?:mg|mgs|g|ml|mcg|kg|lb|lbs|am|pm|x|s|k|st|nd|rd|th|h|hr|hrs|min|mins|m|yo|yrs?)?"
)
_KEEP_CONTROLS = {"\n", "\t", "\r"}


def _char_forms(ch: str) -> str:
    """Return the normalised replacement of one original character ('' to drop it)."""
    if ch.isascii():
        if ch.isprintable() or ch in _KEEP_CONTROLS:
            return ch.lower()
        return " "
    if ch in _QUOTES:
        return _QUOTES[ch]
    cat = unicodedata.category(ch)
    if cat == "Cf" or cat in ("Mn", "Me"):
        return ""
    if cat in ("Cc", "Cs", "Co", "Cn") or cat in ("Zl", "Zp"):
        return " " if cat != "Cn" else ch
    if cat == "Zs":
        return " "
    form = unicodedata.normalize("NFKC", ch)
    if not form.isascii():
        stripped = "".join(c for c in unicodedata.normalize("NFKD", form) if not unicodedata.combining(c))
        if stripped and stripped.isascii():
            form = stripped
    out = []
    for c in form.lower():
        if c in _QUOTES:
            out.append(_QUOTES[c])
        elif unicodedata.category(c) in ("Mn", "Me", "Cf"):
            continue
        else:
            out.append(_CONFUSABLES.get(c, c))
    return "".join(out)


def _in_digit_run(word: str, i: int) -> bool:
    """Return True when ``word[i]`` has a digit neighbour (part of a multi-digit number)."""
    return (i > 0 and word[i - 1].isdigit()) or (i + 1 < len(word) and word[i + 1].isdigit())


def _deleet(chars: list[str]) -> None:
    """Replace leetspeak digits/symbols inside words, in place (one char for one char)."""
    joined = "".join(chars)
    if not any(c in joined for c in "1304579@$!|"):
        return
    for m in _WORD_RE.finditer(joined):
        word = m.group()
        if not any("a" <= c <= "z" for c in word) or _UNIT_RE.fullmatch(word):
            continue
        if not any(c in _LEET or c in _LEET_INNER for c in word):
            continue
        base = m.start()
        for i, c in enumerate(word):
            if c.isdigit() and _in_digit_run(word, i):  # "30pills", "ar15": numbers stay
                continue
            if c in _LEET:
                chars[base + i] = _LEET[c]
            elif c in _LEET_INNER and 0 < i < len(word) - 1 and word[i - 1].isalpha() and word[i + 1].isalpha():
                chars[base + i] = _LEET_INNER[c]


def normalise(text: str) -> tuple[str, list[int]]:
    """Return the normalised text and, for each of its characters, the index in ``text``."""
    chars: list[str] = []
    offsets: list[int] = []
    if text.isascii() and text.isprintable():
        chars = list(text.lower())
        offsets = list(range(len(text)))
    else:
        for i, ch in enumerate(text):
            for c in _char_forms(ch):
                chars.append(c)
                offsets.append(i)
    _deleet(chars)
    # Collapse runs of 3+ identical letters to one and runs of white space to one.
    out_chars: list[str] = []
    out_offsets: list[int] = []
    n = len(chars)
    i = 0
    while i < n:
        c = chars[i]
        j = i + 1
        if c.isspace():
            # A run of white space becomes one space, or one line break if it has one.
            while j < n and chars[j].isspace():
                j += 1
            out_chars.append("\n" if any(chars[k] in "\n\r" for k in range(i, j)) else " ")
            out_offsets.append(offsets[i])
            i = j
            continue
        if c.isalpha():
            while j < n and chars[j] == c:
                j += 1
            if j - i >= 3:
                out_chars.append(c)
                out_offsets.append(offsets[i])
                i = j
                continue
            j = i + 1
        out_chars.append(c)
        out_offsets.append(offsets[i])
        i = j
    return "".join(out_chars), out_offsets


def original_span(text: str, offsets: list[int], start: int, end: int) -> tuple[int, int]:
    """Map a normalised ``[start, end)`` to ``[start, end)`` in the original ``text``.

    The end extends over characters the normaliser removed (a collapsed run, a zero-width
    joiner), so ``text[s:e]`` is what the client actually typed for the cue.
    """
    if not offsets or start >= end:
        return (0, 0) if not offsets else (offsets[min(start, len(offsets) - 1)],) * 2
    o_start = offsets[start]
    if end >= len(offsets):
        o_end = len(text)
    else:
        o_end = max(offsets[end], offsets[end - 1] + 1)
    return o_start, max(o_end, o_start + 1)
