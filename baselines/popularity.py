"""Popularity baseline: recommend the most-mentioned catalog items the user has not already named.

Why: it is the floor every personalised method must clear, and it shows how much of a dataset's score popularity
bias alone explains (a known failure mode of LLM recommenders, DESIGN.md, Remap-Reflect-Adjust).
"""

from collections import Counter
from dataclasses import dataclass

from baselines.collaborative import ItemResolver, as_predictions, popularity_ranking, top_unseen
from bench.data.dataset import Dataset
from bench.data.prompts import N_RECOMMENDATIONS
from bench.data.records import Example, Item
from bench.runs.context import MethodOutput, RunContext


@dataclass(frozen=True)
class PopularityRecommender:
    """Every catalog item ranked by training-dialogue mentions (see `popularity_ranking`); build with `fit`."""

    ranking: tuple[Item, ...]
    counts: Counter[Item]

    @classmethod
    def fit(cls, dataset: Dataset) -> "PopularityRecommender":
        """Count mentions (context and ground-truth items) per training dialogue; deterministic."""
        ranking, counts = popularity_ranking(dataset, ItemResolver(dataset.catalog))
        return cls(ranking, counts)

    def recommend(self, example: Example, n: int = N_RECOMMENDATIONS) -> list[Item]:
        """The `n` most popular catalog items whose titles are not among the example's seen titles."""
        return top_unseen(self.ranking, example.seen_titles, n)


def predict(ctx: RunContext) -> MethodOutput:
    """`bench run --algo popularity`: fit on the training split, recommend for every evaluation example."""
    model = PopularityRecommender.fit(ctx.dataset)
    return MethodOutput(as_predictions(model.recommend, ctx.eval_examples()), {"top_items": model.ranking[:20]})
