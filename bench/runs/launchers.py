"""Where the runs of a matrix execute: in this process, in N local worker processes, or as Slurm jobs (submitit).

A launcher gets one wave of specs (runs that do not depend on each other) and a picklable job function, and yields
each spec with its `JobResult` as jobs finish. A job that dies without returning (worker killed, Slurm time limit,
node failure) still yields a failed result, so the matrix can record it and carry on.

When a local worker process dies (the OS killed it: out of memory is the usual cause when several runs share a
machine), Python's process pool is broken and every run still in it is lost with it, not only the one that died. The
local launcher then runs each of the wave's unfinished runs again, one at a time in a fresh worker with all the
threads: what ran out of memory side by side usually fits alone (measured 2026-12-04: two `redial-rl` RL runs at
about 12 GB each on a 24 GB machine). A run whose worker dies again is recorded as failed, with that cause.

One run uses one device. A multi-GPU run is launched on its own with `accelerate launch -m cli run ...`; a later
matrix over the same grid skips it as complete.
"""

import os
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Protocol

from bench.errors import BenchError, UnknownNameError
from bench.runs.specs import RunSpec

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(frozen=True)
class JobResult:
    """What one run of a matrix ended as: `done`, `skipped` (already complete) or `failed` with the error text."""

    run_id: str
    status: str
    seconds: float = 0.0
    error: str | None = None

    @classmethod
    def failed(cls, run_id: str, error: str, seconds: float = 0.0) -> "JobResult":
        return cls(run_id, "failed", seconds, error)


JobFunction = Callable[[RunSpec], JobResult]


class Launcher(Protocol):
    def run(self, specs: Sequence[RunSpec], job: JobFunction) -> Iterator[tuple[RunSpec, JobResult]]:
        """Execute `job(spec)` for every spec of one wave; yield (spec, result) as each finishes."""
        ...


def _limit_threads(threads: int) -> None:
    """Worker initializer: share the machine's cores between workers unless the user set thread counts."""
    for variable in THREAD_VARIABLES:
        os.environ.setdefault(variable, str(threads))


WORKER_DIED = ("its worker process died without returning (killed by the OS; out of memory is the usual cause: "
               "each run needs its own peak memory, so fewer --jobs may fit)")


@dataclass(frozen=True)
class LocalLauncher:
    """`jobs == 1`: runs one after another in this process. `jobs > 1`: that many worker processes (spawned, so each
    run starts from a clean interpreter), each limited to its share of the CPU threads; after a worker dies, the
    wave's unfinished runs are run again one at a time (module docstring)."""

    jobs: int = 1
    log: Callable[[str], None] = print

    def run(self, specs: Sequence[RunSpec], job: JobFunction) -> Iterator[tuple[RunSpec, JobResult]]:
        if self.jobs <= 1:
            for spec in specs:
                yield spec, job(spec)
            return
        unfinished = list(specs)
        threads = max(1, (os.cpu_count() or 1) // self.jobs)
        with ProcessPoolExecutor(max_workers=self.jobs, mp_context=get_context("spawn"),
                                 initializer=_limit_threads, initargs=(threads,)) as pool:
            futures = {pool.submit(job, spec): spec for spec in specs}
            for future in as_completed(futures):
                spec = futures[future]
                result = _collect(future, spec)
                if result is None:
                    continue
                unfinished.remove(spec)
                yield spec, result
        if unfinished:
            self.log(f"a worker process died (killed by the OS; out of memory is the usual cause): running the "
                     f"{len(unfinished)} unfinished run(s) of this wave again, one at a time")
            for spec in unfinished:
                yield spec, _run_alone(spec, job)


def _run_alone(spec: RunSpec, job: JobFunction) -> JobResult:
    """`job(spec)` in a fresh worker process with all of the machine's threads; a failed result if it dies again."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"),
                             initializer=_limit_threads, initargs=(os.cpu_count() or 1,)) as pool:
        return _collect(pool.submit(job, spec), spec) or JobResult.failed(spec.run_id, WORKER_DIED)


def _collect(future: Future, spec: RunSpec) -> JobResult | None:
    """A worker's result: the job's own, a failed one for an exception the job raised, None when the worker died."""
    try:
        return future.result()
    except BrokenProcessPool:
        return None
    except Exception:
        return JobResult.failed(spec.run_id, f"worker process failed:\n{traceback.format_exc()}")


@dataclass(frozen=True)
class SlurmSettings:
    """Resources of one Slurm job (one run). `cluster` None lets submitit pick (Slurm when `srun` exists); "local"
    or "debug" run the same code path without Slurm (submitit's own modes, used in tests)."""

    folder: Path
    partition: str | None = None
    gpus_per_node: int = 1
    cpus_per_task: int = 8
    timeout_min: int = 240
    mem_gb: float | None = None
    cluster: str | None = None

    def executor_parameters(self) -> dict[str, Any]:
        """Keyword arguments for submitit's `AutoExecutor.update_parameters`."""
        parameters: dict[str, Any] = {"timeout_min": self.timeout_min, "gpus_per_node": self.gpus_per_node,
                                      "cpus_per_task": self.cpus_per_task, "tasks_per_node": 1, "nodes": 1}
        if self.mem_gb is not None:
            parameters["mem_gb"] = self.mem_gb
        if self.partition:
            parameters["slurm_partition"] = self.partition
        return parameters


def _submitit() -> Any:
    try:
        import submitit
    except ImportError:
        raise BenchError("the slurm launcher needs submitit: pip install 'bench[cluster]'") from None
    return submitit


@dataclass(frozen=True)
class SlurmLauncher:
    """One submitit job per run; submits a whole wave, then waits for each job's result."""

    settings: SlurmSettings
    log: Callable[[str], None] = print

    def make_executor(self) -> Any:
        submitit = _submitit()
        executor = submitit.AutoExecutor(folder=str(self.settings.folder / "%j"), cluster=self.settings.cluster)
        executor.update_parameters(**self.settings.executor_parameters())
        return executor

    def run(self, specs: Sequence[RunSpec], job: JobFunction) -> Iterator[tuple[RunSpec, JobResult]]:
        if not specs:
            return
        executor = self.make_executor()
        submitted = []
        for spec in specs:
            executor.update_parameters(name=spec.run_id)
            handle = executor.submit(job, spec)
            self.log(f"submitted {spec.run_id} as job {handle.job_id}")
            submitted.append((spec, handle, time.perf_counter()))
        for spec, handle, start in submitted:
            try:
                yield spec, handle.result()
            except Exception as error:
                yield spec, JobResult.failed(spec.run_id, f"job {handle.job_id} failed: {error}",
                                             time.perf_counter() - start)


LAUNCHERS = ("local", "slurm")


def make_launcher(name: str, jobs: int = 1, slurm: SlurmSettings | None = None,
                  log: Callable[[str], None] = print) -> Launcher:
    """`local` (N worker processes, 1 = in this process) or `slurm` (submitit; needs `slurm` settings)."""
    if name == "local":
        return LocalLauncher(jobs, log)
    if name == "slurm":
        return SlurmLauncher(slurm or SlurmSettings(Path("results/slurm")), log)
    raise UnknownNameError("launcher", name, list(LAUNCHERS))
