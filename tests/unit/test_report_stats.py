"""Report statistics against hand-worked answers and simulations that can fail: interval coverage of a two-level
process, a seed-level sign flip that must not be significant, deterministic runs counted once, Holm, exact
permutation p-values and their floors, the probability of improvement, the detectable difference, censored
steps-to-reach and the area under a curve."""

import numpy as np
import pytest

from bench.report.curves import SeedCurve, area_under_curves, steps_to_reach
from bench.report.stats import (
    SeedSample,
    bootstrap_interval,
    draw_seeds,
    UnitPower,
    holm,
    minimum_detectable_difference,
    p_floor,
    permutation_p_value,
    probability_of_improvement,
    resampled_means,
    seed_replicates,
    unit_power,
)


def _sample(values: np.ndarray) -> SeedSample:
    values = np.atleast_2d(np.asarray(values, dtype=float))
    return SeedSample(values, np.ones_like(values), tuple(range(values.shape[0])))


def test_holm_on_four_p_values_worked_by_hand() -> None:
    # Sorted: 0.005 x4 = 0.02; 0.01 x3 = 0.03; 0.03 x2 = 0.06; 0.04 x1 = 0.04 -> raised to the running max 0.06.
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    assert holm([0.2]) == [0.2]
    assert holm([]) == []


@pytest.mark.parametrize(("n_seeds", "n_examples", "n_sims"), [(10, 60, 200), (5, 100, 400)])
def test_coverage_of_the_two_level_bootstrap_on_a_simulated_process(n_seeds: int, n_examples: int,
                                                                    n_sims: int) -> None:
    """Seed effects (sd 0.05) plus example effects shared by every seed (sd 0.1) plus noise (sd 0.1), true mean
    0.3. The nominal 95% CI must cover 0.3 in 92-98% of the simulations (measured over 800: 96%). (2,000 bootstrap
    replicates per simulation instead of the report's 10,000, to keep the test at a few seconds. Plain percentile
    intervals cover about 87% with 5 seeds here, which this test rejects.)"""
    rng = np.random.default_rng(0)
    replicates = 2000
    covered = 0
    for sim in range(n_sims):
        values = (0.3 + rng.normal(0, 0.05, (n_seeds, 1)) + rng.normal(0, 0.1, (1, n_examples))
                  + rng.normal(0, 0.1, (n_seeds, n_examples)))
        interval = bootstrap_interval(_sample(values), n_resamples=replicates, seed=sim)
        covered += interval.low <= 0.3 <= interval.high
    assert 0.92 <= covered / n_sims <= 0.98, covered / n_sims


def test_one_level_resampling_of_each_seed_would_undercover() -> None:
    """The old design (each seed its own example draws, seeds' test sets treated as independent) is too narrow when
    examples are shared: the two-level interval with shared example draws is about sqrt(seeds) wider here."""
    rng = np.random.default_rng(5)
    values = 0.2 + rng.normal(0, 0.1, (1, 200)) + rng.normal(0, 0.01, (3, 200))
    shared = bootstrap_interval(_sample(values), n_resamples=4000)
    independent = np.mean([values[s][rng.integers(0, 200, (4000, 200))].mean(axis=1) for s in range(3)], axis=0)
    low, high = np.percentile(independent, [2.5, 97.5])
    assert (shared.high - shared.low) > 1.5 * (high - low)


def test_a_seed_level_sign_flip_is_not_significant() -> None:
    """B beats A by 0.1 on every example of seeds 0 and 1 and loses by 0.1 on every example of seed 2. Averaging
    examples over seeds (the old test) gives +0.033 on all 40 examples, p at its floor; with the seed as the unit
    the signed sums of (+0.1, +0.1, -0.1) are 0.1 or 0.3 in absolute value, all >= 0.1: p = 1."""
    rng = np.random.default_rng(2)
    a = rng.random((3, 40))
    b = a + np.array([[0.1], [0.1], [-0.1]])
    assert permutation_p_value(_sample(a).per_seed(), _sample(b).per_seed(), paired=True) == pytest.approx(1.0)
    assert permutation_p_value(a.mean(axis=0), b.mean(axis=0), paired=True) < 0.001
    first, second = seed_replicates([_sample(a), _sample(b)], 2000)
    draws = draw_seeds(3, 2000, 1)
    differences = resampled_means(second, draws) - resampled_means(first, draws)
    low, high = np.percentile(differences, [2.5, 97.5])
    assert low < 0 < high


