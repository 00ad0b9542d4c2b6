"""RL training rollouts through the shared engine, for GRPO, GSPO and Rank-GRPO alike: TRL's supported hook for
custom generation, `GRPOTrainer(rollout_func=...)` (trl 1.16, documented at the `rollout_func` argument and called
in `GRPOTrainer._generate`), not a fork of the trainer.

What TRL hands the hook and what it must give back (trl/trainer/grpo_trainer.py, 1.16):
- `prompts`: this process's slice of the generation batch. `RepeatSampler(mini_repeat_count=num_generations)`
  (`GRPOTrainer._get_train_sampler`) has already repeated every prompt G times, consecutively, and the rewards are
  computed row by row against `inputs`, so the hook returns one completion per row (the docstring's "no
  duplication" means the hook receives no further copies). `distinct_prompts` checks the layout.
- `prompt_ids`: the rows' prompt tokens. They come from TRL's own `_tokenize_prompts` (chat template, tools and
  template kwargs as the trainer sets them), so the loss sees exactly the prompt TRL's path would have fed it.
- `completion_ids`: up to and including the first EOS of `trainer.eos_token_ids`, at most
  `max_completion_length` tokens (what `_generate_single_turn` keeps after masking everything past the first EOS).
- `logprobs`: the log-probability of each sampled token under the distribution it was drawn from, after
  temperature and top-k/top-p ("processed" log-probs, as TRL's vLLM path returns them); TRL uses them for the vLLM
  importance-sampling correction.

How the completions are made:
- **Current weights, every call.** The trainer's model (accelerate-unwrapped with TRL's own
  `unwrap_model_for_generation`, which also gathers ZeRO-3 shards; a `PeftModel` under LoRA, so the adapters
  apply) is wrapped in a `Backbone` and decoded by `TransformersEngine.generate_tokens`, in eval mode, restored
  after. No copy of the policy exists: on CPU the engine (`live=True`) repacks its oneDNN weights on every call, as
  an optimizer step may change them in place without a version bump (`bench.models.cpu_decoding`).
- **One prefill per distinct prompt.** The G copies of a prompt go to the engine as one prompt with G return
  sequences, sharing one prefill.
- **Sampling settings from the trainer's config**, which `algorithms.rl.rl_config` builds from spec.json:
  temperature, top-p, top-k, `max_completion_length`, and `generation_kwargs={"min_new_tokens":
  max_completion_length}` (fixed-length timings). Anything else that changes TRL's sampling distribution (min-p,
  a repetition penalty, other generation kwargs) is refused with a one-line error rather than silently dropped.
- **Seeded per step:** from the run's seed, `trainer.state.global_step` and the process index, so a resumed run
  samples what the uninterrupted run would have sampled at the same step.
- **vLLM** (`--backend vllm`, CPU and CUDA alike): the suite's own `VLLMEngine` in the policy's dtype, attached by
  `attach_vllm` where TRL keeps its colocated vLLM (`trainer.vllm_generation`). TRL then does what it does for its
  own: calls `sync_weights()` once per optimizer step before the hook (`GRPOTrainer._generate`), and, since
  `use_vllm` is on, applies its importance-sampling correction with the hook's log-probs and logs it
  (`sampling/importance_sampling_ratio/*`, `sampling/sampling_logp_difference/*`). TRL's own colocated `LLM`
  is not used: it passes no dtype (vLLM then runs a float32 policy in bf16) and its `load_weights` sync fails on CPU
  (`bench.models.vllm_backend`).
"""

import time
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.models.sampling import SampledCompletion, SamplingSettings, derived_seed

ROLLOUT_SECONDS_KEY = "rollout/seconds"
"""The metric the hook adds to TRL's logs each generation: wall seconds of sampling (both backends)."""


