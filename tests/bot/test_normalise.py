"""Tests for bot.screening.normalise: folding look-alikes and obfuscation while keeping offsets."""

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.screening.normalise import normalise, original_span


def _fold(text: str) -> str:
    """Return only the normalised text."""
    return normalise(text)[0]


def test_lowercases_and_keeps_plain_text():
    assert _fold("I Want To DIE") == "i want to die"


def test_curly_apostrophes_become_straight():
    assert _fold("I’m done, it‘s over") == "i'm done, it's over"


def test_zero_width_and_bidi_characters_are_removed():
    assert _fold("ki\u200bll my\u200dself\u2066") == "kill myself"
    assert _fold("\ufeffkms\u00ad") == "kms"


def test_cyrillic_and_greek_look_alikes_map_to_latin():
    assert _fold("kіll mуsеlf") == "kill myself"  # Cyrillic і у е
    assert _fold("ΚΙLL") == "kill"  # Greek capitals


def test_fullwidth_and_accented_letters_fold_to_ascii():
    assert _fold("ｋｉｌｌ") == "kill"
    assert _fold("kíll mysélf") == "kill myself"


def test_leetspeak_inside_words_is_undone():
    assert _fold("k1ll mys3lf") == "kill myself"
    assert _fold("$uicide") == "suicide"
    assert _fold("0verd0se") == "overdose"


def test_numbers_units_and_times_are_not_leetified():
    assert _fold("took 30 tylenol, 800mg at 3am") == "took 30 tylenol, 800mg at 3am"
    assert _fold("took 30pills") == "took 30pills"


def test_runs_of_three_or_more_letters_collapse():
    assert _fold("diiiiie") == "die"
    assert _fold("need") == "need"  # two letters stay


def test_offsets_point_back_into_the_original():
    text = "I’m gonna k\u200b1ll mys3lf!!!"
    normal, offsets = normalise(text)
    assert len(offsets) == len(normal)
    start = normal.index("kill")
    s, e = original_span(text, offsets, start, start + len("kill"))
    assert text[s:e] == "k\u200b1ll"


def test_original_span_covers_a_collapsed_run():
    text = "nooooo way"
    normal, offsets = normalise(text)
    assert normal == "no way"
    s, e = original_span(text, offsets, 0, 2)
    assert text[s:e] == "nooooo"


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_offsets_are_monotonic_and_within_the_text(text):
    normal, offsets = normalise(text)
    assert len(offsets) == len(normal)
    assert all(0 <= o < len(text) for o in offsets)
    assert offsets == sorted(offsets)
