"""The report's tables: the main results table with CIs and significance marks, the comparisons behind the marks,
and steps-to-reach a validation target; each rendered as Markdown, CSV, LaTeX and HTML.

Main table: one row per method, columns Recall@{5,10,15,20}, NDCG@{5,10,15,20}, in-catalog and format rates. A cell
is the mean over seeds of metrics.json with a 95% bootstrap CI (`report_stats.bootstrap_interval`). Every method is
tested against the baseline (default popularity) and against rank_grpo on each Recall/NDCG column
(`report_stats.paired_permutation_test`, pairs = test examples by id, per-example metric averaged over seeds); the
p-values of one table are Holm-corrected together. † marks a significant difference from the baseline, ‡ from
rank_grpo (Holm-adjusted p < alpha). Rates are not tested (they are item-level ratios, not per-example means).
"""

import csv
import html
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from bench.report.data import MEAN_COLUMNS, TABLE_COLUMNS, Group, RunRecord
from bench.report.stats import Interval, bootstrap_interval, holm, paired_permutation_test

REFERENCE_METHOD = "rank_grpo"
BASELINE_MARK, REFERENCE_MARK = "†", "‡"
LATEX_MARKS = {BASELINE_MARK: r"\dag", REFERENCE_MARK: r"\ddag"}
COLUMN_TITLES = {**{f"recall@{k}": f"Recall@{k}" for k in (5, 10, 15, 20)},
                 **{f"ndcg@{k}": f"NDCG@{k}" for k in (5, 10, 15, 20)},
                 "in_catalog_rate": "In-catalog", "format_rate": "Format"}


@dataclass(frozen=True)
class TextTable:
    """Headers and rows of already formatted cells, rendered in several formats."""

    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]

    def to_markdown(self) -> str:
        lines = ["| " + " | ".join(self.headers) + " |", "|" + "|".join("---" for _ in self.headers) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines) + "\n"

    def to_csv(self) -> str:
        stream = io.StringIO()
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(self.headers)
        writer.writerows(self.rows)
        return stream.getvalue()

    def to_latex(self) -> str:
        """A booktabs tabular; cells are taken as LaTeX already."""
        lines = [r"\begin{tabular}{l" + "r" * (len(self.headers) - 1) + "}", r"\toprule",
                 " & ".join(self.headers) + r" \\", r"\midrule"]
        lines += [" & ".join(row) + r" \\" for row in self.rows]
        lines += [r"\bottomrule", r"\end{tabular}"]
        return "\n".join(lines) + "\n"

    def to_html(self) -> str:
        head = "".join(f"<th>{html.escape(cell)}</th>" for cell in self.headers)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
                       for row in self.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>\n"


LATEX_SPECIAL = {"\\": r"\textbackslash{}", **{char: "\\" + char for char in "&%$#_{}"}}


def latex_escape(text: str) -> str:
    return "".join(LATEX_SPECIAL.get(char, char) for char in text)


@dataclass(frozen=True)
class Comparison:
    """One paired test of a table (methods a and b on one metric)."""

    method_a: str
    method_b: str
    metric: str
    n_examples: int
    mean_difference: float
    p_value: float
    p_holm: float


@dataclass(frozen=True)
class MainTable:
    group: Group
    cells: dict[tuple[str, str], Interval]
    seeds: dict[str, int]
    comparisons: tuple[Comparison, ...]
    baseline: str | None
    reference: str | None
    alpha: float
    notes: tuple[str, ...]

    def marks(self, method: str, column: str) -> str:
        """† / ‡ when the method differs significantly from the baseline / rank_grpo on this column."""
        found = ""
        for other, mark in ((self.baseline, BASELINE_MARK), (self.reference, REFERENCE_MARK)):
            for comparison in self.comparisons:
                if (comparison.metric == column and comparison.p_holm < self.alpha
                        and {comparison.method_a, comparison.method_b} == {method, other}):
                    found += mark
        return found


def _find_method(group: Group, algo: str, notes: list[str], role: str) -> str | None:
    labels = [label for label in group.methods if label.split(" [")[0] == algo]
    if not labels:
        notes.append(f"No {algo} runs: no comparisons against the {role}.")
        return None
    if len(labels) > 1:
        notes.append(f"Several {algo} configurations: the {role} is {labels[0]}.")
    return labels[0]


