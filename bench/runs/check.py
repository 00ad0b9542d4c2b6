"""Regression checks (`bench check`): rerun a fixed small configuration, run the trained methods' deterministic
probes, and compare every value with the band the reference measured for it (`bench.runs.verdicts`).

`<reference>/config.json` fixes what runs and how the bands are made:

    {"grids": [{"algos": ["popularity"], "models": ["tiny"], "datasets": ["synthetic:check"], "seeds": [0],
                "preset": "smoke", "preset_overrides": {"eval_limit": 48}},
               {"algos": ["sft", "grpo"], ..., "seeds": [0], "band_seeds": [1, 2]}],
     "metrics": ["recall@20", "ndcg@20", "in_catalog_rate", "format_rate"],
     "threads": 2,
     "perturbations": ["threads=1", "onednn=off", "jitter=1e-7:1"],
     "band": {"runs": {"k": 6, "floor": 0.02}, "probes": {"k": 10, "floor": 1e-6, "relative_floor": 0.005}}}

`seeds` are the seeds a check runs; `band_seeds` are run only by `--update`, to widen the sample of a trained run's
band by its seed spread. Every run of a check uses `threads` torch threads, whatever the machine.

`bench check --update` writes `<reference>/metrics.json`: the reference pass (every seed, band seeds included, and
the probes) in this process, and meanwhile one rerun per perturbation (`bench.runs.perturb`) of the checked seeds and
the probes, each in a fresh process with an empty cache and results folder; then every target's band from its
sample, and a leave-one-out estimate of the false-alarm rate (would each source of the sample have passed against
the bands of the others?). A missing, corrupt or stale reference is a one-line error naming the file and the command
that regenerates it.
"""

import json
import os
import shutil
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.runs.folders import RunFolder, atomic_write_json, read_json, runs_dir
from bench.runs.launchers import THREAD_VARIABLES, Launcher, LocalLauncher
from bench.runs.matrix import expand_grid, run_matrix
from bench.runs.perturb import Perturbation, perturbed
from bench.runs.specs import RL_ALGORITHMS, RunSpec, sibling_spec
from bench.runs.verdicts import (
    RL_SHIFT,
    RULE,
    BandRule,
    CheckResult,
    Observation,
    Pass,
    build_reference,
    collect_samples,
    compare,
    leave_one_out,
)

CONFIG_FILE = "config.json"
REFERENCE_FILE = "metrics.json"
DEFAULT_METRICS = ("recall@20", "ndcg@20", "in_catalog_rate", "format_rate")
DEFAULT_BAND = {"runs": {"k": 6.0, "floor": 0.02}, "probes": {"k": 10.0, "floor": 1e-6, "relative_floor": 0.005}}
GRID_KEYS = ("algos", "models", "datasets", "seeds", "band_seeds", "preset", "preset_overrides", "fields")


@dataclass(frozen=True)
class Grid:
    """One matrix of the configuration (see `bench.runs.matrix.expand_grid`); `band_seeds` run only on update."""

    algos: tuple[str, ...]
    models: tuple[str, ...]
    datasets: tuple[str, ...]
    seeds: tuple[int, ...]
    band_seeds: tuple[int, ...]
    preset: str
    preset_overrides: dict[str, Any]
    fields: dict[str, Any]

    def specs(self, band_seeds: bool = False) -> list[RunSpec]:
        seeds = (*self.seeds, *self.band_seeds) if band_seeds else self.seeds
        return expand_grid(self.algos, self.models, seeds, self.datasets, self.preset, self.preset_overrides,
                           **self.fields)


@dataclass(frozen=True)
class CheckConfig:
    """config.json, typed: the grids, the metrics compared, torch threads, perturbations, and the band rules of runs
    and of probes; `raw` is the file as read (the reference keeps a copy, to tell when it is stale)."""

    grids: tuple[Grid, ...]
    metrics: tuple[str, ...]
    threads: int
    perturbations: tuple[Perturbation, ...]
    runs: BandRule
    probes: BandRule
    raw: dict[str, Any]

    def specs(self, only: Sequence[str] | None = None, band_seeds: bool = False) -> list[RunSpec]:
        """Every run of every grid (equal runs once), or only those of the algorithms in `only`."""
        specs: dict[str, RunSpec] = {}
        for grid in self.grids:
            for spec in grid.specs(band_seeds):
                if only is None or spec.algo in only:
                    specs.setdefault(spec.run_id, spec)
        return list(specs.values())

    def band_seeds(self) -> dict[str, tuple[int, ...]]:
        """algo/model/dataset -> the band seeds of its grid."""
        return {Observation(s.algo, s.model, s.dataset, 0, {}).key: grid.band_seeds
                for grid in self.grids if grid.band_seeds for s in grid.specs()}


