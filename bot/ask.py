"""The screen's *ask* tier: one direct, kind question instead of a page (``config/screening/ask.yml``).

ARCHITECTURE.md "Risk model": when the screen is unsure (or Rasa's NLU guesses a risk the
screen did not find), the client gets the hotline card and one direct question in the ASQ's
words; a clinician sees a non-paging entry on the case queue; a "yes" or a refusal becomes a
page. Asking directly does not raise risk (../shared/CLINICAL.md, "Brief suicide screen").
The gateway owns the question and reads the answer itself (:func:`bot.answers.read_answer`), so
it works with Rasa down.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from bot.escalation import AlertRecord, Escalation, escalate
from bot.terms import CATEGORIES
from bot.store import Store

log = logging.getLogger(__name__)

ASK_FILE = Path(__file__).resolve().parent.parent / "config" / "screening" / "ask.yml"
_KEYS = {"questions", "reask", "thanks_no", "retries"}


class AskConfigError(ValueError):
    """config/screening/ask.yml is malformed; the message names the file and the key."""


@dataclass(frozen=True)
class AskConfig:
    questions: dict[str, str]  # category → the question ("yes" means risk)
    reask: str
    thanks_no: str
    retries: int

    def question(self, categories: list[str]) -> str:
        """The question for the first category (in the screen's order) the screen is unsure of."""
        first = next((c for c in CATEGORIES if c in categories), "self_harm")
        return self.questions[first]


def load_ask_config(path: Path = ASK_FILE) -> AskConfig:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise AskConfigError(f"{path}: cannot read: {exc}") from exc
    if not isinstance(raw, dict) or set(raw) != _KEYS:
        got = set(raw) if isinstance(raw, dict) else set()
        raise AskConfigError(f"{path}: unknown keys {sorted(got - _KEYS)}; missing keys {sorted(_KEYS - got)}")
    questions = raw["questions"]
    if not isinstance(questions, dict) or set(questions) != set(CATEGORIES):
        raise AskConfigError(f"{path}: questions: give one question for each of {', '.join(CATEGORIES)}")
    for key in ("reask", "thanks_no"):
        if not isinstance(raw[key], str) or not raw[key].strip():
            raise AskConfigError(f"{path}: {key} must be a non-empty string")
    if any(not isinstance(q, str) or not q.strip() for q in questions.values()):
        raise AskConfigError(f"{path}: questions: every question must be a non-empty string")
    retries = raw["retries"]
    if not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= 3:
        raise AskConfigError(f"{path}: retries must be an integer from 0 to 3, not {retries!r}")
    return AskConfig({k: v.strip() for k, v in questions.items()}, raw["reask"].strip(), raw["thanks_no"].strip(), retries)


@lru_cache(maxsize=1)
def ask_config() -> AskConfig:
    """The validated ask config, read once per process."""
    return load_ask_config()


def page_unanswered(store: Store, now: dt.datetime, after: dt.timedelta) -> list[AlertRecord]:
    """Page for every direct question left unanswered for ``after`` (no answer counts as yes:
    the ASQ's rule, ARCHITECTURE.md invariant 4). ``now`` is injected (tests pass any hour)."""
    paged = []
    for conversation, state in store.pending_asks():
        asked = dt.datetime.fromisoformat(state.get("asked_at") or conversation["created_at"])
        if now - asked < after:
            continue
        conversation_id = conversation["id"]
        minutes = int(after.total_seconds() // 60)
        categories = state.get("categories") or ["self_harm"]
        record = escalate(store, conversation_id, conversation_id.split(":", 1)[-1], conversation["region"] or "US",
                          Escalation(
                              priority="routine" if set(categories) <= {"third_party_concern"} else "urgent",
                              categories=categories,
                              reason=f"No answer for {minutes} min to the direct question "
                                     f"(“{state.get('question', '')}”); no answer counts as yes.",
                              evidence=list(state.get("evidence") or []),
                              source="ask",
                          ), state.get("message_id"))
        store.set_ask_state(conversation_id, None)
        log.info("case %s paged: the direct question went unanswered", record.case_id)
        paged.append(record)
    return paged
