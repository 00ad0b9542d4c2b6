"""The `bench bench` commands: speed benchmarks that print numbers (typer only at import; the measurements import
their libraries when they run)."""

from pathlib import Path
from typing import Annotated

import typer

from bench.commands import options as opt
from bench.commands.options import user_errors

bench_app = typer.Typer(help="Speed benchmarks that print numbers.", no_args_is_help=True)


@bench_app.command("rollout")
@user_errors
def bench_rollout(model: Annotated[str, typer.Option(help="Backbone.")] = "tiny",
                  batch_sizes: Annotated[str, typer.Option(help="Comma-separated batch sizes.")] = "1,8,32",
                  max_new_tokens: Annotated[int, typer.Option(help="Tokens generated per prompt.")] = 128,
                  dtype: Annotated[str, typer.Option(help="auto, float32, bfloat16, float16.")] = "auto",
                  temperature: Annotated[float, typer.Option(help="Temperature of the sampled rows.")] = 1.0,
                  backend: Annotated[str, typer.Option(
                      help="Rollout engines measured side by side, comma-separated: transformers, vllm.")
                  ] = "transformers",
                  random_init: Annotated[bool, typer.Option(help="Real architecture, random weights.")] = False,
                  dataset: opt.Dataset = "redial",
                  repeats: Annotated[int, typer.Option(help="Timed runs per row; the fastest is kept.")] = 3) -> None:
    """Rollout tokens/s per engine at each batch size, greedy and sampled, beside the FLOP-bound ceiling of this
    machine."""
    from bench.data.datasets import load_dataset
    from bench.models.backbones import default_cache_dir, load_backbone
    from benchmarks.rollout_speed import format_report, rollout_speed

    backbone = load_backbone(model, corpus=load_dataset(dataset).corpus(), random_init=random_init, dtype=dtype,
                             cache_dir=default_cache_dir() / "backbones")
    sizes = [int(size) for size in [part for part in batch_sizes.split(",") if part.strip()]]
    backends = opt.comma_list(backend)
    for line in format_report(rollout_speed(backbone, sizes, max_new_tokens, temperature, backends, repeats)):
        typer.echo(line)


@bench_app.command("eval")
@user_errors
def bench_eval(dataset: opt.Dataset = "redial", split: str = "test",
               examples: Annotated[int, typer.Option(help="Examples in the large predictions file.")] = 20000,
               pairwise_examples: Annotated[int, typer.Option(help="Examples timed with the pairwise loop.")] = 500,
               seed: int = 0,
               out: Annotated[Path | None, typer.Option(help="Also write the predictions file here.")] = None) -> None:
    """Time the evaluator against a straightforward pairwise loop; print both and the ratio."""
    from bench.data.datasets import load_dataset
    from benchmarks.eval_speed import run_eval_benchmark

    result = run_eval_benchmark(load_dataset(dataset), split, examples, pairwise_examples, seed, out)
    typer.echo(f"evaluator:     {result['fast_per_example_ms']:.4f} ms/example "
               f"({result['examples']} examples in {result['fast_seconds']:.2f} s)")
    typer.echo(f"pairwise loop: {result['pairwise_per_example_ms']:.4f} ms/example "
               f"({result['pairwise_examples']} examples in {result['pairwise_seconds']:.2f} s)")
    typer.echo(f"speedup: {result['speedup']:.1f}x  (max metric difference {result['max_metric_difference']:.2e})")


@bench_app.command("step-time")
@user_errors
def bench_step_time(model: Annotated[str, typer.Option(help="Backbone.")] = "tiny",
                    steps: Annotated[int, typer.Option(help="Timed steps per trainer and round.")] = 5,
                    num_generations: Annotated[int, typer.Option(help="Completions per prompt (G).")] = 8,
                    prompts: Annotated[int, typer.Option(help="Prompts per step.")] = 4,
                    max_new_tokens: Annotated[int | None, typer.Option(help="Completion length (all forced to "
                                                                        "it); default: the preset's.")] = None,
                    preset: Annotated[str, typer.Option(help="Learning rate, beta, temperature, prompt budget.")]
                    = "default",
                    dataset: opt.Dataset = "redial") -> None:
    """Rank-GRPO vs GRPO mean optimizer-step time on the same backbone, batch and settings, and their ratio."""
    from benchmarks.step_time import rank_grpo_step_time

    times = rank_grpo_step_time(model, dataset, preset, steps=steps, num_generations=num_generations,
                                prompts=prompts, max_new_tokens=max_new_tokens)
    typer.echo(f"rank_grpo: {times.rank_grpo_s:.4f} s/step")
    typer.echo(f"grpo:      {times.grpo_s:.4f} s/step")
    typer.echo(f"ratio:     {times.ratio:.3f} (Rank-GRPO / GRPO, {prompts} prompts x {num_generations} "
               f"completions, {model})")


@bench_app.command("train-step")
@user_errors
def bench_train_step(model: Annotated[str, typer.Option(help="Backbone.")] = "tiny-m",
                     lora_r: Annotated[int, typer.Option(help="LoRA rank compared with full fine-tuning.")] = 16,
                     batch: int = 8, length: int = 300, steps: int = 3, dataset: opt.Dataset = "redial") -> None:
    """Optimizer-step time and peak memory, full fine-tuning vs LoRA on every linear layer (same batch)."""
    from benchmarks.train_step import measure_step_cost_isolated
    from bench.data.datasets import load_dataset
    from bench.models.backbones import backbone_path, default_cache_dir

    path = backbone_path(model, corpus=load_dataset(dataset).corpus(), cache_dir=default_cache_dir() / "backbones")
    for r in (0, lora_r):
        cost = measure_step_cost_isolated(path, r, batch=batch, length=length, steps=steps)
        typer.echo(f"{model} {'full' if r == 0 else f'LoRA r={r}':<10} trainable {cost.trainable / 1e6:8.2f}M of "
                   f"{cost.total / 1e6:.2f}M  {cost.step_s:7.2f} s/step  peak memory {cost.peak_memory_gib:.2f} GiB "
                   f"({batch} x {length} tokens)")


@bench_app.command("rl-step")
@user_errors
def bench_rl_step(model: Annotated[str, typer.Option(help="Backbone.")] = "smollm2-135m",
                  preset: Annotated[str, typer.Option(help="Preset whose RL settings both paths use.")] = "cpu-small",
                  dataset: opt.Dataset = "redial",
                  steps: Annotated[int, typer.Option(help="Timed steps per path and round.")] = 2,
                  warmup_steps: Annotated[int, typer.Option(help="Untimed steps first.")] = 1,
                  repeats: Annotated[int, typer.Option(help="Rounds, alternating which path goes first.")] = 1,
                  paths: Annotated[str, typer.Option(
                      help="Comma-separated: trl (TRL's generate), engine (the shared transformers engine), vllm "
                           "(the shared hook on vLLM, synced every step).")] = "trl,engine") -> None:
    """RL step time per generation path, side by side, and the share spent generating."""
    from benchmarks.rl_step import format_rl_step, rl_step_times

    times = rl_step_times(model, dataset, preset, steps=steps, warmup_steps=warmup_steps, repeats=repeats,
                          paths=tuple(opt.comma_list(paths)))
    for line in format_rl_step(times, model, preset):
        typer.echo(line)
