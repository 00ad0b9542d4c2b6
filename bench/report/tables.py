"""The report's tables, each rendered as Markdown, CSV, LaTeX and HTML from one `TextTable`.

- Lead table (what a reader decides from): per method the primary metric with its 95% CI and its runs, then against
  the reference method and the baseline: ▲/▼ and the difference with its CI, the raw and Holm-adjusted p-values
  and P(method beats comparator). A p-value at its test's floor prints as "≤ floor"; a cell with no test says
  "untested" (the comparator itself, or a comparator absent from the table).
- Comparisons: every comparison with its unit, floor and minimum detectable difference (p_holm "undeclared" for
  one outside a declared family).
- All metrics: Recall/NDCG@{5,10,15,20}, in-catalog and format rates with CIs, no marks (only the primary metric is
  tested).
- Steps to reach and area under the validation curve (`curves`).
- Training diagnostics (`diagnostics`): per RL method the hit gain over SFT by rank, list-length drift and
  tied-reward groups over training; compute (wall seconds, threads) per method.
"""

import csv
import html
import io
import math
from collections.abc import Callable
from dataclasses import dataclass

from bench.report.analysis import Comparison, TableAnalysis, null_control
from bench.report.curves import AreaRow, StepsToReach
from bench.report.data import TABLE_COLUMNS
from bench.report.diagnostics import (
    TIED_TARGET,
    WINDOW,
    ComputeRow,
    GroupDiagnostics,
    MethodDiagnostics,
    meets_tied_target,
)
from bench.report.stats import Interval

COLUMN_TITLES = {**{f"recall@{k}": f"Recall@{k}" for k in (5, 10, 15, 20)},
                 **{f"ndcg@{k}": f"NDCG@{k}" for k in (5, 10, 15, 20)},
                 "in_catalog_rate": "In-catalog", "format_rate": "Format", "duplicate_rate": "Duplicates"}
UNTESTED = "untested"
UNRELIABLE = "*"


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
        """A booktabs tabular; cells are escaped."""
        lines = [r"\begin{tabular}{l" + "r" * (len(self.headers) - 1) + "}", r"\toprule",
                 " & ".join(latex_escape(cell) for cell in self.headers) + r" \\", r"\midrule"]
        lines += [" & ".join(latex_escape(cell) for cell in row) + r" \\" for row in self.rows]
        lines += [r"\bottomrule", r"\end{tabular}"]
        return "\n".join(lines) + "\n"

    def to_html(self) -> str:
        head = "".join(f"<th>{html.escape(cell)}</th>" for cell in self.headers)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
                       for row in self.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>\n"


LATEX_SPECIAL = {"\\": r"\textbackslash{}", **{char: "\\" + char for char in "&%$#_{}"},
                 "▲": r"$\blacktriangle$", "▼": r"$\blacktriangledown$", "≤": r"$\leq$", "Δ": r"$\Delta$"}


def latex_escape(text: str) -> str:
    return "".join(LATEX_SPECIAL.get(char, char) for char in text)


def interval_text(cell: Interval, digits: int = 4) -> str:
    return f"{cell.mean:.{digits}f} [{cell.low:.{digits}f}, {cell.high:.{digits}f}]"


def signed_text(cell: Interval) -> str:
    """Direction, difference and CI: `▲ +0.0123 [-0.0040, +0.0290]`."""
    arrow = "▲" if cell.mean > 0 else "▼" if cell.mean < 0 else "="
    return f"{arrow} {cell.mean:+.4f} [{cell.low:+.4f}, {cell.high:+.4f}]"


def p_text(p: float, floor: float) -> str:
    return f"≤ {floor:.2g} (floor)" if p <= floor * (1 + 1e-9) else f"{p:.3f}"


def runs_text(analysis: TableAnalysis, name: str) -> str:
    method = analysis.methods[name]
    if method.deterministic:
        return f"1 (deterministic, {method.n_folders} folders)" if method.n_folders > 1 else "1 (deterministic)"
    return f"{method.n_runs} seed{'s' if method.n_runs != 1 else ''}" + (UNRELIABLE if method.unreliable else "")


def _versus(analysis: TableAnalysis, name: str, other: str) -> tuple[str, str, str]:
    """(diff, p, P(better)) cells of `name` against `other`, oriented as name - other."""
    if name == other:
        return ("(comparator)",) * 3
    found = analysis.versus(name, other)
    if found is None:
        return UNTESTED, UNTESTED, UNTESTED
    mark = " (sig.)" if found.significant else ""
    return (signed_text(found.diff) + mark, f"{p_text(found.p_value, found.floor)} / {holm_text(found)}",
            interval_text(found.prob_improvement, 2))


def holm_text(comparison: Comparison) -> str:
    """The Holm-adjusted p, or "undeclared" for a comparison outside a declared family (no test claimed)."""
    return "undeclared" if comparison.p_holm is None else f"{comparison.p_holm:.3f}"