def _per_example(runs: Sequence[RunRecord], column: str) -> dict[str, float]:
    """Per example id, the column's value averaged over the seeds (ids present in every seed)."""
    per_seed = [dict(zip(run.example_ids, run.columns[column][0].tolist(), strict=True)) for run in runs]
    common = set.intersection(*(set(values) for values in per_seed))
    return {example_id: sum(values[example_id] for values in per_seed) / len(per_seed) for example_id in common}


def _compare(first: dict[str, float], second: dict[str, float], n_resamples: int) -> tuple[int, float, float]:
    """(pairs, mean difference, p-value) over the example ids both methods have."""
    ids = sorted(set(first) & set(second))
    x, y = [first[i] for i in ids], [second[i] for i in ids]
    difference = float(np.mean(np.subtract(x, y))) if ids else 0.0
    return len(ids), difference, paired_permutation_test(x, y, n_resamples=n_resamples)


def main_table(group: Group, baseline: str = "popularity", alpha: float = 0.05, n_bootstrap: int = 1000,
               n_permutations: int = 10_000) -> MainTable:
    """Cells with CIs for every method and column, and the Holm-corrected comparisons behind the marks."""
    notes: list[str] = []
    base = _find_method(group, baseline, notes, "baseline")
    reference = _find_method(group, REFERENCE_METHOD, notes, "reference method")
    cells = {}
    for method, runs in group.methods.items():
        for column in TABLE_COLUMNS:
            interval = bootstrap_interval([run.columns[column] for run in runs], n_resamples=n_bootstrap)
            mean = float(np.mean([float(run.metrics[column]) for run in runs]))
            cells[(method, column)] = Interval(mean, interval.low, interval.high)
    pairs: list[tuple[str, str]] = []
    for other in (base, reference):
        for method in group.methods:
            if other is not None and method != other and (other, method) not in pairs:
                pairs.append((method, other))
    averaged = {(method, column): _per_example(group.methods[method], column)
                for method in dict.fromkeys(method for pair in pairs for method in pair) for column in MEAN_COLUMNS}
    raw = [(a, b, column, *_compare(averaged[(a, column)], averaged[(b, column)], n_permutations))
           for a, b in pairs for column in MEAN_COLUMNS]
    adjusted = holm([p for *_, p in raw])
    comparisons = tuple(Comparison(a, b, column, n, difference, p, p_holm)
                        for (a, b, column, n, difference, p), p_holm in zip(raw, adjusted, strict=True))
    seeds = {method: len(runs) for method, runs in group.methods.items()}
    return MainTable(group, cells, seeds, comparisons, base, reference, alpha, tuple(notes))


def _cell_text(interval: Interval, marks: str) -> str:
    return f"{interval.mean:.4f} [{interval.low:.4f}, {interval.high:.4f}]{marks}"


def _cell_latex(interval: Interval, marks: str) -> str:
    superscript = "".join(LATEX_MARKS[mark] for mark in marks)
    sup = rf"\textsuperscript{{{superscript}}}" if superscript else ""
    return rf"{interval.mean:.4f}{sup} {{\scriptsize [{interval.low:.4f}, {interval.high:.4f}]}}"


def _formatted_rows(table: MainTable, name: Callable[[str], str],
                    cell: Callable[[Interval, str], str]) -> tuple[tuple[str, ...], ...]:
    return tuple((name(method), str(table.seeds[method]),
                  *(cell(table.cells[(method, column)], table.marks(method, column)) for column in TABLE_COLUMNS))
                 for method in table.group.methods)


def main_text_table(table: MainTable) -> TextTable:
    """Markdown/HTML cells: `mean [low, high]` followed by the significance marks."""
    headers = ("method", "seeds", *(COLUMN_TITLES[column] for column in TABLE_COLUMNS))
    return TextTable(headers, _formatted_rows(table, str, _cell_text))


