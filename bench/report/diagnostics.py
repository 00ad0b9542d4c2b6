"""Training diagnostics of a table's RL runs: did RL move the ranking, the list length and the learning signal, did a
run collapse, and what the table cost in wall time.

Per RL run (grpo, gspo, rank_grpo and their variants) against its SFT start (`data.sft_start`):
- **Hit gain per rank**: test hit rate at ranks 1..20 (summary.json `hit_rate_at_rank`: the share of test examples
  whose item at that rank is a hit) minus the SFT start's: which ranks RL improved (1, 2-5, 6-20).
- **List-length drift**: test `mean_list_length` (summary.json, else the examples' `n_parsed`) minus the SFT start's,
  and train_log.jsonl `mean_completion_length` and `items_emitted` over the first vs the last 10% of logged steps.
- **Tied-reward groups**: train_log.jsonl `frac_tied_groups` (groups whose rewards all tie: no gradient) over the
  first 10% of logged steps (at least one), the steps between, and the last 10%. The testbed's learning-signal
  target is at most `TIED_TARGET` tied at the start.
- **Collapse**: final test list length below `COLLAPSE_LENGTH` items while the SFT start's is at least
  `COLLAPSE_SFT_LENGTH`, or items emitted over the last 10% of steps below `COLLAPSE_ITEMS_RATIO` x the first 10%.
Per method: means over the seeds that have each quantity; for >= 2 seeds a 95% interval of the rank-1 and ranks-2-20
gains from resampling seeds (not test examples), widened for few seeds (`stats.widened_interval`). Compute, for every
method: summed summary.json `predict_seconds` (training included; an RL run that built its SFT start inside itself,
seen from file times, has that run's seconds subtracted: it counts under sft) and environment.json `torch_threads`:
wall seconds, and wall x threads (thread-seconds, not measured CPU time). Files are untrusted: what is missing is
named per run, a train_log.jsonl line that is not a JSON object with an integer `step` is skipped and counted.

report.json, per table, `diagnostics` (numbers are null where missing):
- `tied_target` (0.3), `collapsed` (run ids), `notes` (what is missing, with its run ids; lines skipped per run).
- `methods[]`: `method`, `n_seeds`, `n_gain_seeds` (seeds with a hit gain), `hit_gain_at_rank` (20 floats),
  `hit_gain_rank1` and `hit_gain_ranks_2_20` (`{mean, ci_low, ci_high}`, bounds null under 2 seeds),
  `hit_gain_ranks_2_5`, `hit_gain_ranks_6_20`, then as in `runs[]` (means over seeds): `list_length_drift`,
  `completion_length_first`, `completion_length_last`, `items_first`, `items_last`, `tied_start`, `tied_middle`,
  `tied_end`, `tied_start_meets_target` (bool); and `runs[]`.
- `runs[]`: `run_id`, `seed`, `sft_run_id`, `hit_gain_at_rank`, `mean_list_length`, `sft_mean_list_length`, the
  fields above, `collapsed`, `collapse_reasons`, `train_log_steps`, `train_log_skipped`, `missing`.
- `compute`: `methods[]` (`method`, `n_runs`, `wall_seconds`, `thread_seconds`, `threads` (distinct torch_threads),
  `runs_without_seconds`, `runs_without_threads`), `wall_seconds`, `thread_seconds` (null when a run's threads are
  unknown), `threads`, `nested_sft_seconds` (subtracted from RL runs).
"""

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.evaluation.metrics import N_RANKS
from bench.report.data import Group, RunRecord, sft_start
from bench.report.stats import Interval, draw_seeds, widened_interval
from bench.runs.folders import RunFolder, read_untrusted_jsonl
from bench.runs.specs import RL_ALGORITHMS

TIED_TARGET, COLLAPSE_LENGTH, COLLAPSE_SFT_LENGTH, COLLAPSE_ITEMS_RATIO = 0.30, 5.0, 10.0, 0.5
WINDOW = 0.1  # share of the logged steps averaged as the start and as the end of training


