"""Unit tests for policies.voting: tallies, majority confidence and stopping rules."""

import math

import pytest

from policies.voting import (
    Tally,
    Vote,
    adjust_confidence,
    beta_majority_confidence,
    cannot_settle,
    dirichlet_majority_confidence,
    should_stop,
    tally,
    window_agrees,
)


def test_tally_plurality() -> None:
    votes = [Vote("a", -1.0, 0), Vote("b", -0.1, 1), Vote("a", -2.0, 2), Vote(None, 0.0, 3)]
    result = tally(votes)
    assert result.leader == "a"
    assert (result.leader_count, result.runner_up_count, result.total) == (2, 1, 4)
    assert list(result.counts.items()) == [("a", 2), ("b", 1)]
    assert result.leader_index == 0  # the more confident of the two "a" votes


def test_tally_tie_broken_by_mean_logprob() -> None:
    votes = [Vote("a", -2.0, 0), Vote("b", -0.5, 1), Vote("a", -2.0, 2), Vote("b", -1.5, 3)]
    result = tally(votes)
    assert result.leader == "b"
    assert result.leader_index == 1
    assert (result.leader_count, result.runner_up_count) == (2, 2)


def test_tally_full_tie_goes_to_first_appearance() -> None:
    result = tally([Vote("b", None, 0), Vote("a", None, 1)])
    assert result.leader == "b"
    assert result.leader_index == 0


def test_tally_without_answers_falls_back_to_most_confident_sample() -> None:
    votes = [Vote(None, -3.0, 10), Vote(None, -0.2, 11), Vote(None, None, 12)]
    result = tally(votes)
    assert result.leader is None
    assert (result.leader_count, result.runner_up_count, result.total) == (0, 0, 3)
    assert result.leader_index == 11
    assert dict(result.counts) == {}


def test_tally_single_and_empty() -> None:
    one = tally([Vote("x", None, 7)])
    assert (one.leader, one.leader_count, one.leader_index) == ("x", 1, 7)
    empty = tally([])
    assert (empty.leader, empty.total, empty.leader_index) == (None, 0, -1)


def test_weighted_tally_prefers_confident_minority() -> None:
    votes = [Vote("a", -3.0, 0), Vote("a", -3.0, 1), Vote("b", -0.01, 2), Vote("c", -0.5, 3)]
    assert tally(votes).leader == "a"
    weighted = tally(votes, weighted=True)
    assert weighted.leader == "b"  # exp(-0.01) > exp(-0.5) > 2 * exp(-3)
    assert (weighted.leader_count, weighted.runner_up_count) == (1, 1)
    assert weighted.counts["a"] == 2
    assert list(weighted.weights) == ["b", "c", "a"]
    assert weighted.weights["a"] == pytest.approx(2 * math.exp(-3.0))


def test_weighted_tally_counts_unknown_logprob_as_weight_one() -> None:
    votes = [Vote("b", -0.01, 0), Vote("c", None, 1)]
    weighted = tally(votes, weighted=True)
    assert weighted.leader == "c"
    assert weighted.weights["c"] == 1.0


def _beta_by_integration(a: int, b: int, steps: int = 20_000) -> float:
    """P(p > 1/2) for p ~ Beta(a+1, b+1) by Simpson's rule, in log space to avoid underflow."""

    def log_density(x: float) -> float:
        if x in (0.0, 1.0):
            return -math.inf
        return a * math.log(x) + b * math.log1p(-x)

    grid = [i / steps for i in range(steps + 1)]
    peak = max(log_density(x) for x in grid)
    weights = [1 if i in (0, steps) else (4 if i % 2 else 2) for i in range(steps + 1)]
    values = [w * math.exp(log_density(x) - peak) for w, x in zip(weights, grid, strict=True)]
    half = steps // 2
    upper = math.fsum(values[half:]) - values[half] / 2  # the midpoint weight is shared
    return upper / math.fsum(values)


def test_beta_confidence_known_values() -> None:
    assert beta_majority_confidence(1, 0) == pytest.approx(0.75)
    assert beta_majority_confidence(2, 0) == pytest.approx(0.875)
    assert beta_majority_confidence(0, 0) == pytest.approx(0.5)
    for count in (1, 4, 37, 300):
        assert beta_majority_confidence(count, count) == pytest.approx(0.5)


@pytest.mark.parametrize(("a", "b"), [(3, 1), (5, 2), (10, 7), (0, 3), (40, 25)])
def test_beta_confidence_matches_numeric_integration(a: int, b: int) -> None:
    assert beta_majority_confidence(a, b) == pytest.approx(_beta_by_integration(a, b), abs=1e-4)


def test_beta_confidence_is_stable_for_hundreds_of_votes() -> None:
    assert beta_majority_confidence(300, 250) == pytest.approx(
        _beta_by_integration(300, 250), abs=1e-4
    )
    assert 0.5 < beta_majority_confidence(300, 299) < beta_majority_confidence(300, 250) < 1.0
    assert beta_majority_confidence(400, 0) == 1.0
    with pytest.raises(ValueError):
        beta_majority_confidence(-1, 0)


