"""What a report is built from: complete run folders, read back and grouped into comparable tables.

Only files are read (spec.json, metrics.json, summary.json, examples.jsonl, curve.jsonl). A folder without
metrics.json is incomplete and left out with a note. Runs are comparable when they share dataset, split, protocol,
preset and evaluation limit; one table is drawn per backbone, and runs without a backbone (popularity, EASE,
random: model "none") join every backbone's table of their dataset. Within a table a method is its
`RunSpec.method_label` (`rank_grpo`, `rank_grpo+log_decay`, `grpo+mu2`); only when two configurations share a label
does each get its configuration digest. An untrained method whose runs are identical (same example ids, same
per-example scores in every seed folder: popularity, EASE, greedy zero-shot) is deterministic and counts as one run.
"""

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import BenchError, DataError
from bench.evaluation.metrics import KS
from bench.runs.folders import RunFolder, read_json, read_jsonl, runs_dir
from bench.runs.specs import ALGORITHMS, RunSpec, canonical, spec_from_json

NO_MODEL = "none"
SEEDED_UNTRAINED = ("random",)
"""Untrained methods whose output depends on the seed: a single run of one is not known to be deterministic."""
RATIO_COLUMNS = {"in_catalog_rate": ("n_in_catalog", "n_parsed"), "format_rate": ("n_parsed", "n_lines"),
                 "duplicate_rate": ("n_duplicates", "n_parsed")}
"""Item-level rates: (numerator, denominator) fields of an example's scores."""
MEAN_COLUMNS = tuple(f"recall@{k}" for k in KS) + tuple(f"ndcg@{k}" for k in KS)
TABLE_COLUMNS = MEAN_COLUMNS + tuple(RATIO_COLUMNS)


@dataclass(frozen=True)
class RunRecord:
    """One complete run as read from its folder."""

    spec: RunSpec
    metrics: dict[str, Any]
    summary: dict[str, Any]
    example_ids: tuple[str, ...]
    columns: dict[str, tuple[np.ndarray, np.ndarray]]
    """Per table column: per-example (numerator, denominator) arrays in `example_ids` order."""
    curve: tuple[dict[str, Any], ...]
    """Validation points sorted by step, the last one kept per step (a resumed run may repeat steps)."""
    root: Path | None = None
    """The run folder it was read from (training diagnostics read train_log.jsonl and environment.json there)."""

    @property
    def config(self) -> str:
        """Digest of the spec without its seed: runs of one method configuration share it."""
        return replace(self.spec, seed=0).digest[:6]


