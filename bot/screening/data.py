"""The stance-labelled data set: label files joined to the corpus, the held-out guard, the splits.

Labels (``data/screening/labels/*.jsonl``) are keyed to a row by ``source:`` plus the first
12 hex digits of the SHA-1 of its text, so the texts themselves are never committed: corpus
rows join to ``../shared/corpus/public.jsonl``; rows from other public sources
(``labels/external.jsonl``, each with its origin, licence and span) join to the texts that
``scripts/rebuild_external.py`` extracts from those sources into ``var/external.jsonl``.
How rows are labelled: docs/labelling.md.

Every row, from either place, must pass the held-out guard: no 8-word window of its text may
be among the shingles of the messages the project is judged on. Rows that fail are refused
and counted, never used.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from bot.screening.result import CATEGORIES

STANCES = ("current", "other", "past", "hypothetical", "negated", "figurative", "reported", "unrelated")
RISKY_STANCES = frozenset({"current", "other"})
SPLITS = ("train", "validation", "test")
_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def text_key(source: str, text: str) -> str:
    """The key a label file uses for a row: ``source:`` + 12 hex digits of SHA-1(text)."""
    return f"{source}:{hashlib.sha1(text.encode('utf-8')).hexdigest()[:12]}"


def split_of(key: str) -> str:
    """The fixed split of a row: 60 % train, 20 % validation, 20 % test, by a hash of its key."""
    bucket = int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:8], 16) % 100
    return "train" if bucket < 60 else "validation" if bucket < 80 else "test"


class HeldOutGuard:
    """The held-out guard of ../shared/corpus/SOURCES.md."""

    def __init__(self, shingles_path: Path) -> None:
        self.shingles = frozenset(shingles_path.read_text(encoding="utf-8").split())

    def fails(self, text: str) -> bool:
        """True when an 8-word window of ``text`` is among the held-out shingles."""
        words = _NON_ALNUM.sub(" ", text.lower()).split()
        return any(
            hashlib.sha1(" ".join(words[i:i + 8]).encode()).hexdigest()[:16] in self.shingles
            for i in range(len(words) - 7)
        )


@dataclass
class Row:
    """One stance-labelled message."""

    key: str
    text: str
    source: str
    stance: str
    topics: list[str]  # the categories the text is about, in any stance
    annotator: str = ""
    licence: str = ""
    split: str = ""
    asq4: bool = False  # the writer's own suicide attempt, at any time (ASQ item 4): escalates

    @property
    def risky(self) -> bool:
        return self.stance in RISKY_STANCES or self.asq4

    @property
    def stance_group(self) -> str:
        """The stance as reports group it: an own past attempt apart from other past rows."""
        return "past (own attempt, ASQ 4)" if self.asq4 else self.stance

    @property
    def categories(self) -> list[str]:
        """The escalation categories: the topics, when the stance escalates; self-harm for an
        own past attempt (CLINICAL.md: a yes to ASQ item 4 is a positive screen, *urgent*)."""
        if self.stance in RISKY_STANCES:
            return list(self.topics)
        return ["self_harm"] if self.asq4 else []


class LabelError(ValueError):
    """A label file is malformed; the message names the file and the line."""


def _check_label(where: str, obj: Any) -> tuple[str, list[str]]:
    if not isinstance(obj, dict):
        raise LabelError(f"{where}: expected a JSON object")
    stance, cats = obj.get("stance"), obj.get("categories")
    if stance not in STANCES:
        raise LabelError(f"{where}: stance {stance!r} is not one of {', '.join(STANCES)}")
    if not isinstance(cats, list) or not set(cats) <= set(CATEGORIES):
        raise LabelError(f"{where}: categories must be a list of {', '.join(CATEGORIES)}")
    if (stance == "unrelated") != (not cats):
        raise LabelError(f"{where}: categories must be empty exactly when the stance is 'unrelated'")
    if obj.get("asq4", False) not in (True, False):
        raise LabelError(f"{where}: asq4 must be true or false")
    if obj.get("asq4") and (stance != "past" or "self_harm" not in cats):
        raise LabelError(f"{where}: asq4 (an own past suicide attempt) needs stance 'past' and category self_harm")
    return stance, [c for c in CATEGORIES if c in cats]


def read_jsonl(path: Path) -> Iterable[tuple[str, dict[str, Any]]]:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            yield where, json.loads(line)
        except json.JSONDecodeError as exc:
            raise LabelError(f"{where}: bad JSON: {exc.msg}") from exc


def load_corpus(path: Path) -> dict[str, dict[str, Any]]:
    """The public corpus by key (first occurrence of a duplicated text wins)."""
    out: dict[str, dict[str, Any]] = {}
    for where, obj in read_jsonl(path):
        key = text_key(obj["source"], obj["text"])
        out.setdefault(key, obj)
    return out


@dataclass
class LabelledSet:
    rows: list[Row]
    refused_guard: int = 0
    missing_text: int = 0
    counts: dict[str, Any] = field(default_factory=dict)

    def split(self, name: str) -> list[Row]:
        return [r for r in self.rows if r.split == name]


def load_external(path: Path | None) -> dict[str, dict[str, Any]]:
    """The rebuilt external texts by key (empty when the file is absent)."""
    if path is None or not path.is_file():
        return {}
    out: dict[str, dict[str, Any]] = {}
    for _, obj in read_jsonl(path):
        out.setdefault(text_key(obj["source"], obj["text"]), obj)
    return out


def load_labelled(labels_dir: Path, corpus: dict[str, dict[str, Any]] | None, guard: HeldOutGuard,
                  external: dict[str, dict[str, Any]] | None = None) -> LabelledSet:
    """Join the label files to the corpus and read the external rows; refuse guard failures.

    A key found in several label files keeps its first label (files read in name order, so
    ``corpus.jsonl`` — the primary annotation — wins over ``second.jsonl``).
    """
    rows: dict[str, Row] = {}
    refused = missing = 0
    for path in sorted(labels_dir.glob("*.jsonl")):
        if path.name.startswith("second"):
            continue  # the independent second annotation: agreement only
        for where, obj in read_jsonl(path):
            stance, cats = _check_label(where, obj)
            key = obj.get("key")
            if not isinstance(key, str) or ":" not in key:
                raise LabelError(f"{where}: missing 'key' (source:sha1)")
            if key in rows:
                continue
            found = (corpus or {}).get(key) or (external or {}).get(key)
            if found is None:
                missing += 1
                continue
            if guard.fails(found["text"]):
                refused += 1
                continue
            rows[key] = Row(key, found["text"], found["source"], stance, cats,
                            str(obj.get("annotator", "")), found.get("licence", ""),
                            asq4=bool(obj.get("asq4", False)))
    for row in rows.values():
        row.split = split_of(row.key)
    _follow_parents(rows, corpus or {})
    ordered = sorted(rows.values(), key=lambda r: r.key)
    counts = {
        "rows": len(ordered),
        "by_split": dict(Counter(r.split for r in ordered)),
        "by_source": dict(sorted(Counter(r.source for r in ordered).items())),
        "by_stance": dict(Counter(r.stance_group for r in ordered).most_common()),
        "risky_by_category": {c: sum(1 for r in ordered if c in r.categories) for c in CATEGORIES},
        "risky": sum(r.risky for r in ordered),
    }
    return LabelledSet(ordered, refused, missing, counts)


def _follow_parents(rows: dict[str, Row], corpus: dict[str, dict[str, Any]]) -> None:
    """An excerpt of a corpus row (external sources that copy a corpus data set) takes its
    parent's split, so no test row is a piece of a training row."""
    by_source: dict[str, list[tuple[str, str]]] = {}
    for key, obj in corpus.items():
        by_source.setdefault(obj["source"], []).append((key, obj["text"]))
    for key, row in rows.items():
        if key in corpus:
            continue
        for source, items in by_source.items():
            if not source.startswith(row.source):
                continue
            parent = next((k for k, text in items if row.text in text), None)
            if parent is not None:
                row.split = split_of(parent)
                break


