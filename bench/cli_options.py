"""Typer option types of the `bench` commands (kept here so cli.py stays small); typer only."""

from pathlib import Path
from typing import Annotated

import typer

Dataset = Annotated[str, typer.Option("--dataset", help="Dataset name (redial, synthetic) or path.")]
Catalog = Annotated[Path | None, typer.Option("--catalog", help="Catalog file (.pkl, .csv, .jsonl).")]
Split = Annotated[str, typer.Option(help="Evaluation split.")]
Preset = Annotated[str, typer.Option(help="smoke, default, cpu-small, testbed or paper.")]
Backend = Annotated[str, typer.Option(help="Rollout backend: transformers or vllm.")]
Protocol = Annotated[str, typer.Option(help="Main evaluation protocol: standard or reference.")]
Limit = Annotated[int | None, typer.Option(help="Evaluate only the first N examples of the split.")]
MaxNewTokens = Annotated[int | None, typer.Option(help="Override the preset's generation length.")]
Steps = Annotated[int | None, typer.Option(help="RL steps (overrides the preset).")]
Generations = Annotated[int | None, typer.Option(help="Completions per prompt G (RL).")]
Lr = Annotated[float | None, typer.Option(help="RL learning rate.")]
Mu = Annotated[int | None, typer.Option(help="Policy updates per generation batch (mu).")]
Reward = Annotated[str, typer.Option(help="Rank-GRPO reward: exp_inf or log_decay.")]

LengthShaping = Annotated[bool, typer.Option(
    help="Rank-GRPO length shaping, as in the published trainer; --no-length-shaping is the ablation "
         "rank_grpo+noshaping.")]
MissingRankCredit = Annotated[bool, typer.Option(
    help="Rank-GRPO variant rank_grpo+mrc (ours, not in the published trainer): an early EOS carries the "
         "advantages of the ranks the list did not generate.")]
Epsilon = Annotated[float | None, typer.Option(
    help="RL clip range (default per method: grpo 0.2/0.2, gspo 3e-4/4e-4, rank_grpo 0.06/0.08).")]
LossType = Annotated[str | None, typer.Option(
    help="RL token aggregation for grpo/rank_grpo: bnpo (default, the authors' TRL 0.21), grpo, dr_grpo, dapo; "
         "gspo keeps its sequence-level grpo.")]
ReportTo = Annotated[str, typer.Option(
    help="Also report training logs to none, tensorboard or wandb (optional extras; W&B runs offline unless "
         "WANDB_MODE is set).")]
DryRun = Annotated[bool, typer.Option(help="Print the fully resolved spec as JSON on stdout and write nothing.")]
LoraR = Annotated[int, typer.Option(
    help="LoRA rank for sft and RL methods (0 = full fine-tuning); adapters are merged into model/ after training.")]
LoraAlpha = Annotated[float | None, typer.Option(help="LoRA alpha (default 2 x rank).")]
LoraTargets = Annotated[str, typer.Option(
    help="LoRA target modules: all-linear (every linear layer but the output head) or comma-separated names.")]
RlRollouts = Annotated[str | None, typer.Option(
    help="How RL training generates: engine (the shared rollout engine, through TRL's rollout_func; default) or trl "
         "(TRL's own generate).")]
