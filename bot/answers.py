"""Reading a yes/no answer without the NLU: the words both the Rasa forms and the gateway trust.

Exact button payloads and the commonest short answers are read from these lists, so a
misclassified "Yes" can never turn into something else (actions.helpers.yes_no falls back to
the NLU's intent for the rest; the gateway's *ask* tier, which must work with Rasa down, uses
:func:`read_answer`, which also reads the first words of a longer answer).
"""

from __future__ import annotations

import re

_NOT_WORD = re.compile(r"[^a-z0-9' ]+")

YES, NO, DECLINED = "yes", "no", "declined"

YES_WORDS = frozenset({"yes", "y", "yeah", "yep", "yup", "ya", "yes i have", "i have", "i do", "yes i do", "sometimes"})
NO_WORDS = frozenset({"no", "n", "nope", "nah", "no i haven't", "i haven't", "i don't", "no i don't", "never"})
REFUSE_WORDS = frozenset({
    "i'd rather not say", "id rather not say", "rather not say", "i'd rather not answer",
    "not sure", "unsure", "dunno", "idk", "i don't know", "i dont know", "pass", "skip",
})
# Openings of a longer answer. "No" openings that go on to disclose risk are caught by the
# screen, which reads every message first; an unclear answer is asked again, then counts as
# declined (a refusal is not a "no": ARCHITECTURE.md invariant 4).
_YES_OPENINGS = ("yes", "yeah", "yep", "yup", "ya ", "sometimes", "kind of", "kinda", "a little", "a bit",
                 "i am", "i'm", "im ", "i have", "i do", "maybe", "i think so", "i guess", "honestly yes",
                 "all the time", "every day", "always", "sort of", "sorta", "true")
_NO_OPENINGS = ("no", "nope", "nah", "not really", "not at all", "never", "i'm not", "im not", "i am not",
                "i don't think so", "i dont think so", "not right now", "not now", "of course not", "definitely not")
_REFUSE_OPENINGS = ("i'm not sure", "im not sure", "i am not sure", "i'd rather not", "id rather not", "i would rather not", "i don't want to answer",
                    "i dont want to answer", "i don't want to say", "i dont want to say", "none of your business",
                    "why do you", "why are you asking", "skip", "pass", "not sure", "i don't know", "i dont know", "idk")


def normalise_answer(text: str | None) -> str:
    """Lower-case, straighten curly apostrophes, collapse spaces, strip end punctuation."""
    text = (text or "").replace("\u2019", "'").replace("\u2018", "'").lower()
    return " ".join(text.split()).strip(" .!?,")


def plain_answer(text: str | None) -> str | None:
    """YES, NO or DECLINED for a bare button-like answer; None otherwise."""
    words = normalise_answer(text)
    if words in YES_WORDS:
        return YES
    if words in NO_WORDS:
        return NO
    if words in REFUSE_WORDS:
        return DECLINED
    return None


def read_answer(text: str | None) -> str | None:
    """YES, NO, DECLINED, or None when the answer is unclear (the gateway's reading)."""
    exact = plain_answer(text)
    if exact is not None:
        return exact
    words = " ".join(_NOT_WORD.sub(" ", normalise_answer(text)).split()) + " "
    for openings, answer in ((_REFUSE_OPENINGS, DECLINED), (_NO_OPENINGS, NO), (_YES_OPENINGS, YES)):
        if any(words.startswith(o.strip() + " ") for o in openings):
            return answer
    return None
