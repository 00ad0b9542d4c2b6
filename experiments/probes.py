"""Deterministic probes of the trained methods for `bench check`: one optimizer step of the method's own trainer on
fixed inputs from a fixed model state, so that what they record moves across machines by float rounding only.

Why: the end-to-end metrics of trained runs are chaotic across machines (RL samples its completions; a rounding
difference flips one sample and the runs part), so `bench check` compares them with bands wide enough for that
chaos, and such bands miss subtle faults (segmentation shifted by a token, advantages pooled over ranks). A probe
has nothing that amplifies rounding:
- model state: the run's backbone freshly built (`tiny`: from seed 0, the same bits on any machine with this torch),
  never a trained checkpoint, whose weights differ across machines;
- inputs: the first `prompts_per_step` training prompts and, for RL, G fixed completions per prompt written from the
  example and the catalog by a seeded `random.Random` (`fixed_completions`), replayed through TRL's `rollout_func`
  hook (`ReplayRollouts`), so no sampling happens;
- code: the run's own config and trainer (`algorithms.rl.rl_config` / `make_rl_trainer`, `algorithms.sft.sft_config`
  / `make_sft_trainer`), so rewards (`ListRewards`, the evaluator's matcher), advantages, Rank-GRPO's segmentation and
  length shaping, the loss and its gradient are the ones training uses.

Recorded (floats; `bench check` bands them like metrics):
- RL: `hits_mean` (hits per completion), `reward_mean`, `advantage_abs_mean` (per rank for Rank-GRPO), for
  Rank-GRPO `eos_advantage_mean` (length shaping), and of the step TRL's logged `loss` and `grad_norm` and the
  `grad_projection` (`GradientProjection`: a signed fingerprint of the whole gradient, which a norm is not); then
  what the step moved (`experiments.update_probe`: `update_norm`, `advantaged_logp_change`, `kl_term`,
  `sampler_on_policy`, `saved_update_norm`, and `lora_saved_update_norm` from the same step under LoRA), since a
  gradient is the same whether or not the optimizer, the schedule, the sampler or the save path use it;
- SFT: the demonstrations scored by the one evaluator against their own examples (`demo_recall@20`, `demo_ndcg@5`,
  `demo_ndcg@20`: ground truth comes first in them, so a shuffled pairing, a reversed ranking or a dropped line
  shows at once) and the `loss`, `grad_norm` and `grad_projection` of one SFT step on them.
"""

import json
import random
import tempfile
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.data.catalog import Catalog
from bench.data.records import Example
from bench.evaluation.evaluator import evaluate
from bench.evaluation.parsing import format_item
from bench.runs.context import RunContext

LIST_LENGTHS = (20, 12, 20, 22, 5, 20, 16, 1)
"""Items in the g-th fixed completion of a prompt (cycled): exactly N, short, overflowing N, a single line."""

UNKNOWN_TITLE = "Nowhere Film (1999)"
UNPARSABLE_LINE = "and a few more like these"


def fixed_completions(example: Example, catalog: Catalog, count: int) -> list[str]:
    """`count` recommendation lists for `example`, the same on every machine (`random.Random` seeded by a string).

    The g-th list has `LIST_LENGTHS[g % 8]` lines: catalog titles the user has not seen, with 0 .. all of the
    ground truth placed at random ranks, and, in turn, a seen title, a repeated line, a title outside the catalog,
    an unparsable line and a numbered line, so the reward, the parser and the segmentation all see their cases.
    """
    seen = set(example.seen_titles)
    groundtruth = [format_item(item) for item in example.groundtruth]
    others = [format_item(item) for item in catalog.items if item[0] not in seen
              and item not in example.groundtruth]
    texts = []
    for g in range(count):
        rng = random.Random(f"bench-probe:{example.id}:{g}")
        length = LIST_LENGTHS[g % len(LIST_LENGTHS)]
        lines = rng.sample(others, min(length, len(others)))
        for title in rng.sample(groundtruth, rng.randint(0, len(groundtruth))):
            lines.insert(rng.randrange(len(lines) + 1), title)
        quirk = g % 5
        if quirk == 0 and example.seen_titles:
            lines.insert(rng.randrange(len(lines) + 1), format_item((example.seen_titles[0], 2000)))
        elif quirk == 1:
            lines.insert(rng.randrange(len(lines) + 1), lines[0])
        elif quirk == 2:
            lines.insert(rng.randrange(len(lines) + 1), UNKNOWN_TITLE)
        elif quirk == 3:
            lines.insert(rng.randrange(len(lines) + 1), UNPARSABLE_LINE)
        else:
            lines[0] = f"1. {lines[0]}"
        texts.append("\n".join(lines[:length]))
    return texts


