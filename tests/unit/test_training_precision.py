"""Training updates float32 weights on every device (`algorithms.training.TRAIN_DTYPE`): on CUDA the trainers
compute in bf16 under autocast over float32 master weights, as the authors' DeepSpeed bf16 runs do, because bf16
weights round most small AdamW steps away. The vLLM engine that decodes in bf16 gets the float32 policy's weights
cast to its own dtype at each sync."""

from typing import Any

import pytest
import torch

from algorithms.training import TRAIN_DTYPE, device_arguments, rl_model_init_kwargs
from bench.models.vllm_backend import VLLMEngine


def test_the_rl_policy_trains_float32_weights_under_bf16_autocast_on_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a CUDA node
    assert TRAIN_DTYPE == "float32"
    assert rl_model_init_kwargs() == {"model_init_kwargs": {"dtype": "float32"}}
    arguments = device_arguments()
    assert arguments["bf16"] is True and arguments["use_cpu"] is False  # bf16 compute, by autocast


def test_a_bf16_weight_does_not_move_by_a_small_step_a_float32_one_does() -> None:
    """Why the master weights are float32: 0.05 + 1e-5 rounds back to 0.05 in bf16 (spacing 2^-12 there)."""
    weight = torch.tensor([0.05])
    assert (weight.bfloat16() + 1e-5) == weight.bfloat16()
    assert (weight + 1e-5) != weight


class RecordingLLM:
    def __init__(self) -> None:
        self.weights: list[tuple[str, torch.Tensor]] = []
        self.resets = 0

    def collective_rpc(self, method: Any, args: tuple[Any, ...]) -> None:
        self.weights = args[0]

    def reset_prefix_cache(self) -> None:
        self.resets += 1


@pytest.mark.parametrize("engine_dtype", ["bfloat16", "float32"])
def test_weight_sync_casts_the_float32_policy_to_the_engine_dtype(engine_dtype: str) -> None:
    engine = VLLMEngine.__new__(VLLMEngine)  # no vLLM: only the sync's own work is under test
    engine.dtype = engine_dtype
    engine.llm = RecordingLLM()
    policy = torch.nn.Linear(3, 2)
    engine.sync_weights(list(policy.named_parameters()))
    sent = dict(engine.llm.weights)
    assert set(sent) == {"weight", "bias"} and engine.llm.resets == 1
    assert all(tensor.dtype == getattr(torch, engine_dtype) for tensor in sent.values())
    assert torch.allclose(sent["weight"].float(), policy.weight.detach(), atol=1e-2)
    assert not sent["weight"].requires_grad
