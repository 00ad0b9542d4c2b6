"""A grid of runs (`bench matrix`): expand, order, skip what is complete, run the rest, keep going on failures.

The grid (datasets x models x algorithms x seeds) becomes a list of RunSpecs with equal run ids removed (popularity
and EASE get model "none", so one run serves every backbone). Every RL run's SFT warm start (the `sft` run that
`ensure_sft_model` would build) is added to the plan, and the plan runs in two waves: first everything that is not
RL (SFT included), then the RL runs. So parallel workers never build the same SFT run twice, and an RL run whose SFT
warm start failed is reported failed at once instead of retrying the SFT.

A run that raises is recorded in `<run folder>/error.txt` and in `<results>/matrix.log`, and the matrix carries on;
failures are listed at the end. Resuming is re-running the same command: complete runs (metrics.json present) are
skipped; an interrupted run is executed again and resumes from its own caches and checkpoints.
"""

import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.runs.folders import RunFolder, atomic_write_text, runs_dir
from bench.runs.launchers import JobResult, Launcher, LocalLauncher
from bench.runs.specs import RL_ALGORITHMS, RunSpec, make_spec, parse_method, sibling_spec

ERROR_FILE = "error.txt"
MATRIX_LOG = "matrix.log"


def expand_grid(algos: Sequence[str], models: Sequence[str], seeds: Sequence[int],
                datasets: Sequence[str] = ("redial",), preset: str = "default", preset_overrides: dict[str, Any] | None = None,
                **fields: Any) -> list[RunSpec]:
    """Every (dataset, model, method, seed) as a spec, equal run ids kept once, in that loop order. A method may be
    a named variant (`rank_grpo+mrc`, `grpo+mu2`: `bench.runs.specs.parse_method`), whose settings win over
    `fields` and `preset_overrides`."""
    methods = [parse_method(algo) for algo in algos]
    if not (algos and models and seeds and datasets):
        raise BenchError("the matrix is empty: give at least one algorithm, model, seed and dataset")
    specs = [make_spec(algo, model, preset, {**(preset_overrides or {}), **overrides}, dataset=dataset, seed=seed,
                       **{**fields, **variant})
             for dataset in datasets for model in models for algo, variant, overrides in methods for seed in seeds]
    return _unique(specs)


def parse_seeds(text: str) -> list[int]:
    """`--seeds` -> seeds: comma-separated integers and inclusive ranges, `0,1,2`, `0-9`, `0-4,10`. Raises BenchError
    naming the part that is neither."""
    seeds: list[int] = []
    for part in (part.strip() for part in text.split(",")):
        if not part:
            continue
        low, dash, high = part.partition("-")
        try:
            seeds.extend(range(int(low), int(high) + 1) if dash else [int(part)])
        except ValueError:
            raise BenchError(f"--seeds: {part!r} is neither a seed nor a range like 0-9") from None
    return list(dict.fromkeys(seeds))


def _unique(specs: Iterable[RunSpec]) -> list[RunSpec]:
    seen: dict[str, RunSpec] = {}
    for spec in specs:
        seen.setdefault(spec.run_id, spec)
    return list(seen.values())


def sft_dependency(spec: RunSpec) -> RunSpec | None:
    """The SFT run an RL run starts from (the same spec `algorithms.sft.ensure_sft_model` executes), else None."""
    return sibling_spec(spec, "sft") if spec.algo in RL_ALGORITHMS else None


def plan_waves(specs: Sequence[RunSpec]) -> list[list[RunSpec]]:
    """[non-RL runs + the SFT warm starts RL runs need, RL runs], each in grid order, without duplicates."""
    dependencies = [dependency for spec in specs if (dependency := sft_dependency(spec)) is not None]
    first = _unique([spec for spec in specs if spec.algo not in RL_ALGORITHMS] + dependencies)
    second = _unique([spec for spec in specs if spec.algo in RL_ALGORITHMS])
    return [wave for wave in (first, second) if wave]


