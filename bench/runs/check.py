"""Regression checks (`bench check`): rerun a fixed small configuration and compare it with committed numbers.

`<reference>/config.json` fixes what runs (a matrix: algorithms, models, datasets, seeds, preset, preset overrides,
other spec fields), which metrics are compared and the tolerance rule:

    {"algos": ["popularity", "sft"], "models": ["tiny"], "datasets": ["redial"], "seeds": [0, 1, 2],
     "preset": "smoke", "preset_overrides": {"eval_limit": 100}, "fields": {},
     "metrics": ["recall@20", "ndcg@20", "in_catalog_rate", "format_rate"],
     "tolerance": {"std_multiplier": 3.0, "floor": 0.02}}

`<reference>/metrics.json` is written by `bench check --update` from runs of exactly that configuration: per
(algo, model, dataset) and metric, the per-seed values, their mean and sample standard deviation over seeds, and the
band mean ± max(std_multiplier x std, floor). The band comes from the observed seed-to-seed spread; the floor keeps
deterministic methods (std 0) from failing on harmless numeric noise. A check passes when every run (every seed) of
the configuration has each metric inside its band; it fails listing each metric outside, each run that failed, and
each run without a reference. metrics.json also records the exact command that produced it and the configuration it
was made from (a changed config.json makes the reference stale, which is an error).
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import BenchError
from bench.runs.folders import RunFolder, atomic_write_json, read_json, runs_dir
from bench.runs.launchers import Launcher
from bench.runs.matrix import expand_grid, run_matrix
from bench.runs.specs import RunSpec

CONFIG_FILE = "config.json"
REFERENCE_FILE = "metrics.json"
DEFAULT_METRICS = ("recall@20", "ndcg@20", "in_catalog_rate", "format_rate")
DEFAULT_TOLERANCE = {"std_multiplier": 3.0, "floor": 0.02}
RULE = "band = mean ± max(std_multiplier × sample std over seeds, floor); every seed's value must lie in the band"


@dataclass(frozen=True)
class CheckConfig:
    algos: tuple[str, ...]
    models: tuple[str, ...]
    datasets: tuple[str, ...]
    seeds: tuple[int, ...]
    preset: str
    preset_overrides: dict[str, Any]
    fields: dict[str, Any]
    metrics: tuple[str, ...]
    std_multiplier: float
    floor: float
    raw: dict[str, Any]

    def specs(self) -> list[RunSpec]:
        return expand_grid(self.algos, self.models, self.seeds, self.datasets, self.preset, self.preset_overrides,
                           **self.fields)


def load_config(reference: Path) -> CheckConfig:
    """Read `<reference>/config.json` (see the module docstring for the format)."""
    path = reference / CONFIG_FILE
    raw = read_json(path)
    try:
        tolerance = {**DEFAULT_TOLERANCE, **raw.get("tolerance", {})}
        return CheckConfig(algos=tuple(raw["algos"]), models=tuple(raw["models"]),
                           datasets=tuple(raw.get("datasets", ["redial"])), seeds=tuple(int(s) for s in raw["seeds"]),
                           preset=raw.get("preset", "smoke"), preset_overrides=dict(raw.get("preset_overrides", {})),
                           fields=dict(raw.get("fields", {})), metrics=tuple(raw.get("metrics", DEFAULT_METRICS)),
                           std_multiplier=float(tolerance["std_multiplier"]), floor=float(tolerance["floor"]), raw=raw)
    except (KeyError, TypeError, ValueError) as error:
        raise BenchError(f"{path}: bad check configuration ({type(error).__name__}: {error})") from None


def entry_key(algo: str, model: str, dataset: str) -> str:
    return f"{algo}/{model}/{dataset}"


@dataclass(frozen=True)
class Observation:
    """One run's metrics, as compared with the reference."""

    algo: str
    model: str
    dataset: str
    seed: int
    metrics: dict[str, Any]

    @property
    def key(self) -> str:
        return entry_key(self.algo, self.model, self.dataset)


