"""`bench calibrate`: the RL temperature and learning rate fixed by written rules (`experiments.calibration`)."""

import json
from pathlib import Path
from typing import Annotated

import typer

from bench.commands import options as opt
from bench.commands.options import comma_list, user_errors


@user_errors
@opt.with_option_sets(evaluation=opt.EvalOptions, sft=opt.SFTOptions, rl=opt.RLOptions, lora=opt.LoraOptions)
def calibrate_command(
    model: Annotated[str, typer.Option(help="Backbone.")] = "tiny",
    dataset: opt.Dataset = "synthetic:testbed", preset: opt.Preset = "testbed",
    seeds: Annotated[str, typer.Option(help="SFT starts to probe (calibration seeds, not the table's).")] = "100-102",
    temperatures: Annotated[str, typer.Option(help="Candidate rollout temperatures.")
                            ] = "0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0",
    prompts: Annotated[int, typer.Option(help="Training prompts sampled per temperature and seed.")] = 64,
    results_dir: Annotated[Path, typer.Option(help="Where the SFT and null-control runs live.")] = Path("results"),
    *, evaluation: opt.EvalOptions, sft: opt.SFTOptions, rl: opt.RLOptions, lora: opt.LoraOptions,
) -> None:
    """Fix the RL temperature and learning rate by rules that read SFT and null-control runs only (never a
    real-reward RL run, never the test split); writes RESULTS_DIR/calibration/<dataset>-<model>-<preset>.json."""
    from experiments.calibration import calibrate, report_lines
    from bench.runs.folders import atomic_write_text
    from bench.runs.matrix import parse_seeds

    overrides, fields = opt.spec_settings(evaluation, sft, rl, lora)
    result = calibrate(model, dataset, preset, parse_seeds(seeds), [float(t) for t in comma_list(temperatures)],
                       prompts, results_dir, overrides, fields, log=lambda message: typer.echo(message, err=True))
    for line in report_lines(result):
        typer.echo(line)
    path = results_dir / "calibration" / f"{dataset.replace(':', '_')}-{model}-{preset}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(result.to_json(), indent=2) + "\n")
    typer.echo(f"wrote {path}")
