"""The ConText engine on its own: scope, direction, termination, pseudo rules, experiencer.

Token spans are given directly (no spaCy): the engine only sees spans and sentence numbers.
"""

from __future__ import annotations

from bot.screening.context import ConText, ContextRule, Span

RISK = frozenset({"self_harm"})
NEG = ContextRule("NEGATED_EXISTENCE", "forward", allowed_types=RISK)
NEG_BACK = ContextRule("NEGATED_EXISTENCE", "backward", allowed_types=RISK)
HYPO_NEAR = ContextRule("HYPOTHETICAL", "forward", max_scope=2, allowed_types=RISK)
BUT = ContextRule("TERMINATE", "terminate", allowed_types=RISK)
PSEUDO = ContextRule("PSEUDO", "pseudo", allowed_types=RISK)
FIG = ContextRule("FIGURATIVE", "pseudo", allowed_types=RISK)
OTHER = ContextRule("OTHER_EXPERIENCER", "bidirectional", allowed_types=RISK)
SELF = ContextRule("SELF_EXPERIENCER", "bidirectional", allowed_types=RISK)


def engine(modifiers, sentences):
    ctx = ConText({})
    ctx.prepare([(Span(a, b), rule) for a, b, rule in modifiers], sentences)
    return ctx


def test_a_forward_negation_reaches_a_target_later_in_its_sentence():
    ctx = engine([(0, 1, NEG)], [0] * 6)
    assert ctx.flags(Span(3, 5), "self_harm").negated


def test_a_negation_does_not_cross_a_sentence_boundary():
    ctx = engine([(0, 1, NEG)], [0, 0, 0, 1, 1, 1])
    assert not ctx.flags(Span(4, 5), "self_harm").negated


def test_a_terminating_word_cuts_the_scope():
    ctx = engine([(0, 1, NEG), (2, 3, BUT)], [0] * 6)
    assert not ctx.flags(Span(4, 5), "self_harm").negated


def test_direction_matters():
    ctx = engine([(5, 6, NEG)], [0] * 7)
    assert not ctx.flags(Span(2, 3), "self_harm").negated
    ctx = engine([(5, 6, NEG_BACK)], [0] * 7)
    assert ctx.flags(Span(2, 3), "self_harm").negated


def test_max_scope_limits_the_distance():
    ctx = engine([(0, 1, HYPO_NEAR)], [0] * 8)
    assert ctx.flags(Span(2, 3), "self_harm").hypothetical
    assert not ctx.flags(Span(5, 6), "self_harm").hypothetical


def test_a_rule_only_modifies_the_categories_it_allows():
    ctx = engine([(0, 1, NEG)], [0] * 6)
    assert not ctx.flags(Span(3, 5), "harm_to_others").negated


def test_a_pseudo_rule_cancels_a_modifier_it_overlaps():
    ctx = engine([(0, 2, PSEUDO), (1, 2, NEG)], [0] * 6)  # "can't stop" is not a negation
    assert not ctx.flags(Span(3, 5), "self_harm").negated


def test_a_flagging_pseudo_rule_marks_a_target_it_overlaps():
    ctx = engine([(2, 5, FIG)], [0] * 6)  # "dying to see"
    assert ctx.flags(Span(2, 3), "self_harm").figurative


def test_experiencer_is_the_closest_person_before_the_target():
    ctx = engine([(0, 1, SELF), (2, 3, OTHER)], [0] * 6)
    assert ctx.flags(Span(4, 5), "self_harm").experiencer == "other"
    ctx = engine([(0, 1, OTHER), (2, 3, SELF)], [0] * 6)
    assert ctx.flags(Span(4, 5), "self_harm").experiencer == "self"
    assert engine([], [0] * 6).flags(Span(4, 5), "self_harm").experiencer == "self"


# --- issue 10: risk that is over, risk that goes on, attempts ---------------------------------
HIST = ContextRule("HISTORICAL", "bidirectional", max_scope=12, allowed_types=RISK)
HIST_COMMA = ContextRule("HISTORICAL", "bidirectional", max_scope=12, allowed_types=RISK, crosses=frozenset({","}))
CURRENT = ContextRule("CURRENT", "bidirectional", max_scope=12, allowed_types=RISK)
ATTEMPT = ContextRule("ATTEMPT", "forward", max_scope=5, allowed_types=RISK)
COMMA = ContextRule("TERMINATE", "terminate", allowed_types=RISK, label=",")


def test_a_past_cue_marks_the_target_historical():
    ctx = engine([(5, 7, HIST)], [0] * 8)  # "i used to cut myself years ago"
    flags = ctx.flags(Span(2, 4), "self_harm")
    assert flags.historical and not flags.attempt


def test_a_current_cue_in_scope_keeps_a_past_mention_current():
    ctx = engine([(5, 7, HIST), (8, 9, CURRENT)], [0] * 10)  # "… years ago and still …"
    assert not ctx.flags(Span(2, 4), "self_harm").historical


def test_a_current_cue_in_another_sentence_does_not():
    ctx = engine([(5, 7, HIST), (8, 9, CURRENT)], [0] * 8 + [1] * 2)
    assert ctx.flags(Span(2, 4), "self_harm").historical


def test_an_attempt_cue_before_the_target_marks_it_an_attempt():
    ctx = engine([(1, 2, ATTEMPT), (5, 7, HIST)], [0] * 8)  # "i tried to kill myself years ago"
    flags = ctx.flags(Span(3, 5), "self_harm")
    assert flags.attempt and flags.historical


def test_a_fronted_time_clause_crosses_its_comma_only_when_the_rule_says_so():
    # "when i was 9 , he hurt me": the comma cuts an ordinary rule, not one that crosses it
    assert not engine([(0, 4, HIST), (4, 5, COMMA)], [0] * 8).flags(Span(5, 8), "self_harm").historical
    assert engine([(0, 4, HIST_COMMA), (4, 5, COMMA)], [0] * 8).flags(Span(5, 8), "self_harm").historical


def test_a_pseudo_flag_rule_with_unless_self_gives_way_to_a_first_person_sentence():
    """'abusive men' in general is reported; 'I keep dating abusive men' is the writer's."""
    general = ContextRule("REPORTED", "pseudo", allowed_types=RISK, unless_self=True)
    ctx = engine([(1, 3, general)], [0] * 5)
    assert ctx.flags(Span(1, 2), "self_harm").reported
    ctx = engine([(0, 1, SELF), (1, 3, general)], [0] * 5)
    assert not ctx.flags(Span(1, 2), "self_harm").reported
    ctx = engine([(0, 1, SELF), (1, 3, general)], [0, 1, 1, 1, 1])  # "I" in another sentence
    assert ctx.flags(Span(1, 2), "self_harm").reported
