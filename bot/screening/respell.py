"""Read a message the way its writer typed it on a phone: text-speak, joined words, dots, spaced
letters, typos in the risk vocabulary — with the offset map kept.

:func:`bot.screening.normalise.normalise` folds characters (look-alikes, leetspeak, zero-width,
letter runs). This second step works on words, over the normalised text, and keeps the same
contract: ``offsets[i]`` is the index in the original text of the character that produced
``reading[i]``, so evidence spans still point at what the client typed. Both the rules and
the model read its output (:func:`read`). Each step answers a measured failure (issue 14:
fourteen explicit messages, none of which paged when typed without spaces, with dots between
words or with spaced letters):

1. **repeated punctuation** collapses to one mark (``die.....tonight`` → ``die.tonight``);
2. **dots, underscores and dashes between words** become spaces (``i.want.to.die``,
   ``kill_myself``; dashes only between three or more words, so ``self-harm`` keeps its dash);
3. **spaced letters** — three or more single letters in a row — are joined: into the words
   the client marked with wider gaps (``i   w a n t   t o   d i e`` → ``i want to die``), or,
   with single gaps only, when the letters make a word, or words one of which is a risk word
   (``d i e`` → ``die``, ``i w a n t t o d i e`` → ``i want to die``); ``u r a`` stays;
4. **text-speak and contractions without apostrophes** (``config/screening/textspeak.jsonl``:
   ``u`` → ``you``, ``im`` → ``i'm``, ``gonna`` → ``going to``); ``2`` and ``4`` read as ``to``
   and ``for`` only between words that say so (``want 2 die``, never ``took 2 pills``);
5. **joined words** (a word of 6+ letters that is neither English nor risk vocabulary) are
   split by ``wordsegment`` (Apache-2.0; unigram and bigram counts of the Google Web Trillion
   Word Corpus shipped in its wheel, so "touchesmeatnight" is "touches me at night") —
   ``iwanttodie`` → ``i want to die`` — kept only when one piece is a risk word and at most a
   third of the letters are in pieces that are not words, so names and hashtags stay; the
   pieces are read as text-speak too
   (``imgoingtokillhim`` → ``i'm going to kill him``);
6. **typos in the risk vocabulary** (the words of the rules' patterns and lexicons): a word of
   4+ letters that is not English is replaced by the risk word within one edit (two from 8
   letters; a swap of two letters is one edit), the commoner word on a tie (``myslef`` →
   ``myself``, ``tonihgt`` → ``tonight``). An English word is never changed, so ``skill``,
   ``killer`` and ``diet`` stay what they are; nor is a Capitalised word inside a sentence
   (a name: "Kyle Gunn").

English words and their frequencies come from the dictionary inside the ``symspellpy`` wheel
(MIT; ``frequency_dictionary_en_82_765.txt``, 82,765 words from Google Books n-grams
intersected with SCOWL — clean enough that a typo is not a word; sha256 checked at load);
SymSpell also finds the risk word near a typo. Nothing is downloaded.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from bot.screening.normalise import normalise

log = logging.getLogger(__name__)

DICTIONARY_SHA256 = "68e9dc81c7e73bd7310b57e516ecaea0d8b6387ff71344a57c04174650a407a7"
DICTIONARY_FILE = "frequency_dictionary_en_82_765.txt"
STOP_WORDS = 100  # the commonest English words never count as the risk word of a split
MIN_SPLIT = 6  # a joined word is at least this long ("killme" is 6)
MIN_TYPO = 4  # shorter words are too ambiguous to correct ("kil" is in the lexicons itself)

_TOKEN = re.compile(r"[a-z0-9']+")
_PUNCT_RUN = re.compile(r"([.!?,_~*\-])\1+")
_DOT_JOINED = re.compile(r"(?<![a-z0-9'])[a-z']+(?:[._][a-z']+)+(?![a-z0-9'])")
_DASH_JOINED = re.compile(r"(?<![a-z0-9'\-])[a-z']+(?:-[a-z']+){2,}(?![a-z0-9'\-])")
_SPACED = re.compile(r"(?<![a-z0-9'])[a-z](?: [a-z']){2,}(?![a-z0-9'])")

# "2" and "4" read as words only between words that ask for them (never "took 2 pills").
_TO_AFTER = frozenset("""want wanna going gonna have has had need needs needed try trying tried like able
about ready decided decide deciding plan planning planned wish used supposed deserve deserves hope way
time how where what gotta got go went come came listen talk talking speak say said told tell back due
afraid scared tempted urge urges""".split())
_TO_BEFORE = frozenset("""die kill end hurt cut be live do jump overdose od hang shoot stab go take see
talk get make stop sleep disappear harm starve drown burn bleed leave run hide""".split())
_FOR_AFTER = frozenset("""ready sorry thanks thank waiting wait looking reason live living nothing here
there pray praying ask asking good bad time enough done""".split())
_FOR_BEFORE = frozenset("you me him her them us ever good real sure now tonight today life".split())


@dataclass(frozen=True)
class _Edit:
    """Replace ``reading[start:end]`` by ``text``; ``keep`` maps each new character to an old
    index inside the span (letters that only moved keep their own offsets)."""

    start: int
    end: int
    text: str
    keep: tuple[int, ...] | None = None


def _apply(chars: str, offsets: list[int], edits: Iterable[_Edit]) -> tuple[str, list[int]]:
    """Apply non-overlapping edits, left to right, to the text and its offset map."""
    out: list[str] = []
    out_offsets: list[int] = []
    pos = 0
    for e in sorted(edits, key=lambda e: e.start):
        if e.start < pos:
            continue
        out.append(chars[pos:e.start])
        out_offsets.extend(offsets[pos:e.start])
        out.append(e.text)
        if e.keep is not None:
            out_offsets.extend(offsets[i] for i in e.keep)
        else:
            # a new spelling: character i comes from the i-th character of the span, or its last
            span = offsets[e.start:e.end] or [offsets[e.start - 1] if e.start else 0]
            out_offsets.extend(span[min(i, len(span) - 1)] for i in range(len(e.text)))
        pos = e.end
    out.append(chars[pos:])
    out_offsets.extend(offsets[pos:])
    return "".join(out), out_offsets


def _dictionary_path() -> Path:
    import importlib.resources

    return Path(str(importlib.resources.files("symspellpy") / DICTIONARY_FILE))


@functools.lru_cache(maxsize=1)
def english() -> dict[str, int]:
    """The English words of the symspellpy wheel with their corpus counts (checked by sha256)."""
    path = _dictionary_path()
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != DICTIONARY_SHA256:
        raise RuntimeError(f"{path}: sha256 does not match the pinned dictionary (symspellpy==6.10.1)")
    words: dict[str, int] = {}
    for line in data.decode("utf-8").splitlines():
        word, _, count = line.partition(" ")
        if word and count.isdigit():
            words[word] = int(count)
    return words


def risk_vocabulary(config_dir: Path) -> frozenset[str]:
    """Every literal word of the rules' patterns and lexicons (``config/screening``)."""
    words: set[str] = set()
    lexicons: dict[str, list[str]] = {}

    def lines(path: Path) -> Iterable[dict]:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                yield json.loads(line)

    lexicon_file = config_dir / "lexicons.jsonl"
    if lexicon_file.exists():
        for obj in lines(lexicon_file):
            lexicons[obj["name"]] = obj["words"]
            words.update(obj["words"])
    for path in sorted((config_dir / "patterns").glob("*.jsonl")):
        for obj in lines(path):
            for tok in obj["pattern"]:
                value = tok.get("LOWER")
                if isinstance(value, str):
                    words.add(value)
                elif isinstance(value, dict):
                    words.update(value.get("IN", []))
    return frozenset(w for w in words if w.isalpha())


