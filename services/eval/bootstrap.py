"""Percentile-bootstrap confidence intervals over suite items, paired across the two models.

The candidate (base + adapter) and the reference (the base) answer the same items, so a
delta's interval resamples *items*: each resample draws item indices with replacement
and both models are scored on the same draw. Pairing cancels the per-item difficulty the
two models share, which makes a delta's interval much narrower than two independent
intervals would (see the tests).

Resamples are counts, not loops: a block of resamples is a (resamples x items) matrix of
how often each item was drawn, and the means of every column at once are one matrix
product. Blocks bound memory (about 16 MiB of counts at a time) whatever the suite size;
the draws depend only on (seed, number of items, samples), so every metric over the same
number of items sees the same resamples.

Intervals never contain NaN: empty inputs and non-finite values are refused, and with
fewer than two items an interval collapses to its point estimate (one item has nothing
to resample, so the interval says nothing beyond the point).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

_BLOCK_ENTRIES = 1 << 21      # counts per block of resamples: 2M int64 = 16 MiB
MAX_LOG_PERPLEXITY = 700.0    # exp(700) ~ 1e304: keeps a pathological perplexity finite


@dataclass(frozen=True)
class Interval:
    """A point estimate of candidate - reference and the bootstrap interval of that delta.

    For single-sided values (:func:`mean_ci`) ``reference`` is 0 and ``delta`` the value itself.
    """

    candidate: float   # the candidate's statistic on all items
    reference: float   # the reference's statistic on the same items
    delta: float       # candidate - reference
    ci_low: float      # lower percentile bound of delta
    ci_high: float     # upper percentile bound of delta
    n: int             # items


def _vector(values: ArrayLike, name: str) -> NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one value per item (a 1-D array), got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} has no items: a statistic over no items is undefined; omit the metric")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} has {int((~np.isfinite(array)).sum())} non-finite value(s); "
                         f"every item's score must be a finite number")
    return array


def _check_settings(samples: int, confidence: float) -> None:
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1 (e.g. 0.95), got {confidence!r}")


def resample_means(columns: ArrayLike, *, samples: int = 2000, seed: int = 0) -> NDArray[np.float64]:
    """Means of every column over ``samples`` resamples of the rows (items) with replacement.

    Args:
        columns: (items,) or (items, k) values; every column is resampled with the same rows.
        samples: resamples.
        seed: numpy ``default_rng`` seed; the draws depend only on (seed, items, samples).

    Returns:
        (samples, k) array of resampled means.
    """
    values = np.asarray(columns, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    n = values.shape[0]
    if n == 0:
        raise ValueError("no items to resample")
    _check_settings(samples, 0.5)
    rng = np.random.default_rng(seed)
    sums = np.empty((samples, values.shape[1]))
    block = max(1, min(samples, _BLOCK_ENTRIES // n))
    offsets = np.arange(block, dtype=np.int64)[:, None] * n
    for start in range(0, samples, block):
        rows = min(block, samples - start)
        drawn = rng.integers(0, n, size=(rows, n)) + offsets[:rows]
        counts = np.bincount(drawn.ravel(), minlength=rows * n).reshape(rows, n)
        sums[start:start + rows] = counts.astype(np.float64) @ values
    return sums / n


def percentile_interval(statistics: ArrayLike, confidence: float) -> tuple[float, float]:
    """The central ``confidence`` percentile interval of resampled statistics."""
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(np.asarray(statistics, dtype=np.float64), [tail, 1.0 - tail])
    return float(low), float(high)


def paired_delta_ci(candidate: ArrayLike, reference: ArrayLike, *, samples: int = 2000, confidence: float = 0.95,
                    seed: int = 0) -> Interval:
    """mean(candidate) - mean(reference) with its paired percentile-bootstrap interval.

    ``candidate[i]`` and ``reference[i]`` are the two models' scores on item i; a resample
    draws items, so both sides move together.

    Raises:
        ValueError: different lengths, no items, non-finite values or bad settings.
    """
    _check_settings(samples, confidence)
    cand, ref = _vector(candidate, "candidate"), _vector(reference, "reference")
    if cand.shape != ref.shape:
        raise ValueError(f"candidate and reference must score the same items: {cand.size} vs {ref.size} values")
    point_c, point_r = float(cand.mean()), float(ref.mean())
    delta = point_c - point_r
    if cand.size < 2:
        return Interval(point_c, point_r, delta, delta, delta, int(cand.size))
    low, high = percentile_interval(resample_means(cand - ref, samples=samples, seed=seed)[:, 0], confidence)
    return Interval(point_c, point_r, delta, low, high, int(cand.size))


def mean_ci(values: ArrayLike, *, samples: int = 2000, confidence: float = 0.95, seed: int = 0) -> Interval:
    """The mean of single-sided values with its percentile-bootstrap interval.

    Returned as an :class:`Interval` with ``reference`` 0, so ``delta`` and its interval
    are those of the mean itself.
    """
    _check_settings(samples, confidence)
    array = _vector(values, "values")
    point = float(array.mean())
    if array.size < 2:
        return Interval(point, 0.0, point, point, point, int(array.size))
    low, high = percentile_interval(resample_means(array, samples=samples, seed=seed)[:, 0], confidence)
    return Interval(point, 0.0, point, low, high, int(array.size))


def perplexity(nll_sum: ArrayLike, tokens: ArrayLike) -> NDArray[np.float64]:
    """exp(nll / tokens), elementwise, the exponent capped at :data:`MAX_LOG_PERPLEXITY`."""
    return np.exp(np.minimum(np.asarray(nll_sum) / np.asarray(tokens), MAX_LOG_PERPLEXITY))


def ratio_delta_ci(candidate_nll: ArrayLike, candidate_tokens: ArrayLike, reference_nll: ArrayLike,
                   reference_tokens: ArrayLike, *, samples: int = 2000, confidence: float = 0.95,
                   seed: int = 0) -> Interval:
    """Perplexity delta, exp(sum nll / sum tokens) of candidate minus reference, paired over items.

    Each input holds one value per item: the summed NLL (nats) of the item's reference
    answer and its token count. The statistic is a ratio of sums, so it is recomputed on
    every resample rather than averaged per item (a per-item perplexity mean would let
    short answers dominate).

    Raises:
        ValueError: different lengths, no items, non-finite values, a token count below 1.
    """
    _check_settings(samples, confidence)
    arrays = [_vector(candidate_nll, "candidate_nll"), _vector(candidate_tokens, "candidate_tokens"),
              _vector(reference_nll, "reference_nll"), _vector(reference_tokens, "reference_tokens")]
    if len({array.size for array in arrays}) != 1:
        raise ValueError(f"nll and token arrays must score the same items, got lengths {[a.size for a in arrays]}")
    columns = np.column_stack(arrays)
    if (columns[:, [1, 3]] < 1).any():
        raise ValueError("every item needs at least one reference token on both sides; drop items without a reference")
    return ratio_interval(columns, samples=samples, confidence=confidence, seed=seed)


def ratio_interval(columns: NDArray[np.float64], *, samples: int, confidence: float, seed: int) -> Interval:
    """Perplexity delta from validated (nll_c, tokens_c, nll_r, tokens_r) columns, one row per item."""
    totals = columns.sum(axis=0)
    point_c = float(perplexity(totals[0], totals[1]))
    point_r = float(perplexity(totals[2], totals[3]))
    delta = point_c - point_r
    n = columns.shape[0]
    if n < 2:
        return Interval(point_c, point_r, delta, delta, delta, n)
    means = resample_means(columns, samples=samples, seed=seed)
    deltas = perplexity(means[:, 0], means[:, 1]) - perplexity(means[:, 2], means[:, 3])
    low, high = percentile_interval(deltas, confidence)
    return Interval(point_c, point_r, delta, low, high, n)