def band(values: Sequence[float], std_multiplier: float, floor: float) -> dict[str, Any]:
    """Mean, sample std (0 for one seed) and the band mean ± max(std_multiplier x std, floor)."""
    mean = float(np.mean(values))
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    half_width = max(std_multiplier * std, floor)
    return {"values": [float(v) for v in values], "mean": mean, "std": std, "low": mean - half_width,
            "high": mean + half_width}


def build_reference(observations: Sequence[Observation], config: CheckConfig, command: str) -> dict[str, Any]:
    """The reference document from one run per (algo, model, dataset, seed)."""
    by_key: dict[str, list[Observation]] = {}
    for observation in sorted(observations, key=lambda o: (o.key, o.seed)):
        by_key.setdefault(observation.key, []).append(observation)
    entries = {key: {"algo": runs[0].algo, "model": runs[0].model, "dataset": runs[0].dataset,
                     "seeds": [run.seed for run in runs],
                     "metrics": {metric: band([float(run.metrics[metric]) for run in runs], config.std_multiplier,
                                              config.floor) for metric in config.metrics}}
               for key, runs in by_key.items()}
    return {"command": command, "rule": RULE, "config": config.raw, "entries": entries}


def compare(reference: dict[str, Any], observations: Sequence[Observation], metrics: Sequence[str]) -> list[str]:
    """One line per problem: a metric outside its band, or a run without a reference entry."""
    problems = []
    for observation in observations:
        entry = reference["entries"].get(observation.key)
        if entry is None:
            problems.append(f"{observation.key} seed {observation.seed}: no reference entry")
            continue
        for metric in metrics:
            bounds = entry["metrics"].get(metric)
            value = observation.metrics.get(metric)
            if bounds is None or value is None:
                problems.append(f"{observation.key} seed {observation.seed} {metric}: missing "
                                f"{'in the reference' if bounds is None else 'in the run'}")
            elif not bounds["low"] <= float(value) <= bounds["high"]:
                problems.append(f"{observation.key} seed {observation.seed} {metric} = {float(value):.4f} outside "
                                f"[{bounds['low']:.4f}, {bounds['high']:.4f}] (reference mean {bounds['mean']:.4f})")
    return problems


def _run_configuration(config: CheckConfig, results_dir: Path, launcher: Launcher | None, force: bool,
                       echo: Callable[[str], None]) -> tuple[list[Observation], list[str]]:
    specs = config.specs()
    outcome = run_matrix(specs, results_dir, launcher, force=force, echo=echo)
    failures = [f"run {result.run_id} failed (see {runs_dir(results_dir) / result.run_id / 'error.txt'})"
                for result in outcome.failed]
    observations = []
    for spec in specs:
        folder = RunFolder(runs_dir(results_dir) / spec.run_id)
        if folder.is_complete():
            observations.append(Observation(spec.algo, spec.model, spec.dataset, spec.seed,
                                            read_json(folder.metrics_path)))
    return observations, failures


def run_check(reference: Path, results_dir: Path, launcher: Launcher | None = None, force: bool = False,
              echo: Callable[[str], None] = print) -> list[str]:
    """Run the reference configuration and return every problem found (empty: the check passes)."""
    config = load_config(reference)
    stored = read_json(reference / REFERENCE_FILE)
    if stored.get("config") != config.raw:
        raise BenchError(f"{reference / REFERENCE_FILE} was made from another {CONFIG_FILE}: "
                         f"rerun `bench check --update --reference {reference}`")
    observations, failures = _run_configuration(config, results_dir, launcher, force, echo)
    return failures + compare(stored, observations, config.metrics)


def update_reference(reference: Path, results_dir: Path, command: str, launcher: Launcher | None = None,
                     force: bool = False, echo: Callable[[str], None] = print) -> Path:
    """Run the configuration with its seeds and write `<reference>/metrics.json` (nothing written on failures)."""
    config = load_config(reference)
    observations, failures = _run_configuration(config, results_dir, launcher, force, echo)
    if failures:
        raise BenchError("reference not written: " + "; ".join(failures))
    path = reference / REFERENCE_FILE
    atomic_write_json(path, build_reference(observations, config, command))
    return path
