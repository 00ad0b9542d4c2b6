"""`bench bench train-step`: optimizer-step time and peak memory of full fine-tuning against LoRA on every linear
layer, on the same batch, each in a fresh process (`algorithms.lora` holds the LoRA config both use).
"""

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from algorithms.lora import ALL_LINEAR, lora_config


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
