"""Evaluator speed benchmark: the hash-based evaluator against a straightforward pairwise loop.

The loop mirrors how the published evaluation is written: the catalog is a list searched with `in`, seen titles a
list, and every (recommendation x ground truth) pair compared. Both must give identical numbers; the benchmark
checks that before printing the timings and their ratio.
"""

import json
import math
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.data.catalog import Catalog, normalize_title
from bench.data.dataset import Dataset
from bench.data.records import Example
from bench.evaluation.evaluator import evaluate, resolve_predictions
from bench.evaluation.metrics import KS
from bench.evaluation.parsing import parse_recommendations


def _fold(protocol: str) -> Callable[[str], str]:
    return normalize_title if protocol == "standard" else (lambda title: title)


def pairwise_scores(example: Example, text: str, catalog_keys: Sequence[tuple[str, int]],
                    protocol: str) -> dict[str, float]:
    """Recall@k / NDCG@k for one example by plain nested loops (an independent implementation of both protocols).

    `catalog_keys` is the catalog as a list of (folded title, year), searched linearly as the published code does.
    """
    fold = _fold(protocol)
    seen = [fold(title) for title in example.seen_titles]
    kept = []
    for title, year in parse_recommendations(text):
        if (fold(title), year) in catalog_keys and fold(title) not in seen:
            kept.append((title, year))
    gt = list(example.groundtruth)
    used = [False] * len(gt)
    hits = []
    for title, year in kept[:20]:
        hit = 0
        for index, (gt_title, gt_year) in enumerate(gt):
            if not used[index] and fold(gt_title) == fold(title) and abs(gt_year - year) <= 2:
                used[index] = True
                hit = 1
                break
        hits.append(hit)
    scores: dict[str, float] = {}
    for k in KS:
        top = hits[:k]
        scores[f"recall@{k}"] = sum(top) / len(gt) if gt else 0.0
        dcg = sum(hit / math.log2(rank + 2) for rank, hit in enumerate(top))
        n_ideal = min(len(gt), len(top)) if protocol == "reference" else min(len(gt), k)
        idcg = sum(1 / math.log2(rank + 2) for rank in range(n_ideal))
        scores[f"ndcg@{k}"] = dcg / idcg if idcg else 0.0
    return scores


def pairwise_evaluate(examples: Sequence[Example], predictions: dict[str, str], catalog: Catalog,
                      protocol: str) -> dict[str, float]:
    """Mean Recall/NDCG over examples with the pairwise loop."""
    texts = resolve_predictions(examples, predictions)
    fold = _fold(protocol)
    catalog_keys = [(fold(title), year) for title, year in catalog.items]
    per_example = [pairwise_scores(example, texts[example.id] or "", catalog_keys, protocol)
                   for example in examples]
    return {key: sum(s[key] for s in per_example) / len(per_example) for key in per_example[0]}


def synthetic_predictions(dataset: Dataset, split: str, n: int, seed: int) -> tuple[list[Example], dict[str, str]]:
    """`n` examples (the split cycled, ids suffixed) with 20-line outputs mixing hits, seen, catalog and junk lines."""
    rng = random.Random(seed)
    base = dataset.split(split)
    catalog_items = list(dataset.catalog.items)
    examples: list[Example] = []
    predictions: dict[str, str] = {}
    for index in range(n):
        source = base[index % len(base)]
        example = Example(f"{source.id}#{index}", source.prompt, source.groundtruth, source.seen_titles,
                          source.dialog_id)
        lines = []
        for _ in range(20):
            roll = rng.random()
            if roll < 0.1 and example.groundtruth:
                title, year = rng.choice(example.groundtruth)
                lines.append(f"{title.lower() if rng.random() < 0.3 else title} ({year + rng.choice([0, 0, 1, 3])})")
            elif roll < 0.15 and example.seen_titles:
                lines.append(f"{rng.choice(example.seen_titles)} (2000)")
            elif roll < 0.9:
                title, year = rng.choice(catalog_items)
                lines.append(f"{rng.randint(1, 20)}. {title} ({year})")
            else:
                lines.append("Some chatter without a year")
        examples.append(example)
        predictions[example.id] = "\n".join(lines)
    return examples, predictions


def run_eval_benchmark(dataset: Dataset, split: str, n_examples: int, n_pairwise: int, seed: int,
                       out: Path | None = None) -> dict[str, float]:
    """Time both evaluators (the pairwise loop on a subset, extrapolated per example) and check equal results."""
    examples, predictions = synthetic_predictions(dataset, split, n_examples, seed)
    if out is not None:
        with out.open("w", encoding="utf-8") as handle:
            for pid, text in predictions.items():
                handle.write(json.dumps({"id": pid, "text": text}) + "\n")
    start = time.perf_counter()
    fast = evaluate(examples, predictions, dataset.catalog, "reference")
    fast_seconds = time.perf_counter() - start
    subset = examples[:n_pairwise]
    subset_predictions = {example.id: predictions[example.id] for example in subset}
    start = time.perf_counter()
    slow = pairwise_evaluate(subset, subset_predictions, dataset.catalog, "reference")
    slow_seconds = time.perf_counter() - start
    fast_subset = evaluate(subset, subset_predictions, dataset.catalog, "reference").metrics
    max_difference = max(abs(float(fast_subset[key]) - value) for key, value in slow.items())
    fast_per_example = fast_seconds / len(examples)
    slow_per_example = slow_seconds / len(subset)
    return {"examples": len(examples), "fast_seconds": fast_seconds, "fast_per_example_ms": fast_per_example * 1e3,
            "pairwise_examples": len(subset), "pairwise_seconds": slow_seconds,
            "pairwise_per_example_ms": slow_per_example * 1e3, "speedup": slow_per_example / fast_per_example,
            "max_metric_difference": max_difference, "ndcg@20": float(fast.metrics["ndcg@20"])}
