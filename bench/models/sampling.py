"""What both rollout engines (transformers and vLLM) share: the chat prompt type, the sampling settings, the
per-batch seed, prompt tokenisation with the chat template, the end-of-turn ids, the context-length check, the
token-level result (`SampledCompletion`) and the name of what produced a completion (`producer`)."""

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from bench.errors import BenchError

Chat = Sequence[Mapping[str, str]]
"""A chat prompt: messages with 'role' and 'content'."""

@dataclass(frozen=True)
class SamplingSettings:
    """How completions are sampled. temperature 0 means greedy (then all return sequences are identical).
    `top_k` 0 and `top_p` 1 filter nothing (TRL's GRPOConfig defaults). `ignore_eos` forces exactly
    `max_new_tokens` tokens (throughput measurements, fixed-length step timings)."""

    max_new_tokens: int = 400
    temperature: float = 0.0
    top_p: float = 1.0
    num_return_sequences: int = 1
    ignore_eos: bool = False
    top_k: int = 0

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise BenchError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}.")
        if self.temperature < 0:
            raise BenchError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}.")
        if not 0 < self.top_p <= 1:
            raise BenchError(f"top_p must be in (0, 1], got {self.top_p}.")
        if self.num_return_sequences < 1:
            raise BenchError(f"num_return_sequences must be at least 1, got {self.num_return_sequences}.")
        if self.top_k < 0:
            raise BenchError(f"top_k must be >= 0 (0 = no top-k filter), got {self.top_k}.")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def key(self) -> str:
        """A stable string of all fields, for cache keys. `top_k` is left out while 0 (no filter), so the keys and
        seeds of settings written before it existed do not move."""
        fields = asdict(self)
        if self.top_k == 0:
            del fields["top_k"]
        return json.dumps(fields, sort_keys=True)


@dataclass(frozen=True)
class SampledCompletion:
    """One completion as tokens (`TransformersEngine.generate_tokens`, `VLLMEngine.generate_tokens`): `token_ids`
    [n], up to and including the first EOS (no EOS when cut at `max_new_tokens`), and `logprobs` [n], each token's
    log-probability under the distribution it was drawn from, after temperature, top-k and top-p (the "processed"
    log-probs TRL's vLLM path returns: `logprobs_mode="processed_logprobs"` in trl/generation/vllm_generation.py)."""

    token_ids: list[int]
    logprobs: list[float]


def batch_seed(seed: int, prompts: Sequence[Chat], settings: SamplingSettings) -> int:
    """A 63-bit seed from the run seed, the batch's prompts and the settings: the same batch always samples the
    same way, whatever ran before it."""
    return derived_seed(seed, [[dict(m) for m in p] for p in prompts], settings.key())


def token_batch_seed(seed: int, prompt_ids: Sequence[Sequence[int]], settings: SamplingSettings) -> int:
    """`batch_seed` for prompts given as token ids (the engine's token-level API)."""
    return derived_seed(seed, [list(ids) for ids in prompt_ids], settings.key())


def derived_seed(*parts: Any) -> int:
    """A 63-bit seed hashed from JSON-serialisable parts (SHA-256 of their JSON): stable across processes and
    Python versions, unlike `hash()`."""
    payload = json.dumps(list(parts), sort_keys=True)
    return int.from_bytes(hashlib.sha256(payload.encode("utf-8")).digest()[:8], "big") >> 1


def prompt_token_ids(tokenizer: Any, prompt: Chat) -> list[int]:
    """Token ids of a chat prompt rendered with the chat template for generation: shape [prompt_len]."""
    text = tokenizer.apply_chat_template([dict(m) for m in prompt], add_generation_prompt=True, tokenize=False)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def check_context(lengths: Sequence[int], settings: SamplingSettings, context: int, backbone_name: str) -> None:
    """Raise a BenchError naming the first prompt whose length plus `max_new_tokens` exceeds the context."""
    for index, length in enumerate(lengths):
        if length + settings.max_new_tokens > context:
            raise BenchError(
                f"Prompt {index} has {length} tokens; with max_new_tokens={settings.max_new_tokens} it exceeds the "
                f"{context}-token context of backbone '{backbone_name}' (shorten the prompt or lower "
                f"max_new_tokens)."
            )


def eos_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """The ids that end a completion: the generation config's EOS ids (end-of-turn included), else the tokenizer's
    EOS. Both engines stop on exactly these, so their completions end alike."""
    configured = model.generation_config.eos_token_id
    if configured is None:
        configured = tokenizer.eos_token_id
    return [configured] if isinstance(configured, int) else list(configured)


def producer(engine: str, version: str, dtype: Any) -> str:
    """What produced a completion, for the rollout cache key: the engine, its version and the dtype it ran in
    ("transformers 5.19.0 float32", "vllm 0.32.0 bfloat16"). Completions of different producers differ (vLLM's
    kernels round differently; bf16 changes greedy text), so none is ever served as another's."""
    return f"{engine} {version} {str(dtype).removeprefix('torch.')}"
