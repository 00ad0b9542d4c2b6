"""`bench report`: every table and figure rebuilt from the run folders alone.

For each comparable group of runs (dataset, backbone, preset; `report_data`) it writes, under `<out>/<group>/`:
`main.md`, `main.csv`, `main.tex` (methods x metrics, CIs, significance marks; `report_tables`), `comparisons.csv`
(every paired test with raw and Holm-adjusted p-values), `steps_to_reach.md` / `.csv` (trained methods),
`convergence.png` and `hit_rate.png` (`report_plots`). `<out>/report.md` gathers them; `--html` adds one
self-contained `<out>/report.html`. Same run folders in, same files out: resampling uses fixed seeds, ordering is by
name, nothing depends on the clock.
"""

from dataclasses import dataclass
from pathlib import Path

from bench.errors import BenchError
from bench.report.data import Group, group_runs, load_runs
from bench.report.html import Block, Section, html_page, markdown_page
from bench.report.plots import convergence_plot, hit_rate_plot
from bench.report.tables import (
    comparisons_table,
    default_target,
    legend,
    main_csv_table,
    main_latex_table,
    main_table,
    main_text_table,
    steps_text_table,
    steps_to_reach,
)
from bench.runs.folders import atomic_write_text

TITLE = "bench report"
CURVE_METRICS = ("ndcg@20", "recall@20")


@dataclass(frozen=True)
class ReportOptions:
    baseline: str = "popularity"
    metric: str = "ndcg@20"
    """The validation metric of the steps-to-reach table (and the first convergence panel)."""
    target: float | None = None
    """Steps-to-reach target; None: `target_fraction` of the best final validation value in the group."""
    target_fraction: float = 0.9
    alpha: float = 0.05
    n_bootstrap: int = 1000
    n_permutations: int = 10_000
    html: bool = False


@dataclass(frozen=True)
class ReportResult:
    files: tuple[Path, ...]
    notes: tuple[str, ...]


def _group_section(group: Group, out: Path, options: ReportOptions) -> tuple[Section, list[Path]]:
    """Write one group's files; return its section of the pages and the files written."""
    folder = out / group.key.slug
    folder.mkdir(parents=True, exist_ok=True)
    table = main_table(group, options.baseline, options.alpha, options.n_bootstrap, options.n_permutations)
    text_table = main_text_table(table)
    outputs = {"main.md": text_table.to_markdown(), "main.csv": main_csv_table(table).to_csv(),
               "main.tex": main_latex_table(table).to_latex(), "comparisons.csv": comparisons_table(table).to_csv()}
    blocks: list[Block] = [text_table, legend(table), f"Every test: {group.key.slug}/comparisons.csv."]
    target = options.target if options.target is not None else default_target(group, options.metric,
                                                                             options.target_fraction)
    if target is not None:
        steps = steps_to_reach(group, options.metric, target)
        steps_table = steps_text_table(steps)
        outputs["steps_to_reach.md"] = steps_table.to_markdown()
        outputs["steps_to_reach.csv"] = steps_table.to_csv()
        origin = ("given" if options.target is not None
                  else f"{options.target_fraction:g} x the best final validation {options.metric}")
        blocks += [f"Steps to reach validation {options.metric} >= {target:.4f} ({origin}; mean over the seeds "
                   f"that reach it; each method counts its own steps: SFT from the backbone, RL from its SFT "
                   f"start):", steps_table]
    written = []
    for name, text in outputs.items():
        atomic_write_text(folder / name, text)
        written.append(folder / name)
    metrics = tuple(dict.fromkeys((options.metric, *CURVE_METRICS)))
    for name, draw in (("convergence.png", lambda path: convergence_plot(group, metrics, path)),
                       ("hit_rate.png", lambda path: hit_rate_plot(group, path))):
        if draw(folder / name):
            blocks.append(folder / name)
            written.append(folder / name)
    return Section(group.key.title, tuple(blocks)), written


def build_report(results_dir: Path, out: Path, options: ReportOptions = ReportOptions()) -> ReportResult:
    """Read the complete runs under `results_dir` and write every table, figure and page under `out`."""
    records, notes = load_runs(results_dir)
    if not records:
        raise BenchError(f"no complete runs under {results_dir / 'runs'}" + (f" ({len(notes)} incomplete)"
                                                                             if notes else ""))
    sections: list[Section] = []
    files: list[Path] = []
    for group in group_runs(records):
        section, written = _group_section(group, out, options)
        sections.append(section)
        files += written
    if notes:
        sections.append(Section("Runs left out", tuple(notes)))
    atomic_write_text(out / "report.md", markdown_page(TITLE, sections, out))
    files.append(out / "report.md")
    if options.html:
        atomic_write_text(out / "report.html", html_page(TITLE, sections))
        files.append(out / "report.html")
    return ReportResult(tuple(files), tuple(notes))
