"""Rank-GRPO as a thin subclass of TRL's `GRPOTrainer` (Zhu et al., "Rank-GRPO", arXiv 2510.20150).

TRL generates, scores and logs as usual; two methods change:
- `_generate_and_score_completions` replaces TRL's scalar advantages by per-token advantages: per-rank hits from the
  `rank_reward_fn`, gathered over processes, turned into per-rank rewards and per-rank group advantages, mapped onto
  the tokens of each line, plus the published length shaping (the authors' rank_grpo_trainer.py:784-786,1829-1848)
  and, only when `missing_rank_credit` is set (our departure, off by default), the advantages of the ranks a list did
  not generate on its early EOS;
- `_compute_loss` uses the rank-level importance ratio (geometric mean of the token ratios of each rank) in the
  clipped surrogate. With mu = num_iterations > 1, TRL keeps the sampling policy's log-probs as
  `old_per_token_logps`; with mu = 1 they equal the current ones (detached) and the ratio is 1. The per-token losses
  are aggregated as TRL's `loss_type`, as the authors' trainer does (its rank_grpo_trainer.py:2081-2088; the paper's
  objective is per rank, the token aggregation is the trainer's).
The math lives in `algorithms.rank_grpo`; the scalar reward TRL logs as `reward` is the DCG@N of the hit vector.
After each generation the trainer keeps this process's per-rank rewards and advantages, EOS advantages and DCG
rewards (`last_rank_rewards`, `last_rank_advantages`, `last_eos_advantages`, `last_dcg`) for rollouts.jsonl.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import PreTrainedModel, TrainerCallback
from trl import GRPOConfig, GRPOTrainer

from algorithms.rank_grpo import (
    RANK_REWARDS,
    eos_mask,
    length_shaping,
    missing_rank_credit,
    newline_token_ids,
    rank_advantage_per_token,
    rank_advantages,
    rank_grpo_token_loss,
    rank_log_ratio,
    rank_rewards,
    segment_ranks,
    whitespace_token_ids,
)
from algorithms.training import quiet_trl_deprecations

RankRewardFn = Callable[..., list[list[float]]]
"""`rank_reward_fn(prompts, completions, **dataset_columns) -> hits`, with prompts and completions as TRL passes them
to reward functions (strings, or message lists for conversational prompts): one list of n_items 0/1 floats per
completion, positions kept (entry k-1 is the k-th non-blank line, parsed or not; missing ranks are 0)."""

TRL_REWARD_KWARGS = ("completion_ids", "trainer_state", "log_extra", "log_metric", "environments")
"""Keyword arguments TRL adds for reward functions; everything else passed on is a dataset column."""

SUPPORTED_LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")
"""TRL loss aggregations that weight all tokens of a rank alike, under which the on-policy gradient of the rank-level
ratio equals the token-level one (see `rank_grpo_token_loss`)."""


@dataclass
class RankGRPOConfig(GRPOConfig):
    """`GRPOConfig` plus Rank-GRPO's settings; clipping and KL default to the authors' values
    (train_rank_grpo.py:142-143, :63), the rest to the published trainer (no missing-rank credit)."""

    rank_reward: str = field(
        default="exp_inf",
        metadata={"help": f"Per-rank reward, one of {', '.join(RANK_REWARDS)} (paper Sec. 4.1)."},
    )
    n_items: int = field(default=20, metadata={"help": "N, the length of the recommendation list (ranks scored)."})
    length_shaping: bool = field(
        default=True,
        metadata={"help": "Published length shaping: bonus on EOS after exactly N items, penalty on an early EOS "
                  "and on every token past N items."},
    )
    missing_rank_credit: bool = field(
        default=False,
        metadata={"help": "Our variant, not in the published trainer: an early EOS also gets the summed advantages of "
                  "the ranks the list did not generate (scored as misses), so that shortening a list never pays "
                  "(algorithms.rank_grpo.missing_rank_credit). False (default) is the published trainer."},
    )
    length_bonus: float = field(default=0.1, metadata={"help": "Advantage added on the EOS of an exactly-N list."})
    length_penalty: float = field(
        default=0.1, metadata={"help": "Advantage subtracted on an early EOS and on each token past N items."}
    )
    epsilon: float = field(default=0.06, metadata={"help": "Lower clip range of the rank ratio (paper: 0.06)."})
    epsilon_high: float | None = field(
        default=0.08, metadata={"help": "Upper clip range of the rank ratio (paper: 0.08)."}
    )
    beta: float = field(default=1e-3, metadata={"help": "KL coefficient (paper: 1e-3)."})

    def __post_init__(self):
        super().__post_init__()
        if self.rank_reward not in RANK_REWARDS:
            raise ValueError(f"Unknown rank_reward {self.rank_reward!r}; choose one of {', '.join(RANK_REWARDS)}.")
        if self.n_items < 1:
            raise ValueError(f"n_items must be at least 1, got {self.n_items}.")
        if self.loss_type not in SUPPORTED_LOSS_TYPES:
            raise ValueError(f"Rank-GRPO supports loss_type in {SUPPORTED_LOSS_TYPES}, got {self.loss_type!r}.")
        if self.scale_rewards not in ("group", "none"):
            raise ValueError(f"Rank-GRPO normalises per group: scale_rewards must be 'group' or 'none', "
                             f"got {self.scale_rewards!r}.")
        if self.importance_sampling_level != "token":
            raise ValueError("Rank-GRPO uses its own rank-level ratio; leave importance_sampling_level at 'token'.")
        unsupported = {
            "top_entropy_quantile": self.top_entropy_quantile < 1.0,
            "off_policy_mask_threshold": self.off_policy_mask_threshold is not None,
            "entropy_coef": self.entropy_coef != 0.0 or self.use_adaptive_entropy,
            "delta": self.delta is not None,
        }
        if any(unsupported.values()):
            names = ", ".join(name for name, is_set in unsupported.items() if is_set)
            raise ValueError(f"Rank-GRPO does not support these GRPOConfig options: {names}.")


class DCGReward:
    """TRL scalar reward built on a `rank_reward_fn`: DCG@N of each completion's hit vector.

    Calls `rank_reward_fn` with the prompts, completions and dataset columns (TRL's own keyword arguments removed),
    checks the hit vectors and keeps them in `last_hits` ((B_local, n_items) float, CPU) for the per-rank advantages.
    """

    __name__ = "dcg"

    def __init__(self, rank_reward_fn: RankRewardFn, n_items: int):
        self.rank_reward_fn = rank_reward_fn
        self.n_items = n_items
        self.last_hits: torch.Tensor | None = None

    def __call__(self, prompts: list, completions: list, **kwargs: Any) -> list[float]:
        columns = {key: value for key, value in kwargs.items() if key not in TRL_REWARD_KWARGS}
        hits = self.rank_reward_fn(prompts, completions, **columns)
        if len(hits) != len(completions) or any(len(row) != self.n_items for row in hits):
            raise ValueError(
                f"rank_reward_fn must return one list of {self.n_items} hits per completion "
                f"({len(completions)} completions)."
            )
        self.last_hits = torch.tensor(hits, dtype=torch.float32)
        return rank_rewards(self.last_hits, "log_decay")[:, 0].tolist()  # log_decay r_1 = DCG of the whole list


class RankGRPOTrainer(GRPOTrainer):
    """GRPOTrainer with per-rank rewards, per-rank group advantages and rank-level importance ratios.

    Text-only: multimodal inputs are not forwarded by the loss. Args are GRPOTrainer's, except that `reward_funcs`
    is replaced by `rank_reward_fn` (see `RankRewardFn`) and `args` must be a `RankGRPOConfig`; `rollout_func` is
    TRL's generation hook (`algorithms.rollout_hook`).
    """

    def __init__(
        self,
        model: str | PreTrainedModel,
        rank_reward_fn: RankRewardFn,
        args: RankGRPOConfig,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        callbacks: list[TrainerCallback] | None = None,
        optimizers: tuple = (None, None),
        peft_config=None,
        rollout_func=None,
    ):
        if not isinstance(args, RankGRPOConfig):
            raise TypeError(f"RankGRPOTrainer needs a RankGRPOConfig, got {type(args).__name__}.")
        self.dcg_reward = DCGReward(rank_reward_fn, args.n_items)
        super().__init__(
            model=model,
            reward_funcs=[self.dcg_reward],
            args=args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            callbacks=callbacks,
            optimizers=optimizers,
            peft_config=peft_config,
            rollout_func=rollout_func,
        )
        self.last_rank_rewards: torch.Tensor | None = None
        self.last_rank_advantages: torch.Tensor | None = None
        self.last_eos_advantages: torch.Tensor | None = None
        self.last_dcg: torch.Tensor | None = None
        self.newline_ids = torch.tensor(newline_token_ids(self._tokenizer), dtype=torch.long)
        self.whitespace_ids = torch.tensor(whitespace_token_ids(self._tokenizer), dtype=torch.long)
        if self.newline_ids.numel() == 0:
            raise ValueError("The tokenizer has no token whose text contains a newline; items cannot be segmented.")

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        """TRL's generation and scoring, then per-token Rank-GRPO advantages (paper Eqs. 8, 10) in `advantages`
        ((B_local, T)) and the token ranks in `rank_ids` ((B_local, T), see `segment_ranks`)."""
        with quiet_trl_deprecations():  # TRL's generation reads a deprecated transformers property
            output = super()._generate_and_score_completions(inputs)
        mode = "train" if self.model.training else "eval"
        device = self.accelerator.device
        n_items = self.args.n_items
        # Groups may span processes: normalise over all processes' hits, in TRL's order, then keep the local slice.
        hits = self.accelerator.gather(self.dcg_reward.last_hits.to(device))
        group_size = self.num_generations if mode == "train" else self.num_generations_eval
        rewards = rank_rewards(hits, self.args.rank_reward)
        advantages = rank_advantages(rewards, group_size, scale=self.scale_rewards != "none")
        completion_ids = output["completion_ids"]
        local = slice(
            self.accelerator.process_index * completion_ids.size(0),
            (self.accelerator.process_index + 1) * completion_ids.size(0),
        )
        mask = output["completion_mask"]
        if "tool_mask" in output:
            mask = mask * output["tool_mask"]
        rank_ids = segment_ranks(
            completion_ids,
            mask,
            self.newline_ids.to(device),
            n_items,
            self.whitespace_ids.to(device),
            eos_token_id=self.eos_token_ids,
        )
        local_advantages = advantages[local]
        token_advantages = rank_advantage_per_token(local_advantages, rank_ids)
        if self.args.missing_rank_credit:
            token_advantages = token_advantages + missing_rank_credit(
                local_advantages, rank_ids, completion_ids, mask, self.eos_token_ids
            )
        if self.args.length_shaping:
            token_advantages = token_advantages + length_shaping(
                rank_ids,
                completion_ids,
                mask,
                self.eos_token_ids,
                n_items,
                bonus=self.args.length_bonus,
                penalty=self.args.length_penalty,
            )
        output["advantages"] = token_advantages
        output["rank_ids"] = rank_ids
        eos = eos_mask(completion_ids, mask, self.eos_token_ids)
        self.last_rank_rewards = rewards[local].detach().cpu()
        self.last_rank_advantages = local_advantages.detach().cpu()
        self.last_eos_advantages = (token_advantages * eos).sum(dim=1).detach().cpu()
        self.last_dcg = rank_rewards(hits[local], "log_decay")[:, 0].detach().cpu()
        items = self.accelerator.gather(rank_ids.amax(dim=1) + 1).float()  # items emitted; overflow counts as N + 1
        self._metrics[mode]["rank_grpo/items"].append(items.mean().item())
        self._metrics[mode]["rank_grpo/hits"].append(hits.sum(dim=1).mean().item())
        self._metrics[mode]["rank_grpo/rank_reward"].append(rewards.sum(dim=1).mean().item())
        grouped = rewards.view(-1, group_size, n_items)  # a group teaches nothing when every rank ties across it
        tied = (grouped.amax(dim=1) == grouped.amin(dim=1)).all(dim=1).float()
        self._metrics[mode]["rank_grpo/frac_tied_groups"].append(tied.mean().item())
        return output

    def _compute_loss(self, model, inputs: dict[str, Any]) -> torch.Tensor:
        """Clipped surrogate with rank-level ratios (the paper's rank-level objective, written per token as the
        authors' trainer does) + beta * KL(pi || pi_ref) per token (k3 estimator, as TRL), aggregated as TRL's
        `loss_type` (`_aggregate`; the authors ran TRL 0.21's default `bnpo`)."""
        completion_ids = inputs["completion_ids"]
        input_ids = torch.cat([inputs["prompt_ids"], completion_ids], dim=1)
        attention_mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
        mask = inputs["completion_mask"]
        if "tool_mask" in inputs:
            mask = mask * inputs["tool_mask"]
        per_token_logps, entropies, _ = self._get_per_token_logps_and_entropies(
            model, input_ids, attention_mask, completion_ids.size(1), compute_entropy=True
        )
        old_per_token_logps = inputs.get("old_per_token_logps")
        if old_per_token_logps is None:  # mu = 1 and generation aligned with optimisation: pi_old = pi
            old_per_token_logps = per_token_logps.detach()
        log_ratio = rank_log_ratio(per_token_logps, old_per_token_logps, inputs["rank_ids"], mask, self.args.n_items)
        advantages = inputs["advantages"]
        per_token_loss = rank_grpo_token_loss(log_ratio, advantages, self.epsilon_low, self.epsilon_high)
        if self.use_vllm and self.vllm_importance_sampling_correction:
            per_token_loss = per_token_loss * inputs["importance_sampling_ratio"]
        mode = "train" if self.model.training else "eval"
        if self.beta != 0.0:
            ref_gap = inputs["ref_per_token_logps"] - per_token_logps
            per_token_kl = torch.exp(ref_gap) - ref_gap - 1
            if self.args.use_bias_correction_kl:
                per_token_kl = per_token_kl * torch.exp(log_ratio)
            per_token_loss = per_token_loss + self.beta * per_token_kl
            self._metrics[mode]["kl"].append(self._global_masked_mean(per_token_kl, mask))
        self._metrics[mode]["entropy"].append(self._global_masked_mean(entropies, mask))
        ratio = torch.exp(log_ratio.detach())
        low = ((ratio < 1 - self.epsilon_low) & (advantages < 0)).float()
        high = ((ratio > 1 + self.epsilon_high) & (advantages > 0)).float()
        self._metrics[mode]["clip_ratio/low_mean"].append(self._global_masked_mean(low, mask))
        self._metrics[mode]["clip_ratio/high_mean"].append(self._global_masked_mean(high, mask))
        self._metrics[mode]["clip_ratio/region_mean"].append(self._global_masked_mean(low + high, mask))
        return self._aggregate(per_token_loss, mask, inputs["num_items_in_batch"], mode)

    def _aggregate(
        self, per_token_loss: torch.Tensor, mask: torch.Tensor, num_items_in_batch: torch.Tensor, mode: str
    ) -> torch.Tensor:
        """(B, T) per-token losses -> scalar, with GRPOTrainer's normalisers for `loss_type` (and its gradient
        accumulation scaling, since TRL turns off the HF Trainer's)."""
        accumulation = self.current_gradient_accumulation_steps if mode == "train" else 1.0
        masked = per_token_loss * mask
        if self.loss_type == "grpo":
            return (masked.sum(-1) / mask.sum(-1).clamp(min=1.0)).mean() / accumulation
        if self.loss_type == "bnpo":
            return masked.sum() / mask.sum().clamp(min=1.0) / accumulation
        if self.loss_type == "dr_grpo":
            return masked.sum() / (per_token_loss.size(0) * self.max_completion_length) / accumulation
        normalizer = num_items_in_batch.clamp(min=1.0) / self.accelerator.num_processes  # "dapo"
        if mode == "train":
            normalizer = normalizer * self.current_gradient_accumulation_steps / self.args.steps_per_generation
        return masked.sum() / normalizer

    def _global_masked_mean(self, values: torch.Tensor, mask: torch.Tensor) -> float:
        """Mean of (B, T) `values` over the unmasked tokens of all processes."""
        totals = torch.stack([(values.detach() * mask).sum(), mask.sum().float()])
        totals = self.accelerator.reduce(totals, reduction="sum")
        return (totals[0] / totals[1].clamp(min=1.0)).item()
