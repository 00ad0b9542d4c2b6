"""Statistics of the report: a two-level bootstrap, permutation tests whose unit is the seed, the probability of
improvement, Holm's correction and the minimum detectable difference.

- **Units.** A trained method's seed is the unit of replication and its test examples are nested in it; every seed
  scores the *same* test examples. A deterministic method (identical runs) is one run.
- **Two-level bootstrap** (Efron & Tibshirani 1993, ch. 6; nested as in Agarwal et al. 2021's stratified bootstrap,
  with examples crossed with seeds). One replicate draws one multiset of example indices, shared by every seed and
  every method of the table (so a difference keeps its pairing by example), then draws each method's seeds with
  replacement; the replicate value is the mean over the drawn seeds of each seed's metric on the drawn examples.
  Example draws become counts per example (weights), so every (method, seed, column) sum of a batch of
  replicates is one matrix product: 10,000 replicates of a ReDial-sized table (9 methods x 3 seeds x 468
  examples x 10 metrics) take 0.2 s, the whole table with its tests 2-4 s on 2 busy cores. scipy's `bootstrap`
  resamples one level only, hence the hand-written resampler. Intervals are percentile intervals widened for few seeds: a percentile interval
  over n seeds misses the n/(n-1) variance factor and the t tail (Hesterberg 2015, "What teachers should know
  about the bootstrap", sec. 3.4, the expanded percentile interval), so the seed part of the replicate variance
  (total minus the variance of the example-only replicates, all seeds kept) is scaled by
  f^2 = n/(n-1) (t_{n-1, 0.975} / z_{0.975})^2 and the interval's arms by sqrt((f^2 V_seed + V_examples) /
  V_total); then clipped to the metric's range. In simulation (tests) plain percentile intervals covered 87% with
  5 seeds and 83% with 3; these cover 96-98%, and up to 99% (conservative) when example noise dominates.
- **Tests** (`scipy.stats.permutation_test`): on per-seed values, paired by seed (`permutation_type="samples"`,
  sign flips) when both methods' runs pair up (RL runs of one seed share that seed's SFT start; a deterministic run
  pairs with every seed), unpaired otherwise (`"independent"`). Two deterministic methods have no seeds: the unit is
  then the test example (paired sign flips over examples). Exact when all permutations fit in the resamples.
- **Probability of improvement** P(b > a) (Agarwal et al. 2021): the share of (run of a, run of b) pairs in which b
  scores higher, ties counted half (the Mann-Whitney statistic over seeds), with a bootstrap CI.
- **Holm** (Holm 1979): step-down family-wise correction over a declared family.
- **Minimum detectable difference** of the test that is run, at its own unit (the seed; the test example only
  when both methods are deterministic): MDD = (t_{df, 1-alpha/2} + t_{df, power}) x SE, with SE the standard error
  of the mean difference between units (paired: sd(d_i) / sqrt(n); unpaired: sqrt(s_a^2 / n_a + s_b^2 / n_b)),
  the t approximation of a two-sided test's power (Cohen 1988, ch. 2; the sign-flip test of normal-ish seed
  differences has the power of the paired t-test up to a few points, `tests/unit/test_report_stats.py` checks it
  against the exact sign-flip test). None when the test's smallest attainable p exceeds alpha. "Units needed" for
  a difference is the fewest units per method whose MDD reaches it and whose floor reaches the level. The
  bootstrap SE of the difference is not used here: it includes the sampling of test examples, which more seeds
  do not shrink, while the test's unit is the seed.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from math import comb

import numpy as np

BATCH_ELEMENTS = 4_000_000
"""Replicates x examples per matrix product: bounds memory (32 MB of weights) for large test sets."""


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float


@dataclass(frozen=True)
class SeedSample:
    """One method's per-example (numerator, denominator) arrays, shape (seeds, examples), examples aligned across
    every method of a table; a plain mean has denominators of one. `seeds` names the rows (for pairing)."""

    numerators: np.ndarray
    denominators: np.ndarray
    seeds: tuple[int, ...]

    @property
    def n_seeds(self) -> int:
        return int(self.numerators.shape[0])

    def per_seed(self) -> np.ndarray:
        """Each seed's metric on all examples (a ratio of sums, as the evaluator computes rates)."""
        return _ratio(self.numerators.sum(axis=1), self.denominators.sum(axis=1))


