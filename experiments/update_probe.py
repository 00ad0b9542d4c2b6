"""What one optimizer step of an RL trainer moved, for `bench check`'s RL probe (`experiments.probes.rl_probe`).

The probe's gradient values (loss, gradient norm and projection) stop before the optimizer: a learning rate of 0, an
optimizer that skips its step, a KL term of the wrong sign (zero at the first step, where the policy is its own
reference), a sampler that draws from a stale copy of the policy, or a saved model that lost part of the update all
leave them unchanged. So after the step the probe records what the step changed, each a float that moves across
machines by rounding only:

- `update_norm`: ||theta_1 - theta_0|| over the trainable parameters (float64 sums);
- `advantaged_logp_change`: sum_t A_t (log pi_1(y_t) - log pi_0(y_t)) m_t / sum_t m_t over the step's replayed batch,
  with the trainer's own per-token advantages A_t (GRPO's (B,) advantages broadcast over the completion; Rank-GRPO's
  (B, T) per-rank ones) and completion mask m_t: the first-order change of the policy-gradient surrogate, positive
  when the step raised the likelihood of the advantaged tokens and lowered that of the disadvantaged ones;
- `kl_term` (KL beta > 0): the trainer's own loss (`_compute_loss`, TRL's GRPOTrainer or `RankGRPOTrainer`) at
  theta_1 on the batch with every advantage zeroed, divided by the configured beta: the KL penalty as the loss adds
  it, i.e. the masked mean k3 estimate of KL(pi_1 || pi_ref) (TRL's per-token KL), negative if its sign is flipped;
- `saved_update_norm`: ||saved - theta_0|| over the backbone's weights after the run's own save path
  (`algorithms.lora.merge_adapters`, `algorithms.training.save_final_model`) and a reload, so an update lost on the
  way to the saved model (adapters not merged, weights pulled back) shows; under LoRA the same is measured on the
  merged weights (`lora_saved_update_norm` in the probe);
- `sampler_on_policy` (shared-engine rollouts): the run's own rollout function (`algorithms.rollout_hook`) is called
  once before the step and once after; the second call's sampled tokens are scored by the trainer at theta_1 and at
  theta_0, and the value is 1 when the sampler's own log-probabilities are nearer theta_1's (mean absolute gap) than
  theta_0's, else 0: a sampler that kept a copy of the policy from its first call scores 0. A 0/1 value, because the
  gaps themselves are rounding-sized on the live side and differ from machine to machine.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def trainable_snapshot(model: Any) -> dict[str, Any]:
    """name -> a detached copy of every trainable parameter (the adapters only, under LoRA)."""
    return {name: parameter.detach().clone() for name, parameter in model.named_parameters()
            if parameter.requires_grad}


def update_norm(model: Any, start: dict[str, Any]) -> float:
    """||theta - start|| over the parameters in `start`, summed in float64."""
    parameters = dict(model.named_parameters())
    return sum(float(((parameters[name].detach().double() - value.double()) ** 2).sum())
               for name, value in start.items()) ** 0.5


@contextmanager
def parameters_at(model: Any, state: dict[str, Any]) -> Iterator[None]:
    """The model's parameters named in `state` set to those values for the block, then restored."""
    import torch

    parameters = dict(model.named_parameters())
    current = {name: parameters[name].detach().clone() for name in state}
    with torch.no_grad():
        for name, value in state.items():
            parameters[name].copy_(value)
        try:
            yield
        finally:
            for name, value in current.items():
                parameters[name].copy_(value)


@contextmanager
def evaluating(trainer: Any) -> Iterator[None]:
    """The trainer's model in eval mode without gradients (so TRL's losses skip their accumulation scaling)."""
    import torch

    was_training = trainer.model.training
    trainer.model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        trainer.model.train(was_training)


def completion_logps(trainer: Any, inputs: dict[str, Any]) -> Any:
    """(B, T) log-probabilities of the batch's completion tokens under the trainer's current model (TRL's own
    `_get_per_token_logps_and_entropies`, temperature applied as in the loss)."""
    import torch

    input_ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
    attention_mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
    with evaluating(trainer):
        return trainer._get_per_token_logps_and_entropies(trainer.model, input_ids, attention_mask,
                                                          inputs["completion_ids"].size(1))[0]


