"""Remap-Reflect-Adjust: SFT demonstrations from a teacher (Stage 1 of Rank-GRPO, Zhu et al., arXiv 2510.20150,
section 3.1; DESIGN.md, Stage 1), behind `bench sft-data`.

Why: a zero-shot teacher's lists name movies outside the catalog, repeat what the user already saw, and lean on
popular titles; fine-tuning on them as they are teaches those faults. For each training prompt:

1. Teacher: `ease` (offline default: EASE's list for the prompt, as text), `popularity`, a local backbone name, or
   `openai:<model>`; LLM teachers answer the prompt zero-shot (greedy, cached).
2. Remap (`baselines.remap`): each parsed title -> a catalog item (exact, normalised, fuzzy) or a miss (dropped).
3. Reflect (`baselines.reflect_adjust`): a judge scores each mapped candidate's relevance 0-10: offline `ease`
   (the candidate's EASE score for the prompt's mentions divided by the best candidate's, times 10; non-positive
   scores give 0), or an LLM (local or `openai:`) answering the rating prompt.
4. Adjust (`baselines.reflect_adjust.adjust`): drop seen and repeated items, reorder by relevance times the
   popularity weight estimated from all teacher lists against the training ground truth, fill to 20 from EASE
   then popularity. Catalog items whose written form does not parse back to them (`round_trips`) are left out,
   so that every demonstration line is a catalog item to the shared evaluator (catalog compliance 1.0).

`build_sft_data` writes a dataset directory in the JSONL contract, atomically (built in a temporary sibling, then
renamed): train.jsonl whose records carry the demonstration as `completion`, the validation/test split files
copied as they are, catalog.csv, and report.json (Remap hit rates by stage, dropped items, fill, catalog
compliance, the popularity correction, and Recall/NDCG@20 of teacher lists and demonstrations on train through the
shared evaluator). `--sft-data PATH` and `--dataset PATH` both read it. `default_demonstrations` builds the offline
`ease` demonstrations on demand under the cache for SFT runs.
"""

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from baselines.collaborative import query_items
from baselines.ease import EASERecommender
from baselines.popularity import PopularityRecommender
from baselines.reflect_adjust import (
    DEFAULT_POPULARITY_STRENGTH,
    MAX_RATING,
    Adjusted,
    PopularityBias,
    adjust,
    conversation_text,
    parse_ratings,
    rating_prompt,
)
from baselines.remap import DEFAULT_FUZZY_THRESHOLD, STAGES, Remapper
from bench.data.catalog import normalize_title, write_catalog_csv
from bench.data.dataset import SPLITS, Dataset
from bench.data.datasets import load_dataset
from bench.data.prompts import N_RECOMMENDATIONS
from bench.data.records import ContextItem, Example, Item
from bench.errors import BenchError
from bench.evaluation.evaluator import evaluate
from bench.evaluation.parsing import format_item, parse_line, parse_lines
from bench.models.llm_client import ChatClient, make_client
from bench.runs.folders import atomic_write_json, atomic_write_jsonl

OFFLINE = "ease"
DEFAULT_SOURCE = "remap-reflect-adjust:ease"
REPORT_FILE = "report.json"
FORMAT_VERSION = 1
"""Bumped when the pipeline changes, so that demonstrations cached by `default_demonstrations` are rebuilt."""


@dataclass(frozen=True)
class SftDataConfig:
    """The teacher, the judge and the pipeline's knobs (see the module docstring); `limit` keeps the first N
    training examples; `max_new_tokens`, `max_prompt_tokens`, `batch_size` and `backend` (the rollout engine:
    transformers or vllm) apply to local LLM teachers and judges."""

    teacher: str = OFFLINE
    judge: str = OFFLINE
    fuzzy_threshold: float = DEFAULT_FUZZY_THRESHOLD
    popularity_strength: float = DEFAULT_POPULARITY_STRENGTH
    n_items: int = N_RECOMMENDATIONS
    limit: int | None = None
    base_url: str | None = None
    seed: int = 0
    max_new_tokens: int = 400
    max_prompt_tokens: int = 1024
    batch_size: int = 8
    backend: str = "transformers"