def lead_table(analysis: TableAnalysis) -> TextTable:
    """Primary metric and duplicate rate per method, and the primary's differences to the reference method, the
    baseline and (where one ran) the method's null control."""
    primary = COLUMN_TITLES.get(analysis.options.primary, analysis.options.primary)
    headers = ["method", "runs", f"{primary} [95% CI]", "duplicate rate"]
    roles = [(role, name) for role, name in (("reference", analysis.reference), ("baseline", analysis.baseline))
             if name is not None]
    for _, name in roles:
        headers += [f"Δ vs {name} [95% CI]", f"p / Holm vs {name}", f"P(better than {name}) [CI]"]
    controls = any(null_control(name) in analysis.methods for name in analysis.methods)
    if controls:
        headers += ["Δ vs its null control [95% CI]", "p / Holm vs null"]
    rows = []
    for name in analysis.methods:
        row = [name, runs_text(analysis, name), interval_text(analysis.cells[(name, analysis.options.primary)]),
               f"{analysis.cells[(name, 'duplicate_rate')].mean:.3f}"]
        for _, other in roles:
            row += list(_versus(analysis, name, other))
        if controls:
            row += list(_versus(analysis, name, null_control(name))[:2]) if null_control(name) in analysis.methods \
                else ["", ""]
        rows.append(tuple(row))
    return TextTable(tuple(headers), tuple(rows))


def comparisons_table(analysis: TableAnalysis) -> TextTable:
    """Every test of the family, with numbers in full."""
    headers = ("a", "b", "metric", "unit", "diff (b - a)", "ci_low", "ci_high", "p_value", "p_floor", "p_holm",
               f"significant_at_{analysis.options.alpha}", "P(b > a)", "P_ci_low", "P_ci_high",
               "min_detectable_diff", "units_needed_for_observed_diff")
    rows = tuple((c.a, c.b, c.metric, c.unit, f"{c.diff.mean:.6f}", f"{c.diff.low:.6f}", f"{c.diff.high:.6f}",
                  f"{c.p_value:.6f}", f"{c.floor:.6f}", "undeclared" if c.p_holm is None else f"{c.p_holm:.6f}",
                  str(c.significant),
                  f"{c.prob_improvement.mean:.4f}", f"{c.prob_improvement.low:.4f}",
                  f"{c.prob_improvement.high:.4f}", "none" if c.mdd is None else f"{c.mdd:.6f}",
                  "none" if c.units_needed is None else str(c.units_needed))
                 for c in analysis.comparisons)
    return TextTable(headers, rows)


def power_table(analysis: TableAnalysis) -> TextTable:
    """Per comparison: the unit of the test, its floor, and the smallest difference it could detect."""
    headers = ("comparison", "unit", "smallest possible p", "minimum detectable |Δ|", "observed Δ",
               "units for the observed Δ")
    rows = tuple((f"{c.b} vs {c.a}", c.unit, f"{c.floor:.2g}",
                  "none: the test cannot reach alpha" if c.mdd is None else f"{c.mdd:.4f}", f"{c.diff.mean:+.4f}",
                  "beyond 100,000" if c.units_needed is None else str(c.units_needed))
                 for c in analysis.comparisons)
    return TextTable(headers, rows)


def _metric_rows(analysis: TableAnalysis, cell: Callable[[Interval], str]) -> tuple[tuple[str, ...], ...]:
    return tuple((name, runs_text(analysis, name), *(cell(analysis.cells[(name, column)]) for column in TABLE_COLUMNS))
                 for name in analysis.methods)


def all_metrics_table(analysis: TableAnalysis) -> TextTable:
    return TextTable(("method", "runs", *(COLUMN_TITLES[column] for column in TABLE_COLUMNS)),
                     _metric_rows(analysis, interval_text))


def all_metrics_csv(analysis: TableAnalysis) -> TextTable:
    """Numbers in full: mean and CI bounds per column, runs and determinism per method."""
    headers = ["method", "n_runs", "deterministic"]
    for column in TABLE_COLUMNS:
        headers += [column, f"{column}_ci_low", f"{column}_ci_high"]
    rows = []
    for name, method in analysis.methods.items():
        row = [name, str(method.n_runs), str(method.deterministic)]
        for column in TABLE_COLUMNS:
            cell = analysis.cells[(name, column)]
            row += [f"{cell.mean:.6f}", f"{cell.low:.6f}", f"{cell.high:.6f}"]
        rows.append(tuple(row))
    return TextTable(tuple(headers), tuple(rows))


