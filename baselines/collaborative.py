"""Shared plumbing of the non-LLM baselines: titles -> catalog items, dialogues -> item sets, ranked lists.

The popularity and EASE baselines both see a dialogue as the set of catalog items mentioned in it and both end by
walking a ranking until `n` unseen items are listed; this module holds that code once.
"""

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

from bench.data.catalog import Catalog, normalize_title
from bench.data.dataset import Dataset
from bench.data.prompts import N_RECOMMENDATIONS
from bench.data.records import ContextItem, Example, Item
from bench.evaluation.evaluator import YEAR_TOLERANCE
from bench.evaluation.parsing import format_item


@dataclass(frozen=True)
class ItemResolver:
    """Maps dialogue mentions onto catalog items (standard-protocol keys: normalised title and year).

    A mention with a year resolves to the catalog item with the same normalised title and year, else to the same
    title within the matcher's 2-year tolerance (nearest year first); a bare title (a `seen_titles` entry) resolves to
    the most-mentioned catalog item with that title (earliest in the catalog on ties).
    """

    catalog: Catalog

    @cached_property
    def _by_title(self) -> dict[str, list[Item]]:
        by_title: dict[str, list[Item]] = {}
        for item in self.catalog.items:
            by_title.setdefault(normalize_title(item[0]), []).append(item)
        return by_title

    def resolve(self, title: str, year: int | None = None) -> Item | None:
        candidates = self._by_title.get(normalize_title(title), [])
        if year is None:
            return max(candidates, key=self.catalog.popularity, default=None)
        close = [item for item in candidates if abs(item[1] - year) <= YEAR_TOLERANCE]
        return min(close, key=lambda item: abs(item[1] - year), default=None)

    def resolve_all(self, mentions: Iterable[tuple[str, int | None]]) -> list[Item]:
        """Resolved items in mention order, unresolvable mentions dropped, duplicates kept once."""
        items: dict[Item, None] = {}
        for title, year in mentions:
            item = self.resolve(title, year)
            if item is not None:
                items[item] = None
        return list(items)


def _mentions(context: Sequence[ContextItem]) -> list[tuple[str, int | None]]:
    return [(entry.title, entry.year) for entry in context]


def query_items(example: Example, resolver: ItemResolver) -> list[Item]:
    """Items the user signals interest in: context items not marked disliked, or seen titles when there is no
    context (datasets such as Reddit-v2 carry only titles)."""
    if example.context_items:
        return context_query(example.context_items, resolver)
    return resolver.resolve_all((title, None) for title in example.seen_titles)


def context_query(context: Sequence[ContextItem], resolver: ItemResolver) -> list[Item]:
    """Context items not marked disliked, resolved (also CRAG's extracted mentions)."""
    return resolver.resolve_all(_mentions([c for c in context if c.liked is not False]))


def dialogue_rows(examples: Sequence[Example], resolver: ItemResolver) -> list[list[Item]]:
    """One item set per dialogue, in order of first appearance: everything mentioned in any of its samples
    (context items, or seen titles without context, plus ground truth). Samples without a dialog_id are their own
    dialogue."""
    rows: dict[str, dict[Item, None]] = {}
    for example in examples:
        row = rows.setdefault(example.dialog_id or f"\x00{example.id}", {})
        if example.context_items:
            mentions = _mentions(example.context_items)
        else:
            mentions = [(title, None) for title in example.seen_titles]
        mentions.extend(example.groundtruth)
        row.update(dict.fromkeys(resolver.resolve_all(mentions)))
    return [list(row) for row in rows.values()]


def popularity_ranking(dataset: Dataset, resolver: ItemResolver) -> tuple[tuple[Item, ...], Counter[Item]]:
    """Every catalog item, most popular first, and the counts behind it.

    Popularity = the number of training dialogues mentioning the item (a dialogue with many samples counts once);
    ties, and datasets without a train split, fall back to the catalog's mention counts, then catalog order.
    """
    counts: Counter[Item] = Counter()
    for row in dialogue_rows(dataset.splits.get("train", ()), resolver):
        counts.update(row)
    items = dataset.catalog.items
    order = sorted(range(len(items)),
                   key=lambda i: (-counts[items[i]], -dataset.catalog.popularity(items[i]), i))
    return tuple(items[i] for i in order), counts


def top_unseen(ranked: Iterable[Item], seen_titles: Sequence[str], n: int = N_RECOMMENDATIONS) -> list[Item]:
    """The first `n` distinct items of `ranked` whose normalised title is not a seen title."""
    excluded = {normalize_title(title) for title in seen_titles}
    chosen: dict[Item, None] = {}
    for item in ranked:
        if len(chosen) == n:
            break
        if item not in chosen and normalize_title(item[0]) not in excluded:
            chosen[item] = None
    return list(chosen)


def as_predictions(recommend: Callable[[Example], list[Item]], examples: Sequence[Example]) -> dict[str, str]:
    """Prediction texts for the shared evaluator: one `Title (Year)` line per recommended item."""
    return {example.id: "\n".join(format_item(item) for item in recommend(example)) for example in examples}
