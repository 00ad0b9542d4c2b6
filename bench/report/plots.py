"""The report's figures (matplotlib, Agg backend, PNG).

- Forest plot: each method's difference to the reference method and to the baseline on the primary metric, with its
  95% CI (the page's leading figure: what a reader decides from).
- Convergence: validation metric against the cumulative step (SFT included: RL step 0 sits at SFT's last step) and
  against cumulative wall time; each seed a thin line, the mean over seeds a thick one.
- Recall@k against k (test), mean with its 95% CI band; hit rate per rank (test, mean over seeds).
"""

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench.evaluation.metrics import KS, N_RANKS
from bench.report.analysis import TableAnalysis
from bench.report.curves import SeedCurve

PNG_METADATA = {"Software": None}
"""No matplotlib version stamp in the files: the same inputs give the same bytes across versions."""


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, figure, path: Path) -> None:  # type: ignore[no-untyped-def]
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=100, metadata=PNG_METADATA)
    plt.close(figure)


def forest_plot(analysis: TableAnalysis, path: Path) -> bool:
    """One panel per comparator (reference, baseline): diff = method - comparator with its CI; False without
    comparisons."""
    panels = [(role, name) for role, name in (("reference", analysis.reference), ("baseline", analysis.baseline))
              if name is not None]
    rows_per_panel = [[found for method in analysis.methods if (found := analysis.versus(method, name)) is not None]
                      for _, name in panels]
    if not any(rows_per_panel):
        return False
    plt = _pyplot()
    height = 0.9 + 0.38 * len(analysis.methods)
    figure, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), height), squeeze=False)
    for axis, (role, name), rows in zip(axes[0], panels, rows_per_panel, strict=True):
        positions = np.arange(len(rows))[::-1]
        for y, comparison in zip(positions, rows, strict=True):
            colour = "tab:blue" if not comparison.significant else ("tab:green" if comparison.diff.mean > 0
                                                                    else "tab:red")
            axis.errorbar(comparison.diff.mean, y, xerr=[[comparison.diff.mean - comparison.diff.low],
                                                         [comparison.diff.high - comparison.diff.mean]],
                          fmt="o", color=colour, capsize=3)
        axis.axvline(0.0, color="grey", linewidth=1)
        axis.set_yticks(positions, [c.b for c in rows])
        axis.set_xlabel(f"{analysis.options.primary}: method - {name} (95% CI)")
        axis.set_title(f"vs {role} {name}", fontsize=10)
        axis.grid(alpha=0.3, axis="x")
    figure.suptitle(f"{analysis.group.key.title}: green/red = significant after Holm, blue = not", fontsize=9)
    _save(plt, figure, path)
    return True


def _mean_line(curves: Sequence[SeedCurve], metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cumulative steps, mean cumulative wall, mean value) at the steps every seed logged."""
    common = sorted(set.intersection(*(set(c.steps.tolist()) for c in curves)))
    steps, walls, values = [], [], []
    for step in common:
        picks = [int(np.flatnonzero(c.steps == step)[0]) for c in curves]
        steps.append(float(np.mean([c.cumulative_steps[i] for c, i in zip(curves, picks, strict=True)])))
        walls.append(float(np.mean([c.cumulative_walls[i] for c, i in zip(curves, picks, strict=True)])))
        values.append(float(np.mean([c.values[metric][i] for c, i in zip(curves, picks, strict=True)])))
    return np.array(steps), np.array(walls), np.array(values)


def convergence_plot(curves: dict[str, list[SeedCurve]], metrics: Sequence[str], title: str, path: Path) -> bool:
    """One row per metric, columns 'vs cumulative step' and 'vs cumulative wall time'; False without curves."""
    metrics = [m for m in metrics if any(all(m in c.values for c in seeds) for seeds in curves.values())]
    if not metrics:
        return False
    plt = _pyplot()
    figure, axes = plt.subplots(len(metrics), 2, figsize=(11, 3.6 * len(metrics)), squeeze=False)
    for row, metric in enumerate(metrics):
        for index, (method, seeds) in enumerate(curves.items()):
            if not all(metric in c.values for c in seeds):
                continue
            colour = f"C{index % 10}"
            steps, walls, mean = _mean_line(seeds, metric)
            for column, x in enumerate((steps, walls)):
                axis = axes[row][column]
                for curve in seeds:
                    seed_x = curve.cumulative_steps if column == 0 else curve.cumulative_walls
                    axis.plot(seed_x, curve.values[metric], color=colour, linewidth=0.7, alpha=0.45)
                axis.plot(x, mean, color=colour, linewidth=2.4, label=f"{method} ({len(seeds)} seeds)")
        for column, xlabel in enumerate(("cumulative training step (SFT + RL)", "cumulative wall time (s)")):
            axis = axes[row][column]
            axis.set_xlabel(xlabel)
            axis.set_ylabel(f"validation {metric}")
            axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    figure.suptitle(title, fontsize=10)
    _save(plt, figure, path)
    return True


def recall_at_k_plot(analysis: TableAnalysis, path: Path) -> bool:
    """Test Recall@k against k, one small panel per method (shared axes, so bands do not hide each other): the mean
    with its 95% CI band."""
    plt = _pyplot()
    names = list(analysis.methods)
    columns = min(4, len(names))
    rows = -(-len(names) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(2.9 * columns, 2.3 * rows + 0.5), sharex=True, sharey=True,
                                squeeze=False)
    for index, axis in enumerate(axes.flat):
        if index >= len(names):
            axis.axis("off")
            continue
        cells = [analysis.cells[(names[index], f"recall@{k}")] for k in KS]
        colour = f"C{index % 10}"
        axis.plot(KS, [c.mean for c in cells], marker="o", markersize=3, color=colour)
        axis.fill_between(KS, [c.low for c in cells], [c.high for c in cells], color=colour, alpha=0.25, linewidth=0)
        axis.set_title(names[index], fontsize=9)
        axis.set_xticks(KS)
        axis.xaxis.set_tick_params(labelbottom=True)
        axis.set_xlabel("k")
        axis.grid(alpha=0.3)
    for axis in axes[:, 0]:
        axis.set_ylabel("test Recall@k")
    figure.suptitle(f"{analysis.group.key.title}: test Recall@k, mean and 95% CI band", fontsize=10)
    _save(plt, figure, path)
    return True


def hit_rate_plot(analysis: TableAnalysis, path: Path) -> bool:
    """Hit rate at ranks 1..20, one line per method; False without any summary hit rates."""
    series = {name: [run.summary.get("hit_rate_at_rank") for run in method.runs]
              for name, method in analysis.methods.items()}
    series = {name: rates for name, rates in series.items() if rates and all(rates)}
    if not series:
        return False
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 4))
    ranks = np.arange(1, N_RANKS + 1)
    for name, rates in series.items():
        axis.plot(ranks, np.mean([rate[:N_RANKS] for rate in rates], axis=0), marker="o", markersize=3, label=name)
    axis.set_xlabel("rank")
    axis.set_ylabel("hit rate (test, mean over seeds)")
    axis.set_xticks(ranks)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, ncol=2)
    axis.set_title(analysis.group.key.title, fontsize=10)
    _save(plt, figure, path)
    return True