class Respeller:
    """The word-level reading of :mod:`bot.screening.respell` for one rules configuration."""

    def __init__(self, config_dir: Path) -> None:
        self.english = english()
        self.risk = risk_vocabulary(config_dir)
        commonest = sorted(self.english, key=self.english.get, reverse=True)[:STOP_WORDS]
        self.stop = frozenset(commonest)
        self.textspeak = self._load_textspeak(config_dir / "textspeak.jsonl")
        from symspellpy import SymSpell

        # typos: a small index over the risk vocabulary only (fast to build, fast to query)
        self._typos = SymSpell(max_dictionary_edit_distance=2, prefix_length=8)
        for word in self.risk:
            if len(word) >= MIN_TYPO - 1:
                self._typos.create_dictionary_entry(word, self.english.get(word, 1))
        self._segmenter = None
        self._lock = threading.Lock()

    @staticmethod
    def _load_textspeak(path: Path) -> dict[str, str]:
        table: dict[str, str] = {}
        if not path.exists():
            return table
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            obj = json.loads(line)
            typed, reads = obj.get("typed"), obj.get("reads")
            if not isinstance(typed, str) or not isinstance(reads, str) or not typed or not reads:
                raise ValueError(f"{path}:{number}: each line needs 'typed' and 'reads' strings")
            if typed in table:
                raise ValueError(f"{path}:{number}: {typed!r} is listed twice")
            table[typed] = reads
        return table

    def segmenter(self):
        """wordsegment's segmenter (unigram and bigram counts of its wheel), loaded on first use:
        most messages never need it."""
        if self._segmenter is None:
            with self._lock:
                if self._segmenter is None:
                    import wordsegment

                    # only the words a split may keep (English, risk words, text-speak): a third
                    # of the wheel's counts, the same probabilities (the corpus total is kept)
                    keep = set(self.english) | self.risk | set(self.textspeak)
                    seg = wordsegment.Segmenter()
                    seg.unigrams = {w: c for w, c in seg.parse(seg.UNIGRAMS_FILENAME).items() if w in keep}
                    seg.bigrams = {b: c for b, c in seg.parse(seg.BIGRAMS_FILENAME).items()
                                   if all(w in keep for w in b.split(" "))}
                    seg.total = seg.TOTAL
                    seg.limit = seg.LIMIT
                    self._segmenter = seg
        return self._segmenter

    def warm(self) -> threading.Thread:
        """Load the segmenter in the background (a server calls this at start)."""
        thread = threading.Thread(target=self.segmenter, name="respell-warm", daemon=True)
        thread.start()
        return thread

    # -- the steps -------------------------------------------------------------------------

    def respell(self, text: str, offsets: list[int], original: str = "") -> tuple[str, list[int]]:
        """Return the reading of a normalised text and its offsets into ``original``."""
        if not text:
            return text, offsets
        text, offsets = _apply(text, offsets, (
            _Edit(m.start(), m.end(), m.group(1), (m.start(),)) for m in _PUNCT_RUN.finditer(text)))
        text, offsets = _apply(text, offsets, [
            *(_Edit(m.start(), m.end(), re.sub(r"[._]", " ", m.group()), tuple(range(m.start(), m.end())))
              for m in _DOT_JOINED.finditer(text)),
            *(_Edit(m.start(), m.end(), m.group().replace("-", " "), tuple(range(m.start(), m.end())))
              for m in _DASH_JOINED.finditer(text)),
        ])
        edits = []
        for m in _SPACED.finditer(text):
            keep = tuple(i for i in range(m.start(), m.end()) if text[i] != " ")
            groups = _letter_groups(keep, offsets, original)
            if len(groups) > 1:
                # wider gaps in what was typed mark the words: "i   w a n t   t o   d i e"
                out, out_keep = [], []
                for g in groups:
                    if out:
                        out.append(" ")
                        out_keep.append(g[0])
                    out.extend(text[i] for i in g)
                    out_keep.extend(g)
                edits.append(_Edit(m.start(), m.end(), "".join(out), tuple(out_keep)))
                continue
            # one group: joined when the letters make a word, or words one of which is a risk
            # word ("d i e", "i w a n t t o d i e"); "u r a" stays three words
            joined = "".join(text[i] for i in keep)
            letters = joined.replace("'", "")
            known = joined in self.english or joined in self.risk or letters in self.textspeak
            split = None if known else self._split(letters)
            if known:
                edits.append(_Edit(m.start(), m.end(), joined, keep))
            elif split is not None:
                edits.append(_Edit(m.start(), m.end(), split))
        text, offsets = _apply(text, offsets, edits)
        tokens = [(m.start(), m.end(), m.group()) for m in _TOKEN.finditer(text)]
        spaced_out = _in_letter_runs([len(w) == 1 for _, _, w in tokens], 4)
        edits = []
        for n, (start, end, word) in enumerate(tokens):
            prev = tokens[n - 1][2] if n else ""
            nxt = tokens[n + 1][2] if n + 1 < len(tokens) else ""
            typed = original[offsets[start]:offsets[end - 1] + 1] if original else word
            if spaced_out[n]:
                continue  # a letter among spaced letters that make no word: not text-speak
            # a name ("Kyle Gunn") or a word typed with symbols ("@user") is never respelled as a typo
            new = self._word(word, prev, nxt, _is_name(original, offsets, start, end)
                             or not typed.replace("'", "").isalpha())
            if new is not None and new != word:
                keep = None
                if new.replace(" ", "") == word:  # a split: letters keep their own offsets
                    letters = iter(range(start, end))
                    keep = tuple(next(letters) if c != " " else start for c in new)
                    keep = _spaces_take_next(new, keep)
                edits.append(_Edit(start, end, new, keep))
        return _apply(text, offsets, edits)

    def _word(self, word: str, prev: str, nxt: str, name: bool) -> str | None:
        """The reading of one word (None: as typed); ``name``: never a typo to correct."""
        if word in self.textspeak:
            return self.textspeak[word]
        if word == "2" and (prev in _TO_AFTER or nxt in _TO_BEFORE) and prev.isalpha() and nxt.isalpha():
            return "to"
        if word == "4" and (prev in _FOR_AFTER or nxt in _FOR_BEFORE) and prev.isalpha() and nxt.isalpha():
            return "for"
        letters = word.replace("'", "")
        if not letters.isalpha() or word in self.english or word in self.risk:
            return None
        if len(letters) >= MIN_TYPO and not name and letters == word:
            fixed = self._typo(word, 1)
            if fixed is not None:
                return fixed
        if len(letters) >= MIN_SPLIT:
            split = self._split(letters)
            if split is not None:
                return split
        if len(word) >= 8 and not name and letters == word:
            return self._typo(word, 2)
        return None

    def _split(self, word: str) -> str | None:
        """Split a joined word into words, read as text-speak ("imgoingtokillhim" → "i'm going
        to kill him"); None unless every piece is a word and one is a risk word."""
        parts = self.segmenter().segment(word)
        if len(parts) < 2 or "".join(parts) != word:
            return None
        unknown = sum(len(p) for p in parts if p not in self.english and p not in self.risk and p not in self.textspeak)
        if unknown * 3 > len(word) or any(len(p) < 3 for p in parts if p not in self.english and p not in self.textspeak):
            return None  # mostly not words (a name, a hashtag): left as typed
        if not any(p in self.risk and p not in self.stop for p in parts):
            return None
        return " ".join(self.textspeak.get(p, p) for p in parts)

    def _typo(self, word: str, distance: int) -> str | None:
        """The risk word within ``distance`` edits: a swap of two letters first, then the
        commonest English word; None when there is none."""
        from symspellpy import Verbosity

        found = self._typos.lookup(word, Verbosity.CLOSEST, max_edit_distance=distance)
        letters = sorted(word)
        # only the slips of a thumb: a swap, a doubled or dropped letter, a neighbouring key
        # ("vape" is not a typo of "rape"); two edits only as two swaps of a long word
        found = [s for s in found if s.distance <= 1 and _slip(word, s.term)
                 or s.distance == 2 and sorted(s.term) == letters]
        if not found:
            return None
        best = min(d.distance for d in found)
        candidates = sorted((s for s in found if s.distance == best),
                            key=lambda s: (sorted(s.term) != letters, -self.english.get(s.term, 0), s.term))
        term = candidates[0].term
        return term if len(term) >= MIN_TYPO - 1 else None


