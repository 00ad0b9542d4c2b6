"""The `random` baseline (the report's chance floor): 20 distinct unseen catalog items, uniform and seeded."""

from collections import Counter

from baselines.random_items import random_items
from bench.data.catalog import normalize_title
from bench.data.records import Example
from bench.runs.specs import ALGORITHMS, make_spec

ITEMS = tuple((f"Film {i}", 1990 + i % 30) for i in range(60))
KEYS = tuple(normalize_title(title) for title, _ in ITEMS)


def _example(example_id: str, seen: tuple[str, ...] = ()) -> Example:
    return Example(id=example_id, prompt=({"role": "user", "content": "hi"},), groundtruth=(), seen_titles=seen)


def test_twenty_distinct_unseen_items_reproducible_per_seed() -> None:
    example = _example("e1", seen=("film 3", "FILM 7"))
    drawn = random_items(ITEMS, KEYS, example, seed=0)
    assert len(drawn) == 20 and len(set(drawn)) == 20
    assert ("Film 3", 1993) not in drawn and ("Film 7", 1997) not in drawn
    assert drawn == random_items(ITEMS, KEYS, example, seed=0)
    assert drawn != random_items(ITEMS, KEYS, example, seed=1)
    assert len(random_items(ITEMS[:5], KEYS[:5], _example("e2"), seed=0)) == 5


def test_draws_are_roughly_uniform_and_the_method_is_registered() -> None:
    # 300 examples x 20 of 60 items: each item expected 100 times; a fixed order would give 300 or 0.
    counts = Counter(item for i in range(300) for item in random_items(ITEMS, KEYS, _example(f"e{i}"), seed=0))
    assert len(counts) == 60 and 60 <= min(counts.values()) and max(counts.values()) <= 140
    assert not ALGORITHMS["random"].needs_model and not ALGORITHMS["random"].trained
    assert make_spec("random", "tiny", "smoke", seed=2).model == "none"
