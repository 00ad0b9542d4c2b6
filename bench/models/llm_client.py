"""One small chat interface over a local backbone or an OpenAI-compatible endpoint, for multi-step LLM pipelines.

Why: CRAG (extract, reflect, recommend, rerank) and the Remap-Reflect-Adjust teacher and judge each ask an LLM
several different prompts per example. `ChatClient.chat(prompts, max_tokens)` answers a batch of chat prompts
greedily (temperature 0), one text per prompt, whatever the model is:

- `LocalChat`: a loaded backbone through the shared rollout engine (`bench.models.rollouts.make_engine`) behind the
  rollout cache, prompts trimmed to the token budget with `bench.models.prompt_trim`, exactly as `RunContext.generate`
  does for single-step methods (with a per-call `max_tokens`);
- `EndpointChat`: an `openai:<model>` endpoint through `bench.models.endpoint` (its retries, fail-fast errors and
  answer cache under `<cache_dir>/endpoint`), with usage summed over calls.

Identical prompts within a call are answered once. Inside a run a method builds its client from the run's
settings (`baselines.crag.client_for_run`); outside, `make_client`.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

from bench.models.endpoint import (
    ENDPOINT_PREFIX,
    Endpoint,
    EndpointClient,
    EndpointSettings,
    RequestSettings,
    Usage,
    answer_prompts,
    price_per_1m,
    resolve_endpoint,
)
from bench.models.rollout_cache import RolloutCache

Chat = Sequence[Mapping[str, str]]


class ChatClient(Protocol):
    """Answers chat prompts greedily: one text per prompt, in order. `usage()` is JSON-able request and token
    accounting (endpoints) or None (local backbones)."""

    @property
    def name(self) -> str: ...

    def chat(self, prompts: Sequence[Chat], max_tokens: int) -> list[str]: ...

    def usage(self) -> dict[str, Any] | None: ...


def _distinct(prompts: Sequence[Chat]) -> tuple[list[tuple[dict[str, str], ...]], list[int]]:
    """Distinct prompts (first-appearance order) and, per input prompt, the index of its distinct prompt."""
    index: dict[str, int] = {}
    distinct: list[tuple[dict[str, str], ...]] = []
    positions: list[int] = []
    for prompt in prompts:
        messages = tuple({"role": m.get("role", "user"), "content": m.get("content", "")} for m in prompt)
        key = "\x1e".join(f"{m['role']}\x1f{m['content']}" for m in messages)
        if key not in index:
            index[key] = len(distinct)
            distinct.append(messages)
        positions.append(index[key])
    return distinct, positions


@dataclass
class LocalChat:
    """A local backbone behind the shared engine and rollout cache (keyed by backbone fingerprint, prompt,
    sampling settings and seed), prompts trimmed to `max_prompt_tokens`."""

    backbone: Any
    cache_dir: Path
    max_prompt_tokens: int
    seed: int = 0
    backend: str = "transformers"
    batch_size: int = 8
    progress: bool = True

    @property
    def name(self) -> str:
        return str(self.backbone.spec.name)

    def chat(self, prompts: Sequence[Chat], max_tokens: int) -> list[str]:
        from bench.models.prompt_trim import trim_prompt
        from bench.models.rollouts import make_engine
        from bench.models.sampling import SamplingSettings

        distinct, positions = _distinct(prompts)
        trimmed = [trim_prompt(self.backbone.tokenizer, prompt, self.max_prompt_tokens) for prompt in distinct]
        engine = make_engine(self.backend, self.backbone, batch_size=self.batch_size,
                             cache=RolloutCache(self.cache_dir), progress=self.progress)
        completions = engine.generate(trimmed, SamplingSettings(max_new_tokens=max_tokens), self.seed)
        return [completions[position][0] for position in positions]

    def usage(self) -> dict[str, Any] | None:
        return None


@dataclass
class EndpointChat:
    """An OpenAI-compatible endpoint through `bench.models.endpoint`; one `EndpointClient` per call (a client stops
    after its batch), its usage added to `totals`."""

    endpoint: Endpoint
    cache_dir: Path
    seed: int = 0
    settings: EndpointSettings = field(default_factory=EndpointSettings.from_env)
    totals: Usage = field(default_factory=Usage)

    @property
    def name(self) -> str:
        return f"{ENDPOINT_PREFIX}{self.endpoint.model}"

    def chat(self, prompts: Sequence[Chat], max_tokens: int) -> list[str]:
        distinct, positions = _distinct(prompts)
        client = EndpointClient(self.endpoint, RequestSettings(max_tokens=max_tokens), self.seed, self.settings)
        try:
            answers = answer_prompts(client, RolloutCache(self.cache_dir), distinct)
        finally:
            for counter in fields(Usage):
                total = getattr(self.totals, counter.name) + getattr(client.usage, counter.name)
                setattr(self.totals, counter.name, total)
        return [answers[position] for position in positions]

    def usage(self) -> dict[str, Any] | None:
        return self.totals.to_json(self.endpoint, price_per_1m(self.endpoint.model), finished=True)


def make_client(model: str, *, cache_dir: Path, corpus: Sequence[str] = (), base_url: str | None = None,
                seed: int = 0, max_prompt_tokens: int = 1024, backend: str = "transformers", batch_size: int = 8,
                progress: bool = True) -> ChatClient:
    """A client for `model` outside a run: `openai:<model>` (with `base_url` or $OPENAI_BASE_URL), else a backbone
    name or path loaded as runs load it (tiny ones built from `corpus` under `cache_dir/backbones`, seed 0)."""
    if model.startswith(ENDPOINT_PREFIX):
        return EndpointChat(resolve_endpoint(model, base_url), cache_dir / "endpoint", seed)
    from bench.models.backbones import load_backbone

    backbone = load_backbone(model, corpus=corpus, cache_dir=cache_dir / "backbones", seed=0)
    return LocalChat(backbone, cache_dir / "rollouts", max_prompt_tokens, seed, backend, batch_size, progress)
