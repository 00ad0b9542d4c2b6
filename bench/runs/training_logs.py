"""Training you can watch: `train_log.jsonl` (one line per optimizer step) and `rollouts.jsonl` (every completion of
the step at each validation interval), written into the run folder by the main process.

`train_log.jsonl` lines hold what applies to the method, under stable names (TRL's log keys in `TRAIN_LOG_KEYS`):
loss, learning rate, grad norm, step seconds; for RL also reward mean/std, the fraction of groups whose rewards all
tie (`frac_tied_groups`: no learning signal; for Rank-GRPO, groups where every rank's reward ties), clip
fractions, KL, entropy, mean completion length, items emitted, format rate and generated tokens per second, and with
vLLM rollouts TRL's importance-sampling ratio (min/mean/max) and |policy - vLLM| log-prob gap (mean/max); for SFT
tokens per second and token accuracy. Every RL method also logs the same two numbers about its samples, whatever its
own reward is (Rank-GRPO's `reward_mean` is a DCG, a null control's is shuffled): `sampled_ndcg@20`, the mean
NDCG@20 of the step's completions under the real reward, and `best_of_g_ndcg@20`, the mean over prompts of the best
completion's, so a method's training reward can be set beside another's and beside greedy validation. Items, format
rate and these NDCGs are computed from the completions the reward function scored (`RolloutBuffer`, this process's
share under several processes); TRL's means are over all processes.

`rollouts.jsonl` lines: step, example id, prompt id, prompt (chat messages), completion text, per-rank hits, reward
and advantage; for Rank-GRPO the per-rank rewards and advantages (`RankGRPOTrainer.last_rank_advantages`) and the
EOS advantage (length shaping, plus the missing-rank credit where on); for GRPO/GSPO the scalar advantage TRL used,
read from `GRPOTrainer._logs["advantages"]` (the global generation batch; this process's completions come first on
the main process; trl 1.16).
"""

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.evaluation.parsing import parse_lines
from bench.runs.folders import append_jsonl

TRAIN_LOG_KEYS = {
    "loss": "loss", "learning_rate": "learning_rate", "grad_norm": "grad_norm",
    "reward_mean": "reward", "reward_std": "reward_std", "frac_tied_groups": "frac_reward_zero_std",
    "clip_low": "clip_ratio/low_mean", "clip_high": "clip_ratio/high_mean", "clip_region": "clip_ratio/region_mean",
    "kl": "kl", "entropy": "entropy", "mean_completion_length": "completions/mean_length",
    "truncated_fraction": "completions/clipped_ratio", "token_accuracy": "mean_token_accuracy",
    "is_ratio_min": "sampling/importance_sampling_ratio/min",
    "is_ratio_mean": "sampling/importance_sampling_ratio/mean",
    "is_ratio_max": "sampling/importance_sampling_ratio/max",
    "sampling_logp_gap_mean": "sampling/sampling_logp_difference/mean",
    "sampling_logp_gap_max": "sampling/sampling_logp_difference/max",
}
"""train_log.jsonl name -> the transformers/TRL log key it comes from (absent keys are left out)."""


@dataclass(frozen=True)
class Rollout:
    """One scored completion: what the reward function saw and gave."""

    example_id: str
    prompt_id: str
    prompt: Any
    completion: str
    hits: list[float]
    ndcg: float
    """NDCG@20 of `hits` under the real reward (also for a null control)."""
    n_lines: int
    n_parsed: int


class RolloutBuffer:
    """The latest batch of completions the reward function scored on this process, in TRL's order, and whether a
    new batch arrived since the last optimizer step was logged (mu > 1 reuses a batch over several steps)."""

    def __init__(self) -> None:
        self.rollouts: list[Rollout] = []
        self.rewards: list[float] = []
        self.fresh = False

    def record(self, prompts: Sequence[Any], texts: Sequence[str], example_ids: Sequence[str],
               prompt_ids: Sequence[str], hits: Sequence[Sequence[float]], ndcgs: Sequence[float]) -> None:
        """Keep a scored batch; `prompt_ids` are examples.jsonl's (`bench.runs.context.prompt_id`), `ndcgs` the real
        NDCG@20 of each completion."""
        self.rollouts = [Rollout(eid, pid, prompt, text, list(row), float(ndcg), len(lines),
                                 sum(item is not None for item in lines))
                         for prompt, text, eid, pid, row, ndcg in zip(prompts, texts, example_ids, prompt_ids, hits,
                                                                      ndcgs, strict=True)
                         for lines in [parse_lines(text)]]
        self.rewards = []
        self.fresh = True

    def groups(self) -> dict[str, list[Rollout]]:
        """The buffered completions by example id (one group per prompt of the step), in order."""
        grouped: dict[str, list[Rollout]] = {}
        for rollout in self.rollouts:
            grouped.setdefault(rollout.example_id, []).append(rollout)
        return grouped

    def batch_stats(self) -> dict[str, float]:
        """Items emitted (non-blank lines) per completion, the share of lines that parse, and the real NDCG@20 of the
        samples: their mean and the mean over groups of the best (`best_of_g_ndcg@20`)."""
        if not self.rollouts:
            return {}
        lines = sum(rollout.n_lines for rollout in self.rollouts)
        groups = self.groups().values()
        return {"items_emitted": lines / len(self.rollouts),
                "format_rate": sum(rollout.n_parsed for rollout in self.rollouts) / lines if lines else 0.0,
                "sampled_ndcg@20": sum(rollout.ndcg for rollout in self.rollouts) / len(self.rollouts),
                "best_of_g_ndcg@20": sum(max(r.ndcg for r in group) for group in groups) / len(groups)}


