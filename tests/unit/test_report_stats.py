"""Report statistics against hand-worked answers: Holm correction, the bootstrap CI, the paired permutation test."""

import numpy as np
import pytest

from bench.report.stats import bootstrap_interval, holm, paired_permutation_test


def test_holm_on_four_p_values_worked_by_hand() -> None:
    # Sorted: 0.005 x4 = 0.02; 0.01 x3 = 0.03; 0.03 x2 = 0.06; 0.04 x1 = 0.04 -> raised to the running max 0.06.
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_caps_at_one_and_keeps_a_single_p_value() -> None:
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    assert holm([0.2]) == [0.2]
    assert holm([]) == []


def test_bootstrap_of_all_equal_values_has_zero_width() -> None:
    seeds = [(np.full(7, 0.25), np.ones(7)) for _ in range(3)]
    interval = bootstrap_interval(seeds, n_resamples=200)
    assert interval.mean == interval.low == interval.high == 0.25


def test_bootstrap_ratio_metric_uses_sums_and_brackets_the_mean() -> None:
    # One seed: numerators 1,1,0,0 over denominators 1,1,2,0 -> 2 / 4 = 0.5 (a ratio of sums, not a mean of ratios).
    interval = bootstrap_interval([(np.array([1.0, 1.0, 0.0, 0.0]), np.array([1.0, 1.0, 2.0, 0.0]))])
    assert interval.mean == 0.5
    assert 0.0 <= interval.low < 0.5 < interval.high <= 1.0


def test_bootstrap_is_deterministic_and_wider_with_seed_spread() -> None:
    rng = np.random.default_rng(3)
    close = [(rng.random(50), np.ones(50)) for _ in range(3)]
    apart = [(values + shift, ones) for (values, ones), shift in zip(close, (0.0, 0.3, 0.6), strict=True)]
    assert bootstrap_interval(close) == bootstrap_interval(close)
    narrow, wide = bootstrap_interval(close), bootstrap_interval(apart)
    assert wide.high - wide.low > narrow.high - narrow.low


def test_paired_permutation_exact_answers() -> None:
    # Ten positive differences: only the all-plus and all-minus sign patterns reach |mean| -> p = 2 / 2^10.
    assert paired_permutation_test([1.0] * 10, [0.0] * 10) == pytest.approx(2 / 1024)
    # Differences 1, 2, 3: signed sums 6, 4, 2, 0, 0, -2, -4, -6; |sum| >= 6 in 2 of 8 -> p = 0.25.
    assert paired_permutation_test([1.0, 2.0, 3.0], [0.0, 0.0, 0.0]) == pytest.approx(0.25)


def test_paired_permutation_no_difference_and_random_large_case() -> None:
    assert paired_permutation_test([0.3, 0.1], [0.3, 0.1]) == 1.0
    assert paired_permutation_test([1.0, 0.0], [0.0, 1.0]) == 1.0
    # 40 positive differences out of 40: every random sign pattern is less extreme -> p = 1 / (resamples + 1).
    assert paired_permutation_test([1.0] * 40, [0.0] * 40, n_resamples=999) == pytest.approx(1 / 1000)
    with pytest.raises(ValueError):
        paired_permutation_test([1.0, 2.0], [1.0])
