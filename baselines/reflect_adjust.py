"""Reflect and Adjust: rate candidates' relevance to a conversation, then fix the list's biases (Stage 1 of
Rank-GRPO, arXiv 2510.20150, section 3.1; the rating prompt is also CRAG's second reflection, Zhu et al., WWW 2025).

Reflect: a judge gives each candidate a relevance score in [0, 10]. An LLM judge answers `rating_prompt`, one
`Title (Year): score` line per candidate, read back by `parse_ratings`; a candidate the answer does not rate gets
`NEUTRAL_RATING` (the middle of the scale: no evidence either way), so an unusable answer leaves the order alone.

Adjust (`adjust`): drop seen and duplicate candidates, reorder the rest by relevance corrected for popularity
bias, keep the top N, and fill to N from collaborative retrieval. Popularity bias (`PopularityBias`) compares how
often the teacher recommends an item with how often the training ground truth contains it, Laplace-smoothed over
the catalog C:

    ratio(i)  = [(rec(i) + 1) / (R + |C|)] / [(gt(i) + 1) / (G + |C|)]
    weight(i) = min(1, 1 / ratio(i)) ** strength
    score(i)  = relevance(i) * weight(i)

where rec(i) counts the teacher lists containing i (R = all of the teacher's list entries), gt(i) the training
samples whose ground truth contains i (G = all ground-truth entries). Only over-recommended items (ratio > 1) are
down-weighted; `strength` 0 turns the correction off, 1 divides by the full ratio.
"""

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain

from baselines.collaborative import top_unseen
from baselines.remap import DEFAULT_FUZZY_THRESHOLD, Remapper
from bench.data.catalog import Catalog, normalize_title
from bench.data.prompts import N_RECOMMENDATIONS
from bench.data.records import Item
from bench.evaluation.parsing import format_item, parse_line, split_lines

MAX_RATING = 10.0
NEUTRAL_RATING = 5.0
DEFAULT_POPULARITY_STRENGTH = 0.5

RATING_INSTRUCTION = (
    "You judge movie recommendations. Rate how well each candidate movie listed after the conversation below fits "
    "what the user is asking for, from 0 (not at all) to 10 (perfectly). Reply with one line per candidate, "
    "written as Title (Year): rating, and nothing else."
)

_RATED_LINE = re.compile(
    r"(?P<item>.*\(\s*\d{4}\s*\))[\s*_:=|,–—-]*(?:rating|score)?[\s:=]*"
    r"(?P<rating>\d{1,2}(?:\.\d+)?)\s*(?:/\s*10|out of 10)?[\s*_.,;!)]*",
    re.IGNORECASE,
)


def conversation_text(prompt: Sequence[Mapping[str, str]]) -> str:
    """The dialogue of a recommendation prompt: the last message after its instruction paragraph (our prompts and
    the processed Reddit-v2 ones put the instruction first, then a blank line); the whole message otherwise."""
    content = prompt[-1].get("content", "") if prompt else ""
    head, separator, dialogue = content.partition("\n\n")
    return dialogue if separator else head


def listing_prompt(instruction: str, conversation: str, heading: str, items: Sequence[Item]) -> list[dict[str, str]]:
    """One user message: the instruction paragraph, a blank line, the conversation, then `heading` and the items,
    one `Title (Year)` per line. Prompt trimming drops the oldest lines after the instruction first, so the
    instruction survives a tight budget."""
    listing = "\n".join(format_item(item) for item in items)
    return [{"role": "user", "content": f"{instruction}\n\n{conversation}\n{heading}\n{listing}"}]


def rating_prompt(conversation: str, items: Sequence[Item]) -> list[dict[str, str]]:
    """The Reflect question: rate each of `items` 0-10 for the conversation."""
    return listing_prompt(RATING_INSTRUCTION, conversation, "Candidates:", items)


def match_items(answer: Iterable[Item], candidates: Sequence[Item],
                fuzzy_threshold: float = DEFAULT_FUZZY_THRESHOLD) -> list[Item | None]:
    """For each item of an answer, the candidate it names (Remap against the candidates as a catalog: exact,
    normalised title with year within 2, or fuzzy), or None."""
    remapper = Remapper(Catalog(tuple(dict.fromkeys(candidates))), fuzzy_threshold)
    return [remapper.remap(title, year).item for title, year in answer]