@dataclass(frozen=True)
class Demonstrations:
    """Demonstration text per training example (in split order) and the build report."""

    pairs: tuple[tuple[Example, str], ...]
    report: dict[str, Any]


def _as_text(items: Sequence[Item]) -> str:
    return "\n".join(format_item(item) for item in items)


def round_trips(item: Item) -> bool:
    """Whether `Title (Year)` parses back to the item (standard keys). A few catalog titles end in characters the
    shared parser strips ("61*", "Gone Fishin'"): written out, they would read as items outside the catalog."""
    parsed = parse_line(format_item(item))
    return parsed is not None and (normalize_title(parsed[0]), parsed[1]) == (normalize_title(item[0]), item[1])


def ease_relevance(ease: EASERecommender, example: Example, candidates: Sequence[Item]) -> dict[Item, float]:
    """The offline judge: 10 * EASE score / the best candidate's EASE score, 0 for non-positive scores. EASE is
    queried as its baseline queries it (`query_items`: liked or unlabelled mentions, else seen titles)."""
    query = tuple(ContextItem(title, year) for title, year in query_items(example, ease.resolver))
    scores = dict(ease.retrieve(query, len(ease.items)))
    best = max((scores.get(item, 0.0) for item in candidates), default=0.0)
    return {item: MAX_RATING * max(0.0, scores.get(item, 0.0)) / best if best > 0 else 0.0 for item in candidates}


class _LLMs:
    """Chat clients for LLM teachers and judges, made on first use and shared when both name the same model."""

    def __init__(self, config: SftDataConfig, dataset: Dataset, cache_dir: Path,
                 log: Callable[[str], None]) -> None:
        self._config = config
        self._dataset = dataset
        self._cache_dir = cache_dir
        self._log = log
        self.clients: dict[str, ChatClient] = {}

    def get(self, model: str) -> ChatClient:
        if model not in self.clients:
            self._log(f"sft-data: loading {model}")
            config = self._config
            self.clients[model] = make_client(model, cache_dir=self._cache_dir, corpus=self._dataset.corpus(),
                                              base_url=config.base_url, seed=config.seed,
                                              max_prompt_tokens=config.max_prompt_tokens,
                                              batch_size=config.batch_size, backend=config.backend)
        return self.clients[model]


def teacher_answers(config: SftDataConfig, train: Sequence[Example], ease: EASERecommender,
                    dataset: Dataset, llms: _LLMs) -> list[str]:
    """Step 1: the teacher's raw text per training example."""
    if config.teacher == OFFLINE:
        return [_as_text(ease.recommend(example, config.n_items)) for example in train]
    if config.teacher == "popularity":
        popularity = PopularityRecommender.fit(dataset)
        return [_as_text(popularity.recommend(example, config.n_items)) for example in train]
    return llms.get(config.teacher).chat([example.prompt for example in train], config.max_new_tokens)


def judge_relevance(config: SftDataConfig, train: Sequence[Example], candidates: Sequence[Sequence[Item]],
                    ease: EASERecommender, llms: _LLMs) -> list[dict[Item, float]]:
    """Step 3: relevance in [0, 10] per mapped candidate (an LLM judge leaves unrated candidates out)."""
    if config.judge == OFFLINE:
        return [ease_relevance(ease, example, items) for example, items in zip(train, candidates, strict=True)]
    asked = [index for index, items in enumerate(candidates) if items]
    prompts = [rating_prompt(conversation_text(train[index].prompt), candidates[index]) for index in asked]
    answers = dict(zip(asked, llms.get(config.judge).chat(prompts, config.max_new_tokens), strict=True))
    return [parse_ratings(answers.get(index, ""), items) for index, items in enumerate(candidates)]


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


