"""LoRA for SFT and every RL method: the PEFT config handed to TRL's trainers (`peft_config=`), and the merge that
makes the trained model a plain checkpoint again.

LoRA (Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022) freezes the backbone and trains
a rank-r update B A (scaled by alpha / r) beside each targeted linear layer. Only the adapters get gradients and
optimizer state, which is what lets an 8B backbone train on one GPU: full fine-tuning in bf16 with AdamW needs about
16 bytes per parameter (weights, gradients, two fp32 moments and master weights; ~130 GB for 8B, before
activations), LoRA about 2 bytes per frozen parameter plus 16 per adapter parameter (r = 16 on every linear layer of
Llama-3.1-8B is ~42M parameters: ~17 GB in all). On this 2-core CPU it also shortens a step (see `bench bench
train-step`).

The run's spec records `lora_r` (0 = full fine-tuning), `lora_alpha` (default 2r) and `lora_targets` (PEFT's
"all-linear": every linear layer but the output head; or a comma-separated list of module names). TRL wraps the
model (`get_peft_model`), trains the adapters, and generates its rollouts through the wrapped model; in-training
validation does too (the same function as the merged model). Before `model/` is saved the adapters are merged
(`merge_and_unload`), so evaluation, RL warm starts and serving load an ordinary checkpoint and never see PEFT.
"""

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from bench.runs.specs import RunSpec

ALL_LINEAR = "all-linear"
"""PEFT's target for every linear layer except the output head."""


def lora_config(r: int, alpha: float | None, targets: str) -> Any:
    """The `peft.LoraConfig` for rank `r` (None when r is 0: full fine-tuning); no dropout, no bias training."""
    if r <= 0:
        return None
    from peft import LoraConfig

    modules: str | list[str] = ALL_LINEAR if targets == ALL_LINEAR else [m.strip() for m in targets.split(",")
                                                                         if m.strip()]
    return LoraConfig(r=r, lora_alpha=alpha if alpha is not None else 2 * r, lora_dropout=0.0, bias="none",
                      target_modules=modules, task_type="CAUSAL_LM")


def spec_lora_config(spec: RunSpec) -> Any:
    """The LoRA config of a run's spec (`RunSpec.lora_r`, `lora_alpha`, `lora_targets`), or None."""
    return lora_config(spec.lora_r, spec.lora_alpha, spec.lora_targets)


def merge_adapters(trainer: Any) -> None:
    """Fold trained adapters into the base weights in place and give the trainer the plain model, so that
    `save_final_model` writes an ordinary checkpoint; nothing happens for full fine-tuning."""
    from peft import PeftModel

    model = trainer.accelerator.unwrap_model(trainer.model)
    if isinstance(model, PeftModel):
        trainer.model = model.merge_and_unload()
        trainer.model_wrapped = trainer.model


def trainable_parameters(model: Any) -> tuple[int, int]:
    """(trainable, total) parameter counts of a model (adapters only, under LoRA)."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


@dataclass(frozen=True)
class StepCost:
    """Mean optimizer-step time and peak memory of one training configuration (`measure_step_cost`)."""

    lora_r: int
    trainable: int
    total: int
    step_s: float
    peak_memory_gib: float
    """Peak CUDA memory allocated, or on CPU the peak resident memory of the process during the steps."""


def measure_step_cost(model_dir: Path, lora_r: int, *, batch: int, length: int, steps: int,
                      lr: float = 1e-5) -> StepCost:
    """Time `steps` AdamW steps (after one warm-up step) of next-token loss on `batch` x `length` random tokens,
    full fine-tuning (r = 0) or LoRA rank r on every linear layer, from a fresh copy of the model in `model_dir`.

    The work of an SFT step, and of the update half of an RL step (whose other half, generation, LoRA does not
    change). Memory on CUDA is `max_memory_allocated`; on CPU the process's peak RSS sampled every 5 ms (it includes
    the model weights and whatever the process held before).
    """
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16 if cuda else torch.float32)
    model.to(device).train()
    config = lora_config(lora_r, None, ALL_LINEAR)
    if config is not None:
        model = get_peft_model(model, config)
    trainable, total = trainable_parameters(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    generator = torch.Generator().manual_seed(0)
    vocab = int(model.config.vocab_size)
    ids = torch.randint(0, vocab, (batch, length), generator=generator).to(device)

    def step() -> None:
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize(device)

    step()
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    with _PeakRss() as rss:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        seconds = (time.perf_counter() - start) / steps
    peak = torch.cuda.max_memory_allocated(device) if cuda else rss.peak
    return StepCost(lora_r, trainable, total, seconds, peak / 2**30)


def measure_step_cost_isolated(model_dir: Path, lora_r: int, **kwargs: Any) -> StepCost:
    """`measure_step_cost` in a fresh process, so that each configuration's peak memory is its own (a process's
    resident memory does not shrink back after a first measurement)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(measure_step_cost, model_dir, lora_r, **kwargs).result()


class _PeakRss:
    """Peak resident set size of this process while the block runs (a sampling thread, every 5 ms)."""

    def __enter__(self) -> Self:
        import psutil

        self._process = psutil.Process()
        self.peak = self._process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
