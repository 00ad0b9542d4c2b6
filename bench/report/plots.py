"""The report's figures (matplotlib, Agg backend, PNG): validation convergence curves and hit rate per rank.

Convergence: for each trained method, the validation metric against the training step and against wall time, mean
over seeds with a min-max band over seeds (wall time at a step is the mean over the seeds that logged it). Steps are
each method's own: an SFT curve counts SFT steps from the backbone, an RL curve counts RL steps from its SFT start.
Hit rate per rank: share of test examples whose recommendation at rank r (1..20) hits, mean over seeds.
"""

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench.evaluation.metrics import N_RANKS
from bench.report.data import Group, RunRecord

PNG_METADATA = {"Software": None}
"""No matplotlib version stamp in the files: the same inputs give the same bytes across versions."""


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _curve_series(runs: Sequence[RunRecord], metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                                   np.ndarray]:
    """(steps, mean wall seconds, mean, min, max) over the seeds that logged each step."""
    steps = sorted({int(point["step"]) for run in runs for point in run.curve if metric in point})
    walls, means, lows, highs = [], [], [], []
    for step in steps:
        points = [point for run in runs for point in run.curve if int(point["step"]) == step and metric in point]
        values = [float(point[metric]) for point in points]
        walls.append(float(np.mean([float(point["wall_seconds"]) for point in points])))
        means.append(float(np.mean(values)))
        lows.append(min(values))
        highs.append(max(values))
    return np.array(steps), np.array(walls), np.array(means), np.array(lows), np.array(highs)


def convergence_plot(group: Group, metrics: Sequence[str], path: Path) -> bool:
    """One row per metric, columns 'vs step' and 'vs wall time'; False (nothing written) without curves."""
    trained = group.trained()
    if not trained:
        return False
    plt = _pyplot()
    figure, axes = plt.subplots(len(metrics), 2, figsize=(11, 3.6 * len(metrics)), squeeze=False)
    for row, metric in enumerate(metrics):
        for method, runs in trained.items():
            steps, walls, mean, low, high = _curve_series(runs, metric)
            for column, x in enumerate((steps, walls)):
                axis = axes[row][column]
                (line,) = axis.plot(x, mean, marker="o", markersize=3, label=method)
                axis.fill_between(x, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
        for column, xlabel in enumerate(("training step", "wall time (s)")):
            axis = axes[row][column]
            axis.set_xlabel(xlabel)
            axis.set_ylabel(f"validation {metric}")
            axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    figure.suptitle(f"{group.key.title}: validation (mean over seeds, band min-max)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=100, metadata=PNG_METADATA)
    plt.close(figure)
    return True


def hit_rate_plot(group: Group, path: Path) -> bool:
    """Hit rate at ranks 1..20, one line per method; False without any summary hit rates."""
    series = {method: [run.summary.get("hit_rate_at_rank") for run in runs] for method, runs in group.methods.items()}
    series = {method: rates for method, rates in series.items() if rates and all(rates)}
    if not series:
        return False
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 4))
    ranks = np.arange(1, N_RANKS + 1)
    for method, rates in series.items():
        axis.plot(ranks, np.mean([rate[:N_RANKS] for rate in rates], axis=0), marker="o", markersize=3, label=method)
    axis.set_xlabel("rank")
    axis.set_ylabel("hit rate (test, mean over seeds)")
    axis.set_xticks(ranks)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    axis.set_title(group.key.title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=100, metadata=PNG_METADATA)
    plt.close(figure)
    return True
