"""The RL list reward, its null control (hits permuted within each group) and what the rollout buffer logs."""

import math
from collections import Counter

import pytest

from algorithms.rl import ListRewards, shuffle_within_groups
from algorithms.training import standard_error
from bench.data.catalog import catalog_from_entries
from bench.data.records import Example
from bench.errors import BenchError
from bench.runs.matrix import parse_seeds
from bench.runs.training_logs import RolloutBuffer
from experiments.calibration import (
    DriftRow,
    GainRow,
    TemperatureRow,
    average_rows,
    choose_learning_rate,
    choose_learning_rate_by_gain,
    choose_temperature,
)

CATALOG = catalog_from_entries([("Alpha", 2001, 1), ("Beta", 2002, 1), ("Gamma", 2003, 1), ("Delta", 2004, 1)], "test")


def example(example_id: str, *titles: str) -> Example:
    items = tuple((title, 2000 + "ABGD".index(title[0]) + 1) for title in titles)
    return Example(id=example_id, prompt=({"role": "user", "content": example_id},), groundtruth=items,
                   seen_titles=(), dialog_id=example_id)


EXAMPLES = {"a": example("a", "Alpha", "Beta"), "b": example("b", "Gamma")}


def test_shuffle_permutes_whole_vectors_within_groups_only() -> None:
    hits = [[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [1.0, 1.0], [0.5, 0.5]]
    keys = ["a", "a", "a", "b", "b"]
    shuffled = shuffle_within_groups(hits, keys, "seed")
    assert sorted(map(tuple, shuffled[:3])) == sorted(map(tuple, hits[:3]))
    assert sorted(map(tuple, shuffled[3:])) == sorted(map(tuple, hits[3:]))
    assert shuffle_within_groups(hits, keys, "seed") == shuffled  # seeded: a resumed run shuffles alike


def test_shuffle_is_uniform_over_permutations() -> None:
    hits = [[1.0], [2.0], [3.0]]
    counts = Counter(tuple(row[0] for row in shuffle_within_groups(hits, ["g"] * 3, str(seed)))
                     for seed in range(6000))
    assert len(counts) == 6  # every permutation of three, the identity included
    assert all(abs(count - 1000) < 4 * math.sqrt(1000) for count in counts.values())


def test_real_reward_is_ndcg_and_the_null_control_keeps_each_groups_values() -> None:
    completions = ["Alpha (2001)\nBeta (2002)", "Delta (2004)\nAlpha (2001)", "Gamma (2003)", "Beta (2002)"]
    ids = ["a", "a", "b", "b"]
    real = ListRewards(EXAMPLES, CATALOG, RolloutBuffer())
    rewards = real([None] * 4, completions, ids)
    ideal_a = 1 + 1 / math.log2(3)
    assert rewards == pytest.approx([1.0, (1 / math.log2(3)) / ideal_a, 1.0, 0.0])
    buffer = RolloutBuffer()
    null = ListRewards(EXAMPLES, CATALOG, buffer, reward_signal="shuffled", seed=7)
    shuffled = [null([None] * 4, completions, ids) for _ in range(40)]
    for values in shuffled:
        assert sorted(values[:2]) == sorted(rewards[:2]) and sorted(values[2:]) == sorted(rewards[2:])
    assert any(values != rewards for values in shuffled)
    # the buffer keeps the real scores, so a null control's logs say how good its samples really were
    assert [rollout.ndcg for rollout in buffer.rollouts] == pytest.approx(rewards)


def test_batch_stats_give_sampled_and_best_of_g_ndcg() -> None:
    buffer = RolloutBuffer()
    rewards = ListRewards(EXAMPLES, CATALOG, buffer)
    values = rewards([None] * 4, ["Alpha (2001)", "Delta (2004)", "Gamma (2003)\nnot a title", "Beta (2002)"],
                     ["a", "a", "b", "b"])
    stats = buffer.batch_stats()
    assert stats["sampled_ndcg@20"] == pytest.approx(sum(values) / 4)
    assert stats["best_of_g_ndcg@20"] == pytest.approx((max(values[:2]) + max(values[2:])) / 2)
    assert stats["items_emitted"] == 5 / 4 and stats["format_rate"] == 4 / 5
    assert rewards.score_text("Gamma (2003)", "b") == 1.0


def test_standard_error() -> None:
    assert standard_error([1.0]) == 0.0
    assert standard_error([0.0, 1.0, 2.0, 3.0]) == pytest.approx(math.sqrt(5 / 3 / 4))


def test_seeds_take_lists_and_ranges() -> None:
    assert parse_seeds("0-3,7, 2") == [0, 1, 2, 3, 7]
    with pytest.raises(BenchError, match="'x' is neither a seed nor a range"):
        parse_seeds("0,x")


def test_temperature_rule_needs_signal_and_a_better_best_of_g() -> None:
    rows = [TemperatureRow(0.3, 0.40, 0.44, 0.42, 0.60, 0.60, 0.0, 32),   # too many ties
            TemperatureRow(0.7, 0.30, 0.55, 0.42, 0.10, 0.05, 0.0, 32),   # gain 0.13
            TemperatureRow(0.8, 0.27, 0.56, 0.42, 0.05, 0.02, 0.0, 32),   # gain 0.14: the rule's choice
            TemperatureRow(1.0, 0.20, 0.40, 0.42, 0.02, 0.00, 0.0, 32)]   # best of G below greedy
    assert choose_temperature(rows) == 0.8
    assert choose_temperature(rows[:1] + rows[3:]) is None


def test_tied_share_interval_is_wilsons_and_seeds_pool_their_groups() -> None:
    # 17 of 32 groups tied: Wilson's centre (p + z^2/2n) / (1 + z^2/n) = 0.52790 and half-width
    # z sqrt(p(1-p)/n + z^2/4n^2) / (1 + z^2/n) = 0.16341, z = 1.95996, by hand.
    row = TemperatureRow(1.0, 0.16, 0.29, 0.19, 17 / 32, 17 / 32, 16 / 32, 32)
    assert row.tied_interval == pytest.approx((0.36449, 0.69131), abs=1e-4)
    other = TemperatureRow(1.0, 0.20, 0.31, 0.21, 7 / 32, 7 / 32, 6 / 32, 32)
    pooled = average_rows([[row], [other]])[0]
    assert pooled.groups == 64 and pooled.tied_share == pytest.approx(24 / 64)
    assert pooled.no_hit_share == pytest.approx(22 / 64)
    assert pooled.tied_interval[1] - pooled.tied_interval[0] < row.tied_interval[1] - row.tied_interval[0]


def test_learning_rate_rule_is_an_equivalence_bound_over_every_method() -> None:
    flat = (0.004, -0.003, 0.001, 0.0)
    rows = [DriftRow("grpo", 1e-5, flat), DriftRow("rank_grpo", 1e-5, flat),
            DriftRow("grpo", 3e-5, flat), DriftRow("rank_grpo", 3e-5, (-0.03, -0.05, -0.04, -0.02)),
            DriftRow("grpo", 1e-4, (0.01,))]  # one seed: no bound, cannot pass
    assert rows[0].bound == pytest.approx(abs(0.0005) + 3.1824463 * math.sqrt(
        sum((d - 0.0005) ** 2 for d in flat) / 3) / 2, rel=1e-6)
    assert choose_learning_rate(rows) == 1e-5
    assert choose_learning_rate(rows[2:4]) is None


def test_learning_rate_by_gain_weighs_every_method_alike_and_needs_healthy_lists() -> None:
    # 3e-5: GRPO +0.01 and Rank-GRPO +0.03 on average -> 0.02. 1e-4: GRPO +0.08 (two seeds) and Rank-GRPO -0.02
    # (four seeds) -> 0.03; a seed-weighted mean would give (0.16 - 0.08) / 6 = 0.0133 and pick 3e-5 instead.
    slow = GainRow(3e-5, {"grpo": (0.0, 0.02), "rank_grpo": (0.03, 0.03)}, 1.0, 0.05)
    fast = GainRow(1e-4, {"grpo": (0.08, 0.08), "rank_grpo": (-0.02,) * 4}, 0.97, 0.15)
    assert slow.mean_gain == pytest.approx(0.02) and fast.mean_gain == pytest.approx(0.03)
    assert choose_learning_rate_by_gain([slow, fast]) == 1e-4
    repeating = GainRow(1e-4, fast.gains, 0.97, 0.35)  # gains bought by repeating titles do not count
    assert choose_learning_rate_by_gain([slow, repeating]) == 3e-5
    assert choose_learning_rate_by_gain([repeating]) is None
