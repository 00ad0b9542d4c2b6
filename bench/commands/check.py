"""`bench check`: the regression check against `results/reference/` (`bench.runs.check`)."""

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from bench.commands.options import comma_list, user_errors


@user_errors
def check_command(
    reference: Annotated[Path, typer.Option(help="Folder with config.json and metrics.json.")]
    = Path("results/reference"),
    results_dir: Annotated[Path, typer.Option(help="Where the check's runs are written.")] = Path("results/check"),
    update: Annotated[bool, typer.Option(help="Run the configuration and its perturbed reruns; write metrics.json.")
                      ] = False,
    reuse: Annotated[bool, typer.Option(help="Keep complete runs in --results-dir instead of rerunning them.")] = False,
    jobs: Annotated[int, typer.Option(help="Runs at once (separate processes when > 1).")] = 1,
    only: Annotated[str | None, typer.Option(help="Check only these algorithms' runs (comma-separated).")] = None,
    perturb: Annotated[str | None, typer.Option(help="Round like another machine: threads=N,onednn=off,"
                                                     "jitter=R[:SEED] (with an empty cache).")] = None,
    training: Annotated[bool, typer.Option(help="--no-training: only the untrained runs and the trained methods' "
                                                "deterministic probes (seconds).")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the verdicts as JSON (progress to stderr).")] = False,
) -> None:
    """Rerun the reference configuration and the trained methods' probes; print target, metric, band, observed, z
    and verdict; exit 1 when any value left its band (either way) or a run failed."""
    import contextlib

    from bench.runs.check import run_check, update_reference
    from bench.runs.launchers import LocalLauncher
    from bench.runs.perturb import Perturbation

    def progress(message: str) -> None:
        typer.echo(message, err=as_json)

    if update:
        command = f"bench check --update --reference {reference} --results-dir {results_dir}"
        path = update_reference(reference, results_dir, command, LocalLauncher(jobs), progress)
        typer.echo(f"wrote {path}")
        return
    algos = comma_list(only) if only else None
    perturbation = Perturbation.parse(perturb) if perturb else None
    with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():  # runs log on stdout
        result = run_check(reference, results_dir, LocalLauncher(jobs), reuse, progress, algos, perturbation,
                           training)
    if as_json:
        typer.echo(json.dumps(result.to_json(), indent=2))
    else:
        typer.echo(result.table())
    for problem in result.problems():
        typer.secho(f"FAIL {problem}", fg=typer.colors.RED, err=True)
    if not result.passed:
        raise typer.Exit(code=1)
    typer.echo(f"check passed in {result.seconds:.0f} s: every value inside its band ({reference / 'metrics.json'})",
               err=as_json)