def train_log_callback(path: Path, buffer: RolloutBuffer | None = None, completions_per_step: int = 0) -> Any:
    """A TrainerCallback appending one line per optimizer step to `path` (logging_steps must be 1).

    Step seconds run from `on_step_begin` to `on_step_end` (generation, scoring, forward, backward, update; put this
    callback before the validation callback so validation is not counted). Generated tokens per second: mean
    completion length x `completions_per_step` / step seconds, on steps that generated (`buffer.fresh`); for SFT,
    tokens processed (`num_tokens` difference) per second.
    """
    from transformers import TrainerCallback

    class TrainLogCallback(TrainerCallback):
        def __init__(self) -> None:
            self.started = 0.0
            self.seconds = 0.0
            self.tokens_seen: float | None = None

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.started = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.seconds = time.perf_counter() - self.started

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
                   **kwargs: Any) -> None:
            logs = logs or {}
            if "loss" not in logs:
                return
            line: dict[str, Any] = {"step": state.global_step, "step_seconds": self.seconds}
            line.update({name: float(logs[key]) for name, key in TRAIN_LOG_KEYS.items()
                         if isinstance(logs.get(key), (int, float))})
            if buffer is not None:
                line["fresh_rollouts"] = buffer.fresh
                if buffer.fresh:
                    line.update(buffer.batch_stats())
                    if "mean_completion_length" in line and self.seconds > 0:
                        generated = line["mean_completion_length"] * completions_per_step
                        line["generated_tokens_per_s"] = generated / self.seconds
                    buffer.fresh = False
            if isinstance(logs.get("rank_grpo/frac_tied_groups"), (int, float)):  # per-rank ties, not the DCG's
                line["frac_tied_groups"] = float(logs["rank_grpo/frac_tied_groups"])
            if "rank_grpo/items" in logs:
                line["items_emitted_all_processes"] = float(logs["rank_grpo/items"])
            if isinstance(logs.get("num_tokens"), (int, float)):
                tokens = float(logs["num_tokens"])
                if self.tokens_seen is not None and self.seconds > 0:
                    line["tokens_per_s"] = (tokens - self.tokens_seen) / self.seconds
                self.tokens_seen = tokens
            if state.is_world_process_zero:
                append_jsonl(path, line)

    return TrainLogCallback()


def rollouts_callback(path: Path, buffer: RolloutBuffer, interval: int, trainer_ref: list[Any]) -> Any:
    """A TrainerCallback appending every completion of the step to `path` at each validation step (every
    `interval` steps and the last), with its hits, reward and advantages; `trainer_ref[0]` is the trainer (set after
    it is built: callbacks are passed to its constructor)."""
    from transformers import TrainerCallback

    class RolloutsCallback(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            due = state.global_step % interval == 0 or state.global_step >= state.max_steps
            if due and state.is_world_process_zero and buffer.rollouts:
                for record in rollout_records(trainer_ref[0], buffer, state.global_step):
                    append_jsonl(path, record)

    return RolloutsCallback()


def rollout_records(trainer: Any, buffer: RolloutBuffer, step: int) -> list[dict[str, Any]]:
    """The buffered completions as rollouts.jsonl lines, with the trainer's rewards and advantages."""
    rank_advantages = getattr(trainer, "last_rank_advantages", None)
    records = []
    for index, rollout in enumerate(buffer.rollouts):
        record: dict[str, Any] = {"step": step, **asdict(rollout)}
        if rank_advantages is not None:
            record["rank_rewards"] = trainer.last_rank_rewards[index].tolist()
            record["rank_advantages"] = rank_advantages[index].tolist()
            record["eos_advantage"] = float(trainer.last_eos_advantages[index])
            record["reward"] = float(trainer.last_dcg[index])
        else:
            record["reward"] = buffer.rewards[index] if index < len(buffer.rewards) else None
            advantages = list(trainer._logs["advantages"])
            record["advantage"] = advantages[index] if index < len(advantages) else None
        records.append(record)
    return records