_QWERTY = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_KEY_AT = {c: (r, i) for r, row in enumerate(_QWERTY) for i, c in enumerate(row)}


def _neighbours(a: str, b: str) -> bool:
    """True when keys ``a`` and ``b`` touch on a QWERTY keyboard."""
    if a not in _KEY_AT or b not in _KEY_AT:
        return False
    (ra, ia), (rb, ib) = _KEY_AT[a], _KEY_AT[b]
    return abs(ra - rb) <= 1 and abs(ia - ib) <= 1 and (ra, ia) != (rb, ib)


def _slip(typed: str, word: str) -> bool:
    """True when ``typed`` is ``word`` after one slip of a thumb: two neighbouring letters
    swapped, a letter doubled, dropped or added, or a key hit beside the right one."""
    if len(typed) == len(word):
        diff = [i for i, (a, b) in enumerate(zip(typed, word)) if a != b]
        if len(diff) == 2 and diff[1] == diff[0] + 1:
            return typed[diff[0]] == word[diff[1]] and typed[diff[1]] == word[diff[0]]
        return len(diff) == 1 and _neighbours(typed[diff[0]], word[diff[0]])
    if abs(len(typed) - len(word)) == 1:
        short, long_ = sorted((typed, word), key=len)
        return any(long_[:i] + long_[i + 1:] == short for i in range(len(long_)))
    return False


