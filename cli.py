"""The `bench` command line (Typer). Thin: parse flags, build a typed spec, call into `bench`.

Heavy libraries (torch, transformers, trl, vllm) are imported inside the commands that need them, so
`bench --help` stays instant. A `BenchError` becomes one red line on stderr and exit code 2, never a traceback.
"""

import json
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from bench.errors import BenchError

app = typer.Typer(help="bench: benchmark LLM conversational recommenders aligned with RL.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
data_app = typer.Typer(help="Datasets: list, inspect, build.", no_args_is_help=True)
bench_app = typer.Typer(help="Speed benchmarks that print numbers.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(bench_app, name="bench")

F = TypeVar("F", bound=Callable[..., Any])

DatasetOption = Annotated[str, typer.Option("--dataset", help="Dataset name (redial, synthetic) or path.")]
CatalogOption = Annotated[Path | None, typer.Option("--catalog", help="Catalog file (.pkl, .csv, .jsonl).")]


def user_errors(command: F) -> F:
    """Turn BenchError into one line on stderr and exit code 2."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except BenchError as error:
            typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
            raise typer.Exit(code=2) from None

    return wrapper  # type: ignore[return-value]


def _print_table(title: str, rows: list[tuple[str, str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in rows:
        table.add_row(key, value)
    Console().print(table)


def _format(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


@data_app.command("list")
def data_list() -> None:
    """List the named datasets."""
    from bench.datasets import NAMED_DATASETS

    for name, description in NAMED_DATASETS.items():
        typer.echo(f"{name:<10} {description}")


@data_app.command("info")
@user_errors
def data_info(name_or_path: Annotated[str, typer.Argument(help="Dataset name or path.")],
              catalog: CatalogOption = None,
              as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Split sizes, catalog size and ground-truth-per-sample statistics."""
    from bench.data_info import dataset_info
    from bench.datasets import load_dataset

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
    from bench.datasets import SHIPPED_DIR

    if name == "redial":
        from bench.redial_builder import build_redial

        if source is None:
            raise BenchError("--source DIR is required: the directory holding ReDial's test_data.jsonl and "
                             "movies_with_mentions.csv")
        summary = build_redial(source, out or SHIPPED_DIR / "redial")
        typer.echo(json.dumps(summary, indent=2))
    elif name == "synthetic":
        from bench.synthetic import SYNTHETIC_SIZES, write_synthetic
        from dataclasses import replace

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
                 dataset: DatasetOption = "redial", catalog: CatalogOption = None,
                 split: Annotated[str, typer.Option(help="Split to score against.")] = "test",
                 protocol: Annotated[str, typer.Option(help="standard or reference.")] = "standard",
                 as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object only.")] = False) -> None:
    """Score raw model outputs with the one evaluator."""
    from bench.datasets import load_dataset
    from bench.evaluator import evaluate
    from bench.predictions import load_predictions

    data = load_dataset(dataset, catalog)
    result = evaluate(data.split(split), load_predictions(predictions), data.catalog, protocol)
    if as_json:
        sys.stdout.write(json.dumps(result.metrics) + "\n")
        return
    _print_table(f"{data.name} / {split} / {protocol}", [(k, _format(v)) for k, v in result.metrics.items()])


@app.command("run")
@user_errors
def run_command(
    algo: Annotated[str, typer.Option(help="Method: zero_shot, popularity, ease, crag, sft, grpo, gspo, rank_grpo.")],
    model: Annotated[str, typer.Option(help="Backbone name (bench models), local path, hub id, openai:MODEL.")
                     ] = "tiny",
    dataset: DatasetOption = "redial", catalog: CatalogOption = None,
    split: Annotated[str, typer.Option(help="Evaluation split.")] = "test",
    seed: Annotated[int, typer.Option(help="Seed for training and sampling.")] = 0,
    preset: Annotated[str, typer.Option(help="smoke, default or paper.")] = "default",
    backend: Annotated[str, typer.Option(help="Rollout backend: transformers or vllm.")] = "transformers",
    protocol: Annotated[str, typer.Option(help="Main evaluation protocol: standard or reference.")] = "standard",
    limit: Annotated[int | None, typer.Option(help="Evaluate only the first N examples of the split.")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="Override the preset's generation length.")] = None,
    steps: Annotated[int | None, typer.Option(help="RL steps (overrides the preset).")] = None,
    num_generations: Annotated[int | None, typer.Option(help="Completions per prompt G (RL).")] = None,
    lr: Annotated[float | None, typer.Option(help="RL learning rate.")] = None,
    mu: Annotated[int | None, typer.Option(help="Policy updates per generation batch (mu).")] = None,
    reward: Annotated[str, typer.Option(help="Rank-GRPO reward: exp_inf or log_decay.")] = "exp_inf",
    length_shaping: Annotated[bool, typer.Option(help="Rank-GRPO length shaping (published trainer).")] = True,
    sft_data: Annotated[str | None, typer.Option(help="Dataset with SFT demonstrations (bench sft-data).")] = None,
    base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible endpoint (also OPENAI_BASE_URL).")] = None,
    random_init: Annotated[bool, typer.Option(help="Real architecture, random weights (throughput only).")] = False,
    results_dir: Annotated[Path, typer.Option(help="Where runs/ and report/ live.")] = Path("results"),
    force: Annotated[bool, typer.Option(help="Rerun even when the run is complete.")] = False,
) -> None:
    """Train (when the method needs it) and evaluate one method on one backbone; write results/runs/<run_id>/."""
    from bench.runner import execute
    from bench.specs import make_spec

    spec = make_spec(algo, model, preset,
                     {"eval_limit": limit, "max_new_tokens": max_new_tokens, "rl_steps": steps,
                      "num_generations": num_generations, "rl_lr": lr, "mu": mu},
                     dataset=dataset, catalog=str(catalog) if catalog else None, split=split, seed=seed,
                     backend=backend, protocol=protocol, reward=reward, length_shaping=length_shaping,
                     sft_data=sft_data, base_url=base_url, random_init=random_init)
    from bench.methods import get_method

    get_method(spec.algo)
    outcome = execute(spec, results_dir, force=force, log=lambda message: typer.echo(message, err=True))
    state = "already complete, skipped (use --force to rerun)" if outcome.skipped else "done"
    _print_table(f"{spec.algo} / {spec.model} / {spec.dataset} / {spec.split} ({spec.protocol})",
                 [(k, _format(v)) for k, v in outcome.metrics.items()])
    typer.echo(f"run folder: {outcome.folder}  [{state}]")


@app.command("models")
def models_command() -> None:
    """List the registered backbones (any local path or hub id works too)."""
    from bench.backbones import list_backbones

    for spec in list_backbones():
        source = spec.hf_id or "built locally from the dataset's text"
        typer.echo(f"{spec.name:<14} {spec.params:<36} {source}")


@bench_app.command("rollout")
@user_errors
def bench_rollout(model: Annotated[str, typer.Option(help="Backbone.")] = "tiny",
                  backend: Annotated[str, typer.Option(help="transformers or vllm.")] = "transformers",
                  prompts: Annotated[int, typer.Option(help="Number of prompts.")] = 64,
                  batch_size: Annotated[int, typer.Option(help="Prompts per batch.")] = 16,
                  max_new_tokens: Annotated[int, typer.Option(help="Tokens generated per prompt.")] = 128,
                  temperature: Annotated[float, typer.Option(help="0 = greedy.")] = 1.0,
                  random_init: Annotated[bool, typer.Option(help="Real architecture, random weights.")] = False,
                  dataset: DatasetOption = "redial") -> None:
    """Rollout throughput: tokens/s and examples/s for a backbone and backend."""
    from bench.backbones import load_backbone
    from bench.datasets import load_dataset
    from bench.rollouts import SamplingSettings, measure_throughput

    corpus = load_dataset(dataset).corpus()
    backbone = load_backbone(model, corpus=corpus, random_init=random_init)
    settings = SamplingSettings(max_new_tokens=max_new_tokens, temperature=temperature, ignore_eos=True)
    result = measure_throughput(backbone, backend, prompts, settings, batch_size)
    typer.echo(f"{result['backbone']} on {result['device']} ({result['backend']}, {result['dtype']}): "
               f"{result['tokens_per_s']:.1f} tokens/s, {result['examples_per_s']:.2f} examples/s "
               f"({result['new_tokens']} tokens in {result['wall_s']:.2f} s, batch {batch_size})")


@bench_app.command("eval")
@user_errors
def bench_eval(dataset: DatasetOption = "redial", split: str = "test",
               examples: Annotated[int, typer.Option(help="Examples in the large predictions file.")] = 20000,
               pairwise_examples: Annotated[int, typer.Option(help="Examples timed with the pairwise loop.")] = 500,
               seed: int = 0,
               out: Annotated[Path | None, typer.Option(help="Also write the predictions file here.")] = None) -> None:
    """Time the evaluator against a straightforward pairwise loop; print both and the ratio."""
    from bench.datasets import load_dataset
    from bench.eval_benchmark import run_eval_benchmark

    result = run_eval_benchmark(load_dataset(dataset), split, examples, pairwise_examples, seed, out)
    typer.echo(f"evaluator:     {result['fast_per_example_ms']:.4f} ms/example "
               f"({result['examples']} examples in {result['fast_seconds']:.2f} s)")
    typer.echo(f"pairwise loop: {result['pairwise_per_example_ms']:.4f} ms/example "
               f"({result['pairwise_examples']} examples in {result['pairwise_seconds']:.2f} s)")
    typer.echo(f"speedup: {result['speedup']:.1f}x  (max metric difference {result['max_metric_difference']:.2e})")


if __name__ == "__main__":
    app()