def regenerate(reference: Path) -> str:
    """The command that rewrites `<reference>/metrics.json`, as error messages quote it."""
    return f"`bench check --update --reference {reference}`"


def _grid(raw: dict[str, Any]) -> Grid:
    return Grid(algos=tuple(raw["algos"]), models=tuple(raw["models"]),
                datasets=tuple(raw.get("datasets", ["redial"])), seeds=tuple(int(s) for s in raw["seeds"]),
                band_seeds=tuple(int(s) for s in raw.get("band_seeds", [])), preset=raw.get("preset", "smoke"),
                preset_overrides=dict(raw.get("preset_overrides", {})), fields=dict(raw.get("fields", {})))


def load_config(reference: Path) -> CheckConfig:
    """Read `<reference>/config.json` (see the module docstring for the format)."""
    path = reference / CONFIG_FILE
    restore = f"restore it (`git checkout -- {path}`), then regenerate the reference with {regenerate(reference)}"
    try:
        raw = read_json(path)
        grids = raw["grids"] if "grids" in raw else [{key: raw[key] for key in GRID_KEYS if key in raw}]
        bands = {**DEFAULT_BAND, **raw.get("band", {})}
        return CheckConfig(grids=tuple(_grid(grid) for grid in grids),
                           metrics=tuple(raw.get("metrics", DEFAULT_METRICS)), threads=int(raw.get("threads", 2)),
                           perturbations=tuple(Perturbation.parse(text) for text in raw.get("perturbations", [])),
                           runs=BandRule(**bands["runs"]), probes=BandRule(**bands["probes"]), raw=raw)
    except BenchError as error:
        raise BenchError(f"{error}; {restore}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise BenchError(f"{path}: bad check configuration ({type(error).__name__}: {error}); {restore}") from None


def load_reference(reference: Path, config: CheckConfig) -> dict[str, Any]:
    """`<reference>/metrics.json`, checked to be readable, of this format and made from this config.json."""
    path = reference / REFERENCE_FILE
    try:
        stored = read_json(path)
        problem = None
        if not isinstance(stored, dict) or not isinstance(stored.get("targets"), dict):
            problem = "is not a reference of this `bench check` (no targets)"
        elif stored.get("config") != config.raw:
            problem = f"was made from another {CONFIG_FILE}"
    except BenchError as error:
        raise BenchError(f"{error}: regenerate it with {regenerate(reference)}") from None
    if problem:
        raise BenchError(f"{path} {problem}: regenerate it with {regenerate(reference)}")
    return stored


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


def run_probes(specs: Sequence[RunSpec], results_dir: Path, echo: Callable[[str], None]) -> tuple[
        list[Observation], list[str]]:
    """The deterministic probe of every trained method among `specs` (once per algo/model/dataset), written to
    `<results_dir>/probes/`; a probe that raises is a failure, not a crash."""
    from bench.data.datasets import load_dataset
    from bench.models.backbones import default_cache_dir
    from bench.runs.context import RunContext
    from bench.runs.methods import get_probe

    observations, failures, done = [], [], set()
    for spec in specs:
        probe = get_probe(spec.algo)
        identity = Observation(spec.algo, spec.model, spec.dataset, None, {})
        if probe is None or identity.target in done:
            continue
        done.add(identity.target)
        folder = results_dir / "probes" / spec.run_id
        shutil.rmtree(folder, ignore_errors=True)
        echo(f"probe {identity.target}: one step of the trainer on fixed inputs")
        try:
            context = RunContext(spec, load_dataset(spec.dataset, spec.catalog), RunFolder(folder),
                                 default_cache_dir(), results_dir, echo, progress=False)
            values = probe(context)
        except Exception as error:  # a probe broken by the code under check is a failed check, with its trace
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "error.txt").write_text(traceback.format_exc())
            failures.append(f"probe {identity.target} failed ({type(error).__name__}: {error}; see "
                            f"{folder / 'error.txt'})")
            continue
        atomic_write_json(folder / "probe.json", {"target": identity.target, "spec": spec.run_id, "values": values})
        observations.append(Observation(spec.algo, spec.model, spec.dataset, None, values))
    return observations, failures


