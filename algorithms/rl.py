"""GRPO, GSPO and Rank-GRPO runs: TRL's GRPOTrainer configured, or the Rank-GRPO subclass, from the SFT model.

- `grpo`: token-level importance ratio, sequence reward = NDCG@20 of the list (standard matcher, positions kept:
  a seen, out-of-catalog or unparsable line scores 0 at its rank, as in the published training reward).
- `gspo`: the same reward with TRL's sequence-level ratio (`importance_sampling_level="sequence"`) and its
  sequence-level loss (`loss_type="grpo"`: one ratio per sequence, averaged per sequence; Zheng et al., "Group
  Sequence Policy Optimization", 2025).
- `rank_grpo`: the published trainer (Zhu et al., arXiv 2510.20150; github.com/yaochenzhu/Rank-GRPO): per-rank hits
  -> per-rank rewards (`exp_inf` or `log_decay`), per-rank group advantages, rank-level ratio, and the published
  length shaping (`algorithms.rank_grpo_trainer`). `--no-length-shaping` is the ablation without any length control
  (`rank_grpo+noshaping`); `--missing-rank-credit` adds our departure, the advantages of the ranks a list did not
  generate on its early EOS (`algorithms.rank_grpo.missing_rank_credit`), reported as `rank_grpo+mrc`.

The null control (`--reward-signal shuffled`, reported as `<method>+null`) is the same run with each group's hit
vectors permuted among its completions before any reward is computed (`shuffle_within_groups`): the rewards keep
their values, spread and ties, so the update has the same size, but they no longer say which completion earned
them. What a null control does to the model is what the update alone does (finite batches, Adam's first steps); a
method's gain counts where its null control does not show it (DESIGN.md "Controls"). The rollout buffer keeps the
real hits, so the logs of a null control still say how good its samples really were.

Clip range and token aggregation come from the spec, resolved per method (`bench.runs.presets.CLIPPING`,
`DEFAULT_LOSS_TYPE`: `bnpo` for GRPO and Rank-GRPO, the authors' TRL 0.21 default). The optimizer and Adam betas come
from the preset (`paper`: paged 8-bit AdamW, betas (0.9, 0.99), or AdamW where bitsandbytes is absent).

Every method starts from the SFT checkpoint of the same backbone, dataset, seed and preset (built first if missing),
validates on a fixed subset at a fixed interval (curve.jsonl), logs every step (train_log.jsonl) and the step's
completions at each validation (rollouts.jsonl, `bench.runs.training_logs`), and resumes from its last checkpoint.
"""

import hashlib
import math
import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.data.records import Example
from bench.errors import BenchError
from bench.evaluation.evaluator import rank_hits
from bench.evaluation.metrics import N_RANKS, dcg_at_k, ideal_dcg
from bench.models.backbones import fingerprint_dir
from bench.runs.context import MethodOutput, RunContext, prompt_id
from bench.runs.presets import transformers_scheduler

if TYPE_CHECKING:
    from bench.runs.training_logs import RolloutBuffer

MODEL_DIR = "model"


def completion_text(completion: Any) -> str:
    """TRL passes completions as strings, or as message lists for conversational prompts."""
    if isinstance(completion, list):
        return "".join(str(message.get("content", "")) for message in completion if isinstance(message, dict))
    return str(completion)


def shuffle_within_groups(hits: list[list[float]], group_keys: Sequence[str], seed: str) -> list[list[float]]:
    """The null control's rewards: `hits` (one vector per completion) permuted among the completions that share a
    group key (the example id: TRL's G completions of one prompt), uniformly at random. The generator is seeded by
    `seed` and the batch's own keys and texts (the caller's), so a resumed run shuffles a batch as before."""
    rng = random.Random(hashlib.sha256(seed.encode()).hexdigest())
    groups: dict[str, list[int]] = {}
    for index, key in enumerate(group_keys):
        groups.setdefault(key, []).append(index)
    shuffled = list(hits)
    for indices in groups.values():
        sources = list(indices)
        rng.shuffle(sources)
        for target, source in zip(indices, sources, strict=True):
            shuffled[target] = hits[source]
    return shuffled


