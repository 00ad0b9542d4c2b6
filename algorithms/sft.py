"""Supervised fine-tuning (Stage 1 of Rank-GRPO, arXiv 2510.20150): TRL's SFTTrainer on demonstrations.

Prompt/completion format, so that only the completion is learned (TRL's completion-only loss). Demonstrations come
from, in order: `--sft-data PATH` (a dataset whose training records carry `completion`, e.g. from `bench sft-data`);
for the shipped `redial`, Remap-Reflect-Adjust demonstrations built offline with the EASE teacher and judge
(`remap-reflect-adjust:ease`, built once into the cache); the dataset's own `completion` fields; or else
ground-truth items topped up to 20 by training popularity (`groundtruth+popularity`). The source is named in the
run's summary.

Schedule (the authors' train_sft.py, `bench.runs.presets`): the preset's global batch over all processes (reached by
gradient accumulation of `sft_micro_batch` examples per forward pass), linear warm-up over `sft_warmup_ratio` of the
steps, cosine decay, the preset's optimizer. The validation curve is measured every `interval` steps and a checkpoint
saved at each; the checkpoint with the best validation NDCG@20 (the untrained start excluded) is the one kept
(`algorithms.training.curve_callback(select_best=True)`), as the authors picked their SFT checkpoint from its
validation metrics; its step is `selected_step` in summary.json. Every step goes to train_log.jsonl.

The kept model is saved to the run folder's `model/`; RL runs start from it (`ensure_sft_model`).
"""

import math
import os
from pathlib import Path
from typing import Any

from bench.data.datasets import load_dataset
from bench.data.prompts import N_RECOMMENDATIONS
from bench.data.records import Example
from bench.evaluation.parsing import format_item
from bench.models.backbones import fingerprint_dir
from bench.runs.context import MethodOutput, RunContext
from bench.runs.folders import RunFolder, runs_dir

MODEL_DIR = "model"


def demonstrations(ctx: RunContext) -> tuple[list[tuple[Example, str]], str]:
    """(training example, demonstration text) pairs and the name of their source."""
    if ctx.spec.sft_data:
        source = load_dataset(ctx.spec.sft_data)
        pairs = [(example, example.completion) for example in source.split("train") if example.completion]
        return pairs, f"sft-data:{ctx.spec.sft_data}"
    if ctx.spec.dataset == "redial":
        from baselines.sft_data import DEFAULT_SOURCE, default_demonstrations

        return default_demonstrations(ctx.dataset, ctx.cache_dir, ctx.log), DEFAULT_SOURCE
    train = ctx.dataset.split("train")
    if all(example.completion for example in train):
        return [(example, example.completion or "") for example in train], "dataset completions"
    from baselines.collaborative import top_unseen
    from baselines.popularity import PopularityRecommender

    popularity = PopularityRecommender.fit(ctx.dataset)
    pairs = []
    for example in train:
        items = top_unseen([*example.groundtruth, *popularity.ranking], example.seen_titles, N_RECOMMENDATIONS)
        pairs.append((example, "\n".join(format_item(item) for item in items)))
    return pairs, "groundtruth+popularity"


def sft_dataset(ctx: RunContext, tokenizer: Any, pairs: list[tuple[Example, str]]) -> Any:
    from datasets import Dataset as HFDataset

    from bench.models.prompt_trim import trim_prompt

    limit = ctx.spec.settings.max_prompt_tokens
    rows = [{"prompt": list(trim_prompt(tokenizer, example.prompt, limit)),
             "completion": [{"role": "assistant", "content": text}]} for example, text in pairs]
    return HFDataset.from_list(rows)


