"""CUDA checks of the RL rollout hook (`algorithms.rollout_hook`): one GRPO step on the tiny-m backbone with the shared
engine on the GPU (transformers), and through the suite's vLLM engine attached with `attach_vllm` (decoding in bf16
while the policy trains float32 weights; synced before the step, importance-sampling ratio logged), the same code the
CPU tests run (tests/integration/test_vllm.py). Skipped without CUDA; the vLLM one also without vLLM."""

from pathlib import Path
from typing import Any

import pytest
import torch
from datasets import Dataset

from algorithms.rollout_hook import ROLLOUT_SECONDS_KEY, EngineRollouts, attach_vllm
from algorithms.training import device_arguments, quiet_trl_deprecations, rl_model_init_kwargs
from bench.models.backbones import load_backbone

torch = pytest.importorskip("torch")

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

CORPUS = [f"I liked Movie {i} ({1950 + i % 70}).\nRecommend ten titles, one per line, as Title (Year)."
          for i in range(80)]
PROMPTS = [[{"role": "user", "content": f"I liked Movie {i} (1999). More?"}] for i in range(8)]
G = 4


def _vllm_available() -> bool:
    try:
        import vllm  # noqa: F401
    except ImportError:
        return False
    return True


class Spy(EngineRollouts):
    """The hook, keeping what it returned."""

    def __init__(self) -> None:
        super().__init__("tiny-m")
        self.outputs: list[dict[str, Any]] = []

    def __call__(self, prompts: list[Any], trainer: Any) -> dict[str, Any]:
        self.outputs.append(super().__call__(prompts, trainer))
        return self.outputs[-1]


def _train_one_step(tmp_path: Path, vllm: bool) -> tuple[Any, Spy]:
    """tiny-m (head_dim 32, which vLLM's attention backends take; `tiny` has 16)."""
    from trl import GRPOConfig, GRPOTrainer

    backbone = load_backbone("tiny-m", corpus=CORPUS, cache_dir=tmp_path / "models", device="cuda")
    args = GRPOConfig(output_dir=str(tmp_path / "out"), max_steps=1, per_device_train_batch_size=2 * G,
                      num_generations=G, max_completion_length=16, learning_rate=1e-5, beta=0.0, logging_steps=1,
                      save_strategy="no", **rl_model_init_kwargs(), **device_arguments())
    spy = Spy()
    trainer = GRPOTrainer(model=str(backbone.path), reward_funcs=lambda completions, **_: [1.0] * len(completions),
                          args=args, train_dataset=Dataset.from_list([{"prompt": p} for p in PROMPTS]),
                          processing_class=backbone.tokenizer, rollout_func=spy)
    if vllm:
        assert attach_vllm(trainer, backbone).engine.dtype == "bfloat16"
    with quiet_trl_deprecations():
        trainer.train()
    return trainer, spy


def _check(trainer: Any, spy: Spy) -> None:
    assert {parameter.dtype for parameter in trainer.model.parameters()} == {torch.float32}  # bf16 autocast only
    output = spy.outputs[0]
    assert len(output["completion_ids"]) == 2 * G
    for ids, logps in zip(output["completion_ids"], output["logprobs"], strict=True):
        assert 1 <= len(ids) <= 16 and len(logps) == len(ids) and all(logp <= 0 for logp in logps)
    assert trainer.state.log_history[0][ROLLOUT_SECONDS_KEY] > 0


def test_hook_runs_the_engine_on_cuda(tmp_path: Path) -> None:
    trainer, spy = _train_one_step(tmp_path, vllm=False)
    _check(trainer, spy)


@pytest.mark.vllm
@pytest.mark.skipif(not _vllm_available(), reason="needs vLLM (pip install -e '.[gpu]')")
def test_hook_samples_through_the_suites_vllm_synced_every_step(tmp_path: Path) -> None:
    trainer, spy = _train_one_step(tmp_path, vllm=True)
    assert trainer.use_vllm and trainer.vllm_generation.syncs == 1
    assert "sampling/importance_sampling_ratio/mean" in trainer.state.log_history[0]
    _check(trainer, spy)