class ListRewards:
    """Reward functions over the dataset column `example_id`, sharing the evaluator's matcher. With
    `reward_signal="shuffled"` (the null control) the hits are permuted within each group (`shuffle_within_groups`,
    seeded by `seed`); the buffer always records the real ones."""

    def __init__(self, examples: dict[str, Example], catalog: Any, buffer: "RolloutBuffer | None" = None,
                 reward_signal: str = "real", seed: int = 0) -> None:
        self.examples = examples
        self.catalog = catalog
        self.buffer = buffer
        self.reward_signal = reward_signal
        self.seed = seed
        self.__name__ = "ndcg@20"

    def ndcg(self, hits: Sequence[float], example_id: str) -> float:
        """NDCG@20 of a hit vector: its DCG over the ideal DCG of min(|ground truth|, 20)."""
        ideal = ideal_dcg(min(len(self.examples[example_id].groundtruth), N_RANKS))
        return dcg_at_k(list(hits), N_RANKS) / ideal if ideal > 0 else 0.0

    def score_text(self, text: str, example_id: str) -> float:
        """The real reward of one text: NDCG@20 of its hit vector (greedy answers at validation, `CurveLogger`)."""
        return self.ndcg(rank_hits(text, self.examples[example_id], self.catalog, N_RANKS), example_id)

    def hits(self, prompts: list[Any], completions: list[Any], example_id: list[str], **_: Any) -> list[list[float]]:
        """Per-rank hit vectors (length 20), positions kept: Rank-GRPO's `rank_reward_fn`. The scored batch, with
        the real hits and their NDCG@20, is kept in `buffer` (train_log.jsonl and rollouts.jsonl)."""
        texts = [completion_text(completion) for completion in completions]
        hits = [rank_hits(text, self.examples[eid], self.catalog, N_RANKS)
                for text, eid in zip(texts, example_id, strict=True)]
        if self.buffer is not None:
            self.buffer.record(prompts, texts, example_id, [prompt_id(self.examples[eid]) for eid in example_id], hits,
                               [self.ndcg(row, eid) for row, eid in zip(hits, example_id, strict=True)])
        if self.reward_signal == "shuffled":
            hits = shuffle_within_groups(hits, example_id, "\n".join([str(self.seed), *example_id, *texts]))
        return hits

    def __call__(self, prompts: list[Any], completions: list[Any], example_id: list[str],
                 **kwargs: Any) -> list[float]:
        """NDCG@20 per completion (of the shuffled hits for the null control)."""
        rewards = [self.ndcg(row, eid) for row, eid in
                   zip(self.hits(prompts, completions, example_id), example_id, strict=True)]
        if self.buffer is not None:
            self.buffer.rewards = list(rewards)
        return rewards


def train_prompts(examples: Sequence[Example], tokenizer: Any, max_prompt_tokens: int) -> Any:
    """The RL training set: each example's prompt trimmed to `max_prompt_tokens` and its id (the `example_id` column
    `ListRewards` reads)."""
    from datasets import Dataset as HFDataset

    from bench.models.prompt_trim import trim_prompt

    rows = [{"prompt": list(trim_prompt(tokenizer, example.prompt, max_prompt_tokens)), "example_id": example.id}
            for example in examples]
    return HFDataset.from_list(rows)


def per_device_batch(completions_per_step: int, num_processes: int) -> int:
    """Completions each process generates per step, so that a step holds `completions_per_step` over all processes
    (prompts_per_step x num_generations is a global batch, as in the paper)."""
    if completions_per_step % num_processes != 0:
        raise BenchError(f"{completions_per_step} completions per step do not split over {num_processes} processes; "
                         "choose prompts_per_step x num_generations divisible by the number of processes.")
    return completions_per_step // num_processes


def rl_config(ctx: RunContext, output_dir: Path, **overrides: Any) -> Any:
    """The TRL config of this run: GRPOConfig for grpo/gspo, RankGRPOConfig for rank_grpo (`overrides` on top).

    A step holds prompts_per_step x G completions over all processes, reached by gradient accumulation of
    `rl_micro_batch`-sized forward passes where set (TRL generates the whole step's batch at once and splits it).
    """
    from trl import GRPOConfig

    from algorithms.rank_grpo_trainer import RankGRPOConfig
    from algorithms.training import device_arguments, micro_batches, rl_model_init_kwargs

    settings, spec = ctx.spec.settings, ctx.spec
    num_processes = int(os.environ.get("WORLD_SIZE", "1"))  # set by `accelerate launch` and torchrun
    per_process = per_device_batch(settings.prompts_per_step * settings.num_generations, num_processes)
    batch, accumulation = micro_batches(per_process, settings.rl_micro_batch)
    common: dict[str, Any] = dict(
        output_dir=str(output_dir), max_steps=settings.rl_steps, learning_rate=settings.rl_lr,
        per_device_train_batch_size=batch, gradient_accumulation_steps=accumulation,
        num_generations=settings.num_generations, max_completion_length=settings.max_new_tokens,
        temperature=settings.temperature, beta=settings.beta, num_iterations=settings.mu, logging_steps=1,
        epsilon=spec.epsilon_low, epsilon_high=spec.epsilon_high, loss_type=spec.loss_type,
        optim=settings.optim, adam_beta1=0.9, adam_beta2=settings.rl_adam_beta2,
        save_strategy="steps", save_steps=settings.eval_interval, save_total_limit=2, seed=spec.seed,
        lr_scheduler_type=transformers_scheduler(settings.rl_lr_scheduler, settings.rl_warmup_ratio),
        warmup_steps=math.ceil(settings.rl_warmup_ratio * settings.rl_steps), log_completions=False, **rl_model_init_kwargs(),
        **device_arguments(ctx.report_to))
    common.update(overrides)
    if spec.algo == "rank_grpo":
        return RankGRPOConfig(rank_reward=spec.reward, n_items=N_RANKS, length_shaping=spec.length_shaping,
                              missing_rank_credit=spec.missing_rank_credit, **common)
    if spec.algo == "gspo":
        return GRPOConfig(importance_sampling_level="sequence", **common)
    return GRPOConfig(**common)


