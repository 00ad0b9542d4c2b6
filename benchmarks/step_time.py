"""`bench bench step-time`: the mean optimizer-step time of Rank-GRPO (`RankGRPOTrainer`) and of plain GRPO on the
same backbone, batch and settings, and their ratio: what Rank-GRPO's per-rank rewards, advantages and rank-level ratio
cost over GRPO. `StepTimer` also times the steps of `bench bench rl-step` (`benchmarks.rl_step`).
"""

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from transformers import PreTrainedModel, TrainerCallback
from trl import GRPOConfig, GRPOTrainer

from algorithms.rank_grpo_trainer import DCGReward, RankGRPOConfig, RankGRPOTrainer, RankRewardFn
from algorithms.training import quiet_trl_deprecations
from bench.evaluation.metrics import N_RANKS


@dataclass(frozen=True)
class StepTimes:
    """Mean wall-clock seconds per optimizer step (generation, scoring, loss, backward and update)."""

    rank_grpo_s: float
    grpo_s: float

    @property
    def ratio(self) -> float:
        """Rank-GRPO step time over GRPO step time."""
        return self.rank_grpo_s / self.grpo_s


class StepTimer(TrainerCallback):
    """Records the wall-clock time of every optimizer step."""

    def __init__(self):
        self.durations: list[float] = []
        self._start = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.durations.append(time.perf_counter() - self._start)


def step_time_benchmark(
    model_factory: Callable[[], str | PreTrainedModel],
    processing_class,
    train_dataset,
    rank_reward_fn: RankRewardFn,
    config_kwargs: dict[str, Any],
    steps: int = 5,
    warmup_steps: int = 1,
    repeats: int = 2,
) -> StepTimes:
    """Mean time of an optimizer step of RankGRPOTrainer and of plain GRPOTrainer on the same model and data.

    Both use the same settings (`config_kwargs` for `RankGRPOConfig`; GRPO gets the same values, including the
    resolved epsilon, epsilon_high and beta) and the same reward work: GRPO's scalar reward is the DCG of the same
    `rank_reward_fn` hits. Each of `repeats` rounds trains a fresh model from `model_factory` (a model or a path)
    for `warmup_steps + steps` steps with each trainer, alternating which goes first so that machine drift affects
    both alike; the warm-up steps are not counted. Generation dominates a step and sampled lengths differ between
    runs, so every completion is made to run to `max_completion_length` (`min_new_tokens`): both trainers then do
    the same work per step and the ratio measures the Rank-GRPO overhead.
    """
    rank_only = {f.name for f in fields(RankGRPOConfig)} - {f.name for f in fields(GRPOConfig)}
    durations: dict[str, list[float]] = {"rank_grpo": [], "grpo": []}
    with tempfile.TemporaryDirectory() as output_dir:
        shared = {"output_dir": output_dir, "report_to": "none", "save_strategy": "no", **config_kwargs}
        shared["max_steps"] = steps + warmup_steps
        max_length = shared.get("max_completion_length", RankGRPOConfig.max_completion_length)
        fixed_length = {"min_new_tokens": max_length}
        shared["generation_kwargs"] = {**(shared.get("generation_kwargs") or {}), **fixed_length}
        rank_config = RankGRPOConfig(**shared)
        grpo_kwargs = {key: value for key, value in shared.items() if key not in rank_only}
        resolved = {"epsilon": rank_config.epsilon, "epsilon_high": rank_config.epsilon_high, "beta": rank_config.beta}
        grpo_config = GRPOConfig(**{**grpo_kwargs, **resolved})
        for round_index in range(repeats):
            order = ("rank_grpo", "grpo") if round_index % 2 == 0 else ("grpo", "rank_grpo")
            for name in order:
                timer = StepTimer()
                common = {
                    "model": model_factory(),
                    "train_dataset": train_dataset,
                    "processing_class": processing_class,
                    "callbacks": [timer],
                }
                if name == "rank_grpo":
                    trainer = RankGRPOTrainer(rank_reward_fn=rank_reward_fn, args=rank_config, **common)
                else:
                    reward = DCGReward(rank_reward_fn, rank_config.n_items)
                    trainer = GRPOTrainer(reward_funcs=[reward], args=grpo_config, **common)
                with quiet_trl_deprecations():
                    trainer.train()
                durations[name].extend(timer.durations[warmup_steps:])
    return StepTimes(
        rank_grpo_s=sum(durations["rank_grpo"]) / len(durations["rank_grpo"]),
        grpo_s=sum(durations["grpo"]) / len(durations["grpo"]),
    )


def rank_grpo_step_time(model: str = "tiny", dataset_name: str = "redial", preset: str = "default", *,
                        steps: int = 5, num_generations: int = 8, prompts: int = 4,
                        max_new_tokens: int | None = None, repeats: int = 2) -> StepTimes:
    """Mean optimizer-step time of Rank-GRPO and of GRPO on one backbone, batch and settings (`bench bench
    step-time`).

    The backbone is built or loaded as runs do (tiny ones from the dataset's corpus, in the same cache); both trainers
    train it from the same weights on the first `prompts x (steps + 1)` training prompts with the real list reward
    (`ListRewards.hits`, the evaluator's matcher), the preset's learning rate, KL beta, temperature and prompt budget,
    and every completion forced to `max_new_tokens` (see `step_time_benchmark`).
    """
    from algorithms.rl import ListRewards, train_prompts
    from algorithms.training import device_arguments, rl_model_init_kwargs
    from bench.data.datasets import load_dataset
    from bench.models.backbones import default_cache_dir, load_backbone
    from bench.runs.presets import get_preset

    settings = get_preset(preset)
    dataset = load_dataset(dataset_name)
    backbone = load_backbone(model, corpus=dataset.corpus(), cache_dir=default_cache_dir() / "backbones")
    train = dataset.split("train")[: prompts * (steps + 1)]
    rewards = ListRewards({example.id: example for example in train}, dataset.catalog)
    config_kwargs: dict[str, Any] = dict(
        per_device_train_batch_size=prompts * num_generations, num_generations=num_generations,
        max_completion_length=max_new_tokens or settings.max_new_tokens, learning_rate=settings.rl_lr,
        beta=settings.beta, temperature=settings.temperature, n_items=N_RANKS, logging_steps=1, seed=0,
        lr_scheduler_type="constant", warmup_steps=0, **rl_model_init_kwargs(), **device_arguments())
    return step_time_benchmark(lambda: str(backbone.path), backbone.tokenizer,
                               train_prompts(train, backbone.tokenizer, settings.max_prompt_tokens), rewards.hits,
                               config_kwargs, steps=steps, repeats=repeats)
