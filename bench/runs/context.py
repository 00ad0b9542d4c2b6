"""What a method gets to produce predictions for a run, and what it gives back.

`RunContext` carries the spec, the loaded dataset, the run folder and the caches, and knows how to load the run's
backbone and generate for examples through the one rollout engine (prompts deduplicated, trimmed to the preset's
budget, cached). `MethodOutput` is the raw text per example id plus artifacts for the run folder.
"""

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.data.dataset import Dataset
from bench.data.records import Example
from bench.runs.folders import RunFolder
from bench.runs.specs import RunSpec


@dataclass
class MethodOutput:
    """Raw model text per example id; `artifacts` (JSON-able) go to summary.json; `per_example` extras (e.g. a
    pipeline's intermediate prompts) are merged into examples.jsonl by id."""

    predictions: dict[str, str]
    artifacts: dict[str, Any] = field(default_factory=dict)
    per_example: dict[str, dict[str, Any]] = field(default_factory=dict)


def prompt_id(example: Example) -> str:
    """Short stable id of an example's prompt (samples sharing a prompt share it)."""
    return hashlib.sha256(example.prompt_key.encode()).hexdigest()[:12]


@dataclass
class RunContext:
    spec: RunSpec
    dataset: Dataset
    folder: RunFolder
    cache_dir: Path
    results_dir: Path
    log: Callable[[str], None] = print
    progress: bool = True
    report_to: str = "none"
    """Where trainers also report their logs (transformers `report_to`: none, tensorboard, wandb); not part of the
    spec, since it does not change what a run computes."""
    started: float = field(default_factory=time.monotonic)
    """When the command began (`time.monotonic`); an SFT warm start built inside an RL run shares its RL run's."""

    def stage(self, doing: str, next_step: str) -> None:
        """One progress line per stage of a run: time since the command began, what starts now, what comes next."""
        elapsed = int(time.monotonic() - self.started)
        self.log(f"[{elapsed // 60}:{elapsed % 60:02d} elapsed] {doing}; next: {next_step}")

    def stage_evaluation(self) -> None:
        """The progress line of the greedy evaluation that ends every model run."""
        self.stage(f"{self.spec.method_label}: greedy answers to {len(self.eval_examples())} {self.spec.split} "
                   "examples", "scoring and the run folder")

    def eval_examples(self) -> list[Example]:
        """The evaluation split, cut to the preset's `eval_limit` (the first examples, a fixed subset)."""
        examples = list(self.dataset.split(self.spec.split))
        limit = self.spec.settings.eval_limit
        return examples[:limit] if limit is not None else examples

    def load_backbone(self, path_or_name: str | None = None, dtype: str | None = None) -> Any:
        """The run's backbone (or a trained checkpoint directory) in the spec's dtype, or in `dtype` when given
        (training loads `algorithms.training.TRAIN_DTYPE`), built from the dataset corpus when tiny.

        Tiny backbones are built with seed 0 whatever the run seed: like a pretrained model, the backbone is the
        same for every seed and the seed only drives training and sampling.
        """
        from bench.models.backbones import load_backbone

        return load_backbone(path_or_name or self.spec.model, corpus=self.dataset.corpus(),
                             cache_dir=self.cache_dir / "backbones", seed=0, dtype=dtype or self.spec.dtype or "auto",
                             random_init=self.spec.random_init and path_or_name is None)

    def generate(self, backbone: Any, examples: Sequence[Example], *, temperature: float = 0.0,
                 seed: int | None = None) -> dict[str, str]:
        """One completion per distinct prompt through the shared engine and rollout cache, mapped to example ids."""
        from bench.models.prompt_trim import trim_prompt
        from bench.models.rollout_cache import RolloutCache
        from bench.models.rollouts import make_engine
        from bench.models.sampling import SamplingSettings

        settings = SamplingSettings(max_new_tokens=self.spec.settings.max_new_tokens, temperature=temperature)
        unique: dict[str, Example] = {}
        for example in examples:
            unique.setdefault(example.prompt_key, example)
        prompts = [trim_prompt(backbone.tokenizer, example.prompt, self.spec.settings.max_prompt_tokens)
                   for example in unique.values()]
        engine = make_engine(self.spec.backend, backbone, batch_size=self.spec.settings.eval_batch_size,
                             cache=RolloutCache(self.cache_dir / "rollouts"), progress=self.progress)
        completions = engine.generate(prompts, settings, self.spec.seed if seed is None else seed)
        by_prompt = {key: texts[0] for key, texts in zip(unique, completions, strict=True)}
        return {example.id: by_prompt[example.prompt_key] for example in examples}
