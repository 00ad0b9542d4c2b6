"""`bench data` (list, inspect, build datasets) and `bench sft-data` (build SFT demonstrations): the commands that
produce or describe datasets."""

import json
from pathlib import Path
from typing import Annotated

import typer

from bench.commands import options as opt
from bench.commands.options import user_errors
from bench.errors import BenchError

data_app = typer.Typer(help="Datasets: list, inspect, build.", no_args_is_help=True)


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
