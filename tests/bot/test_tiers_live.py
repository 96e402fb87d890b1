"""The three tiers through `triage simulate` with the committed screen (rules + model), real Rasa.

Which unsure message the model asks about depends on the committed model: the test picks,
from a few written-here candidates, one the committed screener puts in the ask tier.
"""

from __future__ import annotations

import pytest

from bot.ask import ask_config
from bot.screening import get_screener
from tests.bot.test_simulate import run_simulate

pytestmark = pytest.mark.rasa

UNSURE = [
    "I don't see the point of anything anymore",
    "everything feels pointless lately and I'm so tired of all of this",
    "Nobody would even notice if I was gone. I'm done pretending.",
    "i just dont care what happens to me now",
]


def test_page_ask_and_none_in_simulate(rasa_stack, tmp_path):
    screener = get_screener()
    assert screener.screen("What time does the clinic open on Monday?").tier == "none"
    unsure = next((t for t in UNSURE if screener.screen(t).tier == "ask"), None)
    assert unsure is not None, "the committed screen asks about none of the unsure candidates"
    events = run_simulate(rasa_stack, tmp_path, [
        {"chat": "p", "text": "I want to kill myself"},
        {"chat": "a", "text": unsure},
        {"chat": "a", "text": "yes"},
        {"chat": "n", "text": "What time does the clinic open on Monday?"},
    ], model="on")
    by = {c: [e for e in events if e["chat"] == c] for c in "pan"}
    assert [e["type"] for e in by["p"] if e["type"] != "reply"] == ["alert"]
    first = by["a"][:3]
    assert [e["type"] for e in first] == ["reply", "review", "reply"]  # card, queue entry, question
    assert "988" in first[0]["text"] and first[2]["text"] in ask_config().questions.values()
    assert set(first[1]) == {"type", "chat", "case", "categories", "text"}
    alerts = [e for e in by["a"] if e["type"] == "alert"]
    assert len(alerts) == 1 and alerts[0]["case"] == first[1]["case"]  # the yes paged the same case
    assert all(e["type"] == "reply" for e in by["n"])
    assert not any("988" in e["text"] for e in by["n"])