def make_rl_trainer(ctx: RunContext, model: str, tokenizer: Any, rewards: ListRewards, config: Any, dataset: Any,
                    callbacks: list[Any], rollout_func: Any = None) -> Any:
    """The run's trainer from `model` (a path): TRL's GRPOTrainer on the list reward for grpo/gspo, RankGRPOTrainer
    on its per-rank hits for rank_grpo; LoRA from the spec; `rollout_func` replaces generation (TRL's hook)."""
    from trl import GRPOTrainer

    from algorithms.lora import spec_lora_config
    from algorithms.rank_grpo_trainer import RankGRPOTrainer
    from algorithms.training import declare_tied_head, quiet_console

    common = dict(model=model, args=config, train_dataset=dataset, processing_class=tokenizer, callbacks=callbacks,
                  peft_config=spec_lora_config(ctx.spec), rollout_func=rollout_func)
    if ctx.spec.algo == "rank_grpo":
        trainer = RankGRPOTrainer(rank_reward_fn=rewards.hits, **common)
    else:
        trainer = GRPOTrainer(reward_funcs=rewards, **common)
    declare_tied_head(trainer.model)
    quiet_console(trainer)
    return trainer


def train_rl(ctx: RunContext, sft_dir: Path) -> Path:
    """Train (or resume) from the SFT model; returns the final model directory of the run."""
    from algorithms.lora import merge_adapters
    from algorithms.rollout_hook import attach_vllm, rollout_kwargs
    from algorithms.training import (
        CurveLogger,
        curve_callback,
        last_checkpoint,
        model_is_saved,
        quiet_trl_deprecations,
        save_final_model,
        validation_subsets,
    )
    from bench.runs.training_logs import RolloutBuffer, rollouts_callback, train_log_callback

    model_dir = ctx.folder.root / MODEL_DIR
    if model_is_saved(model_dir):
        return model_dir
    settings = ctx.spec.settings
    start = ctx.load_backbone(str(sft_dir))
    buffer = RolloutBuffer()
    rewards = ListRewards({example.id: example for example in ctx.dataset.split("train")}, ctx.dataset.catalog,
                          buffer, ctx.spec.reward_signal, ctx.spec.seed)
    config = rl_config(ctx, ctx.folder.checkpoints_dir)
    logger = CurveLogger(ctx, validation_subsets(ctx).rl_monitor(ctx.spec.dataset), rewards)
    trainer_ref: list[Any] = []
    callbacks = [train_log_callback(ctx.folder.train_log_path, buffer,
                                    settings.prompts_per_step * settings.num_generations),
                 rollouts_callback(ctx.folder.rollouts_path, buffer, settings.eval_interval, trainer_ref),
                 curve_callback(logger, settings.eval_interval)]
    dataset = train_prompts(ctx.dataset.split("train"), start.tokenizer, settings.max_prompt_tokens)
    generation = rollout_kwargs(ctx.spec.rl_rollouts, ctx.spec.model)
    trainer = make_rl_trainer(ctx, str(sft_dir), start.tokenizer, rewards, config, dataset, callbacks, **generation)
    if ctx.spec.backend == "vllm":
        attach_vllm(trainer, start)
    trainer_ref.append(trainer)
    with quiet_trl_deprecations():
        trainer.train(resume_from_checkpoint=last_checkpoint(ctx.folder.checkpoints_dir))
    merge_adapters(trainer)
    save_final_model(trainer, model_dir)
    return model_dir


def predict(ctx: RunContext) -> MethodOutput:
    """`bench run --algo grpo|gspo|rank_grpo`: SFT warm start, RL training, greedy answers on the eval split."""
    from algorithms.sft import ensure_sft_model

    sft_dir = ensure_sft_model(ctx)
    settings = ctx.spec.settings
    ctx.stage(f"{ctx.spec.method_label} training: {settings.rl_steps} RL steps of {settings.prompts_per_step} prompts "
              f"x {settings.num_generations} completions from the SFT start, validation every "
              f"{settings.eval_interval}", "its test evaluation")
    model_dir = train_rl(ctx, sft_dir)
    trained = ctx.load_backbone(str(model_dir))
    ctx.stage_evaluation()
    facts = {"sft_model": str(sft_dir), "sft_model_digest": fingerprint_dir(sft_dir, whole_files=True),
             "rl_steps": ctx.spec.settings.rl_steps, "optimizer": ctx.spec.settings.optim}
    return MethodOutput(ctx.generate(trained, ctx.eval_examples()), facts)
