"""The screen's three tiers in the pipeline: page, ask (a question, not a page), none.

ARCHITECTURE.md "Risk model": an *ask* sends the card and one direct question, records a
non-paging entry on the case queue, and becomes a page on a yes or a refusal. The NLU alone
leads at most to an ask. FakeScreener: "RISK" pages, "UNSURE" asks, anything else is none.
"""

from __future__ import annotations

import asyncio

import pytest

from bot.ask import ask_config, load_ask_config, AskConfigError
from bot.pipeline import Alert, Inbound, Pipeline, Reply, Review
from bot.rasa_client import RasaReply


def run(coro):
    return asyncio.run(coro)


def make(store, fake_screener, fake_rasa, sink) -> Pipeline:
    return Pipeline(store, fake_screener, fake_rasa, sink, default_region="US")


def kinds(events):
    return [type(e).__name__ + (f":{e.kind}" if isinstance(e, Reply) else "") for e in events]


QUESTION = ask_config().questions["self_harm"]


def test_ask_tier_sends_card_and_one_question_and_pages_nobody(store, fake_screener, fake_rasa, sink):
    events = run(make(store, fake_screener, fake_rasa, sink).handle(Inbound(chat="a", text="UNSURE words")))
    assert kinds(events) == ["Reply:card", "Review", "Reply:reply"]
    card, review, question = events
    assert "988" in card.text and "being told" not in card.text  # nobody was paged
    assert question.text == QUESTION and question.buttons == ["Yes", "No"]
    assert review.to_json() == {"type": "review", "chat": "a", "case": review.case,
                                "categories": ["self_harm"], "text": review.text}
    assert not any(isinstance(e, Alert) for e in events) and store.alerts() == []
    case = store.case(review.case)
    assert case["priority"] == "routine" and case["paged"] == 0 and case["status"] == "open"
    assert fake_rasa.calls == []  # the question is this turn's reply


@pytest.mark.parametrize("answer", ["yes", "Yes, sometimes", "I'd rather not say", "why do you ask"])
def test_yes_or_refusal_to_the_question_pages_and_starts_the_flow(store, fake_screener, fake_rasa, sink, answer):
    pipeline = make(store, fake_screener, fake_rasa, sink)
    first = run(pipeline.handle(Inbound(chat="b", text="UNSURE words")))
    events = run(pipeline.handle(Inbound(chat="b", text=answer)))
    (alert,) = [e for e in events if isinstance(e, Alert)]
    assert alert.priority == "urgent" and alert.categories == ["self_harm"]
    assert QUESTION in alert.text and "UNSURE words" in alert.text  # the question and the message behind it
    assert alert.case == first[1].case and store.case(alert.case)["paged"] == 1
    assert fake_rasa.triggered[-1][1:] == ("EXTERNAL_screen_positive",
                                           {"risk_category": "self_harm", "risk_priority": "urgent"})
    assert store.ask_state("console:b") is None


def test_no_to_the_question_is_thanked_and_pages_nobody(store, fake_screener, fake_rasa, sink):
    pipeline = make(store, fake_screener, fake_rasa, sink)
    run(pipeline.handle(Inbound(chat="c", text="UNSURE words")))
    events = run(pipeline.handle(Inbound(chat="c", text="No, not at all")))
    # thanks, then the interrupted message goes to the dialogue after all
    assert [e.text for e in events] == [ask_config().thanks_no, "hello from the dialogue"]
    assert fake_rasa.calls[-1][1] == "UNSURE words"
    assert store.alerts() == [] and store.ask_state("console:c") is None
    later = run(pipeline.handle(Inbound(chat="c", text="ok thanks")))
    assert [e.text for e in later] == ["hello from the dialogue"]  # back to the dialogue


def test_an_unclear_answer_is_asked_again_then_counts_as_a_refusal(store, fake_screener, fake_rasa, sink):
    pipeline = make(store, fake_screener, fake_rasa, sink)
    run(pipeline.handle(Inbound(chat="d", text="UNSURE words")))
    again = run(pipeline.handle(Inbound(chat="d", text="what do you mean")))
    assert kinds(again) == ["Reply:reply"] and QUESTION in again[0].text
    assert store.alerts() == []
    final = run(pipeline.handle(Inbound(chat="d", text="hmm whatever")))
    (alert,) = [e for e in final if isinstance(e, Alert)]
    assert "gave no clear answer" in alert.text


def test_a_page_while_the_question_waits_settles_it(store, fake_screener, fake_rasa, sink):
    pipeline = make(store, fake_screener, fake_rasa, sink)
    run(pipeline.handle(Inbound(chat="e", text="UNSURE words")))
    events = run(pipeline.handle(Inbound(chat="e", text="RISK now")))
    assert len([e for e in events if isinstance(e, Alert)]) == 1
    assert store.ask_state("console:e") is None
    assert fake_rasa.calls and fake_rasa.calls[-1][1] == "RISK now"


