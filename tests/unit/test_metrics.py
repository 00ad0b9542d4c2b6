"""Recall and NDCG against numbers worked out by hand."""

import math

import pytest

from bench.evaluation.metrics import cutoff_metrics, dcg_at_k, ideal_dcg, ndcg_at_k, recall_at_k


def test_recall_counts_hits_in_top_k_over_ground_truth() -> None:
    hits = [False, True, False, False, False, True]
    assert recall_at_k(hits, 3, 5) == pytest.approx(1 / 3)
    assert recall_at_k(hits, 3, 10) == pytest.approx(2 / 3)
    assert recall_at_k([], 3, 5) == 0.0
    assert recall_at_k([True], 0, 5) == 0.0


def test_dcg_uses_log2_rank_plus_one() -> None:
    # hits at ranks 1 and 3: 1/log2(2) + 1/log2(4) = 1 + 0.5
    assert dcg_at_k([True, False, True], 5) == pytest.approx(1.5)
    assert dcg_at_k([True, False, True], 2) == pytest.approx(1.0)


def test_ndcg_against_hand_computed_value() -> None:
    # one hit at rank 2, two ground truths: (1/log2 3) / (1 + 1/log2 3) = 0.63093 / 1.63093
    assert ndcg_at_k([False, True], 5, 2) == pytest.approx(0.386853, abs=1e-6)
    assert ideal_dcg(2) == pytest.approx(1 + 1 / math.log2(3))
    assert ndcg_at_k([True], 5, 0) == 0.0


def test_cutoff_metrics_matches_the_single_k_functions() -> None:
    hits = [False, True, False, False, False, False, True]
    recall, ndcg = cutoff_metrics(hits, 2, {5: 2, 10: 2, 15: 2, 20: 2})
    assert recall == {5: 0.5, 10: 1.0, 15: 1.0, 20: 1.0}
    # k=10: (1/log2 3 + 1/log2 8) / (1 + 1/log2 3) = (0.630930 + 0.333333) / 1.630930
    assert ndcg[10] == pytest.approx(0.591235, abs=1e-6)
    assert ndcg[5] == pytest.approx(ndcg_at_k(hits, 5, 2))
