"""CPU decoding fast paths (`bench.models.cpu_decoding`): the oneDNN linear computes what `F.linear` does, is
swapped in and out exactly, repacks after a weight update, and the preallocated cache matches `DynamicLayer` step
for step and in `generate`."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig
from transformers.cache_utils import DynamicLayer

from bench.models.cpu_decoding import (
    GrowingLayer,
    cpu_decoding,
    onednn_available,
    onednn_linears,
    pack_weight,
    packed_linear,
    preallocated_cache,
)

needs_onednn = pytest.mark.skipif(not onednn_available(), reason="this torch build has no oneDNN linear ops")


@needs_onednn
@pytest.mark.parametrize("shape", [(5, 24), (3, 1, 24), (2, 7, 24)])
@pytest.mark.parametrize("with_bias", [False, True])
def test_packed_linear_equals_f_linear(shape: tuple[int, ...], with_bias: bool) -> None:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(*shape, generator=generator)
    weight = torch.randn(40, 24, generator=generator)
    bias = torch.randn(40, generator=generator) if with_bias else None
    result = packed_linear(inputs, pack_weight(weight), bias)
    assert result.shape == (*shape[:-1], 40)
    torch.testing.assert_close(result, torch.nn.functional.linear(inputs, weight, bias), rtol=1e-5, atol=1e-5)


class Doubling(torch.nn.Linear):
    """A Linear subclass with its own forward: it must keep it."""

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return 2 * super().forward(inputs)


@needs_onednn
def test_linears_are_swapped_inside_and_restored_after_even_on_error() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), Doubling(8, 8))
    inputs = torch.randn(4, 8)
    expected = model(inputs)
    with torch.inference_mode(), onednn_linears(model) as swapped:
        assert swapped == 1
        assert "forward" in vars(model[0]) and "forward" not in vars(model[2])
        torch.testing.assert_close(model(inputs), expected)
    assert "forward" not in vars(model[0])
    with pytest.raises(RuntimeError, match="boom"), onednn_linears(model):
        raise RuntimeError("boom")
    assert "forward" not in vars(model[0])


@needs_onednn
def test_an_updated_weight_is_repacked() -> None:
    """The packed copy is reused while the weight is unchanged and rebuilt after an in-place (optimizer) update."""
    layer = torch.nn.Linear(6, 3, bias=False)
    inputs = torch.ones(1, 6)
    with torch.inference_mode(), onednn_linears(layer):
        before = layer(inputs)
    with torch.no_grad():
        layer.weight.add_(1.0)
    with torch.inference_mode(), onednn_linears(layer):
        after = layer(inputs)
    torch.testing.assert_close(after - before, torch.full((1, 3), 6.0))


def test_growing_layer_matches_dynamic_layer() -> None:
    """Prefill of 5, then single tokens past the capacity of 7 (a reallocation), then a batch selection."""
    generator = torch.Generator().manual_seed(1)
    growing, dynamic = GrowingLayer(capacity=7), DynamicLayer()
    for length in (5, 1, 1, 1, 1):
        keys, values = (torch.randn(2, 3, length, 4, generator=generator) for _ in range(2))
        for returned, reference in zip(growing.update(keys, values), dynamic.update(keys, values), strict=True):
            torch.testing.assert_close(returned, reference, rtol=0, atol=0)
        assert growing.get_seq_length() == dynamic.get_seq_length()
        assert growing.get_mask_sizes(1) == dynamic.get_mask_sizes(1)
    assert growing.key_buffer.shape[-2] == 9
    index = torch.tensor([1])
    growing.batch_select_indices(index)
    dynamic.batch_select_indices(index)
    keys, values = (torch.randn(1, 3, 1, 4, generator=generator) for _ in range(2))
    for returned, reference in zip(growing.update(keys, values), dynamic.update(keys, values), strict=True):
        torch.testing.assert_close(returned, reference, rtol=0, atol=0)


def test_sliding_window_models_keep_transformers_cache() -> None:
    llama = LlamaConfig(num_hidden_layers=3)
    assert len(preallocated_cache(llama, 16).layers) == 3
    assert preallocated_cache(MistralConfig(num_hidden_layers=2, sliding_window=8), 16) is None


def _tiny_llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(config).eval()


def test_generate_with_the_fast_paths_matches_plain_generate() -> None:
    """Greedy, left-padded batch: same tokens, and per-step logits within float rounding."""
    model = _tiny_llama()
    input_ids = torch.tensor([[0, 0, 5, 6, 7], [1, 2, 3, 4, 5]])
    attention_mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    settings = {"max_new_tokens": 12, "do_sample": False, "output_logits": True, "return_dict_in_generate": True,
                "pad_token_id": 0, "eos_token_id": None}
    with torch.inference_mode():
        plain = model.generate(input_ids=input_ids, attention_mask=attention_mask, **settings)
        with cpu_decoding(model, capacity=5 + 12) as extra:
            assert "past_key_values" in extra
            fast = model.generate(input_ids=input_ids, attention_mask=attention_mask, **settings, **extra)
    assert torch.equal(fast.sequences, plain.sequences)
    for fast_logits, plain_logits in zip(fast.logits, plain.logits, strict=True):
        torch.testing.assert_close(fast_logits, plain_logits, rtol=1e-4, atol=1e-4)


def test_other_devices_and_dtypes_get_no_change() -> None:
    model = _tiny_llama().to(torch.bfloat16)
    with cpu_decoding(model, capacity=8) as extra:
        assert extra == {}
        assert all("forward" not in vars(module) for module in model.modules())


@needs_onednn
def test_bench_onednn_0_keeps_the_plain_linears_and_the_preallocated_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _tiny_llama()
    with cpu_decoding(model, capacity=8) as extra:
        assert any("forward" in vars(module) for module in model.modules())  # oneDNN by default
    monkeypatch.setenv("BENCH_ONEDNN", "0")
    with cpu_decoding(model, capacity=8) as extra:
        assert "past_key_values" in extra
        assert all("forward" not in vars(module) for module in model.modules())