def _columns(examples: list[dict[str, Any]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    scores = [record["scores"] for record in examples]
    ones = np.ones(len(scores))
    columns = {name: (np.array([s[name] for s in scores], dtype=float), ones) for name in MEAN_COLUMNS}
    for name, (top, bottom) in RATIO_COLUMNS.items():
        columns[name] = (np.array([s[top] for s in scores], dtype=float),
                         np.array([s[bottom] for s in scores], dtype=float))
    return columns


def _curve(points: list[dict[str, Any]]) -> tuple[dict[str, Any], ...]:
    by_step = {int(point["step"]): point for point in points}
    return tuple(by_step[step] for step in sorted(by_step))


def load_run(folder: RunFolder) -> RunRecord:
    """Read one complete run folder."""
    examples = read_jsonl(folder.examples_path)
    summary = read_json(folder.summary_path)
    if not isinstance(summary, dict):
        raise DataError(f"{folder.summary_path}: not a JSON object")
    return RunRecord(spec=spec_from_json(read_json(folder.spec_path)), metrics=read_json(folder.metrics_path),
                     summary=summary,
                     example_ids=tuple(str(record["id"]) for record in examples),
                     columns=_columns(examples), curve=_curve(folder.read_curve()), root=folder.root)


def load_runs(results_dir: Path) -> tuple[list[RunRecord], list[str]]:
    """Every complete run under `<results_dir>/runs/` in folder-name order, and notes on what was left out."""
    root = runs_dir(results_dir)
    if not root.is_dir():
        raise BenchError(f"no runs to report: {root} does not exist (run `bench run` or `bench matrix` first)")
    records, notes = [], []
    for path in sorted(p for p in root.iterdir() if p.is_dir()):
        folder = RunFolder(path)
        if not folder.is_complete():
            notes.append(f"{path.name}: incomplete (no metrics.json), left out")
            continue
        try:
            records.append(load_run(folder))
        except (BenchError, KeyError, TypeError, ValueError, OSError) as error:
            notes.append(f"{path.name}: unreadable ({type(error).__name__}: {error}), left out")
    return records, notes


@dataclass(frozen=True)
class GroupKey:
    """What makes runs comparable in one table."""

    dataset: str
    model: str
    preset: str
    split: str
    protocol: str
    eval_limit: int | None

    @property
    def title(self) -> str:
        backbone = "no backbone" if self.model == NO_MODEL else self.model
        extras = [f"split {self.split}"] if self.split != "test" else []
        extras += [f"{self.protocol} protocol"] if self.protocol != "standard" else []
        extras += [f"first {self.eval_limit} examples"] if self.eval_limit is not None else []
        suffix = f" ({', '.join(extras)})" if extras else ""
        return f"{self.dataset} / {backbone} / preset {self.preset}{suffix}"

    @property
    def slug(self) -> str:
        parts = [self.dataset, self.model, self.preset]
        parts += [self.split] if self.split != "test" else []
        parts += [self.protocol] if self.protocol != "standard" else []
        parts += [f"limit{self.eval_limit}"] if self.eval_limit is not None else []
        return re.sub(r"[^A-Za-z0-9.-]+", "_", "-".join(parts)).strip("_")


@dataclass(frozen=True)
class Group:
    """One table: methods (in registry order) and their runs (one per seed, sorted by seed)."""

    key: GroupKey
    methods: dict[str, tuple[RunRecord, ...]] = field(default_factory=dict)


def _key(spec: RunSpec, model: str) -> GroupKey:
    return GroupKey(spec.dataset, model, spec.preset, spec.split, spec.protocol, spec.settings.eval_limit)


def _algo_order(algo: str) -> tuple[int, str]:
    names = list(ALGORITHMS)
    return (names.index(algo) if algo in names else len(names), algo)


def _methods(records: Sequence[RunRecord]) -> dict[str, tuple[RunRecord, ...]]:
    by_config: dict[tuple[str, str], list[RunRecord]] = defaultdict(list)
    for record in records:
        by_config[(record.spec.method_label, record.config)].append(record)
    configs_per_label: dict[str, int] = defaultdict(int)
    for label, _ in by_config:
        configs_per_label[label] += 1
    methods = {}
    ordered = sorted(by_config, key=lambda pair: (_algo_order(by_config[pair][0].spec.algo), pair[0], pair[1]))
    for label, config in ordered:
        name = label if configs_per_label[label] == 1 else f"{label} [{config}]"
        methods[name] = tuple(sorted(by_config[(label, config)], key=lambda run: run.spec.seed))
    return methods


def is_deterministic(runs: Sequence[RunRecord]) -> bool:
    """True when the runs of an untrained method are one run: several seed folders with identical example ids and
    per-example scores, or a single run of a method whose output does not depend on the seed. A trained method is
    never deterministic: its seed is the unit even when its seeds happen to score alike (e.g. all zero)."""
    first = runs[0]
    info = ALGORITHMS.get(first.spec.algo)
    if info is None or info.trained:
        return False
    if len(runs) == 1:
        return first.spec.algo not in SEEDED_UNTRAINED
    return all(run.example_ids == first.example_ids
               and all(np.array_equal(run.columns[name][0], first.columns[name][0])
                       and np.array_equal(run.columns[name][1], first.columns[name][1]) for name in first.columns)
               for run in runs[1:])


def sft_start(records: Sequence[RunRecord], record: RunRecord) -> RunRecord | None:
    """The SFT run an RL run started from (same backbone, dataset, seed, preset), when it is among `records`."""
    if record.spec.algo == "sft" or not record.curve:
        return None
    run_id = canonical(replace(record.spec, algo="sft")).run_id
    return next((other for other in records if other.spec.run_id == run_id), None)


def group_runs(records: Sequence[RunRecord]) -> list[Group]:
    """Tables per comparable setting and backbone; model-free runs join every backbone of their setting. The tables
    with the most seeds of a trained method come first (the report leads with its best-replicated comparison), then
    by setting."""
    by_key: dict[GroupKey, list[RunRecord]] = defaultdict(list)
    model_free: dict[GroupKey, list[RunRecord]] = defaultdict(list)
    for record in records:
        target = model_free if record.spec.model == NO_MODEL else by_key
        target[_key(record.spec, record.spec.model)].append(record)
    for key, runs in model_free.items():
        backbones = [other for other in by_key if replace(other, model=NO_MODEL) == key]
        for backbone in backbones or [key]:
            by_key[backbone].extend(runs)
    def seeds(key: GroupKey) -> int:
        trained = [record.spec.seed for record in by_key[key]
                   if record.spec.algo in ALGORITHMS and ALGORITHMS[record.spec.algo].trained]
        return len(set(trained))

    ordered = sorted(by_key, key=lambda k: (-seeds(k), k.dataset, k.model, k.preset, k.split, k.protocol,
                                            k.eval_limit or 0))
    return [Group(key, _methods(by_key[key])) for key in ordered]