def _number(value: Any) -> float | None:
    """A finite float, or None (bools, strings, NaN are not numbers here)."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


@dataclass(frozen=True)
class TrainLog:
    """train_log.jsonl as read: lines by step (the last one kept per step, as after a resume), lines skipped."""

    lines: tuple[dict[str, Any], ...] = ()
    skipped: int = 0
    problem: str | None = None
    """Why no lines could be read ("no train_log.jsonl", "train_log.jsonl unreadable (...)"), or None."""


def read_train_log(path: Path) -> TrainLog:
    """Read one train_log.jsonl without raising: malformed lines (not JSON, not an object, no integer step) are
    skipped and counted."""
    values, problem = read_untrusted_jsonl(path)
    if problem is not None:
        return TrainLog(problem=problem)
    by_step: dict[int, dict[str, Any]] = {}
    skipped = 0
    for line in values:
        step = line.get("step") if isinstance(line, dict) else None
        if isinstance(step, int) and not isinstance(step, bool):
            by_step[step] = line
        else:
            skipped += 1
    return TrainLog(tuple(by_step[step] for step in sorted(by_step)), skipped)


@dataclass(frozen=True)
class Phases:
    """A train_log field averaged over the first `WINDOW` of the steps that log it (at least one), the steps
    between, and the last `WINDOW`; None where there is no step."""

    start: float | None = None
    middle: float | None = None
    end: float | None = None
    n_steps: int = 0


def phases(lines: Sequence[dict[str, Any]], name: str) -> Phases:
    values = [value for line in lines if (value := _number(line.get(name))) is not None]
    if not values:
        return Phases()
    n = len(values)
    k = max(1, int(n * WINDOW + 1e-9))
    middle = values[k:n - k]
    return Phases(float(np.mean(values[:k])), float(np.mean(middle)) if middle else None,
                  float(np.mean(values[-k:])), n)


@dataclass(frozen=True)
class RunDiagnostics:
    """One RL run against its SFT start."""

    run_id: str
    seed: int
    sft_run_id: str | None
    hit_gain: tuple[float, ...] | None
    list_length: float | None
    sft_list_length: float | None
    completion_length: Phases
    items: Phases
    tied: Phases
    train_log_steps: int
    train_log_skipped: int
    collapse_reasons: tuple[str, ...]
    missing: tuple[str, ...]

    @property
    def collapsed(self) -> bool:
        return bool(self.collapse_reasons)

    @property
    def list_length_drift(self) -> float | None:
        return None if self.list_length is None or self.sft_list_length is None else \
            self.list_length - self.sft_list_length

    def value(self, quantity: str) -> float | None:
        """`list_length_drift`, or `<completion_length|items|tied>.<start|middle|end>`."""
        if quantity == "list_length_drift":
            return self.list_length_drift
        name, phase = quantity.split(".")
        return getattr(getattr(self, name), phase)


def hit_rates(record: RunRecord) -> list[float] | None:
    """Test hit rate per rank 1..20 (summary.json; every summary since the first has it), None if malformed."""
    found = record.summary.get("hit_rate_at_rank")
    if isinstance(found, list) and len(found) == N_RANKS and all(_number(v) is not None for v in found):
        return [float(v) for v in found]
    return None


def list_length(record: RunRecord) -> float | None:
    """Test mean list length (parsed items per example): summary.json's, else the examples' `n_parsed`."""
    found = _number(record.summary.get("mean_list_length"))
    if found is not None:
        return found
    parsed = record.columns.get("format_rate", (np.array([]), None))[0]
    return float(parsed.mean()) if len(parsed) else None


def collapse_reasons(length: float | None, sft_length: float | None, items: Phases) -> tuple[str, ...]:
    """Why a run collapsed (module docstring), empty when it did not or when nothing tells."""
    reasons = []
    if (length is not None and sft_length is not None and length < COLLAPSE_LENGTH
            and sft_length >= COLLAPSE_SFT_LENGTH):
        reasons.append(f"test list length {length:.1f} < {COLLAPSE_LENGTH:g} (SFT start {sft_length:.1f})")
    if items.start and items.end is not None and items.end < COLLAPSE_ITEMS_RATIO * items.start:
        reasons.append(f"items emitted {items.start:.1f} -> {items.end:.1f} (first -> last {WINDOW:.0%} of steps)")
    return tuple(reasons)


def diagnose_run(record: RunRecord, start: RunRecord | None, log: TrainLog) -> RunDiagnostics:
    """One RL run's diagnostics from its record, its SFT start's (None when absent) and its train log."""
    missing = [] if start is not None else ["no SFT start found (absent, or the run has no curve.jsonl)"]
    rates, sft_rates = hit_rates(record), hit_rates(start) if start is not None else None
    missing += [] if rates is not None else ["no hit_rate_at_rank in summary.json"]
    missing += [] if start is None or sft_rates is not None else ["no hit_rate_at_rank in the SFT start's summary"]
    gain = tuple(a - b for a, b in zip(rates, sft_rates, strict=True)) if rates and sft_rates else None
    length, sft_length = list_length(record), list_length(start) if start is not None else None
    missing += [] if log.problem is None else [log.problem]
    items_name = "items_emitted" if any("items_emitted" in line for line in log.lines) else \
        "items_emitted_all_processes"
    completion, items, tied = (phases(log.lines, "mean_completion_length"), phases(log.lines, items_name),
                               phases(log.lines, "frac_tied_groups"))
    if log.lines:
        missing += [f"no {name} in train_log.jsonl" for name, found in (("frac_tied_groups", tied),
                    ("mean_completion_length", completion), ("items_emitted", items)) if not found.n_steps]
    return RunDiagnostics(record.spec.run_id, record.spec.seed, start.spec.run_id if start else None, gain, length,
                          sft_length, completion, items, tied, len(log.lines), log.skipped,
                          collapse_reasons(length, sft_length, items), tuple(missing))


def meets_tied_target(share: float | None) -> bool | None:
    """At most `TIED_TARGET` of the groups tied (a share equal to it, up to rounding, meets it); None if unknown."""
    return None if share is None else share <= TIED_TARGET + 1e-9


def _mean(values: Sequence[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return float(np.mean(present)) if present else None


def seed_mean_interval(values: np.ndarray, n_resamples: int = 10_000, seed: int = 0) -> Interval:
    """Mean over seeds with a 95% interval from resampling seeds, widened for few seeds; NaN bounds for one seed."""
    point = float(values.mean())
    if len(values) < 2:
        return Interval(point, math.nan, math.nan)
    replicates = values[draw_seeds(len(values), n_resamples, seed)].mean(axis=1)
    return widened_interval(point, replicates, np.zeros_like(replicates), len(values), bounds=(-1.0, 1.0))


@dataclass(frozen=True)
class MethodDiagnostics:
    """One RL method: its runs and their means over seeds."""

    method: str
    runs: tuple[RunDiagnostics, ...]
    hit_gain: tuple[float, ...] | None
    rank1: Interval | None
    ranks_2_20: Interval | None
    n_gain_seeds: int

    @property
    def ranks_2_5(self) -> float | None:
        return None if self.hit_gain is None else float(np.mean(self.hit_gain[1:5]))

    @property
    def ranks_6_20(self) -> float | None:
        return None if self.hit_gain is None else float(np.mean(self.hit_gain[5:]))

    def mean(self, quantity: str) -> float | None:
        """Mean over the seeds that have it of a run quantity (`RunDiagnostics.value`)."""
        return _mean([run.value(quantity) for run in self.runs])

    def count(self, quantity: str) -> int:  # how many seeds have the quantity
        return sum(run.value(quantity) is not None for run in self.runs)


def diagnose_method(method: str, runs: Sequence[RunDiagnostics], n_resamples: int = 10_000,
                    seed: int = 0) -> MethodDiagnostics:
    gains = np.array([run.hit_gain for run in runs if run.hit_gain is not None])
    if not len(gains):
        return MethodDiagnostics(method, tuple(runs), None, None, None, 0)
    return MethodDiagnostics(method, tuple(runs), tuple(float(v) for v in gains.mean(axis=0)),
                             seed_mean_interval(gains[:, 0], n_resamples, seed),
                             seed_mean_interval(gains[:, 1:].mean(axis=1), n_resamples, seed + 1), len(gains))


@dataclass(frozen=True)
class ComputeRow:
    """A method's runs (every folder) and their summed wall seconds; thread-seconds = sum of wall x threads."""

    method: str
    n_runs: int
    wall_seconds: float | None
    thread_seconds: float | None
    threads: tuple[int, ...]
    runs_without_seconds: int
    runs_without_threads: int


def torch_threads(record: RunRecord) -> int | None:
    """environment.json's `torch_threads` (a positive integer), or None."""
    try:
        value = json.loads((record.root / "environment.json").read_text(encoding="utf-8")).get("torch_threads")
    except (OSError, ValueError, AttributeError, TypeError):  # no folder, no file, not JSON, not an object
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def nested_sft_seconds(record: RunRecord, start: RunRecord | None, claimed: set[str]) -> float:
    """The SFT start's `predict_seconds` when the RL run built it inside itself (`ensure_sft_model`: its metrics.json
    was written after the RL run's spec.json and before its summary.json), else 0; once per SFT run (`claimed`)."""
    seconds = _number(start.summary.get("predict_seconds")) if start is not None else None
    if seconds is None or start is None or record.root is None or start.root is None or start.spec.run_id in claimed:
        return 0.0
    try:
        began, ended = (RunFolder(record.root).spec_path.stat().st_mtime_ns,
                        RunFolder(record.root).summary_path.stat().st_mtime_ns)
        built = RunFolder(start.root).metrics_path.stat().st_mtime_ns
    except OSError:
        return 0.0
    if not began < built < ended:
        return 0.0
    claimed.add(start.spec.run_id)
    return seconds


def compute_row(method: str, runs: Sequence[RunRecord], nested: dict[str, float]) -> ComputeRow:
    """Summed wall seconds (None when no run has any) and wall x threads (None when a run's threads are unknown)."""
    walls, thread_seconds, threads = 0.0, 0.0, set[int]()
    no_seconds = no_threads = 0
    for run in runs:
        seconds = _number(run.summary.get("predict_seconds"))
        count = torch_threads(run)
        no_seconds += seconds is None
        no_threads += count is None
        wall = max(0.0, (seconds or 0.0) - nested.get(run.spec.run_id, 0.0))
        walls += wall
        if count is not None:
            threads.add(count)
            thread_seconds += wall * count
    wall = None if no_seconds == len(runs) else walls
    return ComputeRow(method, len(runs), wall, None if no_threads or wall is None else thread_seconds,
                      tuple(sorted(threads)), no_seconds, no_threads)