def make_demonstrations(dataset: Dataset, config: SftDataConfig, cache_dir: Path,
                        log: Callable[[str], None] = print) -> Demonstrations:
    """Run Teacher -> Remap -> Reflect -> Adjust over the training split (cut to `limit`)."""
    start = time.perf_counter()
    train = dataset.split("train")[:config.limit] if config.limit is not None else dataset.split("train")
    if not train:
        raise BenchError(f"{dataset.source or dataset.name}: no training examples to build demonstrations for")
    ease = EASERecommender.fit(dataset)
    remapper = Remapper(dataset.catalog, config.fuzzy_threshold)
    llms = _LLMs(config, dataset, cache_dir, log)
    log(f"sft-data: teacher {config.teacher} on {len(train)} training prompts")
    answers = teacher_answers(config, train, ease, dataset, llms)

    stages: Counter[str] = Counter()
    unparsable = 0
    mapped: list[list[Item]] = []
    for answer in answers:
        items: list[Item] = []
        for written in parse_lines(answer):
            if written is None:
                unparsable += 1
                continue
            result = remapper.remap(*written)
            stages[result.stage] += 1
            if result.item is not None:
                items.append(result.item)
        mapped.append(items)

    groundtruths = [[item for title, year in example.groundtruth
                     if (item := remapper.remap(title, year).item) is not None] for example in train]
    bias = PopularityBias.estimate(mapped, groundtruths, len(dataset.catalog), config.popularity_strength)
    log(f"sft-data: judge {config.judge}")
    relevance = judge_relevance(config, train, mapped, ease, llms)
    adjusted: list[Adjusted] = []
    unrenderable = 0
    for example, items, scores in zip(train, mapped, relevance, strict=True):
        renderable = [item for item in items if round_trips(item)]
        unrenderable += len(items) - len(renderable)
        fill = (item for item in ease.recommend(example, 2 * config.n_items + len(items)) if round_trips(item))
        adjusted.append(adjust(renderable, scores, bias, example.seen_titles, fill, config.n_items))

    pairs = tuple((example, _as_text(result.items)) for example, result in zip(train, adjusted, strict=True))
    listed = [item for result in adjusted for item in result.items]
    demonstration_metrics = evaluate(train, {example.id: text for example, text in pairs}, dataset.catalog).metrics
    teacher_metrics = evaluate(train, {example.id: text for example, text in zip(train, answers)},
                               dataset.catalog).metrics
    n_written = sum(stages.values())
    report: dict[str, Any] = {
        "dataset": dataset.source or dataset.name,
        "config": asdict(config),
        "n_examples": len(train),
        "remap": {"counts": {stage: stages[stage] for stage in STAGES},
                  "rates": {stage: _ratio(stages[stage], n_written) for stage in STAGES},
                  "hit_rate": _ratio(n_written - stages["miss"], n_written),
                  "teacher_items": n_written, "teacher_unparsable_lines": unparsable},
        "dropped": {"unmapped": stages["miss"], "seen": sum(r.dropped_seen for r in adjusted),
                    "duplicate": sum(r.dropped_duplicate for r in adjusted), "unrenderable": unrenderable,
                    "overflow": sum(r.dropped_overflow for r in adjusted)},
        "judge_unrated": sum(len(set(items) - set(scores)) for items, scores in zip(mapped, relevance)),
        "filled": sum(r.filled for r in adjusted),
        "demonstration_items": len(listed),
        "short_demonstrations": sum(1 for r in adjusted if len(r.items) < config.n_items),
        "catalog_compliance": demonstration_metrics["in_catalog_rate"],
        "popularity_bias": {
            "formula": "weight(i) = min(1, 1/ratio(i))**strength, ratio(i) = [(rec(i)+1)/(R+|C|)] / "
                       "[(gt(i)+1)/(G+|C|)]; score(i) = relevance(i) * weight(i)",
            "strength": config.popularity_strength,
            "most_over_recommended": [[title, year, ratio] for (title, year), ratio in bias.most_over_recommended()],
        },
        "train_metrics": {"teacher": _headline(teacher_metrics), "demonstrations": _headline(demonstration_metrics),
                          "note": "EASE (offline teacher and judge, and the fill) is fitted on this training split, "
                                  "so train metrics of EASE-derived lists are optimistic"},
        "endpoint_usage": {model: client.usage() for model, client in llms.clients.items()
                           if client.usage() is not None},
        "build_seconds": time.perf_counter() - start,
    }
    return Demonstrations(pairs, report)


def _headline(metrics: dict[str, Any]) -> dict[str, Any]:
    keys = ("recall@10", "recall@20", "ndcg@10", "ndcg@20", "in_catalog_rate", "duplicate_rate")
    return {key: metrics[key] for key in keys}