def rl_shift_steps(spec: RunSpec, results_dir: Path) -> float:
    """How far an RL run's saved model moved from its SFT start, in Adam steps: ||theta_RL - theta_SFT|| /
    (lr x sqrt(n)) over the n weights of the saved models (float64 sums).

    Why this unit: Adam's first update moves every weight with a gradient by about lr (m_hat / sqrt(v_hat) = sign of
    the gradient; Kingma and Ba 2015, section 2.1), so one step has norm about lr x sqrt(n), and T steps have between
    sqrt(T) (directions unrelated from step to step) and T (one direction). The value is of order 1-10 for any
    backbone and learning rate, and it is 0 when RL moved nothing (learning rate 0, no optimizer step, an update
    lost before saving) and half when half the update was kept, whichever way the run's sampled metrics went.
    An end-to-end row: it reads the run folders `bench check` just wrote (`model/*.safetensors`).
    """
    from safetensors.torch import load_file

    def weights(run: RunSpec) -> dict[str, Any]:
        folder = runs_dir(results_dir) / run.run_id / "model"
        return {name: tensor for path in sorted(folder.glob("*.safetensors"))
                for name, tensor in load_file(path).items()}

    trained, start = weights(spec), weights(sibling_spec(spec, "sft"))
    squares = sum(float(((trained[name].double() - tensor.double()) ** 2).sum()) for name, tensor in start.items())
    count = sum(tensor.numel() for tensor in start.values())
    return squares ** 0.5 / (spec.settings.rl_lr * count ** 0.5)


def run_configuration(config: CheckConfig, results_dir: Path, launcher: Launcher | None = None, reuse: bool = False,
                      echo: Callable[[str], None] = print, only: Sequence[str] | None = None,
                      threads: int | None = None, band_seeds: bool = False, label: str = "reference",
                      training: bool = True) -> Pass:
    """Run the configuration with the configured threads, then the probes, and read every run. Every run is executed
    again unless `reuse` (then complete runs in `results_dir` are kept: a check must not pass on folders older than
    the code). Without `training`, the trained methods' runs are left out (their probes still run)."""
    from bench.runs.specs import ALGORITHMS

    specs = config.specs(only, band_seeds)
    runs = [spec for spec in specs if training or not ALGORITHMS[spec.algo].trained]
    threads = threads or config.threads
    start = time.perf_counter()
    with pinned_threads(threads):
        outcome = run_matrix(runs, results_dir, launcher, force=not reuse, echo=echo)
        probes, probe_failures = run_probes(specs, results_dir, echo)
    failures = tuple(f"run {result.run_id} failed (see {runs_dir(results_dir) / result.run_id / 'error.txt'})"
                     for result in outcome.failed) + tuple(probe_failures)
    observations = []
    for spec in runs:
        folder = RunFolder(runs_dir(results_dir) / spec.run_id)
        if folder.is_complete():
            values = read_json(folder.metrics_path)
            if spec.algo in RL_ALGORITHMS:
                values = {**values, RL_SHIFT: rl_shift_steps(spec, results_dir)}
            observations.append(Observation(spec.algo, spec.model, spec.dataset, spec.seed, values))
    return Pass(tuple(observations + probes), failures, label, threads, time.perf_counter() - start)


def _rerun_worker(reference: Path, results_dir: Path, perturbation: Perturbation) -> Pass:
    """One perturbed rerun in its own (spawned) process, with an empty cache and results folder."""
    config = load_config(reference)
    with (results_dir / "rerun.log").open("a", encoding="utf-8") as log, redirect_stdout(log), \
            redirect_stderr(log), perturbed(perturbation, results_dir / "cache"):
        return run_configuration(config, results_dir, LocalLauncher(1), echo=print,
                                 threads=perturbation.threads or config.threads, label=perturbation.label)


def _init_worker(threads: int) -> None:
    os.environ.update({variable: str(threads) for variable in THREAD_VARIABLES})


