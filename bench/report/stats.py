"""Statistics of the report: bootstrap confidence intervals, a paired significance test, Holm correction.

- Confidence interval of a method's metric: a two-level percentile bootstrap. Each resample draws the seeds with
  replacement, then, independently for each drawn seed, that seed's test examples with replacement; the resampled
  value is the mean over the drawn seeds of the metric on the drawn examples. This carries both sources of noise
  (training/sampling seed and the finite test set). Metrics that are item-level ratios (in-catalog rate = in-catalog
  items / parsed items) are resampled as ratios of sums, exactly as the evaluator computes them.
- Paired test: a two-sided paired sign-flip permutation test on the mean per-example difference (per-example metric
  averaged over seeds, paired by example id). Under the null the sign of each difference is exchangeable; the p-value
  is the share of sign assignments whose |mean| reaches the observed one (zero differences drop out: their sign
  changes nothing): exact (all 2^n assignments of the n nonzero differences) when 2^n <= resamples, otherwise from random sign flips with a fixed seed, counted as (hits + 1) / (resamples + 1). Unlike a Wilcoxon
  test it needs no tie or zero handling (the many zero differences of recall/NDCG simply do not move the mean) and
  it tests the quantity the table reports, the mean. All differences zero gives p = 1.
- Holm's step-down correction across all comparisons of one table controls the family-wise error rate.

Every function is deterministic for a given `seed`.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

RatioSample = tuple[np.ndarray, np.ndarray]
"""(numerators, denominators) per test example of one seed; a plain mean has denominators of one."""


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Sum ratios along the last axis, 0 where the denominator sums to 0 (as the evaluator does)."""
    top = numerator.sum(axis=-1)
    bottom = denominator.sum(axis=-1)
    return np.divide(top, bottom, out=np.zeros_like(top, dtype=float), where=bottom != 0)


def bootstrap_interval(samples: Sequence[RatioSample], n_resamples: int = 1000, confidence: float = 0.95,
                       seed: int = 0) -> Interval:
    """Mean over seeds of the per-seed metric, with a percentile CI from resampling seeds, then examples."""
    if not samples:
        raise ValueError("bootstrap_interval needs at least one seed")
    arrays = [(np.asarray(num, dtype=float), np.asarray(den, dtype=float)) for num, den in samples]
    point = float(np.mean([_ratio(num, den) for num, den in arrays]))
    rng = np.random.default_rng(seed)
    n_seeds = len(arrays)
    drawn_seeds = rng.integers(0, n_seeds, size=(n_resamples, n_seeds))
    values = np.zeros((n_resamples, n_seeds))
    for slot in range(n_seeds):
        for seed_index, (num, den) in enumerate(arrays):
            rows = np.flatnonzero(drawn_seeds[:, slot] == seed_index)
            if rows.size and num.size:
                picks = rng.integers(0, num.size, size=(rows.size, num.size))
                values[rows, slot] = _ratio(num[picks], den[picks])
    replicates = values.mean(axis=1)
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return Interval(point, float(low), float(high))


def paired_permutation_test(a: Sequence[float], b: Sequence[float], n_resamples: int = 10_000,
                            seed: int = 0) -> float:
    """Two-sided p-value of mean(a - b) != 0 for paired samples (sign-flip permutation test)."""
    first, second = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if first.ndim != 1 or first.shape != second.shape:
        raise ValueError("paired samples must be two sequences of equal length")
    differences = first - second
    differences = differences[differences != 0]  # zero differences never move the statistic
    n = differences.size
    if n == 0:
        return 1.0
    observed = abs(differences.sum())
    tolerance = 1e-12 * max(1.0, observed)
    if 2 ** n <= n_resamples:
        signs = ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1) * 2.0 - 1.0
        return float(np.mean(np.abs(signs @ differences) >= observed - tolerance))
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, n_resamples, 1000):
        size = min(1000, n_resamples - start)
        signs = rng.integers(0, 2, size=(size, n), dtype=np.int8).astype(float) * 2.0 - 1.0
        hits += int(np.count_nonzero(np.abs(signs @ differences) >= observed - tolerance))
    return (hits + 1) / (n_resamples + 1)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values, in the input order: the i-th smallest is multiplied by (m - i + 1), made monotone
    with a running maximum, and capped at 1."""
    m = len(p_values)
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(sorted(range(m), key=lambda i: p_values[i])):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted
