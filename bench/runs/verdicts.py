"""What a regression check compares (`bench check`): observations of runs, the reference document built from a
reference pass and its reruns, and the verdict of every (run, seed, metric).

A tolerance is `margin` x the largest movement the reruns showed (fresh process, cache and results folder, possibly
another thread count), or `absolute` where every rerun reproduced the value exactly. A metric further than its
tolerance from the reference fails either way: lower is `regressed`, higher is `improved` (for `duplicate_rate`,
lower is better). The seed-noise band (mean ± max(k x std over seeds, floor)) is reported, never a gate.
"""

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from bench.errors import BenchError

LOWER_IS_BETTER = frozenset({"duplicate_rate"})
RULE = ("tolerance = margin x the largest |rerun - reference| over the reruns (fresh process, cache and results; "
        "thread counts rerun_threads), or `absolute` where every rerun reproduced the value exactly; a run fails "
        "when a metric moves further than its tolerance either way. Seed noise (report only): mean ± "
        "max(seed_std_multiplier x sample std over seeds, seed_floor).")


@dataclass(frozen=True)
class TolerancePolicy:
    """How tolerances are measured (`bench check --update`) and how loose the seed-noise line is."""

    rerun_threads: tuple[int, ...]
    margin: float
    absolute: float
    seed_std_multiplier: float
    seed_floor: float

    def tolerance(self, movement: float) -> float:
        """`margin` x the largest movement seen over the reruns; `absolute` when it is 0 (deterministic)."""
        return max(self.margin * movement, self.absolute)


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


@dataclass(frozen=True)
class Pass:
    """One execution of the configuration: its observations, failed runs, thread count and wall time."""

    observations: tuple[Observation, ...]
    failures: tuple[str, ...]
    threads: int
    seconds: float


def seed_noise_band(values: Sequence[float], policy: TolerancePolicy) -> dict[str, Any]:
    """Mean, sample std over seeds (0 for one seed) and the band mean ± max(seed_std_multiplier x std, seed_floor)."""
    mean = float(np.mean(values))
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    half_width = max(policy.seed_std_multiplier * std, policy.seed_floor)
    return {"mean": mean, "std": std, "low": mean - half_width, "high": mean + half_width}


def _by_run(run_pass: Pass) -> dict[tuple[str, int], dict[str, Any]]:
    return {(observation.key, observation.seed): observation.metrics for observation in run_pass.observations}


def build_reference(reference_pass: Pass, reruns: Sequence[Pass], metrics: Sequence[str], policy: TolerancePolicy,
                    config: dict[str, Any], command: str) -> dict[str, Any]:
    """The reference document (metrics.json): per run (algo/model/dataset), seed and metric the reference value,
    every rerun's value, the largest movement and the tolerance; per run and metric the seed-noise band; the
    configuration it was made from, the command, and the thread count and wall time of every pass."""
    rerun_values = [_by_run(rerun) for rerun in reruns]
    grouped: dict[str, list[Observation]] = {}
    for observation in sorted(reference_pass.observations, key=lambda o: (o.key, o.seed)):
        grouped.setdefault(observation.key, []).append(observation)
    entries = {}
    for key, runs in grouped.items():
        per_seed: dict[str, dict[str, Any]] = {}
        for run in runs:
            cells = {}
            for metric in metrics:
                value = float(run.metrics[metric])
                again = []
                for values in rerun_values:
                    if (key, run.seed) not in values:
                        raise BenchError(f"reference not written: the rerun lacks {key} seed {run.seed}")
                    again.append(float(values[(key, run.seed)][metric]))
                movement = max((abs(other - value) for other in again), default=0.0)
                cells[metric] = {"value": value, "reruns": again, "movement": movement,
                                 "deterministic": bool(again) and movement == 0.0,
                                 "tolerance": policy.tolerance(movement)}
            per_seed[str(run.seed)] = cells
        noise = {metric: seed_noise_band([float(run.metrics[metric]) for run in runs], policy)
                 for metric in metrics}
        entries[key] = {"algo": runs[0].algo, "model": runs[0].model, "dataset": runs[0].dataset,
                        "seeds": [run.seed for run in runs], "runs": per_seed, "seed_noise": noise}
    passes = [{"role": "reference", "threads": reference_pass.threads, "seconds": round(reference_pass.seconds, 1)}]
    passes += [{"role": "rerun", "threads": rerun.threads, "seconds": round(rerun.seconds, 1), "cache": "fresh"}
               for rerun in reruns]
    return {"command": command, "rule": RULE, "config": config, "passes": passes, "entries": entries}


