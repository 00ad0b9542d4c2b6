"""Rollout speed against the machine's limit (`bench bench rollout`): tokens/s at several batch sizes, greedy and
sampled, for one or more engines side by side (transformers, vllm), beside the FLOP-bound ceiling.

The ceiling is what the hardware allows a decoder with P parameters: each generated token costs at least 2P
floating-point operations (one multiply-add per weight; attention over the cache and the prompt's prefill come on
top), so at a matrix-multiply throughput F (FLOP/s) no engine exceeds F / 2P tokens/s (Kaplan et al. 2020, "Scaling
laws", Sec. 2.1, for the 2P rule; the roofline model, Williams et al. 2009, for reading throughput against a peak).
F is the best square matmul measured in the same process, threads and dtype, over the libraries this torch build
has: `torch.matmul` (MKL on CPU, cuBLAS on CUDA) and, on CPU in float32, oneDNN with a prepacked weight (which the
engine uses, `bench.models.cpu_decoding`). Taking the best library matters: on this project's AMD CPU, MKL reaches
less than half of oneDNN's float32 throughput, and a ceiling measured with MKL alone would overstate efficiency.

Each row is the best (shortest) of `repeats` timed runs, since a shared machine only ever slows a run down. The
header names the OpenMP wait policy: the CLI sets PASSIVE unless told otherwise (`cli.py`), which is right on a
shared CPU and costs speed on a dedicated one (README "Rollout speed"). Each
row also times the prefill alone (the same batch with one new token), so that the decode rate, and its fraction of
the ceiling, can be read without the prompt's cost.
"""

import os
import time
from functools import partial
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bench.errors import BenchError
from bench.models.backbones import Backbone
from bench.models.rollouts import measure_throughput
from bench.models.sampling import SamplingSettings


@dataclass(frozen=True)
class SpeedRow:
    """One measured setting: engine, batch size, greedy or sampled, tokens/s and its fraction of the ceiling."""

    backend: str
    batch_size: int
    mode: str
    new_tokens: int
    wall_s: float
    tokens_per_s: float
    ceiling_fraction: float
    prefill_s: float
    decode_tokens_per_s: float
    decode_ceiling_fraction: float


@dataclass(frozen=True)
class SpeedReport:
    """The rows plus what the ceiling was computed from."""

    backbone: str
    device: str
    dtype: str
    threads: int
    wait_policy: str
    parameters: int
    matmul_flops: float
    matmul_kernel: str
    ceiling_tokens_per_s: float
    repeats: int
    rows: tuple[SpeedRow, ...]


def matmul_ceiling(device: Any, dtype: Any, sizes: Sequence[int] = (1024, 2048),
                   seconds: float = 1.0) -> tuple[float, str]:
    """The best measured FLOP/s of a square matmul on `device` in `dtype` over the available libraries and `sizes`,
    and which library and size gave it (e.g. "oneDNN packed 2048")."""
    import torch

    from bench.models.cpu_decoding import onednn_available, pack_weight, packed_linear

    candidates: list[tuple[float, str]] = []
    for size in sizes:
        a = torch.randn(size, size, device=device, dtype=dtype)
        b = torch.randn(size, size, device=device, dtype=dtype)
        candidates.append((matmul_flops(partial(torch.matmul, a, b), size, device, seconds), f"torch.matmul {size}"))
        if device.type == "cpu" and dtype == torch.float32 and onednn_available():
            multiply = partial(packed_linear, a, pack_weight(b), None)
            candidates.append((matmul_flops(multiply, size, device, seconds), f"oneDNN packed {size}"))
    return max(candidates)


def matmul_flops(multiply: Callable[[], Any], size: int, device: Any, seconds: float = 1.0) -> float:
    """FLOP/s of `multiply`, a `size` x `size` by `size` x `size` product, from its fastest call in `seconds` of
    calls (after a warm-up): the least disturbed call on a shared machine."""
    for _ in range(2):
        multiply()
    _sync(device)
    best, start = float("inf"), time.perf_counter()
    while time.perf_counter() - start < seconds:
        began = time.perf_counter()
        multiply()
        _sync(device)
        best = min(best, time.perf_counter() - began)
    return 2.0 * size**3 / best


