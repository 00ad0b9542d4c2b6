"""Typer option types of the `bench` commands, and the typed option sets `bench run` and `bench matrix` share.

An option set is a frozen dataclass of one concern (evaluation, SFT, RL, LoRA), as TRL groups its settings in config
dataclasses: each field is one flag (its `Annotated` typer option and default), and the set knows which of its values
are preset overrides and which are spec fields. `with_option_sets` puts every field of the sets on a command as its
own flag and hands the command the built sets, so a new setting is one field here, on both commands at once.
Typer only: nothing heavy is imported.
"""

import inspect
from collections.abc import Callable
from dataclasses import dataclass, fields
from functools import wraps
from pathlib import Path
from copy import copy
from typing import Annotated, Any, ClassVar, TypeVar, get_args, get_type_hints

import typer

from bench.errors import BenchError

Dataset = Annotated[str, typer.Option("--dataset", help="Dataset name (redial, synthetic) or path.")]
Catalog = Annotated[Path | None, typer.Option("--catalog", help="Catalog file (.pkl, .csv, .jsonl).")]
Preset = Annotated[str, typer.Option(help="smoke, default, cpu-small, testbed, testbed-rl, redial-rl or paper.")]
Backend = Annotated[str, typer.Option(help="Rollout backend: transformers or vllm.")]
ReportTo = Annotated[str, typer.Option(
    help="Also report training logs to none, tensorboard or wandb (optional extras; W&B runs offline unless "
         "WANDB_MODE is set).")]
DryRun = Annotated[bool, typer.Option(help="Print the fully resolved spec as JSON on stdout and write nothing.")]


@dataclass(frozen=True)
class EvalOptions:
    """What is evaluated and how."""

    panel: ClassVar[str] = "Evaluation"

    split: Annotated[str, typer.Option(help="Evaluation split.")] = "test"
    limit: Annotated[int | None, typer.Option(help="Evaluate only the first N examples of the split.")] = None
    max_new_tokens: Annotated[int | None, typer.Option(help="Override the preset's generation length.")] = None
    protocol: Annotated[str, typer.Option(help="Main evaluation protocol: standard or reference.")] = "standard"
    backend: Backend = "transformers"
    dtype: Annotated[str | None, typer.Option(
        help="Model dtype for decoding (float32, bfloat16, float16); default float32 on CPU, bfloat16 on CUDA.")
    ] = None

    def preset_overrides(self) -> dict[str, Any]:
        return {"eval_limit": self.limit, "max_new_tokens": self.max_new_tokens}

    def spec_fields(self) -> dict[str, Any]:
        return {"split": self.split, "protocol": self.protocol, "backend": self.backend, "dtype": self.dtype}


@dataclass(frozen=True)
class SFTOptions:
    """The SFT warm start (also of every RL run)."""

    panel: ClassVar[str] = "SFT"

    sft_steps: Annotated[int | None, typer.Option(help="SFT optimizer steps (overrides the preset).")] = None
    sft_lr: Annotated[float | None, typer.Option(help="SFT peak learning rate (overrides the preset).")] = None
    sft_data: Annotated[str | None, typer.Option(help="Dataset with SFT demonstrations (bench sft-data).")] = None

    def preset_overrides(self) -> dict[str, Any]:
        return {"sft_max_steps": self.sft_steps, "sft_lr": self.sft_lr}

    def spec_fields(self) -> dict[str, Any]:
        return {"sft_data": self.sft_data}


@dataclass(frozen=True)
class RLOptions:
    """RL settings (grpo, gspo, rank_grpo); None keeps the preset's value."""

    panel: ClassVar[str] = "RL"

    steps: Annotated[int | None, typer.Option(help="RL optimizer steps.")] = None
    num_generations: Annotated[int | None, typer.Option(help="Completions per prompt G.")] = None
    prompts_per_step: Annotated[int | None, typer.Option(help="Prompts per RL step (x G completions).")] = None
    lr: Annotated[float | None, typer.Option(help="RL peak learning rate.")] = None
    lr_schedule: Annotated[str | None, typer.Option(help="RL schedule after warm-up: constant, linear, cosine.")
                           ] = None
    warmup_ratio: Annotated[float | None, typer.Option(help="RL linear warm-up, as a fraction of the steps.")] = None
    temperature: Annotated[float | None, typer.Option(help="Rollout sampling temperature.")] = None
    beta: Annotated[float | None, typer.Option(help="KL coefficient against the SFT start.")] = None
    mu: Annotated[int | None, typer.Option(help="Policy updates per generation batch (mu).")] = None
    reward: Annotated[str, typer.Option(help="Rank-GRPO per-rank reward: exp_inf or log_decay.")] = "exp_inf"
    reward_signal: Annotated[str, typer.Option(
        help="real, or shuffled: the null control (+null), each group's rewards permuted among its completions.")
    ] = "real"
    length_shaping: Annotated[bool, typer.Option(
        help="Rank-GRPO length shaping, as in the published trainer; --no-length-shaping is the ablation "
             "rank_grpo+noshaping.")] = True
    missing_rank_credit: Annotated[bool, typer.Option(
        help="Rank-GRPO variant rank_grpo+mrc (ours, not in the published trainer): an early EOS carries the "
             "advantages of the ranks the list did not generate.")] = False
    epsilon_low: Annotated[float | None, typer.Option(
        help="RL clip range (default per method: grpo 0.2/0.2, gspo 3e-4/4e-4, rank_grpo 0.06/0.08).")] = None
    epsilon_high: Annotated[float | None, typer.Option(help="Upper RL clip range (see --epsilon-low).")] = None
    loss_type: Annotated[str | None, typer.Option(
        help="RL token aggregation for grpo/rank_grpo: bnpo (default, the authors' TRL 0.21), grpo, dr_grpo, dapo; "
             "gspo keeps its sequence-level grpo.")] = None
    rl_rollouts: Annotated[str | None, typer.Option(
        help="How RL training generates: engine (the shared rollout engine, through TRL's rollout_func; default) or "
             "trl (TRL's own generate).")] = None

    def preset_overrides(self) -> dict[str, Any]:
        return {"rl_steps": self.steps, "num_generations": self.num_generations,
                "prompts_per_step": self.prompts_per_step, "rl_lr": self.lr, "rl_lr_scheduler": self.lr_schedule,
                "rl_warmup_ratio": self.warmup_ratio, "temperature": self.temperature, "beta": self.beta,
                "mu": self.mu}

    def spec_fields(self) -> dict[str, Any]:
        return {"reward": self.reward, "reward_signal": self.reward_signal, "length_shaping": self.length_shaping,
                "missing_rank_credit": self.missing_rank_credit, "epsilon_low": self.epsilon_low,
                "epsilon_high": self.epsilon_high, "loss_type": self.loss_type, "rl_rollouts": self.rl_rollouts}


