"""RankGRPOTrainer trains a tiny Qwen2 model on CPU for a few steps, on-policy (mu = 1) and off-policy (mu = 2)."""

from pathlib import Path

import pytest
import torch
from rank_grpo_tiny import N_ITEMS, save_tiny_model, tiny_dataset, tiny_hits, tiny_tokenizer
from transformers import PreTrainedTokenizerFast

from algorithms.rank_grpo_trainer import RankGRPOConfig, RankGRPOTrainer
from benchmarks.step_time import StepTimes, step_time_benchmark


def _config_kwargs(num_iterations: int) -> dict:
    return {
        "per_device_train_batch_size": 8,
        "num_generations": 4,
        "max_completion_length": 12,
        "learning_rate": 1e-2,
        "n_items": N_ITEMS,
        "num_iterations": num_iterations,
        "use_cpu": True,
        "bf16": False,
        "gradient_checkpointing": False,
        "logging_steps": 1,
        "seed": 0,
    }


def _trainer(tiny: tuple[Path, PreTrainedTokenizerFast], output_dir: Path, max_steps: int,
             num_iterations: int) -> RankGRPOTrainer:
    model_dir, tokenizer = tiny
    args = RankGRPOConfig(output_dir=str(output_dir), max_steps=max_steps, report_to="none", save_strategy="no",
                          **_config_kwargs(num_iterations))
    return RankGRPOTrainer(model=str(model_dir), rank_reward_fn=tiny_hits, args=args, train_dataset=tiny_dataset(),
                           processing_class=tokenizer)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, PreTrainedTokenizerFast]:
    tokenizer = tiny_tokenizer()
    return save_tiny_model(tmp_path_factory.mktemp("tiny-qwen2"), tokenizer), tokenizer


@pytest.mark.parametrize("num_iterations", [1, 2])
def test_rank_grpo_trains_parameters(tiny, tmp_path, num_iterations):
    trainer = _trainer(tiny, tmp_path, max_steps=3, num_iterations=num_iterations)
    before = {name: param.detach().clone() for name, param in trainer.model.named_parameters()}
    trainer.train()

    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 3
    assert all(torch.isfinite(torch.tensor(entry["loss"])) for entry in logs)
    assert all("clip_ratio/region_mean" in entry and "kl" in entry for entry in logs)
    generation_steps = logs[::num_iterations]  # with mu > 1 a batch is generated (and scored) every mu steps
    assert all("rank_grpo/items" in entry and "reward" in entry for entry in generation_steps)
    changed = [name for name, param in trainer.model.named_parameters() if not torch.equal(param, before[name])]
    assert len(changed) == len(before), f"unchanged: {set(before) - set(changed)}"


def test_off_policy_batches_carry_old_logps_and_rank_ids(tiny, tmp_path):
    """mu = 2: TRL stores the sampling policy's log-probs, which the rank-level ratio then compares against."""
    trainer = _trainer(tiny, tmp_path, max_steps=1, num_iterations=2)
    trainer.model.train()
    batch = trainer._generate_and_score_completions([row for row in tiny_dataset().select(range(2)) for _ in range(4)])
    assert batch["old_per_token_logps"].shape == batch["completion_ids"].shape
    assert batch["advantages"].shape == batch["completion_ids"].shape == batch["rank_ids"].shape
    assert int(batch["rank_ids"].max()) <= N_ITEMS
    assert torch.all(batch["advantages"][batch["completion_mask"] == 0] == 0)


def test_step_time_benchmark_times_both_trainers(tiny):
    model_dir, tokenizer = tiny
    times = step_time_benchmark(
        lambda: str(model_dir), tokenizer, tiny_dataset(), tiny_hits, _config_kwargs(1), steps=2, warmup_steps=1
    )
    assert isinstance(times, StepTimes)
    assert times.rank_grpo_s > 0 and times.grpo_s > 0
    assert times.ratio == pytest.approx(times.rank_grpo_s / times.grpo_s)