def _ratio(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    return np.divide(top, bottom, out=np.zeros_like(top, dtype=float), where=bottom != 0)


def seed_replicates(samples: Sequence[SeedSample], n_resamples: int, seed: int = 0) -> list[np.ndarray]:
    """Per sample, an array (seeds, n_resamples): each seed's metric on each replicate's example draw, the draw shared
    by every seed of every sample. Deterministic for a given `seed`."""
    if not samples:
        return []
    n_examples = samples[0].numerators.shape[1]
    if any(sample.numerators.shape[1] != n_examples for sample in samples):
        raise ValueError("every sample must score the same examples")
    tops = np.concatenate([sample.numerators for sample in samples]).T  # (examples, all seeds)
    bottoms = np.concatenate([sample.denominators for sample in samples]).T
    rng = np.random.default_rng(seed)
    values = []
    batch = max(1, BATCH_ELEMENTS // n_examples)
    for start in range(0, n_resamples, batch):
        size = min(batch, n_resamples - start)
        picks = rng.integers(0, n_examples, size=(size, n_examples)) + np.arange(size)[:, None] * n_examples
        weights = np.bincount(picks.ravel(), minlength=size * n_examples).reshape(size, n_examples).astype(float)
        values.append(_ratio(weights @ tops, weights @ bottoms).T)
    stacked = np.concatenate(values, axis=1)
    bounds = np.cumsum([0] + [sample.n_seeds for sample in samples])
    return [stacked[bounds[i]:bounds[i + 1]] for i in range(len(samples))]


def draw_seeds(n_seeds: int, n_resamples: int, seed: int) -> np.ndarray:
    """Seed rows drawn with replacement, (n_resamples, n_seeds)."""
    return np.random.default_rng(seed).integers(0, n_seeds, size=(n_resamples, n_seeds))


def resampled_means(replicates: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """Per replicate, the mean over the drawn seeds: replicates (seeds, R), draws (R, seeds) -> (R,)."""
    columns = np.arange(replicates.shape[1])[:, None]
    return replicates[draws, columns].mean(axis=1)


def seed_factor(n_seeds: int, confidence: float = 0.95) -> float:
    """f = sqrt(n/(n-1)) t_{n-1, 1-alpha/2} / z_{1-alpha/2}: how much wider an interval over n seeds must be; 1 for
    a single run (its units, the test examples, are many)."""
    from scipy.stats import norm, t

    if n_seeds < 2:
        return 1.0
    tail = 1 - (1 - confidence) / 2
    return float(np.sqrt(n_seeds / (n_seeds - 1)) * t.ppf(tail, n_seeds - 1) / norm.ppf(tail))


def widened_interval(point: float, replicates: np.ndarray, example_only: np.ndarray, n_seeds: int,
                     bounds: tuple[float, float] = (0.0, 1.0), confidence: float = 0.95) -> Interval:
    """The percentile interval of `replicates` (seeds and examples resampled), its arms widened by the seed factor
    on the seed part of the variance (`example_only`: the same replicates with every seed kept), clipped to
    `bounds`."""
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(replicates, [tail, 100 - tail])
    total, examples = float(replicates.var()), float(example_only.var())
    scale = 1.0
    if total > 0 and n_seeds > 1:
        scale = float(np.sqrt((seed_factor(n_seeds, confidence) ** 2 * max(0.0, total - examples) + examples) / total))
    return Interval(point, float(max(bounds[0], point - scale * (point - low))),
                    float(min(bounds[1], point + scale * (high - point))))


def bootstrap_interval(sample: SeedSample, n_resamples: int = 10_000, confidence: float = 0.95,
                       seed: int = 0) -> Interval:
    """One method alone: the mean over seeds with its two-level CI; identical seeds are one run."""
    if sample.n_seeds > 1 and all(np.array_equal(row, sample.numerators[0]) for row in sample.numerators[1:]) and all(
            np.array_equal(row, sample.denominators[0]) for row in sample.denominators[1:]):
        sample = SeedSample(sample.numerators[:1], sample.denominators[:1], sample.seeds[:1])
    (replicates,) = seed_replicates([sample], n_resamples, seed)
    return seed_interval(sample, replicates, draw_seeds(sample.n_seeds, n_resamples, seed + 1), confidence)


def seed_interval(sample: SeedSample, replicates: np.ndarray, draws: np.ndarray,
                  confidence: float = 0.95) -> Interval:
    """One method's mean over seeds with its two-level CI, from its example replicates (shared with the other
    methods of the table) and its seed draws; the one place a cell's interval is built."""
    return widened_interval(float(sample.per_seed().mean()), resampled_means(replicates, draws),
                            replicates.mean(axis=0), sample.n_seeds, confidence=confidence)


def probability_of_improvement(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """P(b > a) over all pairs of runs, ties half; a (..., n_a), b (..., n_b) -> (...)."""
    wins = (b[..., None, :] > a[..., :, None]).mean(axis=(-2, -1))
    ties = (b[..., None, :] == a[..., :, None]).mean(axis=(-2, -1))
    return wins + 0.5 * ties


def _mean_difference(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(y, axis=axis) - np.mean(x, axis=axis)


def _paired_difference(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(y - x, axis=axis)


def permutation_p_value(a: np.ndarray, b: np.ndarray, paired: bool, n_resamples: int = 10_000,
                        seed: int = 0) -> float:
    """Two-sided p-value of mean(b) - mean(a) = 0 by `scipy.stats.permutation_test` (sign flips when paired)."""
    from scipy.stats import permutation_test

    first, second = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if paired and first.shape != second.shape:
        raise ValueError("paired samples must have equal length")
    if np.array_equal(first, second) or (paired and first.size < 2):
        return 1.0  # one pair: its two sign patterns are equally extreme
    if not paired and min(first.size, second.size) < 2:
        return _one_against_rest(first, second)
    result = permutation_test((first, second), _paired_difference if paired else _mean_difference,
                              permutation_type="samples" if paired else "independent", vectorized=True,
                              n_resamples=n_resamples, alternative="two-sided", rng=np.random.default_rng(seed))
    return float(min(1.0, result.pvalue))


def _one_against_rest(first: np.ndarray, second: np.ndarray) -> float:
    """Exact unpaired test when one sample has a single value (scipy needs two per sample): every choice of which
    pooled value forms the single-value sample is equally likely under the null."""
    pooled = np.concatenate([first, second])
    single_first = first.size == 1
    observed = abs(_mean_difference(first, second))
    stats = []
    for index in range(pooled.size):
        rest = np.delete(pooled, index)
        single = pooled[index:index + 1]
        stats.append(abs(_mean_difference(single, rest) if single_first else _mean_difference(rest, single)))
    return float(np.mean(np.array(stats) >= observed - 1e-12 * max(1.0, observed)))


def p_floor(n_a: int, n_b: int, paired: bool, n_resamples: int = 10_000) -> float:
    """The smallest p-value the test can return with these sizes: 2 / 2^n paired (the observed signs and their
    mirror), 1 / C(n_a + n_b, n_a) unpaired (2 / C when the sizes are equal); 2 / (resamples + 1) when sampled
    (scipy doubles the smaller one-sided p, each counted as (hits + 1) / (resamples + 1))."""
    total = 2 ** n_a if paired else comb(n_a + n_b, n_a)
    if total > n_resamples:
        return 2.0 / (n_resamples + 1)
    symmetric = paired or n_a == n_b
    return min(1.0, (2.0 if symmetric else 1.0) / total)


def minimum_detectable_difference(se: float, df: float | None = None, alpha: float = 0.05,
                                  power: float = 0.8) -> float:
    """(t_{df, 1-alpha/2} + t_{df, power}) x SE: the true difference a two-sided level-alpha test on units with
    that standard error detects with `power`; df None: the normal limit."""
    from scipy.stats import norm, t

    if df is None:
        return float((norm.ppf(1 - alpha / 2) + norm.ppf(power)) * se)
    return float((t.ppf(1 - alpha / 2, df) + t.ppf(power, df)) * se)


@dataclass(frozen=True)
class UnitPower:
    """The power of a test whose unit is the seed (or the test example): the spread between units and how many."""

    sd: float
    """Standard deviation between units: of the paired differences, or the pooled one of the two samples."""
    n: int
    """Units of the first method (pairs when paired)."""
    paired: bool
    n_b: int | None = None
    """Units of the second method when unpaired and not `n` (a seed missing on one side); None: `n`."""

    def sizes(self, n: int | None = None) -> tuple[int, int]:
        """Units of each method: those run, or `n` per method for a planned count."""
        if n is not None:
            return n, n
        return self.n, self.n if self.n_b is None else self.n_b

    def standard_error(self, n: int | None = None) -> float:
        """SE of the mean difference: sd / sqrt(n) paired, sd x sqrt(1/n_a + 1/n_b) unpaired (pooled two-sample)."""
        n_a, n_b = self.sizes(n)
        return self.sd / np.sqrt(n_a) if self.paired else self.sd * np.sqrt(1.0 / n_a + 1.0 / n_b)

    def degrees_of_freedom(self, n: int | None = None) -> int:
        n_a, n_b = self.sizes(n)
        return n_a - 1 if self.paired else n_a + n_b - 2

    def mdd(self, alpha: float = 0.05, power: float = 0.8, n: int | None = None) -> float | None:
        """The minimum detectable difference at `n` units per method (default: those run, unequal sizes included);
        None where the floor of the exact test at those sizes (`p_floor`) is above alpha or a method has too few
        units for a spread."""
        n_a, n_b = self.sizes(n)
        if min(n_a, n_b) < 2 or p_floor(n_a, n_b, self.paired, 10**12) > alpha:
            return None
        return minimum_detectable_difference(self.standard_error(n), self.degrees_of_freedom(n), alpha, power)

    def units_needed(self, difference: float, alpha: float = 0.05, power: float = 0.8,
                     most: int = 100_000) -> int | None:
        """Fewest units per method at which |difference| is detectable at `alpha` with `power` (None: more than
        `most`, or no spread and no difference)."""
        if difference == 0.0:
            return None
        if self.sd == 0.0:
            return max(2, fewest_units(alpha, self.paired))

        def detects(n: int) -> bool:
            found = self.mdd(alpha, power, n)
            return found is not None and found <= abs(difference)

        if not detects(most):
            return None
        low, high = 1, most  # detects(high) holds, detects(low) does not
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (low, middle) if detects(middle) else (middle, high)
        return high


def fewest_units(level: float, paired: bool) -> int:
    """Fewest units per method whose exact permutation test can reach `level` at all (paired, or n + n unpaired)."""
    return next(n for n in range(1, 64) if p_floor(n, n, paired, 10**12) <= level)


def unit_power(a: np.ndarray, b: np.ndarray, paired: bool) -> UnitPower:
    """The between-unit spread of the test of b against a: sd of b - a when paired, else the pooled sd of the
    two-sample t-test (each variance weighted by its degrees of freedom), with each method's own count."""
    first, second = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if paired:
        differences = second - first
        sd = float(differences.std(ddof=1)) if differences.size > 1 else 0.0
        return UnitPower(sd, int(differences.size), True)
    df = first.size + second.size - 2
    squares = sum(float(((sample - sample.mean()) ** 2).sum()) for sample in (first, second))
    return UnitPower(float(np.sqrt(squares / df)) if df > 0 else 0.0, int(first.size), False, int(second.size))


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
