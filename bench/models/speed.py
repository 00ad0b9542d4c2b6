"""Rollout speed against the machine's limit (`bench bench rollout`): tokens/s at several batch sizes, greedy and
sampled, beside the FLOP-bound ceiling.

The ceiling is what the hardware allows a decoder with P parameters: each generated token costs at least 2P
floating-point operations (one multiply-add per weight; attention over the cache and the prompt's prefill come on
top), so at a measured matrix-multiply throughput F (FLOP/s) no engine exceeds F / 2P tokens/s. F is measured in
the same process, with the same threads and dtype, by a square matmul (the best case a BLAS reaches on this
machine); the ratio tokens/s / ceiling is the engine's efficiency (Kaplan et al. 2020, "Scaling laws", Sec. 2.1,
for the 2P rule; the roofline model, Williams et al. 2009, for reading throughput against a peak).
"""

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench.models.backbones import Backbone
from bench.models.rollouts import measure_throughput
from bench.models.sampling import SamplingSettings


@dataclass(frozen=True)
class SpeedRow:
    """One measured setting: batch size, greedy or sampled, tokens/s and its fraction of the ceiling."""

    batch_size: int
    mode: str
    new_tokens: int
    wall_s: float
    tokens_per_s: float
    ceiling_fraction: float


@dataclass(frozen=True)
class SpeedReport:
    """The rows plus what the ceiling was computed from."""

    backbone: str
    device: str
    dtype: str
    threads: int
    parameters: int
    matmul_flops: float
    ceiling_tokens_per_s: float
    rows: tuple[SpeedRow, ...]


def matmul_flops(device: Any, dtype: Any, size: int = 1024, seconds: float = 1.0) -> float:
    """Measured FLOP/s of a square `size` x `size` matmul on `device` in `dtype` (after a warm-up)."""
    import torch

    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    _sync(device)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    _sync(device)
    return 2.0 * size**3 * count / (time.perf_counter() - start)


def rollout_speed(backbone: Backbone, batch_sizes: Sequence[int], max_new_tokens: int,
                  temperature: float = 1.0, backend: str = "transformers") -> SpeedReport:
    """Time one batch of `b` synthetic prompts per batch size, greedy and sampled at `temperature`, every
    completion forced to `max_new_tokens` (EOS ignored), against the ceiling measured just before."""
    import torch

    model = backbone.model
    parameters = sum(p.numel() for p in model.parameters())
    flops = matmul_flops(model.device, model.dtype)
    ceiling = flops / (2.0 * parameters)
    warm = SamplingSettings(max_new_tokens=4, ignore_eos=True)
    measure_throughput(backbone, backend, 1, warm, 1)
    rows = []
    for batch in batch_sizes:
        for mode, temp in (("greedy", 0.0), ("sampled", temperature)):
            settings = SamplingSettings(max_new_tokens=max_new_tokens, temperature=temp, ignore_eos=True)
            result = measure_throughput(backbone, backend, batch, settings, batch, warmup=False)
            rows.append(SpeedRow(batch, mode, result["new_tokens"], result["wall_s"], result["tokens_per_s"],
                                 result["tokens_per_s"] / ceiling))
    return SpeedReport(backbone.spec.name, str(model.device), str(model.dtype).removeprefix("torch."),
                       torch.get_num_threads(), parameters, flops, ceiling, tuple(rows))


def format_report(report: SpeedReport) -> list[str]:
    """Lines for the terminal: the ceiling, then one line per row."""
    lines = [(f"{report.backbone}: {report.parameters / 1e6:.1f}M parameters, {report.device}, {report.dtype}, "
              f"{report.threads} threads"),
             (f"matmul {report.matmul_flops / 1e9:.1f} GFLOP/s -> ceiling {report.ceiling_tokens_per_s:.1f} tokens/s "
              "(2 x parameters FLOP per token)"),
             f"{'batch':>5}  {'mode':<8} {'tokens/s':>9} {'of ceiling':>10} {'tokens':>7} {'wall s':>7}"]
    lines += [f"{row.batch_size:>5}  {row.mode:<8} {row.tokens_per_s:>9.1f} {row.ceiling_fraction:>10.1%} "
              f"{row.new_tokens:>7} {row.wall_s:>7.1f}" for row in report.rows]
    return lines


def _sync(device: Any) -> None:
    import torch

    if getattr(device, "type", "cpu") == "cuda":
        torch.cuda.synchronize(device)