def load_clinic_rows(path: Path, guard: HeldOutGuard) -> tuple[list[Row], int]:
    """A clinic's own labelled messages (never committed; readable by the owner only).

    Each line is either a stance label, ``{"text", "stance", "categories"}`` (docs/labelling.md),
    or a line of ``triage export-labels``, ``{"text", "label"}`` — read as ``current`` with that
    category, or ``unrelated`` for ``none``. Returns the rows and how many the guard refused.
    """
    rows: list[Row] = []
    refused = 0
    for where, obj in read_jsonl(path):
        text = obj.get("text") if isinstance(obj, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise LabelError(f"{where}: missing 'text'")
        if "stance" in obj:
            stance, cats = _check_label(where, obj)
        else:
            label = obj.get("label")
            if label != "none" and label not in CATEGORIES:
                raise LabelError(f"{where}: label {label!r} is not a category or 'none'")
            stance, cats = ("unrelated", []) if label == "none" else ("current", [label])
        if guard.fails(text):
            refused += 1
            continue
        key = text_key("clinic", text)
        rows.append(Row(key, text, "clinic", stance, cats, "clinic", "the clinic's own", split_of(key),
                        asq4=bool(obj.get("asq4", False))))
    return rows, refused


def corpus_test_split(corpus: dict[str, dict[str, Any]], exclude: set[str], guard: HeldOutGuard | None = None,
                      size: int = 1200) -> list[dict[str, Any]]:
    """A fixed random sample of corpus rows in the test bucket, as the corpus labels them.

    For comparison with the stance-labelled figures ("the corpus's own labels"). Rows labelled
    ``depression`` (no risk label) and rows with a stance label are left out.
    """
    pool = [dict(obj, key=key) for key, obj in corpus.items()
            if key not in exclude and obj.get("risky") is not None and split_of(key) == "test"]
    pool.sort(key=lambda o: hashlib.sha256(("sample:" + o["key"]).encode()).hexdigest())
    out = []
    for obj in pool:
        if guard is not None and guard.fails(obj["text"]):
            continue
        out.append(obj)
        if len(out) >= size:
            break
    return out


def cohen_kappa(a: list[Any], b: list[Any]) -> float | None:
    """Cohen's kappa of two annotators' labels on the same items."""
    n = len(a)
    if n == 0:
        return None
    observed = sum(x == y for x, y in zip(a, b)) / n
    ca, cb = Counter(a), Counter(b)
    expected = sum(ca[k] * cb.get(k, 0) for k in ca) / (n * n)
    return 1.0 if expected == 1 else (observed - expected) / (1 - expected)
