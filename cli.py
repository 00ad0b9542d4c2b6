"""The `bench` command line (Typer). Thin: parse flags, build a typed spec, call into `bench`.

Heavy libraries (torch, transformers, trl, vllm) are imported inside the commands that need them, so
`bench --help` stays instant. A `BenchError` becomes one red line on stderr and exit code 2, never a traceback.
"""

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from bench import cli_options as opt
from bench.cli_benchmarks import bench_app
from bench.cli_options import user_errors
from bench.errors import BenchError

# OpenMP threads that sleep instead of spinning while they wait: on a CPU shared with other jobs, spinning threads
# made a 2-thread decoding step 14-23x slower than 1 thread (measured, bench bench rollout); set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

app = typer.Typer(help="bench: benchmark LLM conversational recommenders aligned with RL.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
data_app = typer.Typer(help="Datasets: list, inspect, build.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(bench_app, name="bench")


def _print_table(title: str, rows: list[tuple[str, ...]], header: tuple[str, ...] = ("metric", "value")) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for index, name in enumerate(header):
        table.add_column(name, justify="left" if index == 0 else "right")
    for row in rows:
        table.add_row(*row)
    Console().print(table)


def _format(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


@data_app.command("list")
def data_list() -> None:
    """List the named datasets."""
    from bench.data.datasets import NAMED_DATASETS

    for name, description in NAMED_DATASETS.items():
        typer.echo(f"{name:<10} {description}")


@data_app.command("info")
@user_errors
def data_info(name_or_path: Annotated[str, typer.Argument(help="Dataset name or path.")],
              catalog: opt.Catalog = None,
              as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Split sizes, catalog size and ground-truth-per-sample statistics."""
    from bench.data.datasets import load_dataset
    from bench.data.info import dataset_info

    info = dataset_info(load_dataset(name_or_path, catalog))
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    typer.echo(f"dataset {info['name']}  ({info['source']})")
    typer.echo(f"catalog: {info['catalog_items']} items ({info['catalog_dropped']} malformed entries dropped)")
    for split, stats in info["splits"].items():  # type: ignore[union-attr]
        typer.echo(f"{split:<10} {stats['samples']:>6} samples  {stats['dialogues']:>5} dialogues  "
                   f"ground truth/sample {stats['groundtruth_mean']} (min {stats['groundtruth_min']}, "
                   f"max {stats['groundtruth_max']})  seen/sample {stats['seen_mean']}")


@data_app.command("build")
@user_errors
def data_build(name: Annotated[str, typer.Argument(help="Dataset to build: redial or synthetic.")],
               source: Annotated[Path | None, typer.Option(help="Raw data directory (redial).")] = None,
               out: Annotated[Path | None, typer.Option(help="Output directory.")] = None,
               size: Annotated[str, typer.Option(help="Synthetic size preset.")] = "default",
               seed: Annotated[int, typer.Option(help="Synthetic seed.")] = 0) -> None:
    """Build a dataset into contract files (redial: from the raw ReDial files; synthetic: from a seed)."""
    from bench.data.datasets import SHIPPED_DIR

    if name == "redial":
        from bench.data.redial_builder import build_redial

        if source is None:
            raise BenchError("--source DIR is required: the directory holding ReDial's test_data.jsonl and "
                             "movies_with_mentions.csv")
        summary = build_redial(source, out or SHIPPED_DIR / "redial")
        typer.echo(json.dumps(summary, indent=2))
    elif name == "synthetic":
        from dataclasses import replace

        from bench.data.synthetic import SYNTHETIC_SIZES, write_synthetic

        if size not in SYNTHETIC_SIZES:
            from bench.errors import UnknownNameError

            raise UnknownNameError("synthetic size", size, list(SYNTHETIC_SIZES))
        target = out or Path("synthetic")
        write_synthetic(target, replace(SYNTHETIC_SIZES[size], seed=seed))
        typer.echo(f"wrote {target}")
    else:
        raise BenchError(f"cannot build '{name}': buildable datasets are redial and synthetic")


@app.command("eval")
@user_errors
def eval_command(predictions: Annotated[Path, typer.Option("--predictions", help="JSONL of {id, text}.")],
                 dataset: opt.Dataset = "redial", catalog: opt.Catalog = None,
                 split: Annotated[str, typer.Option(help="Split to score against.")] = "test",
                 protocol: Annotated[str, typer.Option(help="standard or reference.")] = "standard",
                 as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object only.")] = False) -> None:
    """Score raw model outputs with the one evaluator."""
    from bench.data.datasets import load_dataset
    from bench.data.predictions import load_predictions
    from bench.evaluation.evaluator import evaluate

    data = load_dataset(dataset, catalog)
    result = evaluate(data.split(split), load_predictions(predictions), data.catalog, protocol)
    if as_json:
        sys.stdout.write(json.dumps(result.metrics) + "\n")
        return
    _print_table(f"{data.name} / {split} / {protocol}", [(k, _format(v)) for k, v in result.metrics.items()])


@app.command("run")
@user_errors
@opt.with_option_sets(evaluation=opt.EvalOptions, sft=opt.SFTOptions, rl=opt.RLOptions, lora=opt.LoraOptions)
def run_command(
    algo: Annotated[str, typer.Option(help="Method: zero_shot, popularity, ease, random, crag, sft, grpo, gspo, "
                                           "rank_grpo.")],
    model: Annotated[str, typer.Option(help="Backbone name (bench models), local path, hub id, openai:MODEL.")
                     ] = "tiny",
    dataset: opt.Dataset = "redial", catalog: opt.Catalog = None,
    seed: Annotated[int, typer.Option(help="Seed for training and sampling.")] = 0,
    preset: opt.Preset = "default",
    with_null: Annotated[bool, typer.Option(help="RL methods: also run the null control (the same run with "
                                                 "shuffled rewards) and print both beside the SFT start.")] = False,
    report_to: opt.ReportTo = "none", dry_run: opt.DryRun = False,
    base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible endpoint (also OPENAI_BASE_URL).")] = None,
    random_init: Annotated[bool, typer.Option(help="Real architecture, random weights (throughput only).")] = False,
    results_dir: Annotated[Path, typer.Option(help="Where runs/ and report/ live.")] = Path("results"),
    force: Annotated[bool, typer.Option(help="Rerun even when the run is complete.")] = False,
    *, evaluation: opt.EvalOptions, sft: opt.SFTOptions, rl: opt.RLOptions, lora: opt.LoraOptions,
) -> None:
    """Train (when the method needs it) and evaluate one method on one backbone; write results/runs/<run_id>/."""
    from bench.runs.compare import COLUMNS, compare, null_control_pair
    from bench.runs.methods import get_method
    from bench.runs.runner import execute
    from bench.runs.specs import RL_ALGORITHMS, make_spec

    overrides, fields = opt.spec_settings(evaluation, sft, rl, lora)
    spec = make_spec(algo, model, preset, overrides, dataset=dataset, catalog=str(catalog) if catalog else None,
                     seed=seed, base_url=base_url, random_init=random_init, **fields)
    get_method(spec.algo)
    if with_null and spec.algo not in RL_ALGORITHMS:
        raise BenchError(f"--with-null applies to RL methods ({', '.join(RL_ALGORITHMS)}), not {spec.algo}")
    specs = [spec, null_control_pair(spec)] if with_null else [spec]
    if dry_run:
        for planned in specs:
            sys.stdout.write(json.dumps(planned.to_json(), indent=2) + "\n")
            typer.echo(f"{planned.method_label}: would write {results_dir / 'runs' / planned.run_id}", err=True)
        return
    outcomes = [execute(planned, results_dir, force=force, log=lambda message: typer.echo(message, err=True),
                        report_to=report_to) for planned in specs]
    state = "already complete, skipped (use --force to rerun)" if outcomes[0].skipped else "done"
    _print_table(f"{spec.method_label} / {spec.model} / {spec.dataset} / {spec.split} ({spec.protocol})",
                 [(k, _format(v)) for k, v in outcomes[0].metrics.items()])
    typer.echo(f"run folder: {outcomes[0].folder}  [{state}]")
    comparison = compare(spec, outcomes[0].metrics, results_dir)
    if len(comparison.rows) > 1:
        _print_table(f"{spec.method_label} (first row) beside its neighbours, seed {spec.seed}",
                     [(label, *(_format(metrics.get(c, "")) for c in COLUMNS)) for label, metrics in comparison.rows],
                     ("method", *COLUMNS))
    typer.echo(comparison.note)


@app.command("models")
def models_command() -> None:
    """List the registered backbones, where their weights come from and whether they are here (any local path or
    hub id works too)."""
    from bench.models.backbones import list_backbones, weights_status

    for spec in list_backbones():
        source, present = weights_status(spec)
        typer.echo(f"{spec.name:<14} {spec.params:<46} {present}\n{'':<15}{source}")


def _comma_list(text: str) -> list[str]:
    """'a, b,c' -> ['a', 'b', 'c'] (for the matrix flags)."""
    return [part.strip() for part in text.split(",") if part.strip()]


@app.command("matrix")
@user_errors
@opt.with_option_sets(evaluation=opt.EvalOptions, sft=opt.SFTOptions, rl=opt.RLOptions, lora=opt.LoraOptions)
def matrix_command(
    algos: Annotated[str, typer.Option(help="Comma-separated methods, named variants too, e.g. "
                                            "sft,grpo,grpo+null,rank_grpo,rank_grpo+null,rank_grpo+mrc.")],
    models: Annotated[str, typer.Option(help="Comma-separated backbones.")] = "tiny",
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds, or a range: 0-9.")] = "0",
    dataset: Annotated[str, typer.Option(help="Comma-separated datasets (names or paths).")] = "redial",
    preset: opt.Preset = "default",
    results_dir: Annotated[Path, typer.Option(help="Where runs/ and matrix.log live.")] = Path("results"),
    jobs: Annotated[int, typer.Option(help="Local launcher: runs at once (separate processes when > 1).")] = 1,
    launcher: Annotated[str, typer.Option(help="local or slurm (submitit, pip install 'bench[cluster]').")]
    = "local",
    partition: Annotated[str | None, typer.Option(help="Slurm partition.")] = None,
    gpus_per_node: Annotated[int, typer.Option(help="Slurm: GPUs per job (one run per job).")] = 1,
    cpus_per_task: Annotated[int, typer.Option(help="Slurm: CPUs per job.")] = 8,
    timeout_min: Annotated[int, typer.Option(help="Slurm: time limit per job in minutes.")] = 240,
    mem_gb: Annotated[float | None, typer.Option(help="Slurm: memory per job in GB.")] = None,
    slurm_folder: Annotated[Path, typer.Option(help="Slurm: submitit logs (on a shared filesystem).")]
    = Path("results/slurm"),
    force: Annotated[bool, typer.Option(help="Rerun complete runs too.")] = False,
    dry_run: Annotated[bool, typer.Option(help="Print the planned runs and exit.")] = False,
    *, evaluation: opt.EvalOptions, sft: opt.SFTOptions, rl: opt.RLOptions, lora: opt.LoraOptions,
) -> None:
    """Run a grid of runs: SFT warm starts first, complete runs skipped, failures listed (exit 1) after the rest.

    Re-running the same command resumes a killed matrix. One run per process or Slurm job; a multi-GPU run goes
    through `accelerate launch -m cli run ...` on its own, and the matrix then skips it as complete.
    """
    from bench.runs.launchers import SlurmSettings, make_launcher
    from bench.runs.matrix import expand_grid, parse_seeds, plan_waves, run_matrix

    overrides, fields = opt.spec_settings(evaluation, sft, rl, lora)
    specs = expand_grid(_comma_list(algos), _comma_list(models), parse_seeds(seeds), _comma_list(dataset), preset,
                        overrides, **fields)
    if dry_run:
        for number, wave in enumerate(plan_waves(specs), start=1):
            for spec in wave:
                typer.echo(f"wave {number}  {spec.run_id}")
        return
    slurm = SlurmSettings(slurm_folder.resolve(), partition, gpus_per_node, cpus_per_task, timeout_min, mem_gb)
    outcome = run_matrix(specs, results_dir, make_launcher(launcher, jobs, slurm, typer.echo), force=force,
                         echo=typer.echo)
    if outcome.failed:
        raise typer.Exit(code=1)


@app.command("calibrate")
@user_errors
@opt.with_option_sets(evaluation=opt.EvalOptions, sft=opt.SFTOptions, rl=opt.RLOptions)
def calibrate_command(
    model: Annotated[str, typer.Option(help="Backbone.")] = "tiny",
    dataset: opt.Dataset = "synthetic:testbed", preset: opt.Preset = "testbed",
    seeds: Annotated[str, typer.Option(help="SFT starts to probe (calibration seeds, not the table's).")] = "100-102",
    temperatures: Annotated[str, typer.Option(help="Candidate rollout temperatures.")
                            ] = "0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0",
    prompts: Annotated[int, typer.Option(help="Training prompts sampled per temperature and seed.")] = 64,
    results_dir: Annotated[Path, typer.Option(help="Where the SFT and null-control runs live.")] = Path("results"),
    *, evaluation: opt.EvalOptions, sft: opt.SFTOptions, rl: opt.RLOptions,
) -> None:
    """Fix the RL temperature and learning rate by rules that read SFT and null-control runs only (never a
    real-reward RL run, never the test split); writes RESULTS_DIR/calibration/<dataset>-<model>-<preset>.json."""
    from algorithms.calibration import calibrate, report_lines
    from bench.runs.folders import atomic_write_text
    from bench.runs.matrix import parse_seeds

    overrides, fields = opt.spec_settings(evaluation, sft, rl)
    result = calibrate(model, dataset, preset, parse_seeds(seeds), [float(t) for t in _comma_list(temperatures)],
                       prompts, results_dir, overrides, fields, log=lambda message: typer.echo(message, err=True))
    for line in report_lines(result):
        typer.echo(line)
    path = results_dir / "calibration" / f"{dataset.replace(':', '_')}-{model}-{preset}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(result.to_json(), indent=2) + "\n")
    typer.echo(f"wrote {path}")


@app.command("report")
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
    bootstrap: Annotated[int, typer.Option(help="Bootstrap replicates (at least 10,000 for a report).")] = 10_000,
    html: Annotated[bool, typer.Option("--html", help="Also write one self-contained report.html.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report.json object on stdout.")] = False,
) -> None:
    """Tables (Markdown, CSV, LaTeX), significance tests, figures and report.json rebuilt from the run folders."""
    import json

    from bench.report.analysis import AnalysisOptions
    from bench.report.build import ReportOptions, build_report

    folder = out or results_dir / "report"
    analysis = AnalysisOptions(primary=primary, baseline=baseline, reference=reference, alpha=alpha,
                               n_bootstrap=bootstrap)
    result = build_report(results_dir, folder, ReportOptions(analysis, target=target, target_fraction=target_fraction,
                                                             auc_budget=auc_budget, html=html))
    for note in result.notes:
        typer.echo(f"note: {note}", err=True)
    if as_json:
        typer.echo(json.dumps(result.report))
    else:
        typer.echo(f"wrote {len(result.files)} files under {folder} (start with {folder / 'report.md'})")


@app.command("check")
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
    algos = [name.strip() for name in only.split(",") if name.strip()] if only else None
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


@app.command("sft-data")
@user_errors
def sft_data_command(
    out: Annotated[Path, typer.Option(help="Output dataset directory (train.jsonl with demonstrations, "
                                           "validation/test, catalog.csv, report.json).")],
    teacher: Annotated[str, typer.Option(help="ease (offline), popularity, a backbone name, or openai:MODEL.")
                       ] = "ease",
    judge: Annotated[str, typer.Option(help="ease (offline), a backbone name, or openai:MODEL.")] = "ease",
    dataset: opt.Dataset = "redial", catalog: opt.Catalog = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N training examples.")] = None,
    base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible endpoint (also OPENAI_BASE_URL).")] = None,
    fuzzy_threshold: Annotated[float, typer.Option(help="Remap's fuzzy score threshold (0-100).")] = 90.0,
    popularity_strength: Annotated[float, typer.Option(help="Adjust's popularity correction exponent (0 = off).")
                                   ] = 0.5,
    max_new_tokens: Annotated[int, typer.Option(help="Generation budget of LLM teachers and judges.")] = 400,
    seed: Annotated[int, typer.Option(help="Seed sent with LLM requests.")] = 0,
    backend: opt.Backend = "transformers",
    force: Annotated[bool, typer.Option(help="Replace an existing --out directory.")] = False,
) -> None:
    """Build SFT demonstrations with Remap-Reflect-Adjust (Rank-GRPO Stage 1): teacher -> catalog -> judge ->
    adjusted lists of 20 catalog items."""
    from baselines.sft_data import SftDataConfig, build_sft_data, report_lines
    from bench.data.datasets import load_dataset
    from bench.models.backbones import default_cache_dir

    config = SftDataConfig(teacher=teacher, judge=judge, fuzzy_threshold=fuzzy_threshold,
                           popularity_strength=popularity_strength, limit=limit, base_url=base_url, seed=seed,
                           max_new_tokens=max_new_tokens, backend=backend)
    report = build_sft_data(load_dataset(dataset, catalog), config, out, default_cache_dir(), overwrite=force,
                            log=lambda message: typer.echo(message, err=True))
    for line in report_lines(report, out):
        typer.echo(line)


@app.command("serve")
@user_errors
def serve_command(
    model: Annotated[str, typer.Option(help="Backbone name (bench models), local path or hub id.")] = "tiny",
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0 picks a free one).")] = 8000,
    dataset: opt.Dataset = "redial",
    backend: opt.Backend = "transformers",
) -> None:
    """Serve a local backbone as an OpenAI-compatible endpoint (POST /v1/chat/completions) until Ctrl-C."""
    from bench.data.datasets import load_dataset
    from bench.models.backbones import default_cache_dir, load_backbone
    from bench.models.openai_server import serve_until_interrupted

    backbone = load_backbone(model, corpus=load_dataset(dataset).corpus(), cache_dir=default_cache_dir() / "backbones")
    serve_until_interrupted(backbone, host, port, backend, typer.echo)


if __name__ == "__main__":
    app()
