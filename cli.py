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

from bench.commands import options as opt
from bench.commands.benchmarks import bench_app
from bench.commands.calibrate import calibrate_command
from bench.commands.check import check_command
from bench.commands.data import data_app, sft_data_command
from bench.commands.options import comma_list, user_errors
from bench.commands.output import format_value, print_comparison, print_table
from bench.commands.report import records_command, report_command
from bench.errors import BenchError

# OpenMP threads that sleep instead of spinning while they wait: on a CPU shared with other jobs, spinning threads
# made a 2-thread decoding step 14-23x slower than 1 thread (measured, bench bench rollout); set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

app = typer.Typer(help="bench: benchmark LLM conversational recommenders aligned with RL.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
app.add_typer(data_app, name="data")
app.add_typer(bench_app, name="bench")


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
    print_table(f"{data.name} / {split} / {protocol}", [(k, format_value(v)) for k, v in result.metrics.items()])


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
    from bench.runs.compare import compare, null_control_pair
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
    print_table(f"{spec.method_label} / {spec.model} / {spec.dataset} / {spec.split} ({spec.protocol})",
                [(k, format_value(v)) for k, v in outcomes[0].metrics.items()])
    typer.echo(f"run folder: {outcomes[0].folder}  [{state}]")
    comparison = compare(spec, outcomes[0].metrics, results_dir)
    if len(comparison.rows) > 1:
        print_comparison(f"{spec.method_label} (first row) beside its neighbours, seed {spec.seed}", comparison)
    typer.echo(comparison.note)


@app.command("models")
def models_command() -> None:
    """List the registered backbones, where their weights come from and whether they are here (any local path or
    hub id works too)."""
    from bench.models.backbones import list_backbones, weights_status

    for spec in list_backbones():
        source, present = weights_status(spec)
        typer.echo(f"{spec.name:<14} {spec.params:<46} {present}\n{'':<15}{source}")


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
    specs = expand_grid(comma_list(algos), comma_list(models), parse_seeds(seeds), comma_list(dataset), preset,
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


# Defined in bench/commands/ by concern; registered here so that `bench --help` lists the commands in this order.
app.command("calibrate")(calibrate_command)
app.command("report")(report_command)
app.command("records")(records_command)
app.command("check")(check_command)
app.command("sft-data")(sft_data_command)


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