def test_three_identical_seeds_give_the_interval_of_one_run() -> None:
    rng = np.random.default_rng(4)
    one = (rng.random((1, 468)) < 0.1).astype(float)
    single = bootstrap_interval(_sample(one))
    tripled = bootstrap_interval(_sample(np.repeat(one, 3, axis=0)))
    assert tripled.high - tripled.low == pytest.approx(single.high - single.low, rel=0.05)
    # A single run of 468 Bernoulli(0.1) examples: half-width about 1.96 sqrt(0.09 / 468) = 0.027.
    assert (single.high - single.low) / 2 == pytest.approx(1.96 * np.sqrt(0.1 * 0.9 / 468), rel=0.2)


def test_bootstrap_of_equal_values_has_zero_width_and_ratios_use_sums() -> None:
    assert bootstrap_interval(_sample(np.full((3, 7), 0.25)), n_resamples=200) == bootstrap_interval(
        _sample(np.full((1, 7), 0.25)), n_resamples=200)
    # Numerators 1,1,0,0 over denominators 1,1,2,0 -> 2 / 4 = 0.5 (a ratio of sums, not a mean of ratios).
    ratio = SeedSample(np.array([[1.0, 1.0, 0.0, 0.0]]), np.array([[1.0, 1.0, 2.0, 0.0]]), (0,))
    interval = bootstrap_interval(ratio, n_resamples=2000)
    assert interval.mean == 0.5 and 0.0 <= interval.low < 0.5 < interval.high <= 1.0


def test_permutation_p_values_and_floors_worked_by_hand() -> None:
    # Ten positive paired differences: only all-plus and all-minus reach |mean|: p = 2 / 2^10.
    assert permutation_p_value(np.zeros(10), np.ones(10), paired=True) == pytest.approx(2 / 1024)
    assert p_floor(10, 10, paired=True) == pytest.approx(2 / 1024)
    # Differences 1, 2, 3: signed sums 6, 4, 2, 0, 0, -2, -4, -6; |sum| >= 6 in 2 of 8 -> 0.25.
    assert permutation_p_value(np.zeros(3), np.array([1.0, 2.0, 3.0]), paired=True) == pytest.approx(0.25)
    # 3 vs 3 unpaired, fully separated: 2 of C(6, 3) = 20 splits are as extreme -> 0.1, the floor.
    assert permutation_p_value(np.zeros(3), np.ones(3), paired=False) == pytest.approx(0.1)
    assert p_floor(3, 3, paired=False) == pytest.approx(0.1)
    assert p_floor(1, 3, paired=False) == pytest.approx(0.25)
    # One value against three, unpaired: 4 ways to pick the single value; only the observed split (0 vs 1, 1, 1)
    # reaches |diff| = 1 -> 1/4. A single pair: p = 1.
    assert permutation_p_value(np.zeros(1), np.ones(3), paired=False) == pytest.approx(0.25)
    assert permutation_p_value(np.zeros(1), np.ones(1), paired=True) == 1.0
    # 40 pairs: sampled sign flips, floor 2 / (resamples + 1).
    assert permutation_p_value(np.zeros(40), np.ones(40), paired=True) == pytest.approx(2 / 10_001)
    assert p_floor(40, 40, paired=True) == pytest.approx(2 / 10_001)
    assert permutation_p_value(np.array([0.3, 0.1]), np.array([0.3, 0.1]), paired=True) == 1.0


