"""`bench report`: every table and figure rebuilt from the run folders alone.

For each comparable group of runs (dataset, backbone, preset; `data.group_runs`) it writes, under `<out>/<group>/`:
`main.md` (the lead table and all metrics), `main.csv` / `main.tex` (all metrics with CIs), `lead.tex`,
`comparisons.csv` (the tested family: differences, CIs, p-values raw and Holm-adjusted, probability of
improvement, detectable difference), `steps_to_reach.csv`, `auc.csv` (trained methods), and the figures `forest.png`, `convergence.png`, `recall_at_k.png`,
`hit_rate.png`. Each group's pages have its training diagnostics (`diagnostics`: hit gain over SFT per rank,
list-length drift, tied-reward groups, collapse, compute), also under the table's `diagnostics` key in report.json,
then its calibration (`criteria`: headroom, signal, room at every rank), under the table's `calibration` key.
`<out>/report.md` gathers them (leading with the primary metric and the forest plot; the wide tables
below), `<out>/report.json` holds the machine-readable contract (README), and `--html` adds one self-contained
`<out>/report.html`. Same run folders in, same files out: resampling uses fixed seeds, ordering is by name.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.report.analysis import (
    POWER,
    RELIABLE_SEEDS,
    AnalysisOptions,
    TableAnalysis,
    analyse,
)
from bench.report.criteria import TITLE as CALIBRATION_TITLE
from bench.report.criteria import calibrate, calibration_blocks
from bench.report.curves import area_under_curves, method_curves, steps_to_reach
from bench.report.data import MEAN_COLUMNS, Group, group_runs, load_runs
from bench.report.diagnostics import (
    COLLAPSE_ITEMS_RATIO,
    COLLAPSE_LENGTH,
    COLLAPSE_SFT_LENGTH,
    TIED_TARGET,
    WINDOW,
    GroupDiagnostics,
    diagnose_group,
)
from bench.report.html import Block, Figure, Section, html_page, markdown_page
from bench.report.plots import (
    convergence_plot,
    forest_plot,
    hit_rate_plot,
    recall_at_k_plot,
)
from bench.report.stats import fewest_units
from bench.report.tables import (
    all_metrics_csv,
    all_metrics_table,
    area_table,
    comparisons_table,
    compute_table,
    drift_table,
    hit_gain_table,
    interval_text,
    lead_table,
    power_table,
    signed_text,
    steps_table,
)
from bench.runs.folders import atomic_write_text
from bench.runs.specs import ALGORITHMS

TITLE = "bench report"
CURVE_METRICS = ("ndcg@20", "recall@20")
UNRELIABLE_NOTE = f"* fewer than {RELIABLE_SEEDS} seeds: interval unreliable (too few seeds to estimate seed spread)."


@dataclass(frozen=True)
class ReportOptions:
    analysis: AnalysisOptions = field(default_factory=AnalysisOptions)
    target: float | None = None
    """Steps-to-reach target given outright; None: `target_fraction` of the SFT-to-best range."""
    target_fraction: float = 0.5
    auc_budget: float | None = None
    """RL steps of the area under the validation curve; None: the last step every RL seed logged."""
    html: bool = False

    def to_json(self) -> dict[str, Any]:
        """What report.json records of the options, so that a committed report can be rebuilt alike."""
        from dataclasses import asdict

        return {"analysis": asdict(self.analysis), "target": self.target, "target_fraction": self.target_fraction,
                "auc_budget": self.auc_budget}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> "ReportOptions":
        analysis = {**value["analysis"], "family": tuple(value["analysis"].get("family", ()))}
        return cls(AnalysisOptions(**analysis), value["target"], value["target_fraction"],
                   value["auc_budget"])


@dataclass(frozen=True)
class ReportResult:
    files: tuple[Path, ...]
    notes: tuple[str, ...]
    report: dict[str, Any]
    """The `report.json` object."""


def _verdict(analysis: TableAnalysis) -> str:
    """One sentence a reader decides from: how many comparisons are significant, how many could not be."""
    family = analysis.family
    m = len(family)
    if not m:
        return "No comparisons: the table has no method besides its comparators."
    significant = [f"{c.b} vs {c.a} ({'▲' if c.diff.mean > 0 else '▼'})" for c in family if c.significant]
    blind = sum(c.floor > analysis.options.alpha for c in family)
    declared = " declared" if analysis.options.family else ""
    found = (f"{len(significant)} of {m}{declared} comparisons significant after Holm at alpha "
             f"{analysis.options.alpha}" + (f": {', '.join(significant)}." if significant else "."))
    return found + (f" {blind} of {m} cannot reach alpha with these runs at all (smallest possible p above "
                    f"alpha): not significant there means too few seeds, not no effect." if blind else "")


def against_model_free(analysis: TableAnalysis) -> str | None:
    """Where the language-model methods stand against the strongest method without one (popularity, EASE, random),
    by mean on the primary metric: a recommender that an LLM does not beat is the first thing a reader must know
    (issue 27: "where the model stays below popularity, say so in the lead"). None when either side is absent."""
    primary = analysis.options.primary
    kinds: dict[bool, list[str]] = {True: [], False: []}
    for name, method in analysis.methods.items():
        info = ALGORITHMS.get(method.runs[0].spec.algo)
        if info is not None:
            kinds[info.needs_model].append(name)
    if not kinds[True] or not kinds[False]:
        return None

    def mean(name: str) -> float:
        return analysis.cells[(name, primary)].mean

    best, strongest = max(kinds[True], key=mean), max(kinds[False], key=mean)
    best_text, strongest_text = (f"{name}, {interval_text(analysis.cells[(name, primary)])}"
                                 for name in (best, strongest))
    if mean(best) < mean(strongest):
        found = (f"Every language-model method stays below the strongest method without one by its mean {primary}: "
                 f"the best, {best_text}, against {strongest_text}")
    else:
        found = (f"The best language-model method, {best_text}, is at or above the strongest method without one, "
                 f"{strongest_text}, by its mean {primary}")
    comparison = analysis.versus(best, strongest)
    if comparison is None:
        return found + " (their difference is not among this table's comparisons: --reference or --baseline adds it)."
    status = ("significant after Holm" if comparison.significant else "not significant after Holm"
              if comparison.in_family else "outside the tested family: a CI, no test")
    return found + f" (Δ {signed_text(comparison.diff)}, {status})."


def _legend(analysis: TableAnalysis) -> list[str]:
    options = analysis.options
    m = len(analysis.family)
    if options.family:
        declared = ", ".join(f"{c.b} vs {c.a}" for c in analysis.family)
        family = (f"the family of {m} comparisons declared before the runs ({declared}); the other comparisons "
                  f"shown are descriptive, their Holm cell \"undeclared\": a CI and a raw p, no test claimed")
    else:
        family = (f"the family of {m} comparisons (every method against {analysis.reference} and against "
                  f"{analysis.baseline}, and every RL method against its null control +null where it ran)")
    return [(f"How to read: primary metric {options.primary} on {analysis.n_examples} test examples, mean over runs "
             f"[95% two-level bootstrap CI: seeds resampled, one draw of test examples shared by every seed and "
             f"method, {options.n_bootstrap} replicates, widened for few seeds]. An untrained method "
             f"whose seed folders are identical is deterministic: one run. {UNRELIABLE_NOTE}"),
            (f"Δ = method - comparator (▲ higher, ▼ lower) with its CI from the same bootstrap. p / Holm: two-sided "
             f"permutation test whose unit is the seed (paired by seed where runs share an SFT start; the test "
             f"example only when both methods are deterministic), then Holm over {family} ({options.primary} "
             f"only); (sig.) marks Holm p < {options.alpha}. \"≤ x (floor)\": the smallest p the test can give "
             f"with these runs. P(better): probability that a run of the method beats a run of the comparator "
             f"(Agarwal et al. 2021) with its CI. \"untested\": no test of that pair. Other metrics get "
             f"intervals, not tests (All metrics, below).")]


def _power_text(analysis: TableAnalysis) -> str:
    alpha, m = analysis.options.alpha, max(1, len(analysis.family))
    return (f"Power of the test that runs (alpha {alpha} two-sided, before Holm; power {POWER}): its unit is the seed "
            f"(the test example only when both methods are deterministic), so the minimum detectable difference is "
            f"MDD = (t(df, 1 - alpha/2) + t(df, power)) x SE, with SE the standard error of the mean difference "
            f"between units (paired: sd of the per-seed differences / sqrt(n); unpaired: the pooled sd x sqrt(1/n_a + "
            f"1/n_b)), and \"units for the observed Δ\" is the fewest seeds per method at which this MDD reaches the "
            f"observed difference, at this spread. A permutation test over n seeds cannot give p below its floor "
            f"(2/2^n paired, 2/C(2n, n) for n + n unpaired, 1/C(n_a + n_b, n_a) for unequal counts): when the floor "
            f"exceeds alpha no difference is detectable, and \"not significant\" means too few seeds, not no effect. "
            f"Reaching alpha {alpha} needs {fewest_units(alpha, True)} paired seeds or "
            f"{fewest_units(alpha, False)} + {fewest_units(alpha, False)} unpaired; the smallest p of a Holm "
            f"family of {m} must be below alpha/{m} = {alpha / m:.4f}: {fewest_units(alpha / m, True)} paired seeds "
            f"or {fewest_units(alpha / m, False)} + {fewest_units(alpha / m, False)} unpaired.")


def _curve_blocks(group: Group, analysis: TableAnalysis, folder: Path, options: ReportOptions,
                  outputs: dict[str, str]) -> list[Block]:
    records = [run for runs in group.methods.values() for run in runs]
    curves, notes = method_curves(analysis.methods, records)
    if not curves:
        return []
    primary = analysis.options.primary
    metrics = tuple(dict.fromkeys((primary, *CURVE_METRICS)))
    sizes = sorted({run.spec.settings.validation_size for name in curves for run in analysis.methods[name].runs})
    blocks: list[Block] = [f"Validation curves ({', '.join(map(str, sizes))} validation prompts, greedy; SFT on "
                           f"the subset it picks its checkpoint on, RL on a disjoint monitor subset of as many, so "
                           f"RL's step 0 is an unbiased estimate of its start). " + " ".join(notes)]
    if convergence_plot(curves, metrics, group.key.title, folder / "convergence.png"):
        blocks.append(Figure(folder / "convergence.png",
                             f"Validation {', '.join(metrics)} on {', '.join(map(str, sizes))} validation prompts "
                             f"against the cumulative step (SFT steps, then RL: RL step 0 is SFT's last step) and "
                             f"cumulative wall time (SFT and RL on disjoint validation subsets). Thin lines: one seed each; "
                             f"thick: mean over seeds."))
    steps = steps_to_reach(curves, primary, options.target_fraction, options.target)
    if steps is None:
        blocks.append(f"Steps to reach: no target, since no trained method's mean final validation {primary} rose "
                      f"above the SFT start (give one with --target).")
    else:
        outputs["steps_to_reach.csv"] = steps_table(steps).to_csv()
        origin = ("given outright" if steps.fraction is None else
                  f"declared as SFT start {steps.start:.4f} + {steps.fraction:g} x (best mean final {steps.best:.4f}"
                  f" - SFT start)")
        blocks += [(f"Steps to reach validation {primary} ≥ {steps.target:.4f} ({origin}). A seed reaches it at "
                    f"its first validation after its own step 0; seeds that never do are counted (k of n) and "
                    f"the median treats them as beyond the last step. Steps and wall time are cumulative, SFT "
                    f"included."), steps_table(steps)]
    area = area_under_curves(curves, primary, options.auc_budget, analysis.options.n_bootstrap,
                             analysis.options.seed)
    if area is not None:
        budget, rows = area
        outputs["auc.csv"] = area_table(primary, budget, rows).to_csv()
        blocks += [(f"Area under the validation curve at a fixed budget of {budget:.0f} RL steps (mean validation "
                    f"{primary} over RL steps 0-{budget:.0f}, trapezoid), 95% CI from resampling seeds only "
                    f"(validation examples are not stored per point). {UNRELIABLE_NOTE}"),
                   area_table(primary, budget, rows)]
    return blocks


def _compute_text(diagnostics: GroupDiagnostics) -> str:
    total = diagnostics.total
    threads = "/".join(map(str, total.threads)) or "an unknown number of"
    product = ("" if total.thread_seconds is None else
               f"; wall x threads: {total.thread_seconds:.1f} thread-seconds (not measured CPU time)")
    nested = (f" {diagnostics.nested_sft_seconds:.1f} s of SFT starts built inside RL runs are counted under sft "
              f"only." if diagnostics.nested_sft_seconds else "")
    wall = ("no wall seconds recorded" if total.wall_seconds is None else
            f"{total.wall_seconds:.1f} wall seconds on {threads} thread{'' if total.threads == (1,) else 's'}")
    return (f"Compute: {wall} over the table's {total.n_runs} run folders{product}. Wall seconds are summary.json's "
            f"predict_seconds (training included for trained methods; an RL run's SFT start is its own run, under "
            f"sft); threads are environment.json's torch_threads. Runs without a backbone join every backbone's "
            f"table, so they count in each.{nested}")


def _diagnostic_blocks(diagnostics: GroupDiagnostics) -> list[Block]:
    blocks: list[Block] = []
    if not diagnostics.methods:
        blocks.append("No RL runs (grpo, gspo, rank_grpo) in this table: no hit gain, drift, tied groups or collapse "
                      "to show.")
    else:
        window = f"{WINDOW:.0%}"
        blocks += [("Hit gain: test hit rate at a rank (share of test examples whose item at that rank is a hit) "
                    "minus the SFT start's (same seed), mean over seeds; 95% interval from resampling seeds (test "
                    "examples not resampled, widened for few seeds), \"1 seed\" where there is one. All 20 ranks: "
                    "report.json `diagnostics`."), hit_gain_table(diagnostics),
                   (f"List length and learning signal: test mean list length minus the SFT start's; completion "
                    f"tokens and items emitted (train_log.jsonl) averaged over the first and the last {window} of the "
                    f"logged steps; share of groups whose rewards all tie (no learning signal) over the first "
                    f"{window} (at least one step), the steps between and the last {window}, mean over seeds "
                    f"(target: at most {TIED_TARGET:.0%} at the start)."), drift_table(diagnostics)]
        collapsed = diagnostics.collapsed
        rule = (f"test list length below {COLLAPSE_LENGTH:g} items from an SFT start of at least "
                f"{COLLAPSE_SFT_LENGTH:g}, or items emitted in the last {window} of steps below "
                f"{COLLAPSE_ITEMS_RATIO:g} x the first {window}")
        blocks.append(f"Collapse ({rule}): " + ("; ".join(f"{run.run_id} ({', '.join(run.collapse_reasons)})"
                                                           for run in collapsed) + "." if collapsed else
                                                 "no collapse."))
    blocks += [_compute_text(diagnostics), compute_table(diagnostics)]
    if diagnostics.notes:
        blocks.append("Missing or skipped: " + " ".join(diagnostics.notes))
    return blocks


def _group_section(group: Group, out: Path, options: ReportOptions) -> tuple[list[Section], dict[str, Any],
                                                                             list[Path]]:
    """Write one group's files; return its sections of the pages, its report.json table and the files written."""
    folder = out / group.key.slug
    folder.mkdir(parents=True, exist_ok=True)
    analysis = analyse(group, options.analysis)
    lead, wide = lead_table(analysis), all_metrics_table(analysis)
    outputs = {"main.md": lead.to_markdown() + "\n" + wide.to_markdown(),
               "main.csv": all_metrics_csv(analysis).to_csv(),
               "main.tex": wide.to_latex(), "lead.tex": lead.to_latex(),
               "comparisons.csv": comparisons_table(analysis).to_csv()}
    standing = against_model_free(analysis)
    lead_blocks: list[Block] = [_verdict(analysis) + ("" if standing is None else f" {standing}"), lead,
                                *_legend(analysis), *analysis.notes]
    if forest_plot(analysis, folder / "forest.png"):
        lead_blocks.append(Figure(folder / "forest.png",
                                  f"Difference in test {analysis.options.primary} of each method to the reference "
                                  f"method ({analysis.reference}) and to the baseline ({analysis.baseline}), with "
                                  f"95% two-level bootstrap CIs. Colour follows the Holm-corrected test, whose unit "
                                  f"is the seed: with few seeds a CI that misses 0 is still not a significant "
                                  f"difference."))
    power_blocks: list[Block] = [_power_text(analysis), power_table(analysis)]
    curve_blocks = _curve_blocks(group, analysis, folder, options, outputs)
    diagnostics = diagnose_group(group, options.analysis.n_bootstrap, options.analysis.seed)
    figure_blocks: list[Block] = []
    if recall_at_k_plot(analysis, folder / "recall_at_k.png"):
        figure_blocks.append(Figure(folder / "recall_at_k.png", "Test Recall@k against k, one panel per method "
                                    "(shared axes): mean over runs with its 95% two-level bootstrap CI band."))
    if hit_rate_plot(analysis, folder / "hit_rate.png"):
        figure_blocks.append(Figure(folder / "hit_rate.png", "Share of test examples whose recommendation at "
                                    "each rank is a hit, mean over runs."))
    wide_blocks: list[Block] = [(f"Means [95% CIs] as above; not tested (only {analysis.options.primary} is). "
                                 f"{UNRELIABLE_NOTE} Numbers in full: {group.key.slug}/main.csv; tests: "
                                 f"{group.key.slug}/comparisons.csv."), wide]
    written = []
    for name, text in outputs.items():
        atomic_write_text(folder / name, text)
        written.append(folder / name)
    written += sorted(folder.glob("*.png"))
    sections = [Section(group.key.title, tuple(lead_blocks)),
                Section("Power: what these runs could detect", tuple(power_blocks), level=3)]
    if curve_blocks:
        sections.append(Section("Training curves", tuple(curve_blocks), level=3))
    sections.append(Section("Training diagnostics", tuple(_diagnostic_blocks(diagnostics)), level=3))
    criteria = calibrate(analysis, diagnostics)
    sections.append(Section(CALIBRATION_TITLE, tuple(calibration_blocks(criteria)), level=3))
    sections += [Section("Recall at k and hit rate per rank", tuple(figure_blocks), level=3),
                 Section("All metrics", tuple(wide_blocks), level=3)]
    return sections, {**analysis.to_json(), "diagnostics": diagnostics.to_json(),
                      "calibration": [criterion.to_json() for criterion in criteria]}, written