@dataclass(frozen=True)
class LoraOptions:
    """LoRA for sft and RL methods (adapters merged into model/ after training)."""

    panel: ClassVar[str] = "LoRA"

    lora_r: Annotated[int, typer.Option(help="LoRA rank (0 = full fine-tuning).")] = 0
    lora_alpha: Annotated[float | None, typer.Option(help="LoRA alpha (default 2 x rank).")] = None
    lora_targets: Annotated[str, typer.Option(
        help="LoRA target modules: all-linear (every linear layer but the output head) or comma-separated names.")
    ] = "all-linear"

    def preset_overrides(self) -> dict[str, Any]:
        return {}

    def spec_fields(self) -> dict[str, Any]:
        return {"lora_r": self.lora_r, "lora_alpha": self.lora_alpha, "lora_targets": self.lora_targets}


OptionSet = EvalOptions | SFTOptions | RLOptions | LoraOptions


def spec_settings(*sets: OptionSet) -> tuple[dict[str, Any], dict[str, Any]]:
    """(preset overrides, spec fields) of option sets together, as `make_spec` and `expand_grid` take them."""
    overrides: dict[str, Any] = {}
    spec_fields: dict[str, Any] = {}
    for option_set in sets:
        overrides.update(option_set.preset_overrides())
        spec_fields.update(option_set.spec_fields())
    return overrides, spec_fields


F = TypeVar("F", bound=Callable[..., Any])


def comma_list(text: str) -> list[str]:
    """'a, b,c' -> ['a', 'b', 'c']: the comma-separated flags (methods, backbones, datasets, temperatures)."""
    return [part.strip() for part in text.split(",") if part.strip()]


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


def with_option_sets(**sets: type) -> Callable[[F], F]:
    """Decorate a command whose parameters named in `sets` take option-set instances: the command shows every field
    of each set as its own flag (keyword-only parameters after its own), and is called with the sets built from
    them, each set's flags under its own heading of `--help` (its `panel`). Field names must not clash with each other
    or with the command's parameters."""

    def decorate(command: F) -> F:
        signature = inspect.signature(command)
        own = [parameter for name, parameter in signature.parameters.items() if name not in sets]
        annotations = {name: hint for name, hint in command.__annotations__.items() if name not in sets}
        owner: dict[str, str] = {}
        flags: list[inspect.Parameter] = []
        for set_name, option_type in sets.items():
            hints = get_type_hints(option_type, include_extras=True)
            for field in fields(option_type):
                if field.name in owner or field.name in signature.parameters:
                    raise TypeError(f"option {field.name!r} of {option_type.__name__} clashes with another")
                owner[field.name] = set_name
                hint = in_panel(hints[field.name], option_type.panel)
                flags.append(inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY, default=field.default,
                                               annotation=hint))
                annotations[field.name] = hint

        @wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            values: dict[str, dict[str, Any]] = {set_name: {} for set_name in sets}
            for name in [name for name in kwargs if name in owner]:
                values[owner[name]][name] = kwargs.pop(name)
            built = {set_name: option_type(**values[set_name]) for set_name, option_type in sets.items()}
            return command(*args, **kwargs, **built)

        wrapper.__signature__ = signature.replace(parameters=[*own, *flags])  # type: ignore[attr-defined]
        wrapper.__annotations__ = annotations
        return wrapper  # type: ignore[return-value]

    return decorate


def in_panel(hint: Any, panel: str) -> Any:
    """`Annotated[T, typer.Option(...)]` with a copy of its option shown under the `--help` heading `panel`."""
    base, *metadata = get_args(hint)
    options = [copy(item) for item in metadata]
    for option in options:
        option.rich_help_panel = panel
    return Annotated[(base, *options)]  # type: ignore[valid-type]
