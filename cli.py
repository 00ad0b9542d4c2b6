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
