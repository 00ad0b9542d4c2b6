"""Faster `model.generate` on CPU: oneDNN-packed linear layers and a preallocated KV cache.

Two costs dominate HF decoding of a small float32 model on CPU (profiled with `torch.profiler` on smollm2-135m,
batch 32, greedy; README "Rollout speed"):

- **The matmuls.** `nn.Linear` calls `aten::mm`, which PyTorch's CPU wheel runs in MKL. On this project's AMD EPYC
  machine MKL reaches about 190 GFLOP/s in float32 (it takes its AVX2 path on AMD CPUs), while oneDNN with a
  prepacked weight reaches about 450 GFLOP/s on a square matmul and 250-330 GFLOP/s at the decoding shapes (32
  rows). `onednn_linears` swaps each plain `nn.Linear` for oneDNN's `mkldnn::_linear_pointwise` on a weight packed
  by `mkldnn::_reorder_linear_weight`: the two ops Inductor's CPU freezing pass emits for a linear layer
  (torch/_inductor/fx_passes/mkldnn_fusion.py). The layers are swapped on entry to each generation call and
  restored on exit. A packed copy is kept per layer and repacked whenever the weight's storage or in-place version
  counter changed, and for every call of a model in training (`forget_packed`, called by the engine with
  `live=True`): torch's fused AdamW (`adamw_torch_fused`, transformers' default optimizer) updates weights in place
  without bumping their version counters, so versions alone would decode a training policy with stale weights. A
  frozen model is packed once (0.3-0.5 s for 135M parameters here). The copies cost as much memory as the
  weights, while the model lives.
- **The KV cache.** `DynamicLayer.update` concatenates every layer's keys and values with the new token's at each
  step, so step t copies the whole cache (O(t) memory traffic per layer per step; 11 ms of a 70 ms step in the
  profile). `GrowingLayer` writes into a buffer allocated once for prompt + new tokens and returns views of its
  filled prefix; masks and lengths are computed exactly as for `DynamicLayer`, and greedy outputs are identical.

Both apply to float32 models on CPU only, where they were measured; CUDA decoding (HF or vLLM) is untouched.
oneDNN's float rounding differs from MKL's (about 1e-4 absolute on a 576-wide dot product), as a different batch
composition already does (`TransformersEngine`). `BENCH_ONEDNN=0` turns the oneDNN linears off (plain `nn.Linear`,
MKL) where the engine decides (`cpu_decoding`): the other float path, which `bench check --update` reruns under to
measure how far rounding moves its numbers, and a way out should a oneDNN build misbehave.
"""

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from transformers.cache_utils import DYNAMIC_LAYER_TYPE_MAPPING, Cache, DynamicLayer, get_layer_types_and_kwargs

from bench.models.numerics import onednn_disabled


@contextmanager
def cpu_decoding(model: Any, capacity: int) -> Iterator[dict[str, Any]]:
    """Context for one `model.generate` call of at most `capacity` tokens per sequence (prompt + new tokens).

    Yields extra keyword arguments for `generate` (a preallocated cache, or nothing); inside it, a float32 CPU
    model's plain linear layers run in oneDNN (unless `BENCH_ONEDNN=0`). Anything else (CUDA, bf16, sliding-window
    attention, a torch build without the oneDNN ops) gets no change.
    """
    if model.device.type != "cpu" or model.dtype != torch.float32:
        yield {}
        return
    cache = preallocated_cache(model.config, capacity)
    extra = {} if cache is None else {"past_key_values": cache}
    if onednn_decoding():
        with onednn_linears(model):
            yield extra
    else:
        yield extra


def onednn_decoding() -> bool:
    """Whether decoding runs its linear layers in oneDNN: yes where this torch build has the ops, unless
    `BENCH_ONEDNN=0` (`bench.models.numerics`)."""
    return not onednn_disabled() and onednn_available()


@contextmanager
def onednn_linears(model: Any) -> Iterator[int]:
    """Run every plain `nn.Linear` of `model` (CPU, float32) through oneDNN with a prepacked weight while inside;
    yields how many layers were swapped (0 when this torch build lacks the ops). Subclasses of `nn.Linear` with
    their own forward (quantized or adapter layers) keep it; the plain layers they wrap are swapped."""
    if not onednn_available():
        yield 0
        return
    swapped = [module for module in model.modules() if type(module).forward is torch.nn.Linear.forward]
    for module in swapped:
        module.forward = _packed_forward(module)
    try:
        yield len(swapped)
    finally:
        for module in swapped:
            del module.forward