def test_the_ask_tier_works_with_rasa_down(store, fake_screener, fake_rasa, sink):
    fake_rasa.fail = ConnectionError("rasa is down")
    pipeline = make(store, fake_screener, fake_rasa, sink)
    events = run(pipeline.handle(Inbound(chat="f", text="UNSURE words")))
    assert kinds(events) == ["Reply:card", "Review", "Reply:reply"]
    answer = run(pipeline.handle(Inbound(chat="f", text="yes")))
    assert any(isinstance(e, Alert) for e in answer)  # the page does not wait on Rasa


def test_an_nlu_guess_alone_asks_and_never_pages(store, fake_screener, fake_rasa, sink):
    fake_rasa.replies = [RasaReply(custom={"ask": {"categories": ["harm_to_others"], "reason": "nlu guess"}})]
    events = run(make(store, fake_screener, fake_rasa, sink).handle(Inbound(chat="g", text="going to the farm with the kids")))
    assert kinds(events) == ["Reply:card", "Review", "Reply:reply"]
    assert events[2].text == ask_config().questions["harm_to_others"]
    assert store.alerts() == [] and store.case(events[1].case)["paged"] == 0


def test_an_nlu_ask_is_not_forwarded_again_after_a_no(store, fake_screener, fake_rasa, sink):
    fake_rasa.replies = [RasaReply(custom={"ask": {"categories": ["self_harm"]}})]
    pipeline = make(store, fake_screener, fake_rasa, sink)
    run(pipeline.handle(Inbound(chat="k", text="a message rasa reads as risky")))
    fake_rasa.replies = [RasaReply(text="hello from the dialogue")]
    events = run(pipeline.handle(Inbound(chat="k", text="no")))
    assert [e.text for e in events] == [ask_config().thanks_no] and len(fake_rasa.calls) == 1


def test_no_question_while_a_clinician_is_already_paged(store, fake_screener, fake_rasa, sink):
    pipeline = make(store, fake_screener, fake_rasa, sink)
    run(pipeline.handle(Inbound(chat="l", text="RISK")))
    events = run(pipeline.handle(Inbound(chat="l", text="UNSURE words, mid crisis flow")))
    assert not any(isinstance(e, Review) for e in events) and store.ask_state("console:l") is None
    assert fake_rasa.calls[-1][1] == "UNSURE words, mid crisis flow"  # the flow gets the answer


def test_an_nlu_ask_after_a_page_this_turn_is_ignored(store, fake_screener, fake_rasa, sink):
    fake_rasa.replies = [RasaReply(custom={"ask": {"categories": ["self_harm"]}})]
    events = run(make(store, fake_screener, fake_rasa, sink).handle(Inbound(chat="h", text="RISK")))
    assert not any(isinstance(e, Review) for e in events) and store.ask_state("console:h") is None


def test_review_entries_are_not_repaged(store, fake_screener, fake_rasa, sink):
    run(make(store, fake_screener, fake_rasa, sink).handle(Inbound(chat="i", text="UNSURE words")))
    assert store.cases_by_status(["open"]) and store.paged_open_cases() == []


def test_the_ask_config_is_validated(tmp_path):
    bad = tmp_path / "ask.yml"
    bad.write_text("questions: {self_harm: 'Are you?'}\nreask: x\nthanks_no: y\nretries: 1\n")
    with pytest.raises(AskConfigError, match="one question for each"):
        load_ask_config(bad)
    bad.write_text("colour: red\n")
    with pytest.raises(AskConfigError, match="colour"):
        load_ask_config(bad)


def test_three_tiers_in_the_console(store, fake_screener, fake_rasa):
    import io

    from bot.console import ConsoleSink

    out = io.StringIO()
    pipeline = Pipeline(store, fake_screener, fake_rasa, ConsoleSink(out), default_region="US")
    run(pipeline.handle(Inbound(chat="client", text="hello")))
    assert "CLINICIAN ALERT" not in out.getvalue() and "review" not in out.getvalue()
    run(pipeline.handle(Inbound(chat="client", text="UNSURE words")))
    shown = out.getvalue()
    assert "[review · case #1 · not paged] self_harm" in shown and f"bot> {QUESTION}" in shown
    assert "CLINICIAN ALERT" not in shown
    run(pipeline.handle(Inbound(chat="client", text="yes")))
    assert "CLINICIAN ALERT · URGENT · case #1" in out.getvalue()
    run(pipeline.handle(Inbound(chat="other", text="RISK")))
    assert "CLINICIAN ALERT · URGENT · case #2" in out.getvalue()


def test_an_unanswered_question_pages_after_the_timeout(store, fake_screener, fake_rasa, sink):
    import datetime as dt

    from bot.ask import page_unanswered

    run(make(store, fake_screener, fake_rasa, sink).handle(Inbound(chat="j", text="UNSURE words")))
    asked = dt.datetime.fromisoformat(store.ask_state("console:j")["asked_at"])
    assert page_unanswered(store, asked + dt.timedelta(minutes=9), dt.timedelta(minutes=10)) == []
    (record,) = page_unanswered(store, asked + dt.timedelta(minutes=10), dt.timedelta(minutes=10))
    assert record.priority == "urgent" and "No answer for 10 min" in record.text and QUESTION in record.text
    assert store.ask_state("console:j") is None and store.case(record.case_id)["paged"] == 1
    assert page_unanswered(store, asked + dt.timedelta(hours=5), dt.timedelta(minutes=10)) == []