def sft_total_steps(ctx: RunContext, n_demonstrations: int) -> int:
    """Optimizer steps of the run: the preset's `sft_max_steps`, else its epochs over the demonstrations."""
    settings = ctx.spec.settings
    return settings.sft_max_steps or math.ceil(max(1, n_demonstrations // settings.sft_batch_size) * settings.sft_epochs)


def sft_config(ctx: RunContext, output_dir: Path, total_steps: int, **overrides: Any) -> Any:
    """The run's TRL `SFTConfig` (schedule, batch, optimizer and device from the spec; `overrides` on top)."""
    from trl import SFTConfig

    from algorithms.training import device_arguments, micro_batches

    settings = ctx.spec.settings
    num_processes = int(os.environ.get("WORLD_SIZE", "1"))  # set by `accelerate launch` and torchrun
    batch, accumulation = micro_batches(max(1, settings.sft_batch_size // num_processes), settings.sft_micro_batch)
    arguments: dict[str, Any] = dict(
        output_dir=str(output_dir), num_train_epochs=settings.sft_epochs,
        max_steps=settings.sft_max_steps or -1, per_device_train_batch_size=batch,
        gradient_accumulation_steps=accumulation, learning_rate=settings.sft_lr, optim=settings.optim,
        lr_scheduler_type="cosine", warmup_steps=math.ceil(settings.sft_warmup_ratio * total_steps), logging_steps=1,
        seed=ctx.spec.seed, max_length=settings.max_prompt_tokens + settings.max_new_tokens,
        completion_only_loss=True, **device_arguments(ctx.report_to))
    return SFTConfig(**{**arguments, **overrides})


def make_sft_trainer(ctx: RunContext, backbone: Any, config: Any, train_dataset: Any, callbacks: list[Any]) -> Any:
    """TRL's SFTTrainer on the backbone, as every SFT run builds it (LoRA from the spec; no console printer)."""
    from trl import SFTTrainer

    from algorithms.lora import spec_lora_config
    from algorithms.training import declare_tied_head, quiet_console

    declare_tied_head(backbone.model)
    trainer = SFTTrainer(model=backbone.model, args=config, train_dataset=train_dataset,
                         processing_class=backbone.tokenizer, callbacks=callbacks,
                         peft_config=spec_lora_config(ctx.spec))
    quiet_console(trainer)
    return trainer


def train_sft(ctx: RunContext) -> tuple[Path, dict[str, Any]]:
    """Train (or resume, or reuse) the SFT model of this run; returns its directory and facts for the summary."""
    from algorithms.lora import merge_adapters
    from algorithms.training import (
        TRAIN_DTYPE,
        CurveLogger,
        curve_callback,
        last_checkpoint,
        load_best_checkpoint,
        model_is_saved,
        quiet_trl_deprecations,
        save_final_model,
        validation_subsets,
    )
    from bench.runs.training_logs import train_log_callback

    model_dir = ctx.folder.root / MODEL_DIR
    pairs, source = demonstrations(ctx)
    facts: dict[str, Any] = {"demonstrations": source, "n_demonstrations": len(pairs)}
    if model_is_saved(model_dir):
        return model_dir, facts
    backbone = ctx.load_backbone(dtype=TRAIN_DTYPE)
    settings = ctx.spec.settings
    train_dataset = sft_dataset(ctx, backbone.tokenizer, pairs)
    total_steps = sft_total_steps(ctx, len(pairs))
    interval = max(1, total_steps // 8)
    ctx.stage(f"SFT training: {total_steps} steps of {settings.sft_batch_size} demonstrations ({source}), "
              f"validation every {interval}", "its test evaluation")
    config = sft_config(ctx, ctx.folder.checkpoints_dir, total_steps, save_strategy="steps", save_steps=interval,
                        save_total_limit=2)
    logger = CurveLogger(ctx, validation_subsets(ctx).selection)
    callbacks = [train_log_callback(ctx.folder.train_log_path), curve_callback(logger, interval, select_best=True)]
    trainer = make_sft_trainer(ctx, backbone, config, train_dataset, callbacks)
    with quiet_trl_deprecations():
        trainer.train(resume_from_checkpoint=last_checkpoint(ctx.folder.checkpoints_dir))
    facts["selected_step"] = load_best_checkpoint(trainer)
    merge_adapters(trainer)
    save_final_model(trainer, model_dir)
    facts.update(train_steps=trainer.state.global_step, optimizer=settings.optim,
                 model_digest=fingerprint_dir(model_dir, whole_files=True))
    return model_dir, facts


def predict(ctx: RunContext) -> MethodOutput:
    """`bench run --algo sft`: train, then answer the evaluation split greedily with the trained model."""
    model_dir, facts = train_sft(ctx)
    trained = ctx.load_backbone(str(model_dir))
    ctx.stage_evaluation()
    return MethodOutput(ctx.generate(trained, ctx.eval_examples()), facts)


def ensure_sft_model(ctx: RunContext) -> Path:
    """The SFT warm start of an RL run (same backbone, dataset, seed and preset): runs `sft` first if missing."""
    from bench.runs.runner import execute
    from bench.runs.specs import sibling_spec

    sft_spec = sibling_spec(ctx.spec, "sft")
    folder = RunFolder(runs_dir(ctx.results_dir) / sft_spec.run_id)
    if not folder.is_complete():
        ctx.stage(f"building the SFT warm start first: {sft_spec.run_id}",
                  f"{ctx.spec.method_label} training ({ctx.spec.settings.rl_steps} RL steps)")
        execute(sft_spec, ctx.results_dir, cache_dir=ctx.cache_dir, log=ctx.log, progress=ctx.progress,
                report_to=ctx.report_to, started=ctx.started)
    return folder.root / MODEL_DIR