def main_latex_table(table: MainTable) -> TextTable:
    headers = ("Method", "Seeds", *(COLUMN_TITLES[column] for column in TABLE_COLUMNS))
    return TextTable(headers, _formatted_rows(table, latex_escape, _cell_latex))


def main_csv_table(table: MainTable) -> TextTable:
    """Numbers in full: mean, CI bounds and marks per column."""
    headers = ["method", "seeds"]
    for column in TABLE_COLUMNS:
        headers += [column, f"{column}_ci_low", f"{column}_ci_high", f"{column}_marks"]
    rows = []
    for method in table.group.methods:
        row = [method, str(table.seeds[method])]
        for column in TABLE_COLUMNS:
            cell = table.cells[(method, column)]
            row += [f"{cell.mean:.6f}", f"{cell.low:.6f}", f"{cell.high:.6f}", table.marks(method, column)]
        rows.append(tuple(row))
    return TextTable(tuple(headers), tuple(rows))


def comparisons_table(table: MainTable) -> TextTable:
    headers = ("method_a", "method_b", "metric", "n_examples", "mean_difference", "p_value", "p_holm",
               f"significant_at_{table.alpha}")
    rows = tuple((c.method_a, c.method_b, c.metric, str(c.n_examples), f"{c.mean_difference:.6f}",
                  f"{c.p_value:.6f}", f"{c.p_holm:.6f}", str(c.p_holm < table.alpha)) for c in table.comparisons)
    return TextTable(headers, rows)


def legend(table: MainTable) -> str:
    """One paragraph explaining the cells and marks of a main table."""
    parts = ["Cells: mean over seeds [95% bootstrap CI over seeds and test examples]."]
    if table.baseline:
        parts.append(f"{BASELINE_MARK}: differs from {table.baseline};")
    if table.reference:
        parts.append(f"{REFERENCE_MARK}: differs from {table.reference};")
    if table.baseline or table.reference:
        parts.append(f"paired sign-flip permutation test over test examples, Holm-corrected across the "
                     f"{len(table.comparisons)} comparisons of this table, alpha {table.alpha}.")
    return " ".join(parts + list(table.notes))


@dataclass(frozen=True)
class StepsToReach:
    metric: str
    target: float
    rows: tuple[tuple[str, int, int, float | None, float | None, float], ...]
    """(method, seeds reaching, seeds, mean step, mean wall seconds, mean final value)."""


def final_value(runs: Sequence[RunRecord], metric: str) -> float:
    """Mean over seeds of the last validation point's metric (seeds without a curve are left out)."""
    return float(np.mean([run.curve[-1][metric] for run in runs if run.curve]))


def default_target(group: Group, metric: str, fraction: float = 0.9) -> float | None:
    """`fraction` of the best final validation value among the group's trained methods; None without curves or
    when no method ends above 0 (every step would trivially 'reach' a zero target)."""
    finals = [final_value(runs, metric) for runs in group.trained().values()]
    return fraction * max(finals) if finals and max(finals) > 0 else None


def steps_to_reach(group: Group, metric: str, target: float) -> StepsToReach:
    """For each trained method: the first validation step (and wall time) at which `metric` >= target, per seed."""
    rows = []
    for method, runs in group.trained().items():
        curves = [run.curve for run in runs if run.curve]
        reached = [next((point for point in curve if point[metric] >= target), None) for curve in curves]
        hits = [point for point in reached if point is not None]
        step = float(np.mean([point["step"] for point in hits])) if hits else None
        wall = float(np.mean([point["wall_seconds"] for point in hits])) if hits else None
        rows.append((method, len(hits), len(curves), step, wall, final_value(runs, metric)))
    return StepsToReach(metric, target, tuple(rows))


def steps_text_table(steps: StepsToReach) -> TextTable:
    headers = ("method", f"step reaching {steps.metric} >= {steps.target:.4f}", "wall seconds", "seeds reaching",
               f"final {steps.metric}")
    rows = tuple((method, f"{step:.1f}" if step is not None else "not reached",
                  f"{wall:.1f}" if wall is not None else "not reached", f"{hit}/{total}", f"{final:.4f}")
                 for method, hit, total, step, wall, final in steps.rows)
    return TextTable(headers, rows)