@dataclass(frozen=True)
class Row:
    """One (run, seed, metric) of a check: the reference value and tolerance, what was observed, the verdict
    (`ok`, `regressed`, `improved`, `missing` or `no reference`) and whether it left the seed-noise band."""

    run: str
    metric: str
    reference: float | None
    tolerance: float | None
    observed: float | None
    verdict: str
    outside_seed_noise: bool = False

    @property
    def failed(self) -> bool:
        return self.verdict != "ok"

    def message(self) -> str:
        if self.reference is None or self.observed is None or self.tolerance is None:
            return f"{self.run} {self.metric}: {self.verdict}"
        change = f"{self.observed:.6f} vs reference {self.reference:.6f} ± {self.tolerance:.2g}"
        if self.verdict == "improved":
            return f"{self.run} {self.metric}: {change}: improved; run `bench check --update` if intended"
        return f"{self.run} {self.metric}: {change}: {self.verdict}"


def verdict(metric: str, reference: float, tolerance: float, observed: float) -> str:
    """`ok` within tolerance; otherwise `regressed` or `improved` (duplicate_rate: lower is better)."""
    difference = observed - reference
    if abs(difference) <= tolerance or math.isclose(abs(difference), tolerance, rel_tol=1e-9):
        return "ok"
    better = difference < 0 if metric in LOWER_IS_BETTER else difference > 0
    return "improved" if better else "regressed"


def compare(reference: dict[str, Any], observations: Sequence[Observation], metrics: Sequence[str]) -> list[Row]:
    """One row per observed run, seed and metric (one `no reference` row for a run the reference lacks)."""
    rows = []
    for observation in sorted(observations, key=lambda o: (o.key, o.seed)):
        run = f"{observation.key} seed {observation.seed}"
        entry = reference["entries"].get(observation.key, {})
        cells = entry.get("runs", {}).get(str(observation.seed))
        if cells is None:
            rows.append(Row(run, "*", None, None, None, "no reference"))
            continue
        for metric in metrics:
            cell, value = cells.get(metric), observation.metrics.get(metric)
            if cell is None or value is None:
                rows.append(Row(run, metric, cell and cell["value"], cell and cell["tolerance"],
                                None if value is None else float(value), "missing"))
                continue
            band = entry["seed_noise"][metric]
            observed = float(value)
            rows.append(Row(run, metric, cell["value"], cell["tolerance"], observed,
                            verdict(metric, cell["value"], cell["tolerance"], observed),
                            not band["low"] <= observed <= band["high"]))
    return rows


@dataclass(frozen=True)
class CheckResult:
    """Every row of a check, the runs that failed to run, and how long the check took."""

    rows: tuple[Row, ...]
    run_failures: tuple[str, ...]
    threads: int
    seconds: float

    @property
    def passed(self) -> bool:
        return not self.run_failures and not any(row.failed for row in self.rows)

    def problems(self) -> list[str]:
        return [*self.run_failures, *(row.message() for row in self.rows if row.failed)]

    def seed_noise(self) -> list[str]:
        return [f"{row.run} {row.metric}" for row in self.rows if row.outside_seed_noise]

    def to_json(self) -> dict[str, Any]:
        return {"passed": self.passed, "threads": self.threads, "seconds": round(self.seconds, 1),
                "run_failures": list(self.run_failures), "problems": self.problems(),
                "moved_more_than_seed_noise": self.seed_noise(), "rows": [asdict(row) for row in self.rows]}

    def table(self) -> str:
        """Run, metric, reference, tolerance, observed, verdict; one line per row, aligned."""
        def number(value: float | None, signed: bool = False) -> str:
            return "-" if value is None else (f"±{value:.2g}" if signed else f"{value:.6f}")

        header = ("run", "metric", "reference", "tolerance", "observed", "verdict")
        lines = [header] + [(row.run, row.metric, number(row.reference), number(row.tolerance, signed=True),
                             number(row.observed), row.verdict + (" (seed noise)" if row.outside_seed_noise else ""))
                            for row in self.rows]
        widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
        return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
                         for line in lines)
