"""The one evaluator and the one matcher (DESIGN.md, evaluation protocol).

Every method's raw text goes through `bench.evaluation.parsing`, then here. Two protocols:

- `standard` (default): titles compared case-folded and whitespace-normalised, years within 2; each ground truth
  matched at most once and each recommendation matching at most one; seen and out-of-catalog items removed before
  cutting to k (membership: normalised title and exact year); ideal DCG over min(|ground truth|, k).
- `reference`: the paper's published evaluation, quirks included: its line parser (`parsing.parse_line_reference`:
  text after the year ignored, `*_-#` and parenthesised groups stripped from titles), exact titles, seen and
  out-of-catalog items removed first, ideal DCG over min(|ground truth|, length of the filtered list cut to k).

Matching is hash-based: ground truth is indexed by title key once per example, so scoring a list costs one dict
lookup per recommendation instead of a (ground truth x recommendation) string comparison loop.
`rank_hits` gives RL rewards from the same matcher with positions kept (a seen, out-of-catalog or unparsable line
scores 0 at its rank), as the published training reward does.
"""

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from bench.data.catalog import Catalog, normalize_title
from bench.data.records import Example, Item
from bench.errors import DataError, UnknownNameError
from bench.evaluation.metrics import KS, N_RANKS, cutoff_metrics
from bench.evaluation.parsing import parse_lines

PROTOCOLS = ("standard", "reference")
YEAR_TOLERANCE = 2


def _identity(title: str) -> str:
    return title


@dataclass(frozen=True)
class _Rules:
    title_key: Callable[[str], str]
    ideal_over_filtered: bool


def _rules(protocol: str) -> _Rules:
    if protocol == "standard":
        return _Rules(normalize_title, ideal_over_filtered=False)
    if protocol == "reference":
        return _Rules(_identity, ideal_over_filtered=True)
    raise UnknownNameError("protocol", protocol, list(PROTOCOLS))


def match_hits(recommendations: Sequence[Item | None], groundtruth: Sequence[Item],
               title_key: Callable[[str], str] = normalize_title) -> list[bool]:
    """Hit flag per recommendation, in order: same title key and |year difference| <= 2.

    Each ground truth is matched at most once (by the first recommendation that reaches it) and each recommendation
    matches at most one ground truth. None entries (unparsable lines) never hit.
    """
    open_by_title: dict[str, list[int]] = defaultdict(list)
    for title, year in groundtruth:
        open_by_title[title_key(title)].append(year)
    hits: list[bool] = []
    for item in recommendations:
        hit = False
        if item is not None:
            years = open_by_title.get(title_key(item[0]))
            if years:
                for index, year in enumerate(years):
                    if abs(year - item[1]) <= YEAR_TOLERANCE:
                        del years[index]
                        hit = True
                        break
        hits.append(hit)
    return hits


@dataclass(slots=True)
class ExampleScores:
    """Scores of one example; `hits` are per rank of the filtered list (seen/out-of-catalog removed), up to 20."""

    id: str
    recall: dict[int, float]
    ndcg: dict[int, float]
    n_lines: int
    n_parsed: int
    n_in_catalog: int
    n_duplicates: int
    n_seen: int
    hits: tuple[bool, ...]
    missing: bool = False

    def to_json(self) -> dict[str, object]:
        record: dict[str, object] = {f"recall@{k}": v for k, v in self.recall.items()}
        record.update({f"ndcg@{k}": v for k, v in self.ndcg.items()})
        record.update(n_lines=self.n_lines, n_parsed=self.n_parsed, n_in_catalog=self.n_in_catalog,
                      n_duplicates=self.n_duplicates, n_seen=self.n_seen, hits=[int(h) for h in self.hits],
                      missing=self.missing)
        return record


def score_text(text: str, example: Example, catalog: Catalog, protocol: str = "standard",
               missing: bool = False) -> ExampleScores:
    """Score one raw model output against one example under `protocol`."""
    rules = _rules(protocol)
    lines = parse_lines(text, protocol)
    parsed = [item for item in lines if item is not None]
    seen_keys = {rules.title_key(title) for title in example.seen_titles}
    reference = protocol == "reference"
    index = catalog.exact_index if reference else catalog.normalized_index
    kept: list[Item] = []
    n_in_catalog = n_seen = 0
    distinct: set[tuple[str, int]] = set()
    for item in parsed:
        key = (normalize_title(item[0]), item[1])
        distinct.add(key)
        in_catalog = (item if reference else key) in index
        is_seen = (item[0] if reference else key[0]) in seen_keys
        n_in_catalog += in_catalog
        n_seen += is_seen
        if in_catalog and not is_seen:
            kept.append(item)
    n_duplicates = len(parsed) - len(distinct)
    top = kept[:N_RANKS]
    hits = match_hits(top, example.groundtruth, rules.title_key)
    n_gt = len(example.groundtruth)
    if rules.ideal_over_filtered:
        ideal_lengths = {k: min(n_gt, k, len(top)) for k in KS}
    else:
        ideal_lengths = {k: min(n_gt, k) for k in KS}
    recall, ndcg = cutoff_metrics(hits, n_gt, ideal_lengths)
    return ExampleScores(example.id, recall, ndcg, len(lines), len(parsed), n_in_catalog, n_duplicates, n_seen,
                         tuple(hits[:N_RANKS]), missing)


