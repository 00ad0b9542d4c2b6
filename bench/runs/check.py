"""Regression checks (`bench check`): rerun a fixed small configuration and compare every run, seed by seed, with
committed numbers.

`<reference>/config.json` fixes what runs and how far a number may move:

    {"grids": [{"algos": ["popularity", "sft", "grpo"], "models": ["tiny"], "datasets": ["synthetic"],
                "seeds": [0, 1], "preset": "smoke", "preset_overrides": {"eval_limit": 50}, "fields": {}}],
     "metrics": ["recall@20", "ndcg@20", "in_catalog_rate", "format_rate"],
     "threads": 2,
     "tolerance": {"rerun_threads": [1, 2], "margin": 3.0, "absolute": 1e-6, "seed_std_multiplier": 3.0,
                   "seed_floor": 0.02}}

(A single grid may also be given at the top level, without "grids".) Every run of the check uses `threads` torch
threads, whatever the machine.

`bench check --update` writes `<reference>/metrics.json`: it runs the configuration (the reference values), then
reruns it once per entry of `rerun_threads`, each in a fresh process with that many threads, a fresh cache and a
fresh results folder, and records how far each run's metric moved (per run, seed and metric). The tolerance of that
number is `margin` x the largest movement seen, or `absolute` where every rerun reproduced it bit for bit (the
reference says which). A check fails on any metric further than its tolerance from the reference, in either
direction: a drop is "regressed", a rise "improved; run `bench check --update` if intended" (a change in behaviour
is never passed silently). The spread over seeds, mean ± max(seed_std_multiplier x std, seed_floor), is a second,
looser report line ("moved more than seed noise"), not the gate. A changed config.json makes the reference stale,
which is an error.
"""

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack, contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.runs.folders import RunFolder, atomic_write_json, read_json, runs_dir
from bench.runs.launchers import THREAD_VARIABLES, Launcher, LocalLauncher
from bench.runs.matrix import expand_grid, run_matrix
from bench.runs.specs import RunSpec
from bench.runs.verdicts import (
    CheckResult,
    Observation,
    Pass,
    TolerancePolicy,
    build_reference,
    compare,
)

CONFIG_FILE = "config.json"
REFERENCE_FILE = "metrics.json"
DEFAULT_METRICS = ("recall@20", "ndcg@20", "in_catalog_rate", "format_rate")
DEFAULT_TOLERANCE = {"rerun_threads": [1, 2], "margin": 3.0, "absolute": 1e-6, "seed_std_multiplier": 3.0,
                     "seed_floor": 0.02}
GRID_KEYS = ("algos", "models", "datasets", "seeds", "preset", "preset_overrides", "fields")


@dataclass(frozen=True)
class Grid:
    """One matrix of the configuration (see `bench.runs.matrix.expand_grid`)."""

    algos: tuple[str, ...]
    models: tuple[str, ...]
    datasets: tuple[str, ...]
    seeds: tuple[int, ...]
    preset: str
    preset_overrides: dict[str, Any]
    fields: dict[str, Any]

    def specs(self) -> list[RunSpec]:
        return expand_grid(self.algos, self.models, self.seeds, self.datasets, self.preset, self.preset_overrides,
                           **self.fields)


@dataclass(frozen=True)
class CheckConfig:
    grids: tuple[Grid, ...]
    metrics: tuple[str, ...]
    threads: int
    tolerance: TolerancePolicy
    raw: dict[str, Any]

    def specs(self, only: Sequence[str] | None = None) -> list[RunSpec]:
        """Every run of every grid (equal runs once), or only those of the algorithms in `only`."""
        specs: dict[str, RunSpec] = {}
        for grid in self.grids:
            for spec in grid.specs():
                if only is None or spec.algo in only:
                    specs.setdefault(spec.run_id, spec)
        return list(specs.values())


def _grid(raw: dict[str, Any]) -> Grid:
    return Grid(algos=tuple(raw["algos"]), models=tuple(raw["models"]),
                datasets=tuple(raw.get("datasets", ["redial"])), seeds=tuple(int(s) for s in raw["seeds"]),
                preset=raw.get("preset", "smoke"), preset_overrides=dict(raw.get("preset_overrides", {})),
                fields=dict(raw.get("fields", {})))


def load_config(reference: Path) -> CheckConfig:
    """Read `<reference>/config.json` (see the module docstring for the format)."""
    path = reference / CONFIG_FILE
    raw = read_json(path)
    try:
        grids = raw["grids"] if "grids" in raw else [{key: raw[key] for key in GRID_KEYS if key in raw}]
        tolerance = {**DEFAULT_TOLERANCE, **raw.get("tolerance", {})}
        policy = TolerancePolicy(rerun_threads=tuple(int(t) for t in tolerance["rerun_threads"]),
                                 margin=float(tolerance["margin"]), absolute=float(tolerance["absolute"]),
                                 seed_std_multiplier=float(tolerance["seed_std_multiplier"]),
                                 seed_floor=float(tolerance["seed_floor"]))
        return CheckConfig(grids=tuple(_grid(grid) for grid in grids),
                           metrics=tuple(raw.get("metrics", DEFAULT_METRICS)), threads=int(raw.get("threads", 2)),
                           tolerance=policy, raw=raw)
    except (KeyError, TypeError, ValueError) as error:
        raise BenchError(f"{path}: bad check configuration ({type(error).__name__}: {error})") from None