def run_job(spec: RunSpec, results_dir: Path, force: bool = False, progress: bool = True) -> JobResult:
    """Execute one run and report how it ended; any exception becomes a failed result (with its traceback, or the
    one-line message of a BenchError). Module-level so that worker processes and Slurm jobs can unpickle it."""
    from bench.runs.runner import execute

    start = time.perf_counter()
    try:
        outcome = execute(spec, results_dir, force=force, progress=progress,
                          log=lambda message: print(f"[{spec.run_id}] {message}", flush=True))
    except BenchError as error:
        return JobResult.failed(spec.run_id, f"{type(error).__name__}: {error}", time.perf_counter() - start)
    except Exception:
        return JobResult.failed(spec.run_id, traceback.format_exc(), time.perf_counter() - start)
    return JobResult(spec.run_id, "skipped" if outcome.skipped else "done", time.perf_counter() - start)


@dataclass
class MatrixResult:
    """How every run of the plan ended, in the order they finished."""

    results: list[JobResult] = field(default_factory=list)

    def with_status(self, status: str) -> list[JobResult]:
        return [result for result in self.results if result.status == status]

    @property
    def failed(self) -> list[JobResult]:
        return self.with_status("failed")

    def summary(self) -> str:
        counts = {status: len(self.with_status(status)) for status in ("done", "skipped", "failed")}
        return ", ".join(f"{count} {status}" for status, count in counts.items())


class MatrixLog:
    """Lines to the console and appended to `<results>/matrix.log` (timestamped, one per event)."""

    def __init__(self, results_dir: Path, echo: Callable[[str], None]) -> None:
        self.path = results_dir / MATRIX_LOG
        self.echo = echo

    def __call__(self, message: str) -> None:
        self.echo(message)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(f"{stamp} {message}\n")


def _record(result: JobResult, results_dir: Path, log: MatrixLog) -> None:
    """error.txt for a failure (first line to the log); a stale error.txt goes once the run succeeds."""
    error_path = runs_dir(results_dir) / result.run_id / ERROR_FILE
    if result.status == "failed":
        atomic_write_text(error_path, (result.error or "unknown error").rstrip() + "\n")
        first_line = (result.error or "unknown error").strip().splitlines()[-1]
        log(f"FAILED {result.run_id} after {result.seconds:.1f} s: {first_line} (see {error_path})")
    else:
        error_path.unlink(missing_ok=True)
        log(f"{result.status} {result.run_id} ({result.seconds:.1f} s)")


def run_matrix(specs: Sequence[RunSpec], results_dir: Path, launcher: Launcher | None = None, *,
               force: bool = False, echo: Callable[[str], None] = print) -> MatrixResult:
    """Run the plan wave by wave through `launcher` (default: sequential, in this process)."""
    launcher = launcher or LocalLauncher()
    log = MatrixLog(results_dir, echo)
    waves = plan_waves(specs)
    total = sum(len(wave) for wave in waves)
    progress = isinstance(launcher, LocalLauncher) and launcher.jobs <= 1
    job = partial(run_job, results_dir=results_dir.resolve(), force=force, progress=progress)
    outcome = MatrixResult()
    log(f"matrix: {total} runs in {len(waves)} wave(s) under {results_dir}")
    for wave in waves:
        pending = []
        for spec in wave:
            dependency = sft_dependency(spec)
            failed_ids = {result.run_id for result in outcome.failed}
            if not force and RunFolder(runs_dir(results_dir) / spec.run_id).is_complete():
                outcome.results.append(JobResult(spec.run_id, "skipped"))
            elif dependency is not None and dependency.run_id in failed_ids:
                result = JobResult.failed(spec.run_id, f"not run: its SFT warm start {dependency.run_id} failed")
                outcome.results.append(result)
                _record(result, results_dir, log)
            else:
                pending.append(spec)
        if len(pending) < len(wave):
            log(f"{len(wave) - len(pending)} of {len(wave)} runs of this wave already complete or blocked")
        for _, result in launcher.run(pending, job):
            outcome.results.append(result)
            _record(result, results_dir, log)
    log(f"matrix finished: {outcome.summary()}")
    for result in outcome.failed:
        log(f"  failed: {result.run_id}")
    return outcome