def steps_table(steps: StepsToReach) -> TextTable:
    headers = ("method", "seeds reaching", f"median cumulative step to {steps.metric} ≥ {steps.target:.4f}",
               "total steps (SFT + RL)", "total wall s (SFT + RL)", f"final {steps.metric}")
    rows = tuple((row.method, f"{row.reached} of {row.n_seeds}",
                  "not reached by half the seeds" if row.median_step is None else f"{row.median_step:.0f}",
                  f"{row.total_steps:.0f}", f"{row.total_wall:.1f}", f"{row.final:.4f}") for row in steps.rows)
    return TextTable(headers, rows)


def area_table(metric: str, budget: float, rows: tuple[AreaRow, ...]) -> TextTable:
    headers = ("method", "seeds", f"mean validation {metric} over RL steps 0-{budget:.0f} [95% CI over seeds]")
    return TextTable(headers, tuple((row.method, str(row.n_seeds) + (UNRELIABLE if row.unreliable else ""),
                                     interval_text(row.interval)) for row in rows))


NONE = "—"


def _fixed(value: float | None, digits: int, sign: str = "") -> str:
    return NONE if value is None else f"{value:{sign}.{digits}f}"


def gain_text(cell: Interval | None) -> str:
    """A hit gain with its seed interval, or "(1 seed)" where one seed gives none."""
    if cell is None:
        return NONE
    if math.isnan(cell.low):
        return f"{cell.mean:+.4f} (1 seed)"
    return f"{cell.mean:+.4f} [{cell.low:+.4f}, {cell.high:+.4f}]"


def _seeds(method: MethodDiagnostics, quantities: tuple[str, ...]) -> str:
    """" (k of n seeds)" when only k of the method's n seeds have the quantities."""
    have = min(method.count(quantity) for quantity in quantities)
    return "" if have == len(method.runs) else f" ({have} of {len(method.runs)} seeds)"


def _arrow(method: MethodDiagnostics, name: str, digits: int) -> str:
    first, last = method.mean(f"{name}.start"), method.mean(f"{name}.end")
    if first is None or last is None:
        return NONE
    return f"{first:.{digits}f} → {last:.{digits}f}" + _seeds(method, (f"{name}.start",))


def hit_gain_table(diagnostics: GroupDiagnostics) -> TextTable:
    """Per RL method: test hit-rate gain over the SFT start at rank 1, ranks 2-5, 6-20 and 2-20."""
    headers = ("method", "seeds with SFT start", "Δ hit rank 1 [95% CI]", "Δ hit ranks 2-5", "Δ hit ranks 6-20",
               "Δ hit ranks 2-20 [95% CI]")
    rows = tuple((m.method, f"{m.n_gain_seeds} of {len(m.runs)}", gain_text(m.rank1), _fixed(m.ranks_2_5, 4, "+"),
                  _fixed(m.ranks_6_20, 4, "+"), gain_text(m.ranks_2_20)) for m in diagnostics.methods)
    return TextTable(headers, rows)


def drift_table(diagnostics: GroupDiagnostics) -> TextTable:
    """Per RL method: list-length drift (test, and in training) and the tied-reward groups' share over training."""
    window = f"{WINDOW:.0%}"
    headers = ("method", "seeds", "Δ test list length vs SFT", f"completion tokens, first → last {window} of steps",
               f"items emitted, first → last {window}", "tied groups start / middle / end",
               f"start ≤ {TIED_TARGET:.0%} tied")
    rows = []
    for m in diagnostics.methods:
        tied = [m.mean(f"tied.{phase}") for phase in ("start", "middle", "end")]
        drift = m.mean("list_length_drift")
        rows.append((m.method, str(len(m.runs)), _fixed(drift, 2, "+") + _seeds(m, ("list_length_drift",)),
                     _arrow(m, "completion_length", 1), _arrow(m, "items", 1),
                     NONE if tied[0] is None else " / ".join(NONE if v is None else f"{v:.0%}" for v in tied)
                     + _seeds(m, ("tied.start",)),
                     {None: NONE, True: "yes", False: "no"}[meets_tied_target(tied[0])]))
    return TextTable(headers, tuple(rows))


def _threads_text(row: ComputeRow) -> str:
    known = "/".join(map(str, row.threads)) or "unknown"
    return known + (f" ({row.runs_without_threads} of {row.n_runs} runs unknown)"
                    if row.threads and row.runs_without_threads else "")


def compute_table(diagnostics: GroupDiagnostics) -> TextTable:
    """Per method and in total: runs, summed wall seconds, torch threads, wall x threads."""
    headers = ("method", "runs", "wall s", "torch threads", "wall s x threads")
    rows = tuple((row.method, str(row.n_runs) + (f" ({row.runs_without_seconds} without seconds)"
                                                 if row.runs_without_seconds else ""),
                  _fixed(row.wall_seconds, 1), _threads_text(row), _fixed(row.thread_seconds, 1))
                 for row in (*diagnostics.compute, diagnostics.total))
    return TextTable(headers, rows)