def _copy_or_write_split(dataset: Dataset, split: str, target: Path) -> None:
    """The split's file copied unchanged when the dataset is a JSONL directory holding it, else written."""
    source = Path(dataset.source) if dataset.source else None
    for suffix in (".jsonl", ".jsonl.gz"):
        if source is not None and (source / f"{split}{suffix}").is_file():
            shutil.copy2(source / f"{split}{suffix}", target / f"{split}{suffix}")
            return
    atomic_write_jsonl(target / f"{split}.jsonl", (example.to_json() for example in dataset.split(split)))


def write_sft_data(dataset: Dataset, demonstrations: Demonstrations, out: Path, overwrite: bool = False) -> Path:
    """Write the dataset directory (module docstring) atomically: everything goes into a temporary sibling that is
    renamed to `out` at the end, so `out` is either absent, the old directory, or the whole new one."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise BenchError(f"{out} already exists; choose another --out or pass --force")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        atomic_write_jsonl(staging / "train.jsonl",
                           (replace(example, completion=text).to_json() for example, text in demonstrations.pairs))
        for split in SPLITS:
            if split != "train" and split in dataset.splits:
                _copy_or_write_split(dataset, split, staging)
        write_catalog_csv(dataset.catalog, staging / "catalog.csv")
        atomic_write_json(staging / REPORT_FILE, demonstrations.report)
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def build_sft_data(dataset: Dataset, config: SftDataConfig, out: Path, cache_dir: Path, *, overwrite: bool = False,
                   log: Callable[[str], None] = print) -> dict[str, Any]:
    """`bench sft-data`: make the demonstrations, write the directory, return the report."""
    if out.exists() and not overwrite:
        raise BenchError(f"{out} already exists; choose another --out or pass --force")
    demonstrations = make_demonstrations(dataset, config, cache_dir, log)
    write_sft_data(dataset, demonstrations, out, overwrite)
    return demonstrations.report


def cache_key(dataset: Dataset, config: SftDataConfig) -> str:
    """A short hash of everything the demonstrations depend on: config, catalog, training records, format."""
    digest = hashlib.sha256(json.dumps({"config": asdict(config), "format": FORMAT_VERSION}).encode())
    digest.update(json.dumps(dataset.catalog.items).encode())
    for example in dataset.split("train"):
        digest.update(json.dumps(example.to_json(), sort_keys=True).encode())
    return digest.hexdigest()[:16]


def default_demonstrations(dataset: Dataset, cache_dir: Path,
                           log: Callable[[str], None] = print) -> list[tuple[Example, str]]:
    """The offline (`ease` teacher and judge) demonstrations of `dataset`, built once under
    `cache_dir/sft-data/<key>` and read back from there afterwards (a concurrent build that finished first wins)."""
    config = SftDataConfig()
    out = cache_dir / "sft-data" / f"{dataset.name}-{cache_key(dataset, config)}"
    if not (out / REPORT_FILE).is_file():
        log(f"building Remap-Reflect-Adjust demonstrations (teacher ease) into {out}")
        demonstrations = make_demonstrations(dataset, config, cache_dir, log)
        try:
            write_sft_data(dataset, demonstrations, out)
        except (BenchError, OSError):
            if not (out / REPORT_FILE).is_file():
                raise
    return [(example, text) for example in load_dataset(str(out)).split("train") if (text := example.completion)]


def report_lines(report: dict[str, Any], out: Path) -> list[str]:
    """What `bench sft-data` prints about a build: size and time, Remap's hit rate, drops and fills, catalog
    compliance, and the teacher's and the demonstrations' scores on the training split."""
    remap, metrics = report["remap"], report["train_metrics"]
    lines = [f"{report['n_examples']} demonstrations in {report['build_seconds']:.1f} s -> {out}",
             "remap: hit rate {:.4f} ({})".format(
                 remap["hit_rate"], ", ".join(f"{stage} {count}" for stage, count in remap["counts"].items())),
             (f"dropped: {report['dropped']}  filled: {report['filled']}  "
              f"catalog compliance: {report['catalog_compliance']:.4f}")]
    lines += [f"{source} on train: recall@20 {metrics[source]['recall@20']:.4f}  "
              f"ndcg@20 {metrics[source]['ndcg@20']:.4f}" for source in ("teacher", "demonstrations")]
    return lines
