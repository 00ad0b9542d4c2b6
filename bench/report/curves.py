"""Validation curves on one cumulative axis that includes SFT, steps-to-reach with censored seeds, and the area under
the curve at a fixed budget.

- **Cumulative axis.** An RL run's step s sits at SFT's last step + s (its step 0 is the SFT model it starts from);
  wall time likewise adds the SFT run's wall time. An SFT run counts its own steps from the backbone.
- **Steps to reach.** The target is declared before looking: `start + fraction x (best - start)`, where start is the
  SFT model's validation value (the mean over RL seeds of their step-0 point, which validates the warm start; the
  SFT runs' final value when no RL run logged step 0) and best the highest mean final value of any trained
  method (of the RL methods where RL runs logged step 0: their curves share the monitor subset, SFT's does not);
  or a value given outright. A seed reaches it at its first validation point after its own step 0;
  a seed that never does is censored: "k of n reached", and the median cumulative step counts censored seeds as
  beyond every observed step (no median when fewer than half reach). Compute is total, SFT included.
- **Area under the curve.** The mean validation value over the first `budget` RL steps (trapezoid on the logged
  points, linearly interpolated at the budget), per seed, with a bootstrap CI over seeds (validation examples are
  not stored per point, so this interval carries seed noise only).
"""

from dataclasses import dataclass

import numpy as np

from bench.report.analysis import RELIABLE_SEEDS, MethodRuns
from bench.report.data import RunRecord, sft_start
from bench.report.stats import Interval, draw_seeds, widened_interval


@dataclass(frozen=True)
class SeedCurve:
    """One run's validation points: its own steps and wall seconds, and where its own training began on the
    cumulative axis (SFT's last step and wall time for an RL run; 0 otherwise)."""

    seed: int
    steps: np.ndarray
    walls: np.ndarray
    values: dict[str, np.ndarray]
    offset_step: float
    offset_wall: float

    @property
    def cumulative_steps(self) -> np.ndarray:
        return self.steps + self.offset_step

    @property
    def cumulative_walls(self) -> np.ndarray:
        return self.walls + self.offset_wall


def _seed_curve(run: RunRecord, records: list[RunRecord]) -> tuple[SeedCurve, bool]:
    """The run's curve, and whether an RL run's SFT start was missing (then its offsets are 0)."""
    start = sft_start(records, run)
    missing = start is None and run.spec.algo != "sft"
    offset_step = float(start.curve[-1]["step"]) if start and start.curve else 0.0
    offset_wall = float(start.curve[-1]["wall_seconds"]) if start and start.curve else 0.0
    metrics = [key for key in run.curve[0] if key not in ("step", "wall_seconds")
               and all(isinstance(point.get(key), int | float) for point in run.curve)]
    values = {metric: np.array([float(point[metric]) for point in run.curve]) for metric in metrics}
    return SeedCurve(run.spec.seed, np.array([float(point["step"]) for point in run.curve]),
                     np.array([float(point["wall_seconds"]) for point in run.curve]), values, offset_step,
                     offset_wall), missing


def method_curves(methods: dict[str, MethodRuns], records: list[RunRecord]) -> tuple[dict[str, list[SeedCurve]],
                                                                                     list[str]]:
    """Per trained method (runs with a curve), one curve per seed; notes on RL runs without their SFT start."""
    curves: dict[str, list[SeedCurve]] = {}
    notes = []
    for name, method in methods.items():
        found = [_seed_curve(run, records) for run in method.runs if run.curve]
        if found:
            curves[name] = [curve for curve, _ in found]
            if any(missing for _, missing in found):
                notes.append(f"{name}: SFT start not among the runs; its curve starts at 0 on the cumulative axis.")
    return curves, notes


def _final(curves: list[SeedCurve], metric: str) -> float:
    return float(np.mean([curve.values[metric][-1] for curve in curves]))


@dataclass(frozen=True)
class ReachRow:
    method: str
    reached: int
    n_seeds: int
    median_step: float | None
    """Median cumulative step to reach (censored seeds beyond every step); None when fewer than half reach."""
    total_steps: float
    total_wall: float
    final: float


