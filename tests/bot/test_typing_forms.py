"""The screen reads what people type on a phone (issue 14; bot/screening/respell.py).

The table is tests/data/typing_forms.yml: explicit messages that page, each in the ways people
type them, and look-alike benign messages that must not page. Our own sentences: unit tests,
not evidence — scripts/measure_typing.py measures the same forms on real messages.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bot.screening.respell import Respeller, english, read
from bot.screening.screener import Screener

TABLE = yaml.safe_load((Path(__file__).resolve().parents[1] / "data" / "typing_forms.yml").read_text(encoding="utf-8"))


def mechanical_forms(plain: str) -> dict[str, str]:
    """The forms made from the plain text by moving what sits between words."""
    words = plain.split()
    return {
        "no spaces": "".join(words),
        "no spaces or apostrophes": "".join(words).replace("'", ""),
        "dots": ".".join(words),
        "underscores": "_".join(words),
        "dashes": "-".join(words),
        "spaced letters": "   ".join(" ".join(w) for w in words),
        "spaced letters, single spaces": " ".join(" ".join(w) for w in words),
        "shouted, repeated marks": plain.upper() + "!!!!!",
    }


def all_forms(cue: dict) -> list[tuple[str, str]]:
    forms = {"as written": cue["plain"], "text-speak": cue["textspeak"], "one typo": cue["typo"],
             **mechanical_forms(cue["plain"])}
    return list(forms.items())


CASES = [(cue["category"], form, text) for cue in TABLE["cues"] for form, text in all_forms(cue)]
BENIGN = [(form, text) for plain in TABLE["benign"] for form, text in [("as written", plain), *mechanical_forms(plain).items()]]


@functools.lru_cache(maxsize=1)
def screener() -> Screener:
    return Screener()


@pytest.mark.parametrize(("category", "form", "text"), CASES, ids=[f"{f}: {t}" for _, f, t in CASES])
def test_an_explicit_message_pages_in_every_form_people_type_it(category, form, text):
    result = screener().screen(text)
    assert result.tier == "page" and result.escalate, (form, result.to_dict())
    assert category in result.categories, (form, result.categories)


@pytest.mark.parametrize(("form", "text"), BENIGN, ids=[f"{f}: {t}" for f, t in BENIGN])
def test_a_look_alike_benign_message_never_pages(form, text):
    result = screener().screen(text)
    assert result.tier != "page", (form, result.to_dict())


@pytest.mark.parametrize("text", ["skill", "killer whale", "diet", "skillet", "therapist", "dye",
                                  "vape", "Kyle Gunn is here", "@user said hi", "took 2 pills", "i'm ill"])
def test_english_words_names_and_numbers_are_read_as_typed(text):
    normal = text.lower().replace("@", "a")
    assert read(text)[0] == normal


@pytest.mark.parametrize(("typed", "reads"), [
    ("iwanttodie", "i want to die"),
    ("imgoingtokillhim", "i'm going to kill him"),
    ("mystepdadtouchesmeatnight", "my stepdad touches me at night"),
    ("i.want.to.die", "i want to die"),
    ("kill_myself", "kill myself"),
    ("i-want-to-die", "i want to die"),
    ("self-harm", "self-harm"),
    ("i   w a n t   t o   d i e", "i want to die"),
    ("i want to d i e", "i want to die"),
    ("u r a good friend", "you are a good friend"),
    ("im gonna do it 2nite", "i'm going to do it tonight"),
    ("want 2 die", "want to die"),
    ("ready 4 you", "ready for you"),
    ("i want to hurt my borther", "i want to hurt my brother"),
    ("tonihgt", "tonight"),
    ("wnat", "want"),
    ("die.....tonight", "die tonight"),
    ("help!!!!", "help!"),
])
def test_the_reading_undoes_how_people_type(typed, reads):
    assert read(typed)[0] == reads


def test_evidence_spans_point_at_what_the_client_typed():
    for text, cue in [("iwanttodie", "die"), ("i.want.to.kill.myself", "kill.myself"),
                      ("i   w a n t   t o   d i e", "d i e"), ("im gonna kill myslef 2nite", "kill myslef")]:
        result = screener().screen(text)
        rule_signals = [s for s in result.signals if s.source == "rule"]
        assert rule_signals, text
        for s in rule_signals:
            assert text[s.start:s.end] == s.cue
        assert any(cue in s.cue or s.cue in cue for s in rule_signals), (text, [s.cue for s in rule_signals])


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("abcdeiklmnorstuwy '.-_!?2@ \u200b")), max_size=60))
def test_the_offset_map_stays_intact_on_any_text(text):
    reading, offsets = read(text)
    assert len(offsets) == len(reading)
    assert all(0 <= o < len(text) for o in offsets)
    assert offsets == sorted(offsets)


def test_the_text_speak_table_refuses_a_bad_line(tmp_path):
    config = tmp_path / "screening"
    (config / "patterns").mkdir(parents=True)
    (config / "patterns" / "x.jsonl").write_text('{"id": "x", "category": "self_harm", "pattern": [{"LOWER": "die"}]}\n')
    (config / "textspeak.jsonl").write_text('{"typed": "u"}\n')
    with pytest.raises(ValueError, match="textspeak.jsonl:1: each line needs 'typed' and 'reads'"):
        Respeller(config)
    (config / "textspeak.jsonl").write_text('{"typed": "u", "reads": "you"}\n{"typed": "u", "reads": "your"}\n')
    with pytest.raises(ValueError, match="textspeak.jsonl:2: 'u' is listed twice"):
        Respeller(config)


# -- property: a message that pages still pages after text-speak and one typo ------------------

TEXTSPEAK = [(r"\bi'm\b", "im"), (r"\bdon't\b", "dont"), (r"\bi've\b", "ive"), (r"\bgoing to\b", "gonna"),
             (r"\bwant to\b", "wanna"), (r"\byou\b", "u"), (r"\byour\b", "ur"), (r"\bare\b", "r"),
             (r"\btonight\b", "2nite"), (r"\bbecause\b", "cuz")]


def to_textspeak(text: str) -> str:
    for pattern, short in TEXTSPEAK:
        text = re.sub(pattern, short, text)
    return text


PAGING = [cue["plain"] for cue in TABLE["cues"]]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(st.sampled_from(PAGING), st.data())
def test_a_paging_message_still_pages_after_text_speak_and_one_typo(plain, data):
    typed = to_textspeak(plain)
    words = [m for m in re.finditer(r"[a-z]{5,}", typed)]
    assume(words)
    m = data.draw(st.sampled_from(words))
    i = data.draw(st.integers(min_value=0, max_value=len(m.group()) - 2))
    w = m.group()
    typo = w[:i] + w[i + 1] + w[i] + w[i + 2:]
    # a swap that makes another English word ("tired" → "tried") is not a typo a reader can see
    assume(typo != w and typo not in english())
    text = typed[:m.start()] + typo + typed[m.end():]
    assert screener().screen(plain).tier == "page"
    assert screener().screen(text).tier == "page", text