def rollout_speed(backbone: Backbone, batch_sizes: Sequence[int], max_new_tokens: int,
                  temperature: float = 1.0, backends: Sequence[str] = ("transformers",),
                  repeats: int = 3) -> SpeedReport:
    """Time one batch of `b` synthetic prompts per engine and batch size, greedy and sampled at `temperature`, every
    completion forced to `max_new_tokens` (EOS ignored), best of `repeats`, against the ceiling measured first. Each
    engine is warmed up (and vLLM started, once per process) before its rows."""
    import torch

    if repeats < 1 or max_new_tokens < 2:
        raise BenchError(f"--repeats must be at least 1 and --max-new-tokens at least 2, got {repeats} and "
                         f"{max_new_tokens}.")
    model = backbone.model
    parameters = sum(p.numel() for p in model.parameters())
    flops, kernel = matmul_ceiling(model.device, model.dtype)
    ceiling = flops / (2.0 * parameters)
    rows = []
    for backend in backends:
        measure_throughput(backbone, backend, 1, SamplingSettings(max_new_tokens=4, ignore_eos=True), 1)
        for batch in batch_sizes:
            prefill = _fastest(backbone, backend, batch, SamplingSettings(max_new_tokens=1, ignore_eos=True),
                               repeats)
            for mode, temp in (("greedy", 0.0), ("sampled", temperature)):
                settings = SamplingSettings(max_new_tokens=max_new_tokens, temperature=temp, ignore_eos=True)
                run = _fastest(backbone, backend, batch, settings, repeats)
                decode_rate = ((run["new_tokens"] - prefill["new_tokens"])
                               / max(run["wall_s"] - prefill["wall_s"], 1e-9))
                rows.append(SpeedRow(backend, batch, mode, run["new_tokens"], run["wall_s"], run["tokens_per_s"],
                                     run["tokens_per_s"] / ceiling, prefill["wall_s"], decode_rate,
                                     decode_rate / ceiling))
    return SpeedReport(backbone.spec.name, str(model.device), str(model.dtype).removeprefix("torch."),
                       torch.get_num_threads(), os.environ.get("OMP_WAIT_POLICY", "unset"), parameters, flops, kernel,
                       ceiling, repeats, tuple(rows))


def _fastest(backbone: Backbone, backend: str, batch: int, settings: SamplingSettings,
             repeats: int) -> dict[str, Any]:
    """The fastest of `repeats` uncached generations of one batch of `batch` prompts (`measure_throughput`)."""
    runs = [measure_throughput(backbone, backend, batch, settings, batch, warmup=False) for _ in range(repeats)]
    return min(runs, key=lambda run: run["wall_s"])


def format_report(report: SpeedReport) -> list[str]:
    """Lines for the terminal: the ceiling, then one line per row."""
    lines = [(f"{report.backbone}: {report.parameters / 1e6:.1f}M parameters, {report.device}, {report.dtype}, "
              f"{report.threads} threads (OMP_WAIT_POLICY {report.wait_policy}), best of {report.repeats}"),
             (f"matmul {report.matmul_flops / 1e9:.1f} GFLOP/s ({report.matmul_kernel}) -> ceiling "
              f"{report.ceiling_tokens_per_s:.1f} tokens/s (2 x parameters FLOP per token)"),
             (f"{'engine':<12} {'batch':>5}  {'mode':<8} {'tokens/s':>9} {'of ceiling':>10} {'tokens':>7} {'wall s':>7} "
              f"{'prefill s':>9} {'decode tok/s':>12} {'of ceiling':>10}")]
    lines += [f"{row.backend:<12} {row.batch_size:>5}  {row.mode:<8} {row.tokens_per_s:>9.1f} {row.ceiling_fraction:>10.1%} "
              f"{row.new_tokens:>7} {row.wall_s:>7.1f} {row.prefill_s:>9.2f} {row.decode_tokens_per_s:>12.1f} "
              f"{row.decode_ceiling_fraction:>10.1%}" for row in report.rows]
    return lines


def _sync(device: Any) -> None:
    import torch

    if getattr(device, "type", "cpu") == "cuda":
        torch.cuda.synchronize(device)
