"""The vLLM rollout backend (CUDA only, optional `gpu` extra), written against vLLM's documented offline API:
`vllm.LLM(model=..., seed=..., dtype=..., gpu_memory_utilization=...)`,
`LLM.chat(messages, sampling_params=[SamplingParams(...)], use_tqdm=..., add_generation_prompt=True)` and, for RL
rollouts on token ids, `LLM.generate([{"prompt_token_ids": ids}], sampling_params=[...])` (`sample_tokens`).

vLLM is imported only when an engine is built. vLLM loads the model itself from `backbone.path`; the backbone's
transformers copy is not used, so load the backbone on CPU (or `device="meta"` with `random_init`) to leave GPU
memory to vLLM. Random-init backbones (a directory without weights) load with `load_format="dummy"`.
"""

from collections.abc import Sequence
from typing import Any

from bench.errors import BenchError
from bench.models.backbones import Backbone
from bench.models.sampling import Chat, SampledCompletion, SamplingSettings
from bench.models.sampling import batch_seed, check_context, prompt_token_ids, token_batch_seed

MISSING_VLLM = "backend 'vllm' needs the gpu extra: pip install 'bench[gpu]' (CUDA only)"


def import_vllm() -> Any:
    """The vllm module, or a one-line BenchError saying how to install it."""
    try:
        import vllm
    except ImportError:
        raise BenchError(MISSING_VLLM) from None
    return vllm


class VLLMEngine:
    """Rollouts with vLLM. Each prompt gets its own sampling seed (from the run seed, the prompt and the
    settings), so results do not depend on how prompts are batched. `batch_size` only sets how often the rollout
    cache stores results; vLLM schedules its own batches."""

    def __init__(
        self,
        backbone: Backbone,
        batch_size: int = 256,
        progress: bool = True,
        gpu_memory_utilization: float = 0.85,
        max_model_len: int | None = None,
    ) -> None:
        vllm = import_vllm()
        self.backbone = backbone
        self.batch_size = batch_size
        self.progress = progress
        self.fingerprint = backbone.fingerprint
        self.tokens_generated = 0
        self.context = max_model_len or int(backbone.model.config.max_position_embeddings)
        options: dict[str, Any] = {}
        if backbone.random_init:
            options["load_format"] = "dummy"
        self.llm = vllm.LLM(
            model=str(backbone.path),
            tokenizer=str(backbone.path),
            seed=0,
            dtype=_vllm_dtype(backbone),
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=self.context,
            **options,
        )

    def check_fits(self, prompts: Sequence[Chat], settings: SamplingSettings) -> None:
        lengths = [len(prompt_token_ids(self.backbone.tokenizer, prompt)) for prompt in prompts]
        check_context(lengths, settings, self.context, self.backbone.spec.name)

    def generate(self, prompts: Sequence[Chat], settings: SamplingSettings, seed: int) -> list[list[str]]:
        vllm = import_vllm()
        self.check_fits(prompts, settings)
        n = 1 if settings.greedy else settings.num_return_sequences
        params = [
            vllm.SamplingParams(
                n=n,
                temperature=settings.temperature,
                top_p=settings.top_p,
                max_tokens=settings.max_new_tokens,
                seed=batch_seed(seed, [prompt], settings),
                ignore_eos=settings.ignore_eos,
                skip_special_tokens=True,
            )
            for prompt in prompts
        ]
        messages = [[dict(m) for m in prompt] for prompt in prompts]
        outputs = self.llm.chat(messages, sampling_params=params, use_tqdm=self.progress, add_generation_prompt=True)
        results: list[list[str]] = []
        for output in outputs:
            texts = [completion.text for completion in output.outputs]
            self.tokens_generated += sum(len(completion.token_ids) for completion in output.outputs)
            results.append(texts * settings.num_return_sequences if settings.greedy else texts)
        return results


def sample_tokens(llm: Any, prompt_ids: Sequence[Sequence[int]], settings: SamplingSettings, seed: int,
                  eos_ids: Sequence[int]) -> list[list[SampledCompletion]]:
    """`settings.num_return_sequences` completions per token-id prompt from a `vllm.LLM` (TRL's colocated one in
    RL training), each with the log-prob of every sampled token, the engine's token-level result
    (`TransformersEngine.generate_tokens`).

    One request per prompt with `n` samples, so vLLM prefills it once; seeded per prompt from `seed`; `eos_ids`
    stop a completion and stay in its tokens (`stop_token_ids`); `logprobs=0` returns the sampled token's
    log-prob, processed (after temperature and top-k/top-p) when the engine runs with
    `logprobs_mode="processed_logprobs"`, as TRL starts it. top_k 0 means no top-k filter in vLLM as in TRL's
    config (trl/generation/vllm_generation.py passes it through unchanged).
    """
    vllm = import_vllm()
    params = [
        vllm.SamplingParams(
            n=settings.num_return_sequences,
            temperature=settings.temperature,
            top_p=settings.top_p,
            top_k=settings.top_k,
            max_tokens=settings.max_new_tokens,
            min_tokens=settings.max_new_tokens if settings.ignore_eos else 0,
            stop_token_ids=list(eos_ids),
            seed=token_batch_seed(seed, [ids], settings),
            logprobs=0,
        )
        for ids in prompt_ids
    ]
    outputs = llm.generate([{"prompt_token_ids": list(ids)} for ids in prompt_ids], sampling_params=params,
                           use_tqdm=False)
    return [[SampledCompletion(list(sample.token_ids),
                               [step[token].logprob for token, step in zip(sample.token_ids, sample.logprobs,
                                                                          strict=True)])
             for sample in output.outputs]
            for output in outputs]


def grpo_vllm_kwargs(gpu_memory_utilization: float = 0.3, max_model_length: int | None = None) -> dict[str, Any]:
    """GRPOConfig keyword arguments (TRL 1.16 field names) that make TRL generate with vLLM inside the training
    process ("colocate" mode: no separate server; vLLM shares the GPU, taking `gpu_memory_utilization` of it)."""
    kwargs: dict[str, Any] = {
        "use_vllm": True,
        "vllm_mode": "colocate",
        "vllm_gpu_memory_utilization": gpu_memory_utilization,
    }
    if max_model_length is not None:
        kwargs["vllm_max_model_length"] = max_model_length
    return kwargs


def _vllm_dtype(backbone: Backbone) -> str:
    """vLLM's dtype: the config's own ("auto") for saved models; the in-memory dtype for random-init ones,
    whose weightless config carries none."""
    if backbone.random_init:
        return str(backbone.model.dtype).removeprefix("torch.")
    return "auto"
