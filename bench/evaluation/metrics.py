"""Ranking metrics over hit vectors (pure functions; hand-computed tests in tests/unit/test_metrics.py).

A hit vector lists, rank by rank, whether the recommendation at that rank matched a ground-truth item.
Recall@k = hits in the top k / |ground truth|; NDCG@k uses the log2(rank + 1) discount (DESIGN.md).
"""

import math
from collections.abc import Sequence

KS: tuple[int, ...] = (5, 10, 15, 20)
N_RANKS = 20

_DISCOUNTS = tuple(1.0 / math.log2(rank + 1) for rank in range(1, 10_001))
_IDEAL = tuple(sum(_DISCOUNTS[:n]) for n in range(0, 201))


def discount(rank: int) -> float:
    """1 / log2(rank + 1) for a 1-based rank."""
    return _DISCOUNTS[rank - 1] if rank <= len(_DISCOUNTS) else 1.0 / math.log2(rank + 1)


def dcg_at_k(hits: Sequence[bool | float], k: int) -> float:
    """Sum over the first k ranks of hit / log2(rank + 1)."""
    return sum(discount(rank) for rank, hit in enumerate(hits[:k], start=1) if hit)


def ideal_dcg(n_relevant: int) -> float:
    """DCG of a list whose first `n_relevant` ranks all hit."""
    return sum(discount(rank) for rank in range(1, n_relevant + 1))


def recall_at_k(hits: Sequence[bool | float], n_groundtruth: int, k: int) -> float:
    """Hits in the top k over the number of ground-truth items (0 when there are none)."""
    if n_groundtruth <= 0:
        return 0.0
    return sum(1 for hit in hits[:k] if hit) / n_groundtruth


def cutoff_metrics(hits: Sequence[bool], n_groundtruth: int, ideal_lengths: dict[int, int],
                   ks: Sequence[int] = KS) -> tuple[dict[int, float], dict[int, float]]:
    """Recall@k and NDCG@k for every k in one pass over the hits (the evaluator's hot path).

    `ideal_lengths[k]` is the number of ranks the ideal DCG at cutoff k sums over (see `ndcg_at_k`).
    """
    recall: dict[int, float] = {}
    ndcg: dict[int, float] = {}
    n_hits = 0
    dcg = 0.0
    rank = 0
    for k in sorted(ks):
        for hit in hits[rank:k]:
            rank += 1
            if hit:
                n_hits += 1
                dcg += _DISCOUNTS[rank - 1]
        rank = k
        recall[k] = n_hits / n_groundtruth if n_groundtruth > 0 else 0.0
        ideal = _IDEAL[min(ideal_lengths[k], len(_IDEAL) - 1)]
        ndcg[k] = dcg / ideal if ideal > 0 else 0.0
    return recall, ndcg


def ndcg_at_k(hits: Sequence[bool | float], k: int, ideal_length: int) -> float:
    """DCG@k divided by the ideal DCG of `ideal_length` hits (0 when that is 0).

    The `standard` protocol passes min(|ground truth|, k); the `reference` protocol reproduces the published code,
    which passes min(|ground truth|, length of the filtered list cut to k) (DESIGN.md, the NDCG quirk).
    """
    ideal = ideal_dcg(ideal_length)
    return dcg_at_k(hits, k) / ideal if ideal > 0 else 0.0
