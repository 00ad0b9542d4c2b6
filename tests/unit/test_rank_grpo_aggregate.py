"""RankGRPOTrainer's own loss honours TRL's `loss_type` (issue 10): hand-computed aggregations of one batch, with
2 gradient-accumulation steps (TRL scales the loss itself)."""

from types import SimpleNamespace

import pytest
import torch

from algorithms.rank_grpo_trainer import RankGRPOTrainer

LOSS = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
MASK = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])  # masked sums: 3 and 4 over 2 and 1 tokens


@pytest.mark.parametrize(("loss_type", "expected"), [
    ("grpo", (3 / 2 + 4 / 1) / 2 / 2),  # per-sequence token mean, then mean over sequences
    ("bnpo", 7 / 3 / 2),  # token mean over the batch: the authors' TRL 0.21 default
    ("dr_grpo", 7 / (2 * 4) / 2),  # batch x max_completion_length
    ("dapo", 7 / (3 / 1 * 2 / 2)),  # tokens in the global batch per process, TRL 1.16's default
])
def test_aggregation_follows_loss_type(loss_type: str, expected: float) -> None:
    trainer = SimpleNamespace(loss_type=loss_type, current_gradient_accumulation_steps=2, max_completion_length=4,
                              accelerator=SimpleNamespace(num_processes=1), args=SimpleNamespace(steps_per_generation=2))
    loss = RankGRPOTrainer._aggregate(trainer, LOSS, MASK, torch.tensor(3.0), "train")
    assert loss.item() == pytest.approx(expected)