@dataclass(frozen=True)
class StepsToReach:
    metric: str
    target: float
    start: float | None
    best: float | None
    fraction: float | None
    """None when the target was given outright."""
    rows: tuple[ReachRow, ...]


def _median_censored(reach: list[float]) -> float | None:
    ordered = sorted(reach)
    n = len(ordered)
    middle = ordered[(n - 1) // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2
    return None if not np.isfinite(middle) else float(middle)


def steps_to_reach(curves: dict[str, list[SeedCurve]], metric: str, fraction: float,
                   target: float | None = None) -> StepsToReach | None:
    """Seeds reaching the declared target per trained method; None without curves of `metric` or without any range
    above the SFT start (unless a target is given)."""
    curves = {name: seeds for name, seeds in curves.items() if all(metric in c.values for c in seeds)}
    if not curves:
        return None
    sft = curves.get("sft")
    rl_starts = [c.values[metric][0] for name, seeds in curves.items() if name != "sft" for c in seeds
                 if c.steps[0] == 0]
    start = float(np.mean(rl_starts)) if rl_starts else (_final(sft, metric) if sft else None)
    # RL curves validate on the monitor subset, SFT's on the subset it selects its checkpoint on
    # (algorithms.training.validation_subsets): where RL curves exist, best comes from them alone.
    ranged = {name: seeds for name, seeds in curves.items() if name != "sft"} if rl_starts else curves
    best = max(_final(seeds, metric) for seeds in ranged.values())
    declared = fraction
    if target is None:
        if start is None or best <= start:
            return None
        target = start + fraction * (best - start)
    else:
        declared = None
    rows = []
    for name, seeds in curves.items():
        reach = []
        for curve in seeds:
            hits = np.flatnonzero((curve.steps > 0) & (curve.values[metric] >= target))
            reach.append(float(curve.cumulative_steps[hits[0]]) if hits.size else float("inf"))
        rows.append(ReachRow(name, sum(np.isfinite(reach)), len(seeds), _median_censored(reach),
                             float(np.mean([c.cumulative_steps[-1] for c in seeds])),
                             float(np.mean([c.cumulative_walls[-1] for c in seeds])), _final(seeds, metric)))
    return StepsToReach(metric, float(target), start, best, declared, tuple(rows))


@dataclass(frozen=True)
class AreaRow:
    method: str
    n_seeds: int
    interval: Interval

    @property
    def unreliable(self) -> bool:
        return self.n_seeds < RELIABLE_SEEDS


def _mean_over_budget(curve: SeedCurve, metric: str, budget: float) -> float:
    inside = curve.steps <= budget
    steps = np.append(curve.steps[inside], budget)
    values = np.append(curve.values[metric][inside], np.interp(budget, curve.steps, curve.values[metric]))
    return float(np.trapezoid(values, steps) / (budget - steps[0])) if budget > steps[0] else float(values[0])


def area_under_curves(curves: dict[str, list[SeedCurve]], metric: str, budget: float | None,
                      n_resamples: int = 10_000, seed: int = 0) -> tuple[float, tuple[AreaRow, ...]] | None:
    """(budget, rows) for the RL methods: the mean validation `metric` over RL steps [0, budget]; the default
    budget is the last step every RL seed logged. Seeds that stop before the budget are left out."""
    rl = {name: seeds for name, seeds in curves.items()
          if name != "sft" and all(metric in c.values and c.steps.size > 1 for c in seeds)}
    if not rl:
        return None
    if budget is None:
        budget = float(min(c.steps[-1] for seeds in rl.values() for c in seeds))
    rows = []
    for index, (name, seeds) in enumerate(rl.items()):
        values = np.array([_mean_over_budget(c, metric, budget) for c in seeds if c.steps[-1] >= budget])
        if values.size:
            draws = draw_seeds(values.size, n_resamples, seed + index)
            rows.append(AreaRow(name, int(values.size),
                                widened_interval(float(values.mean()), values[draws].mean(axis=1),
                                                 np.full(n_resamples, values.mean()), values.size)))
    return budget, tuple(rows)
