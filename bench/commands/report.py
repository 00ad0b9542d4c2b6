"""`bench report`: tables, tests, figures and report.json rebuilt from run folders only."""

import json
from pathlib import Path
from typing import Annotated

import typer

from bench.commands.options import comma_list, user_errors


@user_errors
def report_command(
    results_dir: Annotated[Path, typer.Option(help="Where runs/ lives.")] = Path("results"),
    out: Annotated[Path | None, typer.Option(help="Report folder (default: RESULTS_DIR/report).")] = None,
    primary: Annotated[str, typer.Option(help="The one tested metric (declared before looking).")] = "ndcg@20",
    baseline: Annotated[str, typer.Option(help="Method every other one is tested against.")] = "popularity",
    reference: Annotated[str, typer.Option(help="Reference method every other one is tested against.")] = "rank_grpo",
    target: Annotated[float | None, typer.Option(help="Steps-to-reach target of the primary validation metric "
                                                      "(default: from --target-fraction).")] = None,
    target_fraction: Annotated[float, typer.Option(help="Steps-to-reach target as SFT start + this fraction of "
                                                        "the SFT-to-best range.")] = 0.5,
    auc_budget: Annotated[float | None, typer.Option(help="RL steps of the area under the validation curve "
                                                          "(default: the last step every RL seed logged).")] = None,
    alpha: Annotated[float, typer.Option(help="Significance level after Holm correction.")] = 0.05,
    family: Annotated[str, typer.Option(help="The testing family, declared before the runs: comma-separated "
                                             "METHOD:COMPARATOR pairs (e.g. rank_grpo:sft,rank_grpo:rank_grpo+null); "
                                             "Holm over these only, the other pairs shown untested. Default: every "
                                             "method against --baseline and --reference, and against its null.")
              ] = "",
    bootstrap: Annotated[int, typer.Option(help="Bootstrap replicates (at least 10,000 for a report).")] = 10_000,
    html: Annotated[bool, typer.Option("--html", help="Also write one self-contained report.html.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report.json object on stdout.")] = False,
) -> None:
    """Tables (Markdown, CSV, LaTeX), significance tests, figures and report.json rebuilt from the run folders."""
    from bench.report.analysis import AnalysisOptions, parse_family
    from bench.report.build import ReportOptions, build_report

    folder = out or results_dir / "report"
    declared = tuple(comma_list(family))
    parse_family(declared)
    analysis = AnalysisOptions(primary=primary, baseline=baseline, reference=reference, alpha=alpha,
                               n_bootstrap=bootstrap, family=declared)
    result = build_report(results_dir, folder, ReportOptions(analysis, target=target, target_fraction=target_fraction,
                                                             auc_budget=auc_budget, html=html))
    for note in result.notes:
        typer.echo(f"note: {note}", err=True)
    if as_json:
        typer.echo(json.dumps(result.report))
    else:
        typer.echo(f"wrote {len(result.files)} files under {folder} (start with {folder / 'report.md'})")


@user_errors
def records_command(
    out: Annotated[Path, typer.Option(help="Where the records go, as OUT/runs/<run_id>/ (then `bench report "
                                           "--results-dir OUT` rebuilds the tables from them).")],
    results_dir: Annotated[Path, typer.Option(help="Where the run folders (runs/) live.")] = Path("results"),
) -> None:
    """Per-run records to commit: every file a report reads, without weights, checkpoints or sampled texts."""
    from bench.runs.records import export_records

    exported = export_records(results_dir, out)
    typer.echo(f"wrote {len(exported)} run records under {out / 'runs'}")