def onednn_available() -> bool:
    """Whether this torch build has oneDNN and the two packed-linear ops."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        torch.ops.mkldnn._reorder_linear_weight
        torch.ops.mkldnn._linear_pointwise
    except (AttributeError, RuntimeError):
        return False
    return True


def packed_linear(inputs: Any, packed_weight: Any, bias: Any) -> Any:
    """`F.linear(inputs, weight, bias)` in oneDNN, for a weight packed by `pack_weight`. inputs: [..., in] float32;
    returns [..., out]."""
    return torch.ops.mkldnn._linear_pointwise(inputs, packed_weight, bias, "none", [], "")


def pack_weight(weight: Any) -> Any:
    """A [out, in] float32 weight reordered into oneDNN's blocked layout (a copy; the parameter is untouched)."""
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach())


_PACKED: "weakref.WeakKeyDictionary[torch.nn.Linear, tuple[tuple[int, int], torch.Tensor]]" = (
    weakref.WeakKeyDictionary())


def forget_packed(model: Any) -> None:
    """Drop the packed copies of `model`'s linear layers, so the next generation packs its weights as they are now
    (for a model whose weights an optimizer may have changed without a version bump)."""
    for module in model.modules():
        _PACKED.pop(module, None)


def _packed_forward(module: torch.nn.Linear) -> Any:
    """A forward for `module` on its packed weight, packed again only if the weight changed since last time."""
    weight = module.weight
    key = (weight.data_ptr(), weight._version)
    cached = _PACKED.get(module)
    if cached is None or cached[0] != key:
        cached = (key, pack_weight(weight))
        _PACKED[module] = cached
    packed = cached[1]
    bias = None if module.bias is None else module.bias.detach()

    def forward(inputs: Any) -> Any:
        return packed_linear(inputs, packed, bias)

    return forward


def preallocated_cache(config: Any, capacity: int) -> Cache | None:
    """A `Cache` of `GrowingLayer`s sized for `capacity` tokens, or None when the model has any layer that is not
    plain full attention (sliding-window, linear-attention, shared layers keep transformers' own cache)."""
    layer_types, _ = get_layer_types_and_kwargs(config.get_text_config(decoder=True))
    if not layer_types or any(DYNAMIC_LAYER_TYPE_MAPPING.get(kind) is not DynamicLayer for kind in layer_types):
        return None
    return Cache(layers=[GrowingLayer(capacity) for _ in layer_types])


class GrowingLayer(DynamicLayer):
    """A `DynamicLayer` whose keys and values live in buffers [batch, kv_heads, capacity, head_dim] written in
    place; `self.keys`/`self.values` are views of the filled prefix, so every inherited method (lengths, masks,
    crop, batch selection) sees exactly what `DynamicLayer` would. An overflow, or a batch selection that replaced
    `self.keys`, reallocates."""

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity
        self.key_buffer = self.value_buffer = torch.empty(0, 0, 0, 0)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Write [batch, kv_heads, new, head_dim] states after the filled prefix; return the filled views."""
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        length = self.get_seq_length()
        end = length + key_states.shape[-2]
        if self._must_reallocate(length, end):
            self._reallocate(key_states, value_states, length, max(end, self.capacity))
        self.key_buffer[..., length:end, :] = key_states
        self.value_buffer[..., length:end, :] = value_states
        self.keys = self.key_buffer[..., :end, :]
        self.values = self.value_buffer[..., :end, :]
        return self.keys, self.values

    def _must_reallocate(self, length: int, end: int) -> bool:
        """Not allocated or too small, or `self.keys` no longer a view of the buffer."""
        return end > self.key_buffer.shape[-2] or (length > 0 and self.keys.data_ptr() != self.key_buffer.data_ptr())

    def _reallocate(self, key_states: torch.Tensor, value_states: torch.Tensor, length: int, size: int) -> None:
        keys = key_states.new_empty((*key_states.shape[:-2], size, key_states.shape[-1]))
        values = value_states.new_empty((*value_states.shape[:-2], size, value_states.shape[-1]))
        if length:
            keys[..., :length, :] = self.keys
            values[..., :length, :] = self.values
        self.key_buffer, self.value_buffer = keys, values