@contextmanager
def pinned_threads(threads: int) -> Iterator[None]:
    """torch (and worker processes started meanwhile) use `threads` threads; the previous setting is restored."""
    import torch

    previous_env = {variable: os.environ.get(variable) for variable in THREAD_VARIABLES}
    previous = torch.get_num_threads()
    os.environ.update({variable: str(threads) for variable in THREAD_VARIABLES})
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
        for variable, value in previous_env.items():
            if value is None:
                os.environ.pop(variable, None)
            else:
                os.environ[variable] = value


def run_configuration(config: CheckConfig, results_dir: Path, launcher: Launcher | None = None, reuse: bool = False,
                      echo: Callable[[str], None] = print, only: Sequence[str] | None = None,
                      threads: int | None = None) -> Pass:
    """Run the configuration with the configured threads and read every run. Every run is executed again unless
    `reuse` (then complete runs in `results_dir` are kept: a check must not pass on folders older than the code)."""
    specs = config.specs(only)
    threads = threads or config.threads
    start = time.perf_counter()
    with pinned_threads(threads):
        outcome = run_matrix(specs, results_dir, launcher, force=not reuse, echo=echo)
    failures = tuple(f"run {result.run_id} failed (see {runs_dir(results_dir) / result.run_id / 'error.txt'})"
                     for result in outcome.failed)
    observations = []
    for spec in specs:
        folder = RunFolder(runs_dir(results_dir) / spec.run_id)
        if folder.is_complete():
            observations.append(Observation(spec.algo, spec.model, spec.dataset, spec.seed,
                                            read_json(folder.metrics_path)))
    return Pass(tuple(observations), failures, threads, time.perf_counter() - start)


def _rerun_worker(reference: Path, results_dir: Path, threads: int, cache: Path) -> Pass:
    """One rerun in its own (spawned) process: a fresh cache and results folder, `threads` threads."""
    os.environ["BENCH_CACHE"] = str(cache)
    config = load_config(reference)
    with (results_dir / "rerun.log").open("a", encoding="utf-8") as log, redirect_stdout(log), redirect_stderr(log):
        return run_configuration(config, results_dir, LocalLauncher(1), echo=print, threads=threads)


def _init_worker(threads: int) -> None:
    os.environ.update({variable: str(threads) for variable in THREAD_VARIABLES})


@contextmanager
def reruns_in_background(reference: Path, results_dir: Path, config: CheckConfig,
                         echo: Callable[[str], None] = print) -> Iterator[Callable[[], list[Pass]]]:
    """Start one rerun of the configuration per `rerun_threads` entry, concurrently, each in a fresh process with a
    fresh cache (`<results_dir>/rerun-<i>-threads<n>/cache-*`) and results folder; yields a function that waits for
    them and returns their passes."""
    with ExitStack() as stack:
        futures = []
        for index, threads in enumerate(config.tolerance.rerun_threads):
            folder = results_dir / f"rerun-{index}-threads{threads}"
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            cache = Path(tempfile.mkdtemp(prefix="cache-", dir=folder))
            pool = stack.enter_context(ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"),
                                                           initializer=_init_worker, initargs=(threads,)))
            futures.append(pool.submit(_rerun_worker, reference.resolve(), folder.resolve(), threads, cache))
        if futures:
            echo(f"measuring tolerances: {len(futures)} rerun(s) in the background with threads "
                 f"{list(config.tolerance.rerun_threads)} and fresh caches (logs: {results_dir}/rerun-*/rerun.log)")
        yield lambda: [future.result() for future in futures]


def _stale_check(reference: Path, config: CheckConfig) -> dict[str, Any]:
    stored = read_json(reference / REFERENCE_FILE)
    if stored.get("config") != config.raw or "passes" not in stored:
        made_from = f"another {CONFIG_FILE}" if "passes" in stored else "an older `bench check`"
        raise BenchError(f"{reference / REFERENCE_FILE} was made from {made_from}: "
                         f"rerun `bench check --update --reference {reference}`")
    return stored


def run_check(reference: Path, results_dir: Path, launcher: Launcher | None = None, reuse: bool = False,
              echo: Callable[[str], None] = print, only: Sequence[str] | None = None) -> CheckResult:
    """Run the reference configuration (or only the runs of the algorithms in `only`) and compare every run; `reuse`
    keeps complete runs already in `results_dir` (e.g. an SFT start copied in) instead of rerunning them."""
    config = load_config(reference)
    stored = _stale_check(reference, config)
    run_pass = run_configuration(config, results_dir, launcher, reuse, echo, only)
    rows = compare(stored, [o for o in run_pass.observations if only is None or o.algo in only], config.metrics)
    return CheckResult(tuple(rows), run_pass.failures, run_pass.threads, run_pass.seconds)


def update_reference(reference: Path, results_dir: Path, command: str, launcher: Launcher | None = None,
                     echo: Callable[[str], None] = print) -> Path:
    """Run every run of the configuration again (the reference values) while its reruns measure the tolerances, and
    write `<reference>/metrics.json` (nothing is written when any run fails)."""
    config = load_config(reference)
    with reruns_in_background(reference, results_dir, config, echo) as wait_for_reruns:
        reference_pass = run_configuration(config, results_dir, launcher, echo=echo)
        reruns = wait_for_reruns()
    failures = [*reference_pass.failures, *(failure for rerun in reruns for failure in rerun.failures)]
    if failures:
        raise BenchError("reference not written: " + "; ".join(failures))
    path = reference / REFERENCE_FILE
    atomic_write_json(path, build_reference(reference_pass, reruns, config.metrics, config.tolerance, config.raw,
                                           command))
    return path