def rank_hits(text: str, example: Example, catalog: Catalog, n_items: int = N_RANKS) -> list[float]:
    """Per-rank hits for RL rewards, positions kept: rank k is the k-th non-blank line of `text`.

    A line scores 1.0 when it parses, is in the catalog (standard membership), is not a seen title, and matches an
    open ground truth (standard matcher); otherwise 0.0. Always returns `n_items` values (missing ranks are 0).
    """
    seen_keys = {normalize_title(title) for title in example.seen_titles}
    candidates: list[Item | None] = []
    for item in parse_lines(text)[:n_items]:
        key = (normalize_title(item[0]), item[1]) if item is not None else None
        usable = key is not None and key in catalog.normalized_index and key[0] not in seen_keys
        candidates.append(item if usable else None)
    hits = [float(hit) for hit in match_hits(candidates, example.groundtruth)]
    return hits + [0.0] * (n_items - len(hits))


@dataclass(frozen=True)
class EvalResult:
    """Aggregated metrics (the `bench eval --json` keys) plus per-example scores and per-rank hit rates."""

    metrics: dict[str, float | int | str]
    examples: list[ExampleScores] = field(default_factory=list)
    hit_rate_at_rank: list[float] = field(default_factory=list)
    mean_list_length: float = 0.0


def resolve_predictions(examples: Sequence[Example], predictions: Mapping[str, str]) -> dict[str, str | None]:
    """Text per example id; samples sharing a prompt share one generation; None where no prediction exists.

    Raises DataError naming prediction ids that are not in the split.
    """
    known = {example.id for example in examples}
    unknown = [pid for pid in predictions if pid not in known]
    if unknown:
        shown = ", ".join(repr(pid) for pid in unknown[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise DataError(f"predictions name ids not in the split: {shown}{more}")
    by_prompt: dict[str, str] = {}
    for example in examples:
        if example.id in predictions and example.prompt_key not in by_prompt:
            by_prompt[example.prompt_key] = predictions[example.id]
    return {example.id: predictions.get(example.id, by_prompt.get(example.prompt_key)) for example in examples}


def evaluate(examples: Sequence[Example], predictions: Mapping[str, str], catalog: Catalog,
             protocol: str = "standard") -> EvalResult:
    """Score every example of a split; ids without a prediction count as empty lists (`n_missing`)."""
    _rules(protocol)
    texts = resolve_predictions(examples, predictions)
    scores = [score_text(texts[example.id] or "", example, catalog, protocol, missing=texts[example.id] is None)
              for example in examples]
    return aggregate(scores, protocol)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


def aggregate(scores: Sequence[ExampleScores], protocol: str) -> EvalResult:
    """Means over examples for Recall/NDCG; item-level ratios for in-catalog, format and duplicate rates."""
    metrics: dict[str, float | int | str] = {}
    for k in KS:
        metrics[f"recall@{k}"] = _mean([s.recall[k] for s in scores])
    for k in KS:
        metrics[f"ndcg@{k}"] = _mean([s.ndcg[k] for s in scores])
    n_parsed = sum(s.n_parsed for s in scores)
    metrics["in_catalog_rate"] = _ratio(sum(s.n_in_catalog for s in scores), n_parsed)
    metrics["format_rate"] = _ratio(n_parsed, sum(s.n_lines for s in scores))
    metrics["duplicate_rate"] = _ratio(sum(s.n_duplicates for s in scores), n_parsed)
    metrics["n_examples"] = len(scores)
    metrics["n_missing"] = sum(1 for s in scores if s.missing)
    metrics["protocol"] = protocol
    hit_rate = [_mean([float(len(s.hits) > rank and s.hits[rank]) for s in scores]) for rank in range(N_RANKS)]
    return EvalResult(metrics, list(scores), hit_rate, _mean([float(s.n_parsed) for s in scores]))