def advantaged_logp_change(trainer: Any, inputs: dict[str, Any], start: dict[str, Any]) -> float:
    """sum_t A_t (log pi_now - log pi_start) m_t / sum_t m_t over the batch (see the module docstring)."""
    after = completion_logps(trainer, inputs)
    with parameters_at(trainer.model, start):
        before = completion_logps(trainer, inputs)
    advantages = inputs["advantages"]
    if advantages.dim() == 1:  # GRPO: one advantage per completion; Rank-GRPO: (B, T) already
        advantages = advantages.unsqueeze(1)
    mask = inputs["completion_mask"].double()
    change = advantages.double() * (after.double() - before.double()) * mask
    return float(change.sum() / mask.sum().clamp(min=1.0))


def kl_term(trainer: Any, inputs: dict[str, Any]) -> float:
    """The trainer's loss on the batch with zero advantages, over the configured KL beta (module docstring)."""
    import torch

    zeroed = {**inputs, "advantages": torch.zeros_like(inputs["advantages"])}
    with evaluating(trainer):
        loss = trainer._compute_loss(trainer.model, zeroed)
    return float(loss) / trainer.args.beta


SAMPLER_TOKENS = 24
"""New tokens per completion when the probe calls the run's sampler: enough tokens to compare log-probabilities, few
enough that the two calls cost about a second each."""


@contextmanager
def completion_budget(trainer: Any, tokens: int) -> Iterator[None]:
    """The trainer's `max_completion_length` (which the rollout hook reads) at most `tokens` for the block."""
    previous = trainer.args.max_completion_length
    trainer.args.max_completion_length = min(previous, tokens)
    try:
        yield
    finally:
        trainer.args.max_completion_length = previous


def sample(trainer: Any, sampler: Any, prompts: list[Any]) -> dict[str, Any]:
    """The run's rollout function called as TRL calls it, on `prompts` (each repeated G times), with
    `SAMPLER_TOKENS` new tokens at most."""
    with completion_budget(trainer, SAMPLER_TOKENS):
        return sampler(prompts, trainer)


def sampler_on_policy(trainer: Any, sampler: Any, prompts: list[Any], start: dict[str, Any]) -> float:
    """1.0 when `sampler`'s log-probabilities of what it samples now are nearer the trainer's current policy than
    the policy at `start`, else 0.0 (see the module docstring). Each completion is scored alone, unpadded."""
    import torch

    output = sample(trainer, sampler, prompts)
    sampled = [torch.tensor(logprobs, dtype=torch.float64) for logprobs in output["logprobs"]]

    def scored() -> list[Any]:
        logps = []
        with evaluating(trainer):
            for prompt_ids, completion_ids in zip(output["prompt_ids"], output["completion_ids"], strict=True):
                ids = torch.tensor([list(prompt_ids) + list(completion_ids)])
                logps.append(trainer._get_per_token_logps_and_entropies(
                    trainer.model, ids, torch.ones_like(ids), len(completion_ids))[0][0].double())
        return logps

    def gap(logps: list[Any]) -> float:
        return float(torch.cat([(s - t).abs() for s, t in zip(sampled, logps, strict=True)]).mean())

    live = gap(scored())
    with parameters_at(trainer.model, start):
        stale = gap(scored())
    return 1.0 if live < stale else 0.0


def saved_update_norm(ctx: Any, trainer: Any, start: Any, directory: Path) -> float:
    """Save the trained model the way `algorithms.rl.train_rl` does (merge adapters, save), reload it as runs load
    a trained model (`RunContext.load_backbone`), and return ||saved - start|| over the parameters of the `start`
    model (a tied head counted once, as `named_parameters` does; float64 sums)."""
    from algorithms.lora import merge_adapters
    from algorithms.training import save_final_model

    merge_adapters(trainer)
    save_final_model(trainer, directory)
    saved = dict(ctx.load_backbone(str(directory)).model.named_parameters())
    return sum(float(((saved[name].detach().double() - value.detach().double()) ** 2).sum())
               for name, value in start.named_parameters()) ** 0.5
