"""Tests for bot.screening: the case table, context behaviour, robustness and config errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot import CONFIG_DIR
from bot.screening import (
    CATEGORIES,
    Screener,
    ScreeningConfigError,
    ScreeningResult,
    Signal,
    get_screener,
)

CASES = yaml.safe_load((Path(__file__).parent.parent / "data" / "screening_cases.yml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def screener() -> Screener:
    """Return the shared screener loaded from config/screening."""
    return get_screener()


def _categories(screener: Screener, text: str) -> list[str]:
    """Return the escalating categories for a text."""
    return screener.screen(text).categories


@pytest.mark.parametrize("case", CASES, ids=[c["text"][:40] for c in CASES])
def test_screening_case(screener, case):
    result = screener.screen(case["text"])
    assert result.categories == case["categories"], case["why"]
    assert result.escalate == bool(case["categories"])
    if "priority" in case:
        assert result.priority == case["priority"], case["why"]
    if case.get("retracted"):
        assert any(s.retracted for s in result.signals), case["why"]


def test_case_table_covers_every_category():
    seen = {c for case in CASES for c in case["categories"]}
    assert seen == set(CATEGORIES)
    assert sum(1 for case in CASES if not case["categories"]) >= 20


def test_purchase_of_handgun_escalates_with_lethal_means(screener):
    result = screener.screen("I am looking to purchase a new handgun.")
    assert result.escalate and "lethal_means" in result.categories
    assert result.priority == "urgent"


def test_traffic_idiom_does_not_escalate(screener):
    result = screener.screen("this traffic is killing me")
    assert not result.escalate and result.priority is None and result.categories == []


def test_negated_ideation_does_not_escalate_but_keeps_the_signal(screener):
    result = screener.screen("I would never kill myself")
    assert not result.escalate
    assert [s.negated for s in result.signals] == [True]
    assert result.signals[0].cue == "kill myself"


def test_negation_in_another_clause_does_not_hide_a_disclosure(screener):
    assert _categories(screener, "I'm not okay and I want to die") == ["self_harm"]
    assert _categories(screener, "I don't know why but I want to kill myself") == ["self_harm"]


def test_question_about_the_topic_is_hypothetical(screener):
    result = screener.screen("what should I do if someone is suicidal?")
    assert not result.escalate
    assert result.signals and all(s.hypothetical for s in result.signals)


def test_first_person_question_is_a_disclosure(screener):
    assert _categories(screener, "is it bad that I want to die?") == ["self_harm"]


def test_figurative_match_is_flagged_figurative(screener):
    result = screener.screen("I'm going to shoot him a text")
    assert not result.escalate
    assert all(s.figurative for s in result.signals)


def test_retraction_still_escalates_and_is_flagged(screener):
    result = screener.screen("I want to die. jk lol")
    assert result.escalate and result.categories == ["self_harm"]
    assert all(s.retracted for s in result.signals)


def test_asking_for_a_friend_after_disclosure_escalates(screener):
    result = screener.screen("I want to kill myself. Asking for a friend")
    assert result.categories == ["self_harm"]
    assert result.signals[0].experiencer == "self"


def test_concern_for_another_person_is_third_party_and_routine(screener):
    result = screener.screen("my friend said she wants to end it")
    assert result.categories == ["third_party_concern"]
    assert result.priority == "routine"
    assert result.signals[0].experiencer == "other"


def test_another_persons_past_does_not_escalate(screener):
    result = screener.screen("my uncle killed himself years ago")
    assert not result.escalate
    assert result.signals[0].historical and result.signals[0].experiencer == "other"


@pytest.mark.parametrize("text", [
    "I used to cut myself in high school",
    "When I was nine, my uncle molested me",
    "Years ago, I wanted to die.",
    "My cousin took her own life three years ago",
])
def test_risk_that_is_over_does_not_page(screener, text):
    """docs/labelling.md `past`: a signal read as over asks at most; it never pages."""
    result = screener.screen(text)
    assert not result.escalate and result.tier != "page"
    assert result.signals and all(s.historical and not s.escalates for s in result.signals)


def test_an_own_past_suicide_attempt_still_pages(screener):
    """ASQ item 4 (CLINICAL.md): a yes to "have you ever tried to kill yourself?" is positive."""
    result = screener.screen("I attempted suicide when I was 19")
    assert result.escalate and result.categories == ["self_harm"]
    signal = result.signals[0]
    assert signal.historical and signal.attempt and signal.escalates
    assert signal.to_dict()["attempt"] is True


@pytest.mark.parametrize("text", [
    "I tried to hang myself two years ago and I am going to do it again this weekend",
    "I used to self harm years ago and last night I started again",
    "honestly I wish I had ended my life back in college",
])
def test_a_current_risk_next_to_a_past_one_pages(screener, text):
    assert screener.screen(text).escalate


@pytest.mark.parametrize("text", [
    "im trying so hard not to cut myself tonight",
    "I haven't killed myself yet but I think about it daily",
    "is this domestic abuse? he screams at me and shoves me every night",
])
def test_an_urge_held_back_or_a_question_about_ones_own_situation_pages(screener, text):
    assert screener.screen(text).escalate


@pytest.mark.parametrize("text", [
    "So sorry to hear about the domestic violence you went through, it was not your fault.",
    "It sounds like you are having suicidal thoughts, please reach out to someone tonight.",
    "Many clients who struggle with self-harm do well with outpatient therapy.",
    "Abusive relationships often get more dangerous when the victim tries to leave.",
    "It is important to get help early when low mood brings thoughts of suicide.",
    "The neighbour was charged with domestic abuse of his children.",
    "Rape culture is still shrugged off by too many institutions.",
    "Skipping a child's medical care should be considered child abuse.",
    "Suicide is difficult to talk about at family dinners.",
    "Suicide is never the answer, reach out instead.",
    "The protester was beaten to death by the guards, the report says.",
    "Less access to guns means fewer deaths, the study found.",
    "The course has a module with suicide-related case studies.",
])
def test_answers_and_general_talk_about_risk_do_not_page(screener, text):
    """docs/labelling.md `reported`/`hypothetical`: a supporter's answer, clinical text about
    people in general, news and topic talk with no first-person word are not disclosures."""
    result = screener.screen(text)
    assert not result.escalate
    assert result.signals and all(s.reported or s.hypothetical for s in result.signals)


@pytest.mark.parametrize("text", [
    "My ex-husband was abusive, the divorce came through in March.",
    "I was in an abusive marriage for nine years.",
    "He hit me for two years before I moved across the country.",
    "She had suicidal thoughts during her first year at university.",
    "Our town lost two teenagers to suicide in the spring.",
    "The singer had an overdose and died in a hotel.",
    "After his suicide the whole street went quiet for weeks.",
    "She got therapy for the domestic violence of a previous marriage.",
])
def test_abuse_by_an_ex_and_closed_spans_are_past(screener, text):
    result = screener.screen(text)
    assert not result.escalate and result.tier != "page"
    assert result.signals and all(s.historical for s in result.signals)


@pytest.mark.parametrize("text", [
    "my abusive ex keeps turning up at my door at night",
    "I was raped by my ex",
    "he has hit me for two years and I can't get away",
    "I'm sorry to bother you but I keep thinking about killing myself",
    "It is important to me that someone knows I want to die",
    "I keep ending up with abusive partners who hurt me",
    "suicide is the answer",
    "suicide is the only way out",
    "I took an overdose and died inside",
    "he will beat me to death if I tell anyone",
    "I have easy access to guns at my dad's place",
    "my brother is planning his suicide and won't talk to anyone",
    "my grandad died in the spring and I just want to join him soon",
])
def test_ongoing_or_first_person_risk_next_to_those_cues_still_pages(screener, text):
    """Clinical guard: current first-person risk keeps paging (CLINICAL.md, ASQ)."""
    assert screener.screen(text).escalate


def test_a_call_to_execute_someone_is_harm_to_others(screener):
    """docs/labelling.md: hate speech calling for killing is `current` harm to others."""
    result = screener.rules.screen("those traitors should all be hanged")
    assert result.escalate and result.categories == ["harm_to_others"]
    assert not screener.rules.screen("we should hang out at the lake this weekend").escalate


def test_internal_bleeding_is_an_injury_not_self_injury(screener):
    assert not screener.rules.screen("the driver had internal bleeding after the crash").escalate
    assert screener.rules.screen("I scratched my arm until it bled").escalate


def test_cutting_oneself_off_is_withdrawing(screener):
    result = screener.rules.screen("my husband cuts himself off from the family for days")
    assert not result.escalate and result.signals[0].figurative


def test_overwork_is_figurative(screener):
    result = screener.screen("I'm killing myself working double shifts to pay the rent")
    assert not result.escalate and result.signals[0].figurative


def test_a_metaphor_of_ruin_is_figurative(screener):
    result = screener.screen("leaving the union would be economic suicide for us")
    assert not result.escalate and result.signals[0].figurative


def test_being_told_to_kys_is_being_harmed_not_self_harm(screener):
    assert _categories(screener, "people at school keep telling me to kys") == ["being_harmed"]


def test_emoji_alone_does_not_escalate_but_with_context_does(screener):
    assert _categories(screener, "💊") == []
    assert _categories(screener, "💊💊💊 tonight") == ["lethal_means"]


def test_overdose_taken_is_imminent(screener):
    assert screener.screen("i just took 40 advil").priority == "imminent"


def test_plan_with_tonight_is_imminent_and_without_is_urgent(screener):
    assert screener.screen("I'm going to kill myself tonight").priority == "imminent"
    assert screener.screen("I'm going to kill myself").priority == "urgent"


def test_cue_offsets_point_into_the_original_text(screener):
    text = "ok so… I’m gonna k\u200b1ll   mys3lf"
    result = screener.screen(text)
    assert result.escalate
    signal = result.signals[0]
    assert text[signal.start:signal.end] == signal.cue
    assert signal.cue.startswith("k\u200b1ll") and signal.cue.endswith("mys3lf")


def test_to_dict_follows_the_contract(screener):
    data = screener.screen("kms").to_dict()
    assert {"text", "escalate", "tier", "categories", "signals", "priority", "scores"} <= set(data)
    assert data["tier"] == "page" and data["escalate"] is True
    assert 0.0 <= data["scores"]["risk"] <= 1.0 and set(CATEGORIES) <= set(data["scores"])
    signal = data["signals"][0]
    assert signal["source"] == "rule"
    for key in ("category", "cue", "start", "end", "negated", "hypothetical", "experiencer",
                "historical", "figurative", "imminent", "retracted"):
        assert key in signal
    json.dumps(data)


def test_result_categories_follow_category_order(screener):
    result = screener.screen("my dad hits me and I want to kill myself")
    assert result.categories == [c for c in CATEGORIES if c in result.categories]
    assert set(result.categories) == {"self_harm", "being_harmed"}


@pytest.mark.parametrize("text", ["", "   ", "\x00\x01\x02", "🙂🙂🙂", "שלום עולם \u202e", "a" * 100_000,
                                  "kill myself " * 5_000, "\ud800", "\n\n\n"])
def test_screen_never_raises_on_odd_input(screener, text):
    result = screener._screen(text)  # the unguarded path: a defect must surface here
    assert isinstance(result, ScreeningResult)
    for s in result.signals:
        assert text[s.start:s.end] == s.cue


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.characters(), max_size=300)
       | st.lists(st.sampled_from(["kill", "myself", "i", "want", "to", "die", "not", "my", "friend", "💊",
                                   "tonight", "jk", "\u200b", "k1ll", "’", "?", ".", "never", "he", "gun"]),
                  max_size=30).map(" ".join))
def test_screen_is_total_and_offsets_match_cues(screener, text):
    result = screener._screen(text)
    assert result.escalate == bool(result.categories)
    assert set(result.categories) <= set(CATEGORIES)
    for s in result.signals:
        assert isinstance(s, Signal)
        assert 0 <= s.start < s.end <= len(text)
        assert text[s.start:s.end] == s.cue


# --- configuration validation -------------------------------------------------------------

@pytest.fixture()
def config_copy(tmp_path: Path) -> Path:
    """Return a writable copy of config/screening."""
    target = tmp_path / "screening"
    shutil.copytree(CONFIG_DIR / "screening", target)
    return target


def _append(path: Path, line: str) -> int:
    """Append a line and return its line number."""
    lines = path.read_text(encoding="utf-8").splitlines()
    lines.append(line)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(lines)


def test_unknown_pattern_key_names_file_and_line(config_copy):
    path = config_copy / "patterns" / "self_harm.jsonl"
    number = _append(path, json.dumps({"id": "x", "category": "self_harm", "pattern": [{"LOWER": "x"}], "colour": 1}))
    with pytest.raises(ScreeningConfigError, match=rf"self_harm\.jsonl:{number}: unknown key"):
        Screener(config_copy)


def test_unknown_category_is_rejected(config_copy):
    path = config_copy / "patterns" / "self_harm.jsonl"
    number = _append(path, json.dumps({"id": "x", "category": "sadness", "pattern": [{"LOWER": "x"}]}))
    with pytest.raises(ScreeningConfigError, match=rf":{number}: unknown category 'sadness'"):
        Screener(config_copy)


def test_bad_json_names_file_and_line(config_copy):
    number = _append(config_copy / "context_rules.jsonl", '{"category": "PSEUDO", "literal": ')
    with pytest.raises(ScreeningConfigError, match=rf"context_rules\.jsonl:{number}: bad JSON"):
        Screener(config_copy)


def test_unknown_context_direction_is_rejected(config_copy):
    number = _append(config_copy / "context_rules.jsonl",
                     json.dumps({"category": "NEGATED_EXISTENCE", "literal": "nah", "direction": "sideways"}))
    with pytest.raises(ScreeningConfigError, match=rf":{number}: unknown direction 'sideways'"):
        Screener(config_copy)


def test_unknown_token_attribute_is_rejected(config_copy):
    path = config_copy / "patterns" / "lethal_means.jsonl"
    number = _append(path, json.dumps({"id": "x", "category": "lethal_means", "pattern": [{"LOWR": "gun"}]}))
    with pytest.raises(ScreeningConfigError, match=rf":{number}: token 0: unknown key"):
        Screener(config_copy)


def test_unknown_lexicon_reference_is_rejected(config_copy):
    path = config_copy / "patterns" / "lethal_means.jsonl"
    number = _append(path, json.dumps({"id": "x", "category": "lethal_means", "pattern": [{"LEX": "NOPE"}]}))
    with pytest.raises(ScreeningConfigError, match=rf":{number}: token 0: 'LEX' has unknown value"):
        Screener(config_copy)


def test_lexicon_word_that_can_never_match_is_rejected(config_copy):
    number = _append(config_copy / "lexicons.jsonl", json.dumps({"name": "LEET", "words": ["k1ll"]}))
    with pytest.raises(ScreeningConfigError, match=rf"lexicons\.jsonl:{number}: word 'k1ll' never matches"):
        Screener(config_copy)


def test_duplicate_pattern_id_is_rejected(config_copy):
    path = config_copy / "patterns" / "self_harm.jsonl"
    number = _append(path, json.dumps({"id": "sh_kms", "category": "self_harm", "pattern": [{"LOWER": "x"}]}))
    with pytest.raises(ScreeningConfigError, match=rf":{number}: 'id' must be a unique"):
        Screener(config_copy)


def test_every_data_file_cites_its_clinical_source():
    for path in sorted((CONFIG_DIR / "screening").rglob("*.jsonl")):
        head = path.read_text(encoding="utf-8")[:2000]
        assert "CLINICAL.md" in head, path


@pytest.mark.parametrize("text", [
    "i swear i'm gonna kill that lying bastard",
    "shoot those filthy traitors",
    "execute them all, every one",
    "kill all the feminists",
    "the judge should be arrested and executed",
    "they ought to be rounded up and shot",
    "I hope you die",
    "I hope he gets shot on his way home",
    "die already you worthless freak",
    "go die in a hole",
])
def test_threats_and_calls_to_kill_in_an_argument_are_harm_to_others(screener, text):
    """docs/labelling.md: a threat in an online argument, a target named by an insult, and a
    call to kill a group are `current` harm to others (rules alone)."""
    result = screener.rules.screen(text)
    assert result.escalate and "harm_to_others" in result.categories


@pytest.mark.parametrize("text", [
    "I'm going to kill this exam tomorrow",
    "kill all the lights before you leave",
    "I don't want you to die",
    "we should hang out at the lake, all of us",
    "I just die inside when she sings",
    "he should be arrested and charged",
])
def test_near_misses_of_those_threats_do_not_page(screener, text):
    assert not screener.rules.screen(text).escalate


@pytest.mark.parametrize("text", [
    "I went through physical abuse by my grandfather as child.",
    "My uncle molested me from age 6, and it only stopped when we moved.",
    "My brother hit me at eleven, I never told my mum.",
    "I'm about two years out of an abusive marriage.",
    "My stepmother hit me every week until I moved out.",
])
def test_abuse_placed_in_the_writers_past_is_historical(screener, text):
    """docs/labelling.md `past`: an age ('from age 6', 'at eleven', 'as child'), time counted
    since it ended ('two years out of'), an end ('until I moved out') make abuse over."""
    result = screener.rules.screen(text)
    assert not result.escalate
    assert result.signals and all(s.historical for s in result.signals)


def test_a_general_when_a_clause_is_hypothetical(screener):
    result = screener.rules.screen("When a teenager gets bullied online the school should act.")
    assert not result.escalate and result.signals[0].hypothetical


@pytest.mark.parametrize("text", [
    "I can't get out of this abusive marriage",
    "he hits me at 5 when he gets home",
    "my stepdad hit me until I left, and he still hits my sister",
    "When a man raises his voice I freeze because my husband hits me",
    "he abused me from age 6 and he still does it",
])
def test_ongoing_abuse_next_to_those_time_cues_still_pages(screener, text):
    """Clinical guard: abuse that goes on, a clock time, or a first-person sentence keeps paging."""
    assert screener.rules.screen(text).escalate


@pytest.mark.parametrize("text", [
    "I want to blow my brains out",
    "im going to blow my fucking brains out tonight",
    "I keep thinking about putting a bullet in my head",
    "some days I just want to eat a bullet",
])
def test_a_firearm_named_as_the_writers_own_method_pages_as_self_harm(screener, text):
    result = screener.screen(text)
    assert result.tier == "page" and result.escalate and "self_harm" in result.categories, text


@pytest.mark.parametrize("text", [
    "that movie blew my mind",
    "he blew his brains out in 1994",
    "I would never put a bullet in my head",
    "bite the bullet and do it",
])
def test_firearm_idioms_about_others_negated_or_figurative_do_not_page(screener, text):
    assert not screener.screen(text).escalate, text


@pytest.mark.parametrize("text", [
    "i don't wanna fucking be here anymore",
    "i dont really want to be here anymore",
    "I don't even want to be here anymore",
])
def test_not_wanting_to_be_here_pages_with_a_word_in_between(screener, text):
    assert screener.screen(text).escalate, text

