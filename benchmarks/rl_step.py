"""`bench bench rl-step`: RL step time with TRL's own `generate`, with the shared engine (`algorithms.rollout_hook`)
and with the shared hook on vLLM (weights synced every step), side by side in one process on the same backbone,
prompts, reward and settings, and the share of each step spent generating.

Both paths train the same GRPO configuration from the same starting weights: the preset's G, prompts per step,
completion length, learning rate, KL beta and temperature (the `cpu-small` preset's by default), the real list reward
(`ListRewards`, NDCG@20 through the evaluator's matcher) and the first training prompts of the dataset, trimmed to the
preset's prompt budget. Sampled lengths differ between the paths and between steps, so every completion is forced to
the preset's `max_new_tokens` (`generation_kwargs={"min_new_tokens": N}`, which the hook maps to `ignore_eos`): both
then generate and train on the same number of tokens, and the ratio measures the generation path alone (as
`benchmarks.step_time.step_time_benchmark` does for the trainers). Rounds alternate which path goes first,
so that drift on a shared machine affects both alike; the warm-up steps (first packing, allocator growth) are not
counted. Generation time is the trainer's `_generate` call (tokenisation, sampling, decoding to text), timed by a
subclass of `GRPOTrainer`; step time is from step begin to step end (`StepTimer`).
"""

import tempfile
import time
from dataclasses import dataclass
from typing import Any

PATHS = ("trl", "engine", "vllm")
"""TRL's `generate`; the hook on the transformers engine; the hook on vLLM (`attach_vllm`, synced every step)."""


@dataclass(frozen=True)
class PathTimes:
    """Mean seconds per optimizer step and per generation of one path, over the timed steps."""

    path: str
    step_s: float
    generate_s: float

    @property
    def generate_share(self) -> float:
        return self.generate_s / self.step_s


def rl_step_times(model: str = "smollm2-135m", dataset_name: str = "redial", preset: str = "cpu-small", *,
                  steps: int = 2, warmup_steps: int = 1, repeats: int = 1,
                  paths: tuple[str, ...] = PATHS[:2]) -> dict[str, PathTimes]:
    """Time `warmup_steps + steps` GRPO steps per path and round (`repeats` rounds); see the module docstring."""
    from bench.errors import BenchError, UnknownNameError

    if steps < 1 or warmup_steps < 0 or repeats < 1:
        raise BenchError(f"--steps and --repeats must be at least 1 and --warmup-steps at least 0, got {steps}, "
                         f"{repeats} and {warmup_steps}.")
    for path in paths:
        if path not in PATHS:
            raise UnknownNameError("rl-step path", path, list(PATHS))
    from algorithms.rl import ListRewards, train_prompts
    from algorithms.rollout_hook import attach_vllm, rollout_kwargs
    from algorithms.training import device_arguments, quiet_console, quiet_trl_deprecations, rl_model_init_kwargs
    from bench.data.datasets import load_dataset
    from bench.models.backbones import default_cache_dir, load_backbone
    from bench.runs.presets import get_preset
    from benchmarks.step_time import StepTimer

    settings = get_preset(preset)
    dataset = load_dataset(dataset_name)
    backbone = load_backbone(model, corpus=dataset.corpus(), cache_dir=default_cache_dir() / "backbones")
    train = dataset.split("train")[: settings.prompts_per_step * (steps + warmup_steps)]
    prompts = train_prompts(train, backbone.tokenizer, settings.max_prompt_tokens)
    reward = ListRewards({example.id: example for example in train}, dataset.catalog)
    generate_seconds: dict[str, list[float]] = {path: [] for path in paths}
    step_seconds: dict[str, list[float]] = {path: [] for path in paths}
    for round_index in range(repeats):
        for path in paths if round_index % 2 == 0 else paths[::-1]:
            with tempfile.TemporaryDirectory() as output_dir:
                config = _config(output_dir, settings, steps + warmup_steps, rl_model_init_kwargs(),
                                 device_arguments())
                trainer = _timed_trainer(str(backbone.path), backbone.tokenizer, prompts, reward, config,
                                         rollout_kwargs("trl" if path == "trl" else "engine", model))
                if path == "vllm":
                    attach_vllm(trainer, backbone)
                timer = StepTimer()
                trainer.add_callback(timer)
                quiet_console(trainer)
                with quiet_trl_deprecations():
                    trainer.train()
            step_seconds[path].extend(timer.durations[warmup_steps:])
            generate_seconds[path].extend(trainer.generate_seconds[warmup_steps:])
    return {path: PathTimes(path, _mean(step_seconds[path]), _mean(generate_seconds[path])) for path in paths}


def _config(output_dir: str, settings: Any, max_steps: int, init_kwargs: dict[str, Any],
            device: dict[str, Any]) -> Any:
    """The GRPOConfig both paths train with (the preset's RL settings, fixed-length completions)."""
    from trl import GRPOConfig

    return GRPOConfig(output_dir=output_dir, max_steps=max_steps, learning_rate=settings.rl_lr,
                      per_device_train_batch_size=settings.prompts_per_step * settings.num_generations,
                      num_generations=settings.num_generations, max_completion_length=settings.max_new_tokens,
                      generation_kwargs={"min_new_tokens": settings.max_new_tokens}, temperature=settings.temperature,
                      beta=settings.beta, optim=settings.optim, logging_steps=1, seed=0, save_strategy="no",
                      lr_scheduler_type="constant", warmup_steps=0, **init_kwargs, **{**device, "report_to": "none"})


def _timed_trainer(model_path: str, tokenizer: Any, prompts: Any, reward: Any, config: Any,
                   generation: dict[str, Any]) -> Any:
    """A GRPOTrainer whose `_generate` calls are timed (`generate_seconds`, one entry per generation)."""
    from trl import GRPOTrainer

    class TimedGRPOTrainer(GRPOTrainer):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.generate_seconds: list[float] = []

        def _generate(self, prompts: list[Any]) -> Any:
            start = time.perf_counter()
            result = super()._generate(prompts)
            self.generate_seconds.append(time.perf_counter() - start)
            return result

    return TimedGRPOTrainer(model=model_path, reward_funcs=reward, args=config, train_dataset=prompts,
                            processing_class=tokenizer, **generation)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def format_rl_step(times: dict[str, PathTimes], model: str, preset: str) -> list[str]:
    """Lines for the terminal: one per path, then each later path's speedup over the first."""
    first, *others = times.values()
    lines = [f"{model}, preset {preset}, completions forced to the preset's max_new_tokens"]
    lines += [f"{t.path:<7} step {t.step_s:8.2f} s   generation {t.generate_s:8.2f} s   "
              f"({t.generate_share:.0%} of the step)" for t in times.values()]
    lines += [f"speedup ({first.path} / {t.path}): generation {first.generate_s / t.generate_s:.2f}x, "
              f"step {first.step_s / t.step_s:.2f}x" for t in others]
    return lines

