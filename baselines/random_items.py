"""Random baseline: 20 catalog items drawn uniformly without replacement, none of them already seen.

Why: the chance floor of the report. A method that does not clear it has learned nothing about the user; the gap
between it and popularity shows how much of a score popularity alone explains. Seeded by the run's seed and the
example id (so a run's draws do not depend on which other examples are scored); different seeds give different
runs, so the report counts its seeds as replications, like a trained method's.
"""

import random

from baselines.collaborative import as_predictions
from bench.data.catalog import normalize_title
from bench.data.prompts import N_RECOMMENDATIONS
from bench.data.records import Example, Item
from bench.runs.context import MethodOutput, RunContext


def random_items(items: tuple[Item, ...], keys: tuple[str, ...], example: Example, seed: int,
                 n: int = N_RECOMMENDATIONS) -> list[Item]:
    """`n` distinct items drawn uniformly from those whose normalised title (`keys`, aligned with `items`) is not
    among the example's seen titles."""
    excluded = {normalize_title(title) for title in example.seen_titles}
    candidates = [item for item, key in zip(items, keys, strict=True) if key not in excluded]
    return random.Random(f"{seed}:{example.id}").sample(candidates, min(n, len(candidates)))


def predict(ctx: RunContext) -> MethodOutput:
    """`bench run --algo random`: for every evaluation example, 20 uniformly drawn unseen catalog items."""
    items = ctx.dataset.catalog.items
    keys = tuple(normalize_title(item[0]) for item in items)
    return MethodOutput(as_predictions(lambda example: random_items(items, keys, example, ctx.spec.seed),
                                       ctx.eval_examples()))