class EngineRollouts:
    """`rollout_func(prompts, trainer) -> {"prompt_ids", "completion_ids", "logprobs"}` through the shared
    engine. `backbone_name` names the backbone in error messages (the registry name or path of the run's model)."""

    def __init__(self, backbone_name: str) -> None:
        self.backbone_name = backbone_name

    def __call__(self, prompts: list[Any], trainer: Any) -> dict[str, list[Any]]:
        mode = "train" if trainer.model.training else "eval"
        group = trainer.num_generations if mode == "train" else trainer.num_generations_eval
        prompt_ids, images, _ = trainer._tokenize_prompts(prompts)
        if images is not None:
            raise BenchError("the shared rollout engine generates text only; prompts with images need "
                             "rl_rollouts 'trl'")
        distinct = distinct_prompts(prompt_ids, group)
        settings = rollout_settings(trainer.args, group)
        seed = step_seed(trainer.args.seed, trainer.state.global_step, trainer.accelerator.process_index)
        start = time.perf_counter()
        if trainer.use_vllm:
            groups = self._sample_vllm(trainer, distinct, settings, seed)
        else:
            groups = self._sample_engine(trainer, distinct, settings, seed)
        trainer._metrics[mode][ROLLOUT_SECONDS_KEY].append(time.perf_counter() - start)
        completions = [completion for copies in groups for completion in copies]
        return {"prompt_ids": [list(ids) for ids in prompt_ids],
                "completion_ids": [completion.token_ids for completion in completions],
                "logprobs": [completion.logprobs for completion in completions]}

    def _sample_engine(self, trainer: Any, distinct: list[list[int]], settings: SamplingSettings,
                       seed: int) -> list[list[SampledCompletion]]:
        """The shared transformers engine on the trainer's current model, all distinct prompts in one batch (as
        TRL generates the whole batch at once)."""
        from trl.models.utils import unwrap_model_for_generation

        from bench.models.backbones import Backbone
        from bench.models.registry import resolve_backbone
        from bench.models.rollouts import TransformersEngine

        with unwrap_model_for_generation(trainer.model_wrapped, trainer.accelerator,
                                         gather_deepspeed3_params=trainer.args.ds3_gather_for_generation) as model:
            was_training = model.training
            model.eval()
            try:
                backbone = Backbone(resolve_backbone(self.backbone_name), model, trainer.processing_class,
                                    Path("."), "in-training")
                engine = TransformersEngine(backbone, batch_size=len(distinct), progress=False, live=True)
                return engine.generate_tokens(distinct, settings, seed, trainer.eos_token_ids)
            finally:
                if was_training:
                    model.train()

    @staticmethod
    def _sample_vllm(trainer: Any, distinct: list[list[int]], settings: SamplingSettings,
                     seed: int) -> list[list[SampledCompletion]]:
        """The attached `SyncedVLLM` (weights synced by TRL's call to `sync_weights` before the hook), one request
        of G samples per distinct prompt. TRL's own vLLM (`use_vllm=True` in the config) is refused: see the module
        docstring."""
        if not isinstance(trainer.vllm_generation, SyncedVLLM):
            raise BenchError("RL rollouts through vLLM use the suite's engine (--backend vllm); TRL's own colocated "
                             "vLLM (use_vllm=True) runs in bf16 and cannot sync weights on CPU")
        return trainer.vllm_generation.engine.generate_tokens(distinct, settings, seed, trainer.eos_token_ids)


class SyncedVLLM:
    """The suite's `VLLMEngine` in the place of TRL's `VLLMGeneration` (`trainer.vllm_generation`): what
    `GRPOTrainer._generate` asks of it when a `rollout_func` generates (trl 1.16) is `sync_weights()`, once per
    optimizer step; `llm` is there for TRL's colocate checks. `syncs` counts the syncs."""

    def __init__(self, engine: Any, trainer: Any) -> None:
        self.engine = engine
        self.trainer = trainer
        self.syncs = 0

    @property
    def llm(self) -> Any:
        return self.engine.llm

    def sync_weights(self) -> None:
        """Copy the trainer's current weights into vLLM (`VLLMEngine.sync_weights`): the model unwrapped as for
        generation (TRL's `unwrap_model_for_generation`, which also gathers ZeRO-3 shards)."""
        from trl.models.utils import unwrap_model_for_generation

        trainer = self.trainer
        with unwrap_model_for_generation(trainer.model_wrapped, trainer.accelerator,
                                         gather_deepspeed3_params=trainer.args.ds3_gather_for_generation) as model:
            if hasattr(model, "peft_config"):
                raise BenchError("--backend vllm with LoRA is not supported yet: vLLM would need the merged "
                                 "weights each step; use --backend transformers")
            self.engine.sync_weights(list(model.named_parameters()))
        self.syncs += 1