def _is_name(original: str, offsets: list[int], start: int, end: int) -> bool:
    """True when the word was typed Capitalised inside a sentence ("Kyle Gunn"): a name, not a
    typo (a typo in a risk word at the start of a sentence is still corrected)."""
    if not original or start >= len(offsets):
        return False
    first = offsets[start]
    typed = original[first:offsets[end - 1] + 1]
    if not (typed[:1].isupper() and typed[1:].islower()):
        return False
    before = original[:first].rstrip()
    return bool(before) and before[-1] not in ".!?\n"


def _in_letter_runs(single: list[bool], length: int) -> list[bool]:
    """For each token, True when it is in a run of at least ``length`` one-letter tokens."""
    out = [False] * len(single)
    n = 0
    while n < len(single):
        m = n
        while m < len(single) and single[m]:
            m += 1
        if m - n >= length:
            out[n:m] = [True] * (m - n)
        n = max(m, n + 1)
    return out


def _letter_groups(keep: tuple[int, ...], offsets: list[int], original: str) -> list[tuple[int, ...]]:
    """Split spaced letters into words where the client typed a wider gap (two or more spaces,
    a tab or a line break) between letters; one group when every gap is one space."""
    groups: list[list[int]] = [[keep[0]]]
    for a, b in zip(keep, keep[1:]):
        gap = original[offsets[a] + 1:offsets[b]] if original else " "
        if len(gap) >= 2 or gap in ("\t", "\n"):
            groups.append([])
        groups[-1].append(b)
    return [tuple(g) for g in groups]


def _spaces_take_next(text: str, keep: tuple[int, ...]) -> tuple[int, ...]:
    """An inserted space takes the offset of the letter after it."""
    out = list(keep)
    for i in range(len(text) - 2, -1, -1):
        if text[i] == " ":
            out[i] = out[i + 1]
    return tuple(out)


def respeller(config_dir: Path | None = None) -> Respeller:
    """The process-wide respeller for a rules configuration (``config/screening`` by default):
    one per folder, however it is named, so the rules and the model share one."""
    if config_dir is None:
        from bot import CONFIG_DIR

        config_dir = CONFIG_DIR / "screening"
    return _respeller(Path(config_dir).resolve())


@functools.lru_cache(maxsize=4)
def _respeller(config_dir: Path) -> Respeller:
    return Respeller(config_dir)


def read(text: str, config_dir: Path | None = None) -> tuple[str, list[int]]:
    """Normalise then respell: what the rules and the model read, with offsets to ``text``."""
    normal, offsets = normalise(text)
    return respeller(config_dir).respell(normal, offsets, text)
