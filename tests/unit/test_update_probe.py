"""What the RL probe records after its optimizer step (`experiments.update_probe`), on a fake trainer whose policy is a
table: the log-probability of token t is the parameter `logp[t]`, whatever the context. Every expectation is worked
out by hand from that table."""

import math
from typing import Any

import pytest
import torch

from experiments import update_probe


class _Policy(torch.nn.Module):
    """log pi(token) = logp[token]; `frozen` is a parameter that is not trained."""

    def __init__(self, logp: list[float]) -> None:
        super().__init__()
        self.logp = torch.nn.Parameter(torch.tensor(logp))
        self.frozen = torch.nn.Parameter(torch.tensor([5.0]), requires_grad=False)


class _Args:
    beta = 0.5
    max_completion_length = 100


class _Trainer:
    """The parts of TRL's GRPOTrainer the probe calls: per-token log-probs of the completion tokens, and a loss
    that is -mean(A) + beta x mean(KL) with KL = logp - ref (signed, to see a flipped sign) or its flip."""

    def __init__(self, policy: _Policy, kl_sign: float = 1.0) -> None:
        self.model = policy
        self.args = _Args()
        self.kl_sign = kl_sign

    def _get_per_token_logps_and_entropies(self, model: Any, input_ids: torch.Tensor, attention_mask: Any,
                                           logits_to_keep: int) -> tuple[torch.Tensor, None, None]:
        return model.logp[input_ids[:, -logits_to_keep:]], None, None

    def _compute_loss(self, model: Any, inputs: dict[str, Any]) -> torch.Tensor:
        logps = self._get_per_token_logps_and_entropies(model, inputs["completion_ids"], None,
                                                        inputs["completion_ids"].size(1))[0]
        kl = logps - inputs["ref_per_token_logps"]
        mask = inputs["completion_mask"]
        return ((-inputs["advantages"].unsqueeze(1) + self.kl_sign * self.args.beta * kl) * mask).sum() / mask.sum()


def _batch(advantages: list[float]) -> dict[str, torch.Tensor]:
    """Two completions: tokens [0, 1] and [2, 2(masked)], after an empty prompt."""
    return {"prompt_ids": torch.zeros(2, 0, dtype=torch.long), "prompt_mask": torch.zeros(2, 0),
            "completion_ids": torch.tensor([[0, 1], [2, 2]]), "completion_mask": torch.tensor([[1.0, 1.0], [1.0, 0.0]]),
            "advantages": torch.tensor(advantages), "ref_per_token_logps": torch.tensor([[-1.0, -2.0], [-3.0, -3.0]])}


def test_update_norm_and_the_advantaged_log_probability_change() -> None:
    policy = _Policy([-1.0, -2.0, -3.0])
    start = update_probe.trainable_snapshot(policy)
    assert set(start) == {"logp"}  # the untrained parameter is not part of the update
    with torch.no_grad():
        policy.logp += torch.tensor([0.3, -0.4, 0.1])  # "the step"
    assert update_probe.update_norm(policy, start) == pytest.approx(math.sqrt(0.09 + 0.16 + 0.01))
    # tokens 0, 1 carry A = +1, token 2 carries A = -2 (its second copy is masked):
    # (1 x 0.3 + 1 x (-0.4) + (-2) x 0.1) / 3 = -0.1
    value = update_probe.advantaged_logp_change(_Trainer(policy), _batch([1.0, -2.0]), start)
    assert value == pytest.approx(-0.1)
    assert policy.logp.tolist() == pytest.approx([-0.7, -2.4, -2.9])  # the parameters are put back after


def test_per_token_advantages_are_used_as_given() -> None:
    policy = _Policy([-1.0, -2.0, -3.0])
    start = update_probe.trainable_snapshot(policy)
    with torch.no_grad():
        policy.logp += torch.tensor([0.3, -0.4, 0.1])
    batch = {**_batch([0.0, 0.0]), "advantages": torch.tensor([[2.0, 0.0], [1.0, 5.0]])}  # Rank-GRPO's (B, T)
    assert update_probe.advantaged_logp_change(_Trainer(policy), batch, start) == pytest.approx((0.6 + 0.1) / 3)


def test_kl_term_is_the_loss_without_advantages_over_beta_and_shows_a_flipped_sign() -> None:
    policy = _Policy([-0.5, -2.0, -2.0])  # KL per token vs the reference: 0.5, 0, 1 (masked token excluded)
    batch = _batch([3.0, -7.0])
    assert update_probe.kl_term(_Trainer(policy), batch) == pytest.approx(0.5)
    assert update_probe.kl_term(_Trainer(policy, kl_sign=-1.0), batch) == pytest.approx(-0.5)


class _Sampler:
    """A rollout function that samples token 0 twice, reporting the log-probs of the policy it holds: the live
    trainer's, or a copy taken at its first call (a stale sampler)."""

    def __init__(self, stale: bool) -> None:
        self.stale = stale
        self.copy: torch.Tensor | None = None
        self.budgets: list[int] = []

    def __call__(self, prompts: list[Any], trainer: _Trainer) -> dict[str, Any]:
        self.budgets.append(trainer.args.max_completion_length)
        if self.copy is None or not self.stale:
            self.copy = trainer.model.logp.detach().clone()
        return {"prompt_ids": [[] for _ in prompts], "completion_ids": [[0, 0] for _ in prompts],
                "logprobs": [[float(self.copy[0])] * 2 for _ in prompts]}


@pytest.mark.parametrize(("stale", "expected"), [(False, 1.0), (True, 0.0)])
def test_a_sampler_holding_a_stale_copy_scores_zero(stale: bool, expected: float) -> None:
    policy = _Policy([-1.0, -2.0, -3.0])
    trainer, sampler = _Trainer(policy), _Sampler(stale)
    start = update_probe.trainable_snapshot(policy)
    update_probe.sample(trainer, sampler, ["p", "p"])
    with torch.no_grad():
        policy.logp += 0.25
    assert update_probe.sampler_on_policy(trainer, sampler, ["p", "p"], start) == expected
    assert sampler.budgets == [update_probe.SAMPLER_TOKENS] * 2 and trainer.args.max_completion_length == 100