@dataclass(frozen=True)
class GroupDiagnostics:
    """A table's RL methods, its compute per method and in total (a row named "total")."""

    methods: tuple[MethodDiagnostics, ...]
    compute: tuple[ComputeRow, ...]
    total: ComputeRow
    nested_sft_seconds: float
    notes: tuple[str, ...]

    @property
    def collapsed(self) -> list[RunDiagnostics]:
        return [run for method in self.methods for run in method.runs if run.collapsed]

    def to_json(self) -> dict[str, Any]:
        """The `diagnostics` entry of a table in report.json (module docstring); NaN and missing are null."""
        return {"tied_target": TIED_TARGET, "collapsed": [run.run_id for run in self.collapsed],
                "notes": list(self.notes), "methods": [_method_json(method) for method in self.methods],
                "compute": {"methods": [{**asdict(row), "threads": list(row.threads)} for row in self.compute],
                            "wall_seconds": self.total.wall_seconds, "thread_seconds": self.total.thread_seconds,
                            "threads": list(self.total.threads), "nested_sft_seconds": self.nested_sft_seconds}}


def _interval_json(cell: Interval | None) -> dict[str, float | None] | None:
    return None if cell is None else {"mean": cell.mean, "ci_low": _number(cell.low), "ci_high": _number(cell.high)}


