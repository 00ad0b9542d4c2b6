"""Remap: project a title an LLM wrote onto the item catalog (Stage 1 of Rank-GRPO, arXiv 2510.20150, section 3.1).

Why: LLM answers name movies loosely ("the matrix (1998)", "Se7en (1995)", "Terminator 2 (1991)"), while evaluation
and training only count catalog items. Remap keeps a loosely written but recognisable title and drops the rest, so
SFT demonstrations (and CRAG's parsed answers) contain catalog items only. Stages, first hit wins:

1. `exact`: the (title, year) pair is in the catalog as written;
2. `normalised`: the same `normalize_title` key (case, Unicode and whitespace folded, as the standard protocol
   compares) with the nearest year within the matcher's tolerance of 2 (no year given: the most-mentioned item);
3. `fuzzy`: rapidfuzz `process.extractOne` with `fuzz.ratio` (normalised Indel similarity, 0-100) of the normalised
   title against the normalised titles of catalog items within the year tolerance (all items when no year is
   given), accepted at or above `fuzzy_threshold`; `fuzz.ratio` rather than `WRatio`, which scores a title found
   inside a longer one ("Up" in "Up in the Air") as a near match;
4. `miss`: nothing close enough.
"""

from collections import defaultdict
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from rapidfuzz import fuzz, process

from bench.data.catalog import Catalog, normalize_title
from bench.data.records import Item
from bench.evaluation.evaluator import YEAR_TOLERANCE

Stage = Literal["exact", "normalised", "fuzzy", "miss"]
STAGES: tuple[Stage, ...] = ("exact", "normalised", "fuzzy", "miss")
DEFAULT_FUZZY_THRESHOLD = 90.0


@dataclass(frozen=True)
class RemapResult:
    """The catalog item a title was mapped to (None on a miss), the stage that found it, and the fuzzy score (100
    for exact and normalised hits, the best score seen for fuzzy hits and misses)."""

    item: Item | None
    stage: Stage
    score: float


@dataclass(frozen=True, eq=False)
class Remapper:
    """Maps (title, year) onto `catalog` items; indexes are built on first use and reused."""

    catalog: Catalog
    fuzzy_threshold: float = DEFAULT_FUZZY_THRESHOLD

    @cached_property
    def _by_title(self) -> dict[str, list[Item]]:
        by_title: dict[str, list[Item]] = defaultdict(list)
        for item in self.catalog.items:
            by_title[normalize_title(item[0])].append(item)
        return dict(by_title)

    @cached_property
    def _by_year(self) -> dict[int, list[tuple[str, Item]]]:
        by_year: dict[int, list[tuple[str, Item]]] = defaultdict(list)
        for item in self.catalog.items:
            by_year[item[1]].append((normalize_title(item[0]), item))
        return dict(by_year)

    def _nearest(self, items: list[Item], year: int | None) -> Item | None:
        """The item of `items` with the year nearest to `year` within the tolerance (first on ties); the
        most-mentioned one when no year is given."""
        if year is None:
            return max(items, key=self.catalog.popularity, default=None)
        close = [item for item in items if abs(item[1] - year) <= YEAR_TOLERANCE]
        return min(close, key=lambda item: abs(item[1] - year), default=None)

    def remap(self, title: str, year: int | None = None) -> RemapResult:
        """The catalog item for a title (and year, when known), through the stages of the module docstring."""
        if year is not None and (title, year) in self.catalog.exact_index:
            return RemapResult((title, year), "exact", 100.0)
        key = normalize_title(title)
        item = self._nearest(self._by_title.get(key, []), year)
        if item is not None:
            return RemapResult(item, "normalised", 100.0)
        if year is None:
            pool = [(normalize_title(item[0]), item) for item in self.catalog.items]
        else:
            pool = [entry for near in range(year - YEAR_TOLERANCE, year + YEAR_TOLERANCE + 1)
                    for entry in self._by_year.get(near, [])]
        if not key or not pool:
            return RemapResult(None, "miss", 0.0)
        best = process.extractOne(key, [name for name, _ in pool], scorer=fuzz.ratio)
        if best is None:
            return RemapResult(None, "miss", 0.0)
        _, score, index = best
        if score < self.fuzzy_threshold:
            return RemapResult(None, "miss", float(score))
        matched_title = pool[index][0]
        return RemapResult(self._nearest(self._by_title[matched_title], year), "fuzzy", float(score))
