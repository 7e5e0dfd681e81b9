"""Unit tests for bench.stats percentiles and the Pareto front of bench.report."""

import pytest

from bench.report import pareto_front, wilson_interval
from bench.stats import difference, latency_summary, percentile, ratio


def test_percentile_interpolates_between_closest_ranks() -> None:
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5  # order of input does not matter
    assert percentile([10.0, 20.0, 30.0, 40.0, 50.0], 90) == pytest.approx(46.0)
    hundred = [float(v) for v in range(1, 101)]
    assert percentile(hundred, 99) == pytest.approx(99.01)
    assert percentile(hundred, 0) == 1.0
    assert percentile(hundred, 100) == 100.0


def test_percentile_of_one_value_and_of_none() -> None:
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_latency_summary_scales_seconds_to_milliseconds() -> None:
    summary = latency_summary([0.001, 0.002, 0.003])
    assert summary == {"p50": 2.0, "p90": 2.8, "p99": 2.98, "mean": 2.0}
    assert latency_summary([]) == {"p50": None, "p90": None, "p99": None, "mean": None}


def test_difference_and_ratio_tolerate_missing_sides() -> None:
    assert difference(3.5, 1.25) == 2.25
    assert difference(None, 1.0) is None
    assert ratio(10.0, 4.0) == 2.5
    assert ratio(1.0, 0.0) is None
    assert ratio(None, 2.0) is None


def test_pareto_front_keeps_only_undominated_points() -> None:
    points = [(100.0, 0.9), (10.0, 0.6), (50.0, 0.6), (200.0, 0.85), (20.0, 0.8)]
    assert pareto_front(points) == [(10.0, 0.6), (20.0, 0.8), (100.0, 0.9)]


def test_wilson_interval_brackets_the_accuracy() -> None:
    low, high = wilson_interval(51, 60) or (0.0, 0.0)
    assert low == pytest.approx(0.7393, abs=1e-3)
    assert high == pytest.approx(0.9191, abs=1e-3)
    assert wilson_interval(0, 0) is None
    low, high = wilson_interval(10, 10) or (0.0, 0.0)
    assert low == pytest.approx(0.7225, abs=1e-3)
    assert high == 1.0
