"""The time budget of batch-32 greedy decoding on smollm2-135m at 30% of the FLOP-bound ceiling, against what the
engine spends: the ceiling and the memory bandwidth measured in this process, the prefill and the whole 128-token
generation timed through the engine (best of 3), and the bytes a decoding step must read (float32 weights plus the
mean KV cache) over the measured bandwidth: the memory-bound floor of a step.

Run: .venv/bin/python benchmarks/rollout_profile/step_budget_batch32.py   (prints one line per quantity)
"""

import os
import time

import torch

from bench.models.backbones import default_cache_dir, load_backbone
from bench.models.rollouts import TransformersEngine, throughput_prompts
from bench.models.sampling import SamplingSettings, prompt_token_ids
from benchmarks.rollout_speed import matmul_ceiling

BATCH, NEW, TARGET = 32, 128, 0.30


def best_of(engine: TransformersEngine, prompts: list, settings: SamplingSettings, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        engine.generate(prompts, settings, seed=0)
        times.append(time.perf_counter() - start)
    return min(times)


def bandwidth(size_mb: int = 512, seconds: float = 1.0) -> float:
    """Bytes per second read + written by the fastest of repeated copies of a `size_mb` float32 tensor."""
    source = torch.randn(size_mb * 2**20 // 4)
    target = torch.empty_like(source)
    best, start = float("inf"), time.perf_counter()
    while time.perf_counter() - start < seconds:
        began = time.perf_counter()
        target.copy_(source)
        best = min(best, time.perf_counter() - began)
    return 2 * source.numel() * 4 / best


backbone = load_backbone("smollm2-135m", cache_dir=default_cache_dir() / "backbones")
model, config = backbone.model, backbone.model.config
prompts = throughput_prompts(BATCH)
lengths = [len(prompt_token_ids(backbone.tokenizer, p)) for p in prompts]
parameters = sum(p.numel() for p in model.parameters())
flops, kernel = matmul_ceiling(model.device, model.dtype)
ceiling = flops / (2 * parameters)
engine = TransformersEngine(backbone, batch_size=BATCH, progress=False)
engine.generate(prompts[:2], SamplingSettings(max_new_tokens=4, ignore_eos=True), seed=0)
prefill = best_of(engine, prompts, SamplingSettings(max_new_tokens=1, ignore_eos=True))
whole = best_of(engine, prompts, SamplingSettings(max_new_tokens=NEW, ignore_eos=True))
step = (whole - prefill) / (NEW - 1)
head_dim = config.hidden_size // config.num_attention_heads
kv_bytes_per_position = config.num_hidden_layers * 2 * config.num_key_value_heads * head_dim * 4
mean_positions = max(lengths) + NEW / 2
step_bytes = parameters * 4 + BATCH * mean_positions * kv_bytes_per_position
memory = bandwidth()
budget = BATCH * NEW / (TARGET * ceiling)
print(f"OMP_WAIT_POLICY {os.environ.get('OMP_WAIT_POLICY', 'unset')}, {torch.get_num_threads()} threads, "
      f"load {os.getloadavg()[0]:.2f}")
print(f"prompt tokens: min {min(lengths)} max {max(lengths)} mean {sum(lengths) / BATCH:.1f} "
      f"(left padding wastes {1 - sum(lengths) / (BATCH * max(lengths)):.0%} of the prefill)")
print(f"ceiling {flops / 1e9:.0f} GFLOP/s ({kernel}) -> {ceiling:.0f} tokens/s; 30% = {TARGET * ceiling:.0f} tokens/s")
print(f"measured: {BATCH * NEW / whole:.0f} tokens/s = {BATCH * NEW / whole / ceiling:.1%} of the ceiling "
      f"({whole:.2f} s for {BATCH} x {NEW} tokens)")
print(f"budget at 30%: {budget:.2f} s in all; prefill takes {prefill:.2f} s, leaving "
      f"{(budget - prefill) / (NEW - 1) * 1e3:.1f} ms per decoding step; the engine takes {step * 1e3:.1f} ms")
print(f"memory: {memory / 1e9:.1f} GB/s copy bandwidth; a step reads {step_bytes / 1e6:.0f} MB "
      f"(weights {parameters * 4 / 1e6:.0f} MB + mean KV cache) -> floor {step_bytes / memory * 1e3:.1f} ms per step; "
      f"FLOP floor {2 * parameters * BATCH / flops * 1e3:.1f} ms per step")