def _quantities_json(value: Callable[[str], float | None]) -> dict[str, Any]:
    fields = {"list_length_drift": "list_length_drift", "completion_length_first": "completion_length.start",
              "completion_length_last": "completion_length.end", "items_first": "items.start",
              "items_last": "items.end", "tied_start": "tied.start", "tied_middle": "tied.middle",
              "tied_end": "tied.end"}
    found = {key: value(quantity) for key, quantity in fields.items()}
    return {**found, "tied_start_meets_target": meets_tied_target(found["tied_start"])}


def _run_json(run: RunDiagnostics) -> dict[str, Any]:
    return {"run_id": run.run_id, "seed": run.seed, "sft_run_id": run.sft_run_id,
            "hit_gain_at_rank": None if run.hit_gain is None else list(run.hit_gain),
            "mean_list_length": run.list_length, "sft_mean_list_length": run.sft_list_length,
            **_quantities_json(run.value),
            "collapsed": run.collapsed, "collapse_reasons": list(run.collapse_reasons),
            "train_log_steps": run.train_log_steps, "train_log_skipped": run.train_log_skipped,
            "missing": list(run.missing)}


def _method_json(method: MethodDiagnostics) -> dict[str, Any]:
    return {"method": method.method, "n_seeds": len(method.runs), "n_gain_seeds": method.n_gain_seeds,
            "hit_gain_at_rank": None if method.hit_gain is None else list(method.hit_gain),
            "hit_gain_rank1": _interval_json(method.rank1), "hit_gain_ranks_2_5": method.ranks_2_5,
            "hit_gain_ranks_6_20": method.ranks_6_20, "hit_gain_ranks_2_20": _interval_json(method.ranks_2_20),
            **_quantities_json(method.mean),
            "runs": [_run_json(run) for run in method.runs]}


def diagnose_group(group: Group, n_resamples: int = 10_000, seed: int = 0) -> GroupDiagnostics:
    """Every RL method of a table, and every method's compute; reads train_log.jsonl and environment.json from the
    run folders (`RunRecord.root`)."""
    records = [run for runs in group.methods.values() for run in runs]
    methods: list[MethodDiagnostics] = []
    skipped: list[str] = []
    nested: dict[str, float] = {}
    claimed: set[str] = set()
    lacking: dict[str, list[str]] = {}
    for name, runs in group.methods.items():
        rl_runs = [run for run in runs if run.spec.algo in RL_ALGORITHMS]
        if not rl_runs:
            continue
        diagnosed: list[RunDiagnostics] = []
        for run in rl_runs:
            start = sft_start(records, run)
            log = read_train_log(RunFolder(run.root).train_log_path) if run.root else TrainLog(problem="no run folder")
            found = diagnose_run(run, start, log)
            diagnosed.append(found)
            nested[run.spec.run_id] = nested_sft_seconds(run, start, claimed)
            for what in found.missing:
                lacking.setdefault(what, []).append(run.spec.run_id)
            if found.train_log_skipped:
                skipped.append(f"{run.spec.run_id}: {found.train_log_skipped} malformed train_log.jsonl "
                               f"line{'s' if found.train_log_skipped != 1 else ''} skipped.")
        methods.append(diagnose_method(name, diagnosed, n_resamples, seed))
    compute = tuple(compute_row(name, runs, nested) for name, runs in group.methods.items())
    notes = [f"{what}: {', '.join(ids)}." for what, ids in lacking.items()] + skipped
    return GroupDiagnostics(tuple(methods), compute, compute_row("total", records, nested), sum(nested.values()),
                            tuple(notes))