def build_report(results_dir: Path, out: Path, options: ReportOptions = ReportOptions()) -> ReportResult:
    """Read the complete runs under `results_dir` and write every table, figure and page under `out`."""
    if options.analysis.primary not in MEAN_COLUMNS:
        raise BenchError(f"--primary must be one of {', '.join(MEAN_COLUMNS)} (a per-example mean), not "
                         f"{options.analysis.primary!r}")
    records, notes = load_runs(results_dir)
    if not records:
        raise BenchError(f"no complete runs under {results_dir / 'runs'}" + (f" ({len(notes)} incomplete)"
                                                                             if notes else ""))
    sections: list[Section] = []
    files: list[Path] = []
    tables = []
    for group in group_runs(records):
        group_sections, table, written = _group_section(group, out, options)
        sections += group_sections
        files += written
        tables.append(table)
    if notes:
        sections.append(Section("Runs left out", tuple(notes)))
    report = {"runs_from": str(results_dir), "options": options.to_json(), "tables": tables}
    atomic_write_text(out / "report.json", json.dumps(report, indent=1, allow_nan=False) + "\n")  # strict JSON
    atomic_write_text(out / "report.md", markdown_page(TITLE, sections, out))
    files += [out / "report.json", out / "report.md"]
    if options.html:
        atomic_write_text(out / "report.html", html_page(TITLE, sections))
        files.append(out / "report.html")
    return ReportResult(tuple(files), tuple(notes), report)
