"""Measure the respelling step (bot/screening/respell.py) on real, stance-labelled messages.

Two questions, answered on a split of the annotated set (default: test, never tuned on):

1. **What it costs**: pages and asks on `none` rows, with and without the step (the reading of
   ordinary text must not turn into risk).
2. **What it keeps**: every risky message that pages as written is retyped the ways people
   type on phones — text-speak, one swap of two letters in a longer word, both, and, for
   messages of at most 20 words, no spaces, dots between words, spaced letters — and screened
   again. Reported: the share of those pages each form keeps, with and without the step.

Prints figures only (no message text). Usage:

    .venv/bin/python scripts/measure_typing.py [--split test] [--corpus ../shared/corpus/public.jsonl]
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.screening import respell as respell_module  # noqa: E402
from bot.screening.data import HeldOutGuard, load_corpus, load_external, load_labelled  # noqa: E402
from bot.screening.screener import Screener  # noqa: E402

# How people shorten words on phones: the reverse of config/screening/textspeak.jsonl's commonest lines.
TEXTSPEAK = [
    (r"\bi'm\b", "im"), (r"\bi am\b", "im"), (r"\bdon't\b", "dont"), (r"\bcan't\b", "cant"),
    (r"\bdoesn't\b", "doesnt"), (r"\bdidn't\b", "didnt"), (r"\bi've\b", "ive"), (r"\bthat's\b", "thats"),
    (r"\bgoing to\b", "gonna"), (r"\bwant to\b", "wanna"), (r"\byou\b", "u"), (r"\byour\b", "ur"),
    (r"\bare\b", "r"), (r"\bbecause\b", "cuz"), (r"\btonight\b", "2nite"), (r"\bpeople\b", "ppl"),
    (r"\bplease\b", "pls"), (r"\bfor you\b", "4 u"),
]


def textspeak(text: str) -> str:
    out = text.lower()
    for pattern, short in TEXTSPEAK:
        out = re.sub(pattern, short, out)
    return out


def one_swap(text: str, rng: random.Random, english: dict[str, int]) -> str | None:
    """Swap two neighbouring inner letters of one word of 5+ letters (never making a real word)."""
    words = [m for m in re.finditer(r"[A-Za-z]{5,}", text)]
    rng.shuffle(words)
    for m in words:
        w = m.group()
        i = rng.randrange(1, len(w) - 2)
        typo = w[:i] + w[i + 1] + w[i] + w[i + 2:]
        if typo.lower() != w.lower() and typo.lower() not in english:
            return text[:m.start()] + typo + text[m.end():]
    return None


def mechanical(text: str) -> dict[str, str]:
    words = text.split()
    if len(words) > 20:
        return {}
    return {"no spaces": "".join(words), "dots": ".".join(words),
            "spaced letters": "   ".join(" ".join(w) for w in words)}


@contextmanager
def respelling(on: bool):
    original = respell_module.Respeller.respell
    if not on:
        respell_module.Respeller.respell = lambda self, text, offsets, original_text="": (text, offsets)  # type: ignore
    try:
        yield
    finally:
        respell_module.Respeller.respell = original  # type: ignore


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", default="test", choices=("train", "validation", "test"))
    ap.add_argument("--corpus", default=str(ROOT.parent / "shared" / "corpus" / "public.jsonl"))
    ap.add_argument("--labels", default=str(ROOT / "data" / "screening" / "labels"))
    ap.add_argument("--external", default=str(ROOT / "var" / "external.jsonl"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    corpus = Path(args.corpus)
    if not corpus.exists():
        print(f"{corpus}: the public corpus is missing; nothing to measure", file=sys.stderr)
        return 2
    guard = HeldOutGuard(corpus.parent / "heldout-shingles.txt")
    data = load_labelled(Path(args.labels), load_corpus(corpus), guard, load_external(Path(args.external)))
    rows = data.split(args.split)
    screener = Screener()
    english = respell_module.english()
    started = time.monotonic()

    tiers = {}
    for on in (False, True):
        with respelling(on):
            tiers[on] = [screener.screen(r.text).tier for r in rows]
    none = [i for i, r in enumerate(rows) if not r.risky]
    risky = [i for i, r in enumerate(rows) if r.risky]
    print(f"{args.split} split: {len(rows)} rows ({len(risky)} risky, {len(none)} none)")
    for on in (False, True):
        t = tiers[on]
        pages_none = sum(t[i] == "page" for i in none) / len(none)
        flagged_none = sum(t[i] != "none" for i in none) / len(none)
        recall = sum(t[i] == "page" for i in risky) / len(risky)
        print(f"  respelling {'on ' if on else 'off'}: page recall {recall:.3f}, pages on none {pages_none:.3f}, "
              f"ask-or-page on none {flagged_none:.3f}")

    rng = random.Random(args.seed)
    paged = [rows[i] for i in risky if tiers[True][i] == "page"]
    forms: dict[str, list[str]] = {"text-speak": [], "one swap": [], "text-speak + one swap": [],
                                   "no spaces": [], "dots": [], "spaced letters": []}
    for r in paged:
        forms["text-speak"].append(textspeak(r.text))
        swapped = one_swap(r.text, rng, english)
        if swapped is not None:
            forms["one swap"].append(swapped)
            both = one_swap(textspeak(r.text), rng, english)
            if both is not None:
                forms["text-speak + one swap"].append(both)
        for name, text in mechanical(r.text).items():
            forms[name].append(text)
    print(f"pages kept when {len(paged)} paging risky messages are retyped:")
    for name, texts in forms.items():
        kept = {}
        for on in (False, True):
            with respelling(on):
                kept[on] = sum(screener.screen(t).tier == "page" for t in texts)
        n = len(texts) or 1
        print(f"  {name:24s} {len(texts):4d} messages: respelling off {kept[False] / n:.3f}, on {kept[True] / n:.3f}")
    print(f"({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