class ReplayRollouts:
    """A TRL `rollout_func` that answers every prompt with its fixed completions instead of sampling: the k-th time
    a prompt appears in a call it gets the k-th of them (tokenized, EOS appended, cut to `max_length` as generation
    would cut it). Prompt ids come from TRL's own `_tokenize_prompts`, as in the engine's hook
    (`algorithms.rollout_hook`), so the loss sees the prompt TRL's path would have fed it."""

    def __init__(self, rows: Sequence[dict[str, Any]], completions: dict[str, list[str]], tokenizer: Any,
                 eos_id: int, max_length: int) -> None:
        self.example_ids = {self.key(row["prompt"]): row["example_id"] for row in rows}
        self.completions = completions
        self.tokenizer = tokenizer
        self.eos_id = eos_id
        self.max_length = max_length

    @staticmethod
    def key(prompt: Any) -> str:
        return json.dumps(prompt, sort_keys=True)

    def __call__(self, prompts: list[Any], trainer: Any) -> dict[str, Any]:
        occurrences: Counter[str] = Counter()
        completion_ids = []
        for prompt in prompts:
            key = self.key(prompt)
            example_id = self.example_ids[key]
            text = self.completions[example_id][occurrences[key]]
            occurrences[key] += 1
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"] + [self.eos_id]
            completion_ids.append(ids[: self.max_length])
        prompt_ids, _, _ = trainer._tokenize_prompts(prompts)
        return {"prompt_ids": [list(ids) for ids in prompt_ids], "completion_ids": completion_ids, "logprobs": None}


class GradientProjection:
    """A transformers TrainerCallback keeping the gradient's projection on a fixed random direction (standard normal
    entries from a generator seeded 0, drawn per parameter in name order) just before the optimizer step: it changes
    sign when the gradient does and moves with any change of which tokens carry which advantage."""

    def __init__(self) -> None:
        from transformers import TrainerCallback

        class Callback(TrainerCallback):
            def on_pre_optimizer_step(inner, args: Any, state: Any, control: Any, model: Any = None,
                                      **kwargs: Any) -> None:
                self.value = self.project(model)

        self.callback = Callback()
        self.value = 0.0

    @staticmethod
    def project(model: Any) -> float:
        import torch

        generator = torch.Generator().manual_seed(0)
        total = 0.0
        for _, parameter in sorted(model.named_parameters(), key=lambda named: named[0]):
            direction = torch.randn(parameter.shape, generator=generator, dtype=torch.float64)
            if parameter.grad is not None:
                total += float((parameter.grad.double() * direction).sum())
        return total


def _one_step(trainer: Any, projection: GradientProjection) -> dict[str, float]:
    """Train the trainer's one step; its logged loss and gradient norm and the gradient's projection."""
    from algorithms.training import quiet_trl_deprecations

    with quiet_trl_deprecations():
        trainer.train()
    logged = next(entry for entry in trainer.state.log_history if "loss" in entry)
    return {"loss": float(logged["loss"]), "grad_norm": float(logged["grad_norm"]),
            "grad_projection": projection.value}


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


PROBE_LORA_R = 4
"""LoRA rank of the probe's second step when the run trains without LoRA, so the adapter path (PEFT wrapping, the
merge before saving) is checked whatever the configuration trains."""


def rl_probe(ctx: RunContext) -> dict[str, float]:
    """One step of the run's RL trainer from the fresh backbone on the first `prompts_per_step` training prompts,
    each answered by its `num_generations` fixed completions, and what the step moved (`experiments.update_probe`);
    for a run without LoRA, the same step under LoRA rank `PROBE_LORA_R` gives `lora_saved_update_norm`."""
    values = _rl_step(ctx)
    if ctx.spec.lora_r == 0:
        lora = replace(ctx.spec, lora_r=PROBE_LORA_R, lora_alpha=2.0 * PROBE_LORA_R)
        values["lora_saved_update_norm"] = _rl_step(replace(ctx, spec=lora), update=False)["saved_update_norm"]
    return values