def attach_vllm(trainer: Any, backbone: Any) -> SyncedVLLM:
    """Make `trainer` (built with `use_vllm=False`, so TRL starts no vLLM of its own) roll out through a new,
    unshared `VLLMEngine` of `backbone` (the RL start: its directory and dtype, which is the policy's unless the
    spec chose another) with TRL's colocated-vLLM behaviour: weight sync before each step's rollouts, and the
    importance-sampling correction of the policy's log-probs against the engine's (`vllm_importance_sampling_*`
    in the config; TRL's defaults: sequence-level, masked above a ratio of 3). On CUDA vLLM takes 30% of the GPU's
    memory, TRL's colocate default (`vllm_gpu_memory_utilization`), leaving the rest to training."""
    from bench.models.vllm_backend import VLLMEngine

    engine = VLLMEngine(backbone, progress=False, shared=False,
                        gpu_memory_utilization=trainer.args.vllm_gpu_memory_utilization)
    synced = SyncedVLLM(engine, trainer)
    trainer.vllm_generation = synced
    trainer.use_vllm = True
    trainer.vllm_mode = "colocate"
    trainer._last_loaded_step = -1  # TRL's marker: sync before the first generation of every step
    return synced


def distinct_prompts(prompt_ids: list[list[int]], group: int) -> list[list[int]]:
    """The distinct prompts of a batch laid out as TRL's RepeatSampler lays it out: consecutive blocks of `group`
    identical prompts ([rows] -> [rows / group]). Anything else is an error: one completion per row must still
    line up with TRL's rows, and grouping copies would not."""
    if group < 1 or len(prompt_ids) % group != 0:
        raise ValueError(f"{len(prompt_ids)} prompts do not form groups of {group} (TRL's RepeatSampler layout)")
    blocks = [prompt_ids[start : start + group] for start in range(0, len(prompt_ids), group)]
    for index, block in enumerate(blocks):
        if any(list(ids) != list(block[0]) for ids in block):
            raise ValueError(f"prompt group {index} is not {group} copies of one prompt (TRL's RepeatSampler "
                             "repeats each prompt num_generations times, consecutively)")
    return [list(block[0]) for block in blocks]


def rollout_settings(args: Any, group: int) -> SamplingSettings:
    """The sampling settings of a GRPOConfig, for `group` completions per prompt; BenchError for a setting that
    changes TRL's sampling distribution and that the engine does not apply."""
    extra = dict(args.generation_kwargs or {})
    forced = extra.pop("min_new_tokens", None)
    unsupported = [name for name, is_set in (("min_p", args.min_p not in (None, 0.0)),
                                             ("repetition_penalty", args.repetition_penalty != 1.0),
                                             *((f"generation_kwargs[{key!r}]", True) for key in extra),
                                             ("min_new_tokens below max_completion_length",
                                              forced not in (None, args.max_completion_length)))
                   if is_set]
    if unsupported:
        raise BenchError(f"the shared rollout engine samples with temperature, top_p and top_k only; "
                         f"{', '.join(unsupported)} needs rl_rollouts 'trl'")
    return SamplingSettings(max_new_tokens=args.max_completion_length, temperature=args.temperature,
                            top_p=args.top_p, top_k=args.top_k or 0, num_return_sequences=group,
                            ignore_eos=forced is not None)


def step_seed(seed: int, global_step: int, process_index: int) -> int:
    """The sampling seed of one generation: a function of the run's seed, the optimizer step and the process only,
    so a resumed run samples what the uninterrupted one did at the same step, and processes sample differently."""
    return derived_seed("rl-rollouts", seed, global_step, process_index)


def rollout_kwargs(rl_rollouts: str | None, backbone_name: str) -> dict[str, Any]:
    """Trainer keyword arguments for a run's generation path: `rollout_func` for the shared engine ("engine"),
    none for TRL's own `generate` ("trl", and specs written before the field existed)."""
    return {"rollout_func": EngineRollouts(backbone_name)} if rl_rollouts == "engine" else {}