def test_probability_of_improvement_and_detectable_difference() -> None:
    # b = 2 beats a = 1, ties 2, loses to 3 (1.5 of 3); twice; b = 4 beats all three: (1.5 + 1.5 + 3) / 9.
    assert probability_of_improvement(np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 4.0])) == pytest.approx(2 / 3)
    assert probability_of_improvement(np.array([0.1]), np.array([0.1])) == 0.5
    # (1.959964 + 0.841621) x SE.
    assert minimum_detectable_difference(0.01) == pytest.approx(0.0280159, rel=1e-5)
    # Paired seeds, sd 0.02, n 10: (t(9, 0.975) 2.262157 + t(9, 0.8) 0.883404) x 0.02 / sqrt(10) = 0.019894.
    assert UnitPower(0.02, 10, paired=True).mdd() == pytest.approx(0.019894, rel=1e-4)
    # Unpaired 10 + 10 with the same sd: SE 0.02 x sqrt(2 / 10), df 18: (2.100922 + 0.862357) x 0.008944 = 0.026504.
    assert UnitPower(0.02, 10, paired=False).mdd() == pytest.approx(0.026504, rel=1e-4)
    # Five paired seeds cannot reach 0.05 (floor 2 / 32 = 0.0625): nothing is detectable.
    assert UnitPower(0.02, 5, paired=True).mdd() is None
    assert unit_power(np.array([0.1, 0.2, 0.3]), np.array([0.2, 0.2, 0.5]), paired=True).sd == pytest.approx(0.1)