def test_dirichlet_confidence_uses_two_leaders() -> None:
    assert dirichlet_majority_confidence([1, 5, 2]) == beta_majority_confidence(5, 2)
    assert dirichlet_majority_confidence([2]) == beta_majority_confidence(2, 0)
    assert dirichlet_majority_confidence([]) == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("answers", "window", "expected"),
    [
        (["a", "b", "b", "b"], 3, True),
        (["b", "b", "a"], 3, False),
        (["b", "b"], 3, False),
        ([None, None, None], 3, False),
        (["a"], 1, True),
    ],
)
def test_window_agrees(answers: list[str | None], window: int, expected: bool) -> None:
    assert window_agrees(answers, window) is expected


def test_window_must_be_positive() -> None:
    with pytest.raises(ValueError):
        window_agrees(["a"], 0)


def _stop(answers: list[str | None], rule: str = "beta", **bounds: int) -> tuple[bool, str]:
    decision = should_stop(
        tally([Vote(answer, None, i) for i, answer in enumerate(answers)]),
        answers,
        rule=rule,
        confidence=0.9,
        window=3,
        min_samples=bounds.get("min_samples", 3),
        max_samples=bounds.get("max_samples", 8),
    )
    return decision.stop, decision.reason


def test_should_stop_beta_rule() -> None:
    assert _stop(["a", "a", "a"]) == (True, "confident")  # 15/16 >= 0.9
    assert _stop(["a", "a", "b"]) == (False, "continue")  # 11/16 < 0.9


def test_should_stop_respects_min_and_max_samples() -> None:
    assert _stop(["a", "a", "a"], min_samples=4) == (False, "continue")
    assert _stop(["a", "b", "c", "d"], max_samples=4) == (True, "max_samples")
    assert _stop(["a", "a", "a"], max_samples=3) == (True, "max_samples")


def test_should_stop_window_rule() -> None:
    assert _stop(["b", "a", "a", "a"], rule="window") == (True, "window")
    assert _stop(["a", "a", "b"], rule="window") == (False, "continue")


def test_should_stop_reports_confidence() -> None:
    answers: list[str | None] = ["a", "a", "b"]
    decision = should_stop(
        tally([Vote(a, None, i) for i, a in enumerate(answers)]),
        answers,
        rule="window",
        confidence=0.9,
        window=3,
        min_samples=1,
        max_samples=8,
    )
    assert decision.confidence == pytest.approx(beta_majority_confidence(2, 1))
    blank = Tally({}, {}, None, 0, 0, 2, 0)
    no_leader = should_stop(
        blank, [None, None], rule="beta", confidence=0.5, window=2, min_samples=1, max_samples=8
    )
    assert (no_leader.stop, no_leader.confidence) == (False, 0.0)
    with pytest.raises(ValueError, match="unknown stopping rule"):
        should_stop(blank, [], rule="vibes", confidence=0.9, window=2, min_samples=1, max_samples=2)


def test_adjust_confidence_is_monotone_in_difficulty() -> None:
    levels = [adjust_confidence(0.9, d / 10) for d in range(11)]
    assert all(low <= high for low, high in zip(levels, levels[1:], strict=False))
    assert levels[0] < 0.9 < levels[-1]
    assert all(0.5 <= level <= 0.999 for level in levels)


def test_adjust_confidence_formula_and_bounds() -> None:
    assert adjust_confidence(0.95, None) == 0.95
    assert adjust_confidence(0.95, 0.5) == pytest.approx(0.95)
    assert adjust_confidence(0.95, 1.0) == pytest.approx(0.975)
    assert adjust_confidence(0.95, 0.0) == pytest.approx(0.725)
    assert adjust_confidence(0.999, 1.0, strength=1.0) == 0.999
    assert adjust_confidence(0.9, 0.0, strength=1.0) == 0.5
    assert adjust_confidence(0.9, 7.0) == adjust_confidence(0.9, 1.0)
    with pytest.raises(ValueError):
        adjust_confidence(0.9, 0.5, strength=1.5)


def _votes(*answers: str | None) -> Tally:
    return tally([Vote(answer, None, i) for i, answer in enumerate(answers)])


def test_cannot_settle_when_every_answer_differs() -> None:
    assert cannot_settle(_votes("a", "b", "c", "d"), after=4, no_answer_share=0.5)
    assert not cannot_settle(_votes("a", "b", "c"), after=4, no_answer_share=0.5)  # too early
    assert not cannot_settle(_votes("a", "b", "a", "c"), after=4, no_answer_share=0.5)
    assert cannot_settle(_votes(None, None, None), after=2, no_answer_share=0.9)  # none at all


def test_cannot_settle_when_most_samples_state_no_answer() -> None:
    assert not cannot_settle(_votes("a", "a", None, None), after=4, no_answer_share=0.5)
    assert cannot_settle(_votes("a", "a", None, None, None), after=4, no_answer_share=0.5)
    assert not cannot_settle(_votes("a", "a", None, None, None), after=4, no_answer_share=0.6)
    assert not cannot_settle(_votes(), after=0, no_answer_share=0.5)


def test_the_no_answer_outcome_is_the_rival_when_larger() -> None:
    current = _votes("a", "a", None, None, None, "b")
    assert (current.unanswered, current.runner_up_count, current.rival_count) == (3, 1, 3)
    decision = should_stop(
        current,
        ["a", "a", None, None, None, "b"],
        rule="beta",
        confidence=0.6,
        window=3,
        min_samples=1,
        max_samples=16,
    )
    assert decision.confidence == pytest.approx(beta_majority_confidence(2, 3))
    assert not decision.stop