def _rl_step(ctx: RunContext, update: bool = True) -> dict[str, float]:
    """The probe's step (see `rl_probe`); without `update`, only the gradient values and `saved_update_norm`."""
    from experiments import update_probe
    from algorithms.rl import ListRewards, make_rl_trainer, rl_config, train_prompts
    from algorithms.rollout_hook import rollout_kwargs
    from bench.runs.training_logs import RolloutBuffer, rollout_records

    settings = ctx.spec.settings
    backbone = ctx.load_backbone()
    examples = ctx.dataset.split("train")[: settings.prompts_per_step]
    dataset = train_prompts(examples, backbone.tokenizer, settings.max_prompt_tokens)
    completions = {example.id: fixed_completions(example, ctx.dataset.catalog, settings.num_generations)
                   for example in examples}
    replay = ReplayRollouts(list(dataset), completions, backbone.tokenizer, backbone.tokenizer.eos_token_id,
                            settings.max_new_tokens)
    buffer = RolloutBuffer()
    rewards = ListRewards({example.id: example for example in examples}, ctx.dataset.catalog, buffer,
                          ctx.spec.reward_signal, ctx.spec.seed)
    sampler = rollout_kwargs(ctx.spec.rl_rollouts, ctx.spec.model).get("rollout_func") if update else None
    prompts = [dataset[0]["prompt"]] * settings.num_generations  # the sampler check's one group
    with tempfile.TemporaryDirectory() as output_dir, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="You are using 'rollout_func'", category=UserWarning)
        config = rl_config(ctx, Path(output_dir), max_steps=1, save_strategy="no")
        projection = GradientProjection()
        trainer = make_rl_trainer(ctx, str(backbone.path), backbone.tokenizer, rewards, config, dataset,
                                  [projection.callback], rollout_func=replay)
        start = update_probe.trainable_snapshot(trainer.model)
        if sampler is not None:
            trainer.model.train()  # as in training, whose first rollout comes before the first step; a sampler
            update_probe.sample(trainer, sampler, prompts)  # that keeps a copy of the policy would take it now
        values = _one_step(trainer, projection)
        if update:
            inputs = trainer._buffered_inputs[0]
            values["update_norm"] = update_probe.update_norm(trainer.model, start)
            values["advantaged_logp_change"] = update_probe.advantaged_logp_change(trainer, inputs, start)
            if config.beta != 0.0:
                values["kl_term"] = update_probe.kl_term(trainer, inputs)
            if sampler is not None:
                values["sampler_on_policy"] = update_probe.sampler_on_policy(trainer, sampler, prompts, start)
        values["saved_update_norm"] = update_probe.saved_update_norm(ctx, trainer, backbone.model,
                                                                     Path(output_dir) / "model")
    records = rollout_records(trainer, buffer, 1)
    rank_level = "rank_advantages" in records[0]
    advantages = [abs(value) for record in records
                  for value in (record["rank_advantages"] if rank_level else [record["advantage"]])]
    summary = {"hits_mean": _mean([sum(record["hits"]) for record in records]),
               "reward_mean": _mean([record["reward"] for record in records]),
               "advantage_abs_mean": _mean(advantages)}
    if rank_level:
        summary["eos_advantage_mean"] = _mean([record["eos_advantage"] for record in records])
    return {**summary, **values}


def sft_probe(ctx: RunContext) -> dict[str, float]:
    """The run's demonstrations scored against their own examples, and one SFT step from the fresh backbone on
    them (see the module docstring)."""
    from algorithms.sft import demonstrations, make_sft_trainer, sft_config, sft_dataset, sft_total_steps

    pairs, _ = demonstrations(ctx)
    scored = evaluate([example for example, _ in pairs], {example.id: text for example, text in pairs},
                      ctx.dataset.catalog).metrics
    values = {f"demo_{metric}": float(scored[metric]) for metric in ("recall@20", "ndcg@5", "ndcg@20")}
    backbone = ctx.load_backbone()
    batch = pairs[: ctx.spec.settings.sft_batch_size]
    with tempfile.TemporaryDirectory() as output_dir:
        config = sft_config(ctx, Path(output_dir), sft_total_steps(ctx, len(pairs)), max_steps=1,
                            save_strategy="no")
        projection = GradientProjection()
        trainer = make_sft_trainer(ctx, backbone, config, sft_dataset(ctx, backbone.tokenizer, batch),
                                   [projection.callback])
        step = _one_step(trainer, projection)
    return {**values, **step}