def test_unpaired_power_uses_each_methods_own_seed_count() -> None:
    """3 seeds against 7 (a method with seeds missing): the exact test's floor is 1 / C(10, 3) = 1/120, below 0.05,
    so a difference is detectable; the MDD comes from both counts, not from 3 + 3 (whose floor 0.1 detects none)."""
    three, seven = np.array([0.1, 0.2, 0.3]), np.array([0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    power = unit_power(three, seven, paired=False)
    # Pooled: sums of squares 0.02 + 0.28 over df 3 + 7 - 2 = 8: sd sqrt(0.0375) = 0.193649.
    assert power.sd == pytest.approx(0.193649, rel=1e-5)
    assert power.sizes() == (3, 7)
    # SE 0.193649 x sqrt(1/3 + 1/7) = 0.133631; (t(8, 0.975) 2.306004 + t(8, 0.8) 0.888890) x SE = 0.426936.
    assert power.mdd() == pytest.approx(0.426936, rel=1e-5)
    # Planned counts stay n + n: 3 + 3 cannot reach 0.05 (floor 2 / C(6, 3) = 0.1), nor can 2 + 3 (1 / C(5, 2)).
    assert power.mdd(n=3) is None
    assert unit_power(three[:2], seven[:3], paired=False).mdd() is None


def _exact_sign_flip_p(differences: np.ndarray) -> np.ndarray:
    """Exact two-sided sign-flip p of each row of `differences` (rows, n): the share of the 2^n sign patterns whose
    mean is at least as far from 0 as the observed one."""
    n = differences.shape[1]
    signs = 1.0 - 2.0 * ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1)  # (2^n, n)
    flipped = np.abs(np.abs(differences) @ signs.T) / n  # (rows, 2^n)
    observed = np.abs(differences.mean(axis=1, keepdims=True))
    return (flipped >= observed - 1e-12).mean(axis=1)


def test_seed_level_power_matches_the_exact_sign_flip_test() -> None:
    """The report's MDD and seeds-needed figures are those of the exact seed-level sign-flip test it runs: made-up
    seeds drawn with a true difference equal to the MDD are detected about 80% of the time, and the seeds needed for a
    small difference are counted from the seed spread, not from a bootstrap SE that holds example noise."""
    rng = np.random.default_rng(0)
    sd = 0.02
    for n in (8, 10, 12):
        shift = UnitPower(sd, n, paired=True).mdd()
        assert shift is not None
        rejected = (_exact_sign_flip_p(rng.normal(shift, sd, size=(3000, n))) <= 0.05).mean()
        assert 0.72 <= rejected <= 0.86, (n, rejected)
    # A difference of half the seed spread (0.005 at sd 0.01): (t(33, 0.975) 2.0345 + t(33, 0.8) 0.8529) / sqrt(34)
    # = 0.4951 <= 0.5 while at 33 seeds (2.0369 + 0.8530) / sqrt(33) = 0.5031 > 0.5, so 34 paired seeds.
    assert UnitPower(0.01, 10, paired=True).units_needed(0.005) == 34
    rejected = (_exact_sign_flip_p(rng.normal(0.005, 0.01, size=(2000, 12))) <= 0.05).mean()
    assert rejected < 0.6  # 12 seeds are well short of 80% power there


def _curve(seed: int, steps: list[float], values: list[float], offset: float = 0.0) -> SeedCurve:
    return SeedCurve(seed, np.array(steps), np.array(steps) * 2.0, {"ndcg@20": np.array(values)}, offset, 10 * offset)


def test_steps_to_reach_counts_censored_seeds_and_sft_compute() -> None:
    curves = {"sft": [_curve(0, [0, 10], [0.0, 0.1]), _curve(1, [0, 10], [0.0, 0.1])],
              "rank_grpo": [_curve(0, [0, 2, 4], [0.1, 0.25, 0.3], offset=10),
                            _curve(1, [0, 2, 4], [0.1, 0.1, 0.1], offset=10),
                            _curve(2, [0, 2, 4], [0.3, 0.3, 0.3], offset=10)]}
    # Start: the RL seeds' step-0 points (the SFT model) (0.1 + 0.1 + 0.3) / 3; best mean final (0.3 + 0.1 + 0.3) / 3;
    # target = start + 0.5 x (best - start) = 0.2. Seed 0 reaches at RL step 2 (cumulative 12); seed 1 never
    # (censored); seed 2 is above at step 0, which does not count: step 2 (12). Median of (12, 12, never) = 12.
    steps = steps_to_reach(curves, "ndcg@20", 0.5)
    assert steps is not None and steps.target == pytest.approx(0.2) and steps.start == pytest.approx(0.5 / 3)
    row = steps.rows[1]
    assert (row.method, row.reached, row.n_seeds, row.median_step) == ("rank_grpo", 2, 3, 12.0)
    assert row.total_steps == 14.0 and row.total_wall == 108.0
    # Given 0.28: seed 0 at cumulative 14, seed 2 at 12, seed 1 never: the median of (12, 14, never) is 14, where a
    # mean over the seeds that reach would say 13. Given 0.35: nobody reaches, no median.
    given = steps_to_reach(curves, "ndcg@20", 0.5, target=0.28)
    assert given is not None and given.fraction is None
    assert (given.rows[1].reached, given.rows[1].median_step) == (2, 14.0)
    never = steps_to_reach(curves, "ndcg@20", 0.5, target=0.35)
    assert never is not None and never.rows[1].reached == 0 and never.rows[1].median_step is None


def test_steps_to_reach_takes_its_range_from_rl_curves_when_they_exist() -> None:
    # SFT's curve ends at 0.9 on its selection subset; the RL curves (monitor subset) start at 0.1 and end at 0.35
    # and 0.5. Best comes from RL alone: 0.5, target 0.1 + 0.5 x (0.5 - 0.1) = 0.3 (0.5 with SFT's 0.9 in it).
    curves = {"sft": [_curve(0, [0, 10], [0.0, 0.9])],
              "grpo": [_curve(0, [0, 2], [0.1, 0.35], offset=10)],
              "rank_grpo": [_curve(0, [0, 2], [0.1, 0.5], offset=10)]}
    steps = steps_to_reach(curves, "ndcg@20", 0.5)
    assert steps is not None and steps.best == pytest.approx(0.5) and steps.target == pytest.approx(0.3)
    assert [(row.method, row.reached) for row in steps.rows] == [("sft", 1), ("grpo", 1), ("rank_grpo", 1)]


def test_area_under_the_curve_at_a_budget() -> None:
    curves = {"grpo": [_curve(0, [0, 2, 4], [0.1, 0.3, 0.5]), _curve(1, [0, 2, 4, 6], [0.1, 0.1, 0.1, 0.9])]}
    # Budget = 4 (last step every seed logged): seed 0 (0.4 + 0.8) / 4 = 0.3; seed 1 0.1; mean 0.2. Two seeds:
    # the percentile interval [0.1, 0.3] widened by f = sqrt(2) x 12.71 / 1.96 = 9.2 and clipped to [0, 1].
    result = area_under_curves(curves, "ndcg@20", None, n_resamples=2000)
    assert result is not None
    budget, (row,) = result
    assert budget == 4.0 and row.interval.mean == pytest.approx(0.2)
    assert row.interval.low == 0.0 and row.interval.high == 1.0 and row.unreliable