def _rerun(reference: Path, folder: Path, perturbation: Perturbation, threads: int) -> Pass:
    """One perturbed rerun in a process of its own, started with `threads` threads, waited for."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"), initializer=_init_worker,
                             initargs=(threads,)) as pool:
        return pool.submit(_rerun_worker, reference.resolve(), folder.resolve(), perturbation).result()


@contextmanager
def reruns_in_background(reference: Path, results_dir: Path, config: CheckConfig,
                         echo: Callable[[str], None] = print) -> Iterator[Callable[[], list[Pass]]]:
    """Start one rerun per perturbation, each in a fresh process with an empty cache and results folder
    (`<results_dir>/rerun-<i>/`), as many at once as the cores beside this process's threads allow (at least one);
    yields a function that waits for them and returns their passes in configuration order."""
    slots = max(1, (os.cpu_count() or 1) // config.threads - 1)
    with ThreadPoolExecutor(max_workers=slots) as runner:
        futures = []
        for index, perturbation in enumerate(config.perturbations):
            folder = results_dir / f"rerun-{index}"
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            futures.append(runner.submit(_rerun, reference, folder, perturbation,
                                         perturbation.threads or config.threads))
        if futures:
            echo(f"measuring bands: {len(futures)} perturbed rerun(s) in the background, {slots} at a time "
                 f"({', '.join(p.label for p in config.perturbations)}; logs: {results_dir}/rerun-*/rerun.log)")
        yield lambda: [future.result() for future in futures]


def run_check(reference: Path, results_dir: Path, launcher: Launcher | None = None, reuse: bool = False,
              echo: Callable[[str], None] = print, only: Sequence[str] | None = None,
              perturbation: Perturbation | None = None, training: bool = True) -> CheckResult:
    """Run the reference configuration (or only the runs of the algorithms in `only`) and its probes and compare
    every value with its band; `reuse` keeps complete runs already in `results_dir` (e.g. an SFT start copied in);
    `perturbation` makes this machine round like another (with an empty cache); without `training` only the
    untrained runs and the probes run (seconds, and nothing chaotic)."""
    config = load_config(reference)
    stored = load_reference(reference, config)
    with perturbed(perturbation, None) if perturbation else nullcontext():
        threads = perturbation.threads if perturbation and perturbation.threads else config.threads
        run_pass = run_configuration(config, results_dir, launcher, reuse, echo, only, threads, training=training)
    observations = [o for o in run_pass.observations if only is None or o.algo in only]
    rows = compare(stored, observations, config.metrics)
    return CheckResult(tuple(rows), run_pass.failures, run_pass.threads, run_pass.seconds)


def update_reference(reference: Path, results_dir: Path, command: str, launcher: Launcher | None = None,
                     echo: Callable[[str], None] = print) -> Path:
    """Run the configuration (reference pass, band seeds included) while its perturbed reruns run, and write
    `<reference>/metrics.json` with every target's band (nothing is written when any run fails)."""
    config = load_config(reference)
    with reruns_in_background(reference, results_dir, config, echo) as wait_for_reruns:
        reference_pass = run_configuration(config, results_dir, launcher, echo=echo, band_seeds=True)
        reruns = wait_for_reruns()
    failures = [*reference_pass.failures, *(failure for rerun in reruns for failure in rerun.failures)]
    if failures:
        raise BenchError("reference not written: " + "; ".join(failures))
    samples = collect_samples(reference_pass, reruns, config.band_seeds(), config.metrics)
    missing = [f"{rerun.label} lacks {target}" for rerun in reruns for target in samples
               if target not in {observation.target for observation in rerun.observations}]
    if missing:
        raise BenchError("reference not written: " + "; ".join(missing))
    loo = leave_one_out(samples, config.runs, config.probes)
    passes = [{"label": p.label, "threads": p.threads, "seconds": round(p.seconds, 1)}
              for p in (reference_pass, *reruns)]
    document = {"command": command, "rule": RULE, "config": config.raw, "passes": passes,
                "leave_one_out": loo, "targets": build_reference(samples, config.runs, config.probes)}
    path = reference / REFERENCE_FILE
    atomic_write_json(path, document)
    passed = sum(member["passed"] for member in loo)
    echo(f"leave-one-out: {passed} of {len(loo)} sources inside the bands made from the others "
         f"({json.dumps({m['source']: round(m['worst_z'], 2) for m in loo})} worst z)")
    return path