def parse_ratings(text: str, candidates: Sequence[Item]) -> dict[Item, float]:
    """Ratings in [0, 10] per candidate from `Title (Year): rating` lines (also `- 7/10`, `score 7`, numbering and
    markdown around the title); lines naming no candidate, ratings above 10 and repeated candidates (the first
    counts) are ignored. Untrusted text: never raises."""
    parsed: list[tuple[Item, float]] = []
    for line in split_lines(text):
        match = _RATED_LINE.fullmatch(line.strip())
        item = parse_line(match.group("item")) if match else None
        if match is None or item is None:
            continue
        rating = float(match.group("rating"))
        if rating <= MAX_RATING:
            parsed.append((item, rating))
    ratings: dict[Item, float] = {}
    for candidate, (_, rating) in zip(match_items([item for item, _ in parsed], candidates), parsed, strict=True):
        if candidate is not None and candidate not in ratings:
            ratings[candidate] = rating
    return ratings


def ordered_by_rating(items: Sequence[Item], ratings: Mapping[Item, float]) -> list[Item]:
    """`items` by rating, best first; unrated items count as NEUTRAL_RATING; ties keep the given order."""
    return sorted(items, key=lambda item: -ratings.get(item, NEUTRAL_RATING))


@dataclass(frozen=True)
class PopularityBias:
    """The teacher's over-recommendation ratio per item against the training ground truth (module docstring)."""

    recommended: Counter[Item]
    groundtruth: Counter[Item]
    n_catalog: int
    strength: float = DEFAULT_POPULARITY_STRENGTH

    @classmethod
    def estimate(cls, teacher_lists: Iterable[Iterable[Item]], groundtruths: Iterable[Iterable[Item]],
                 n_catalog: int, strength: float = DEFAULT_POPULARITY_STRENGTH) -> "PopularityBias":
        """Count each item once per teacher list and once per ground truth."""
        recommended: Counter[Item] = Counter()
        for items in teacher_lists:
            recommended.update(set(items))
        groundtruth: Counter[Item] = Counter()
        for items in groundtruths:
            groundtruth.update(set(items))
        return cls(recommended, groundtruth, n_catalog, strength)

    def ratio(self, item: Item) -> float:
        """Smoothed share among the teacher's recommendations over smoothed share among ground truths."""
        recommended_share = (self.recommended[item] + 1) / (self.recommended.total() + self.n_catalog)
        groundtruth_share = (self.groundtruth[item] + 1) / (self.groundtruth.total() + self.n_catalog)
        return recommended_share / groundtruth_share

    def weight(self, item: Item) -> float:
        """min(1, 1 / ratio) ** strength: 1 for items the teacher does not over-recommend."""
        return min(1.0, 1.0 / self.ratio(item)) ** self.strength

    def most_over_recommended(self, n: int = 10) -> list[tuple[Item, float]]:
        """The `n` recommended items with the highest ratio, for the report."""
        ranked = sorted(self.recommended, key=lambda item: (-self.ratio(item), item))
        return [(item, self.ratio(item)) for item in ranked[:n]]


@dataclass(frozen=True)
class Adjusted:
    """Adjust's list for one example and what it dropped: seen titles, repeated items, candidates past N, and how
    many items came from the fill."""

    items: tuple[Item, ...]
    dropped_seen: int
    dropped_duplicate: int
    dropped_overflow: int
    filled: int


def adjust(candidates: Sequence[Item], relevance: Mapping[Item, float], bias: PopularityBias,
           seen_titles: Sequence[str], fill: Iterable[Item], n: int = N_RECOMMENDATIONS) -> Adjusted:
    """Drop seen and duplicate candidates, order the rest by relevance * popularity weight (unrated: neutral;
    ties keep the teacher's order), keep `n`, then fill to `n` with unseen items of `fill` not already listed."""
    seen = {normalize_title(title) for title in seen_titles}
    kept: dict[Item, None] = {}
    dropped_seen = dropped_duplicate = 0
    for item in candidates:
        if normalize_title(item[0]) in seen:
            dropped_seen += 1
        elif item in kept:
            dropped_duplicate += 1
        else:
            kept[item] = None
    order = sorted(kept, key=lambda item: -relevance.get(item, NEUTRAL_RATING) * bias.weight(item))
    top = order[:n]
    items = top_unseen(chain(top, fill), seen_titles, n)
    return Adjusted(tuple(items), dropped_seen, dropped_duplicate, len(order) - len(top), len(items) - len(top))
