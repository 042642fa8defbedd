"""Paired percentile bootstrap: properties an interval must have, not particular numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from services.eval.bootstrap import (Interval, mean_ci, paired_delta_ci, percentile_interval, ratio_delta_ci,
                                     resample_means)

pytestmark = pytest.mark.unit


def test_identical_sides_give_a_zero_delta_and_a_zero_interval() -> None:
    scores = np.random.default_rng(1).random(300)
    interval = paired_delta_ci(scores, scores.copy())
    assert (interval.delta, interval.ci_low, interval.ci_high) == (0.0, 0.0, 0.0)
    assert interval.n == 300 and interval.candidate == interval.reference


@pytest.mark.parametrize("shift", [0.1, -0.25, 3.0])
def test_a_constant_shift_gives_a_tight_interval_around_it(shift: float) -> None:
    reference = np.random.default_rng(2).random(200)
    interval = paired_delta_ci(reference + shift, reference)
    assert interval.delta == pytest.approx(shift)
    assert interval.ci_low <= shift + 1e-9 and interval.ci_high >= shift - 1e-9
    assert interval.ci_high - interval.ci_low < 1e-9


def test_the_interval_covers_the_true_mean_about_as_often_as_promised() -> None:
    """200 simulated 0/1-score suites of 100 items: the 95% interval should cover p ~95% of the time."""
    rng = np.random.default_rng(11)
    p = 0.3
    covered = 0
    for trial in range(200):
        interval = mean_ci(rng.random(100) < p, samples=1000, seed=trial)
        covered += interval.ci_low <= p <= interval.ci_high
    assert 0.88 <= covered / 200 <= 0.99


def test_paired_intervals_are_narrower_than_unpaired_on_correlated_scores() -> None:
    rng = np.random.default_rng(5)
    difficulty = rng.random(400)                       # shared per-item difficulty dominates the variance
    reference = difficulty + rng.normal(0, 0.02, 400)
    candidate = difficulty + 0.02 + rng.normal(0, 0.02, 400)
    paired = paired_delta_ci(candidate, reference)
    unpaired = resample_means(candidate, seed=1)[:, 0] - resample_means(reference, seed=2)[:, 0]
    low, high = percentile_interval(unpaired, 0.95)
    assert paired.ci_high - paired.ci_low < (high - low) / 3
    assert paired.ci_low > 0.0 and low < 0.0 < high   # pairing finds the improvement unpairing cannot


def test_results_depend_only_on_the_seed() -> None:
    rng = np.random.default_rng(3)
    candidate, reference = rng.random(50), rng.random(50)
    assert paired_delta_ci(candidate, reference, seed=4) == paired_delta_ci(candidate, reference, seed=4)
    assert paired_delta_ci(candidate, reference, seed=4) != paired_delta_ci(candidate, reference, seed=5)


def test_resamples_are_shared_by_every_column_and_blocked_without_changing_shape() -> None:
    values = np.random.default_rng(8).random((3000, 3))
    means = resample_means(values, samples=2000, seed=0)     # 3000 items: several blocks of resamples
    assert means.shape == (2000, 3) and np.isfinite(means).all()
    # the same resampled rows for every column: a column that is 2x another has exactly 2x its means
    doubled = resample_means(np.column_stack([values[:, 0], 2 * values[:, 0]]), samples=500, seed=0)
    assert np.allclose(doubled[:, 1], 2 * doubled[:, 0])
    # and a single column sees the same draws as when stacked with others
    assert np.allclose(resample_means(values[:, 0], samples=500, seed=0)[:, 0], doubled[:, 0])


def test_the_interval_narrows_with_more_items() -> None:
    rng = np.random.default_rng(9)
    small = mean_ci(rng.random(50) < 0.5)
    large = mean_ci(rng.random(5000) < 0.5)
    assert (large.ci_high - large.ci_low) < (small.ci_high - small.ci_low) / 5


def test_fewer_than_two_items_collapse_to_the_point() -> None:
    interval = paired_delta_ci([0.8], [0.5])
    assert isinstance(interval, Interval) and interval.n == 1
    assert interval.delta == interval.ci_low == interval.ci_high == pytest.approx(0.3)
    single = mean_ci([0.7])
    assert (single.delta, single.ci_low, single.ci_high) == (0.7, 0.7, 0.7)


def test_mean_ci_is_single_sided() -> None:
    interval = mean_ci([1, 0, 1, 1, 0, 1, 1, 1])
    assert interval.candidate == interval.delta == pytest.approx(0.75) and interval.reference == 0.0
    assert 0.0 <= interval.ci_low <= 0.75 <= interval.ci_high <= 1.0


def test_binary_scores_stay_in_range_and_nan_free() -> None:
    rng = np.random.default_rng(4)
    for n in (2, 3, 10):
        interval = paired_delta_ci(rng.random(n) < 0.5, rng.random(n) < 0.5, seed=n)
        values = [interval.candidate, interval.reference, interval.delta, interval.ci_low, interval.ci_high]
        assert all(math.isfinite(v) for v in values)
        assert -1.0 <= interval.ci_low <= interval.ci_high <= 1.0


@pytest.mark.parametrize(("candidate", "reference", "message"), [
    ([], [], "no items"),
    ([1.0, 2.0], [1.0], "same items"),
    ([1.0, float("nan")], [1.0, 1.0], "non-finite"),
    ([1.0, float("inf")], [1.0, 1.0], "non-finite"),
    ([[1.0, 2.0]], [[1.0, 2.0]], "1-D"),
])
def test_bad_inputs_are_refused(candidate: list, reference: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        paired_delta_ci(candidate, reference)


@pytest.mark.parametrize(("settings", "message"), [
    ({"samples": 0}, "samples"), ({"samples": 1.5}, "samples"), ({"confidence": 1.0}, "confidence"),
    ({"confidence": 0.0}, "confidence"), ({"confidence": 95}, "confidence"),
])
def test_bad_settings_are_refused(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        paired_delta_ci([1.0, 2.0], [1.0, 1.0], **settings)


# --- perplexity ---------------------------------------------------------------------------------

def test_perplexity_is_a_ratio_of_sums_not_a_mean_of_ratios() -> None:
    nll, tokens = np.array([10.0, 1.0]), np.array([10, 1])      # 1 nat/token overall
    interval = ratio_delta_ci(nll, tokens, nll * 2, tokens)
    assert interval.candidate == pytest.approx(math.e) and interval.reference == pytest.approx(math.e ** 2)
    assert interval.delta == pytest.approx(math.e - math.e ** 2)


def test_perplexity_delta_of_a_uniformly_better_model_is_negative_and_paired() -> None:
    rng = np.random.default_rng(6)
    tokens = rng.integers(5, 60, 300)
    base_nll = tokens * rng.uniform(1.5, 3.0, 300)
    same = ratio_delta_ci(base_nll, tokens, base_nll, tokens)
    assert (same.delta, same.ci_low, same.ci_high) == (0.0, 0.0, 0.0)
    better = ratio_delta_ci(base_nll * 0.9, tokens, base_nll, tokens)
    assert better.ci_low <= better.delta <= better.ci_high < 0.0


def test_perplexity_refuses_items_without_tokens_and_stays_finite() -> None:
    with pytest.raises(ValueError, match="at least one reference token"):
        ratio_delta_ci([1.0, 2.0], [3, 0], [1.0, 2.0], [3, 1])
    with pytest.raises(ValueError, match="same items"):
        ratio_delta_ci([1.0, 2.0], [3, 1], [1.0], [3])
    huge = ratio_delta_ci([1e6, 1e6], [1, 1], [1.0, 1.0], [1, 1])
    assert all(math.isfinite(v) for v in (huge.candidate, huge.delta, huge.ci_low, huge.ci_high))
