"""Executing one run: spec -> method predictions -> the one evaluator -> files in the run folder.

Flow: skip when metrics.json exists (unless forced); take the run folder's OS lock; write spec.json and
environment.json; load the dataset; ask the method for raw text per evaluation example; score under the spec's
protocol (and the other protocol, for comparison with the paper); write examples.jsonl, summary.json, then
metrics.json last (marks completion).

Two processes that need the same run folder (`--algo grpo` and `--algo rank_grpo` sharing one SFT warm start, two
matrix workers) never build it at once: the second waits on the folder's `.lock` (`filelock`, an OS lock that the
kernel releases when its holder dies, so a killed process never blocks the next), says so, and then reuses the run
the first completed. Under one multi-process launch (`accelerate launch`, WORLD_SIZE > 1) the processes build the
run together and rank 0 alone writes, so no lock is taken there.
"""

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.data.datasets import load_dataset
from bench.errors import BenchError
from bench.evaluation.evaluator import PROTOCOLS, evaluate
from bench.evaluation.parsing import parse_lines
from bench.models.vllm_backend import released_engines
from bench.runs.context import RunContext, prompt_id
from bench.runs.folders import RunFolder, atomic_write_json, atomic_write_jsonl, read_json, runs_dir
from bench.runs.methods import get_method
from bench.runs.specs import RunSpec


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    folder: Path
    metrics: dict[str, object]
    skipped: bool


def default_cache_dir() -> Path:
    from bench.models.backbones import default_cache_dir as backbone_cache

    return backbone_cache()


def is_main_process() -> bool:
    """Under `accelerate launch` every process executes the run; only rank 0 writes the run folder."""
    return int(os.environ.get("RANK", "0")) == 0


def check_backbone_available(spec: RunSpec) -> None:
    """Fail before any work when a real backbone's weights are absent (tiny ones are built on demand)."""
    from bench.models.backbones import require_weights

    if spec.model.startswith("openai:") or spec.random_init:
        return
    require_weights(spec.model)


@contextmanager
def run_lock(folder: RunFolder, log: Callable[[str], None]) -> Iterator[None]:
    """Hold the OS lock of a run folder for the duration; wait (and say so) while another process holds it."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        yield
        return
    from filelock import FileLock, Timeout

    lock = FileLock(str(folder.lock_path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log(f"waiting for {folder.root.name}: another process is building this run (lock {folder.lock_path})")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


REPORT_EXTRAS = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",)}
"""`--report-to` integrations and the packages any of which transformers needs for them (optional extras)."""


def check_report_to(report_to: str) -> None:
    """Fail before any work when `report_to` is unknown or its optional extra is not installed."""
    import importlib.util

    if report_to == "none":
        return
    if report_to not in REPORT_EXTRAS:
        raise BenchError(f"--report-to must be none, {', '.join(REPORT_EXTRAS)}; got {report_to!r}")
    if all(importlib.util.find_spec(package) is None for package in REPORT_EXTRAS[report_to]):
        raise BenchError(f"--report-to {report_to} needs the optional extra: pip install -e \".[{report_to}]\"")


def execute(spec: RunSpec, results_dir: Path, *, force: bool = False, cache_dir: Path | None = None,
            log: Callable[[str], None] = print, progress: bool = True, report_to: str = "none",
            started: float | None = None) -> RunOutcome:
    """Run `spec` (or skip it when already complete, also when another process completed it while this one waited
    for the folder's lock) and return its metrics. `report_to` goes to the trainers (transformers reporting);
    `started` (`time.monotonic`, default now) is the origin of the progress lines' elapsed time."""
    folder = RunFolder(runs_dir(results_dir) / spec.run_id)
    if folder.is_complete() and not force:
        return RunOutcome(spec.run_id, folder.root, read_json(folder.metrics_path), skipped=True)
    check_report_to(report_to)
    info, _ = get_method(spec.algo)
    if info.needs_model:
        check_backbone_available(spec)
    folder.root.mkdir(parents=True, exist_ok=True)
    with run_lock(folder, log):
        if folder.is_complete() and not force:
            log(f"run {spec.run_id} was completed by another process; reusing it")
            return RunOutcome(spec.run_id, folder.root, read_json(folder.metrics_path), skipped=True)
        return _build(spec, folder, results_dir, force, cache_dir, log, progress, report_to,
                      time.monotonic() if started is None else started)


def _build(spec: RunSpec, folder: RunFolder, results_dir: Path, force: bool, cache_dir: Path | None,
           log: Callable[[str], None], progress: bool, report_to: str, started: float) -> RunOutcome:
    """Predict, evaluate and write the run folder (the caller holds its lock)."""
    from bench.runs.environment import describe_environment

    info, predict = get_method(spec.algo)
    writer = is_main_process()
    if writer and force and folder.metrics_path.exists():
        folder.metrics_path.unlink()
    if writer:
        atomic_write_json(folder.spec_path, spec.to_json())
        atomic_write_json(folder.environment_path, describe_environment())
    dataset = load_dataset(spec.dataset, spec.catalog)
    context = RunContext(spec, dataset, folder, cache_dir or default_cache_dir(), results_dir, log, progress,
                         report_to, started)
    examples = context.eval_examples()
    log(f"run {spec.run_id}: {info.name} on {spec.model}, {len(examples)} {spec.split} examples")
    start = time.perf_counter()
    with released_engines():
        output = predict(context)
    predict_seconds = time.perf_counter() - start
    results = {protocol: evaluate(examples, output.predictions, dataset.catalog, protocol) for protocol in PROTOCOLS}
    main = results[spec.protocol]
    other = results["reference" if spec.protocol == "standard" else "standard"]
    records = []
    for example, scores in zip(examples, main.examples, strict=True):
        text = output.predictions.get(example.id, "")
        record = {"id": example.id, "prompt_id": prompt_id(example), "text": text,
                  "parsed": [list(item) if item else None for item in parse_lines(text)],
                  "groundtruth": [list(item) for item in example.groundtruth], "scores": scores.to_json()}
        record.update(output.per_example.get(example.id, {}))
        records.append(record)
    if not writer:
        return RunOutcome(spec.run_id, folder.root, main.metrics, skipped=False)
    atomic_write_jsonl(folder.examples_path, records)
    summary = {"run_id": spec.run_id, "algo": spec.algo, "model": spec.model, "dataset": spec.dataset,
               "seed": spec.seed, "preset": spec.preset, "predict_seconds": predict_seconds,
               "hit_rate_at_rank": main.hit_rate_at_rank, "mean_list_length": main.mean_list_length,
               f"metrics_{other.metrics['protocol']}": other.metrics, "artifacts": output.artifacts}
    atomic_write_json(folder.summary_path, summary)
    atomic_write_json(folder.metrics_path, main.metrics)
    return RunOutcome(spec.run_id, folder.root, main.metrics, skipped=False)
