"""One rollout engine for training-time validation, evaluation and throughput benchmarks.

An engine turns chat prompts into completion texts (special tokens stripped) under `SamplingSettings` and a seed.
`TransformersEngine` runs `model.generate` in batches on any device; `bench.models.vllm_backend.VLLMEngine` runs vLLM
(CPU or CUDA). `make_engine` picks one by name and, given a `RolloutCache`, wraps it so that cached prompts are not
regenerated and new completions are stored batch by batch (an interrupted run resumes where it stopped), keyed by the
engine's `producer` (engine, version, dtype), so one engine's completions are never served as another's.
"""

import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any, Protocol

from bench.errors import BenchError, UnknownNameError
from bench.models.backbones import Backbone
from bench.models.rollout_cache import RolloutCache
from bench.models.sampling import (
    Chat,
    SampledCompletion,
    SamplingSettings,
    batch_seed,
    check_context,
    eos_token_ids,
    producer,
    prompt_token_ids,
    token_batch_seed,
)
from bench.models.token_sampling import SampledLogprobs, sampled_warpers, shared_prefill

BACKENDS = ("transformers", "vllm")


class RolloutEngine(Protocol):
    """Generates completions for chat prompts.

    `generate` returns, for each prompt, `settings.num_return_sequences` completion texts; `producer` names the
    engine, its version and its dtype (`bench.models.sampling.producer`), part of every cache key. `check_fits` raises a
    BenchError naming the first prompt (by index) that cannot fit the model's context with `max_new_tokens`.
    `batch_size` is how many prompts one call handles at a time (the cache stores results at that granularity);
    `tokens_generated` counts new tokens over the engine's life (for throughput numbers).
    """

    fingerprint: str
    producer: str
    batch_size: int

    @property
    def tokens_generated(self) -> int: ...

    def check_fits(self, prompts: Sequence[Chat], settings: SamplingSettings) -> None: ...

    def generate(self, prompts: Sequence[Chat], settings: SamplingSettings, seed: int) -> list[list[str]]: ...


class TransformersEngine:
    """Batched `model.generate` with left padding and KV cache, greedy or sampled (on CPU in float32, with
    oneDNN linear layers and a preallocated cache: `bench.models.cpu_decoding`).

    Two entry points. `generate` takes chat prompts, renders them with the tokenizer's chat template
    (add_generation_prompt) and returns texts; `generate_tokens` takes prompts already rendered as token ids and
    returns tokens with their log-probs (RL rollouts, `algorithms.rollout_hook`). Prompts are processed in their
    given order, `batch_size` at a time. Each batch samples under `torch.manual_seed(<batch seed>)` inside a forked
    RNG state, so results are reproducible and the caller's RNG stream is untouched. The same prompt can give
    slightly different greedy text in a batch of different composition (padding changes float rounding).
    `live=True` is for a model that trains between calls (validation, RL rollouts): every call decodes its weights as
    they are then (`bench.models.cpu_decoding.forget_packed`), whatever optimizer changed them.

    Sampling applies exactly the logits warpers `model.generate` would build for the same settings, in its order
    (temperature, top-k, top-p: `GenerationMixin._get_logits_processor`, transformers 5.23), but passed as an
    explicit processor list so that a last processor can read the log-probs of the distribution each token is drawn
    from; the draws themselves (`torch.multinomial` under the same RNG state) are unchanged.
    """

    def __init__(self, backbone: Backbone, batch_size: int = 8, progress: bool = True, live: bool = False) -> None:
        if batch_size < 1:
            raise BenchError(f"batch_size must be at least 1, got {batch_size}.")
        if backbone.tokenizer.chat_template is None:
            raise BenchError(f"Backbone '{backbone.spec.name}' has no chat template; use an instruct/chat model.")
        self.backbone = backbone
        self.batch_size = batch_size
        self.progress = progress
        self.live = live
        self.fingerprint = backbone.fingerprint
        self.tokens_generated = 0
        self.context = int(backbone.model.config.max_position_embeddings)

    @property
    def producer(self) -> str:
        """transformers, its version and the model's dtype (read per call: a caller may cast the model)."""
        import transformers

        return producer("transformers", transformers.__version__, self.backbone.model.dtype)

    def check_fits(self, prompts: Sequence[Chat], settings: SamplingSettings) -> None:
        lengths = [len(prompt_token_ids(self.backbone.tokenizer, prompt)) for prompt in prompts]
        check_context(lengths, settings, self.context, self.backbone.spec.name)

    def generate(self, prompts: Sequence[Chat], settings: SamplingSettings, seed: int) -> list[list[str]]:
        from tqdm.auto import tqdm

        encoded = [prompt_token_ids(self.backbone.tokenizer, prompt) for prompt in prompts]
        check_context([len(ids) for ids in encoded], settings, self.context, self.backbone.spec.name)
        self._refresh_weights()
        results: list[list[str]] = []
        with tqdm(total=len(prompts), desc="generating", unit="prompt", disable=not self.progress, leave=False) as bar:
            for start in range(0, len(prompts), self.batch_size):
                batch = prompts[start : start + self.batch_size]
                ids = encoded[start : start + self.batch_size]
                results.extend(self._generate_batch(ids, settings, batch_seed(seed, batch, settings)))
                bar.update(len(batch))
        return results

    def generate_tokens(self, prompt_ids: Sequence[Sequence[int]], settings: SamplingSettings, seed: int,
                        eos_ids: Sequence[int] | None = None) -> list[list[SampledCompletion]]:
        """`settings.num_return_sequences` completions per prompt ([prompt_len] token ids, already rendered), with
        their log-probs; `eos_ids` (default: the generation config's) end a completion.

        The copies of a prompt share one prefill: the batch's distinct prompts run through the model once (all but
        their last token), the KV cache is repeated per copy, and `generate` continues from it, so a group of G
        completions costs one prompt's prefill, not G (`model.generate`'s `num_return_sequences` expands the inputs
        before the prefill). Each batch of `batch_size` prompts is seeded by `token_batch_seed(seed, ...)`.
        """
        lengths = [len(ids) for ids in prompt_ids]
        check_context(lengths, settings, self.context, self.backbone.spec.name)
        eos = list(eos_ids) if eos_ids is not None else self._eos_ids()
        self._refresh_weights()
        results: list[list[SampledCompletion]] = []
        for start in range(0, len(prompt_ids), self.batch_size):
            batch = [list(ids) for ids in prompt_ids[start : start + self.batch_size]]
            recorder = SampledLogprobs()
            new_tokens = self._sample(batch, settings, token_batch_seed(seed, batch, settings), eos,
                                      share_prefill=True, recorder=recorder)
            rows = new_tokens.tolist()
            completions = []
            for row, row_logprobs in zip(rows, recorder.finish(new_tokens).tolist(), strict=True):
                end = self._count(row, eos)
                completions.append(SampledCompletion(row[:end], row_logprobs[:end]))
            copies = len(rows) // len(batch)
            for index in range(len(batch)):
                group = completions[index * copies : (index + 1) * copies]
                results.append(group * settings.num_return_sequences if copies == 1 else group)
        return results

    def _refresh_weights(self) -> None:
        """For a live model, forget the packed weights of the previous call (see `live`)."""
        if self.live:
            from bench.models.cpu_decoding import forget_packed

            forget_packed(self.backbone.model)

    def _generate_batch(self, batch_ids: list[list[int]], settings: SamplingSettings, seed: int) -> list[list[str]]:
        """Generate for one batch of token-id prompts; returns texts grouped per prompt."""
        eos_ids = self._eos_ids()
        rows = self._sample(batch_ids, settings, seed, eos_ids, share_prefill=False, recorder=None).tolist()
        copies = len(rows) // len(batch_ids)
        texts: list[list[str]] = []
        for prompt_index in range(len(batch_ids)):
            group = rows[prompt_index * copies : (prompt_index + 1) * copies]
            completions = [self._decode(row, eos_ids) for row in group]
            texts.append(completions * settings.num_return_sequences if copies == 1 else completions)
        return texts

    def _sample(self, batch_ids: list[list[int]], settings: SamplingSettings, seed: int, eos_ids: list[int],
                share_prefill: bool, recorder: SampledLogprobs | None) -> Any:
        """One `model.generate` call for a batch of token-id prompts, left-padded: the new tokens of every row,
        [batch x copies, new] (copies of a prompt adjacent, padded after EOS; one copy when greedy). A `recorder`
        runs last in the logits processors and keeps the log-probs of the drawn tokens (`SampledLogprobs.finish`);
        evaluation passes none and pays no log-softmax per step."""
        import torch
        from transformers import LogitsProcessorList

        from bench.models.cpu_decoding import cpu_decoding

        model = self.backbone.model
        pad_id = self.backbone.tokenizer.pad_token_id
        width = max(len(ids) for ids in batch_ids)
        input_ids = torch.tensor([[pad_id] * (width - len(ids)) + ids for ids in batch_ids], device=model.device)
        attention_mask = torch.tensor(
            [[0] * (width - len(ids)) + [1] * len(ids) for ids in batch_ids], device=model.device
        )
        copies = 1 if settings.greedy else settings.num_return_sequences
        processors = sampled_warpers(settings) + ([recorder] if recorder is not None else [])
        devices = [model.device.index or 0] if model.device.type == "cuda" else []
        with (torch.random.fork_rng(devices=devices), torch.inference_mode(),
              cpu_decoding(model, width + settings.max_new_tokens) as cpu_kwargs):
            torch.manual_seed(seed)
            kwargs = dict(cpu_kwargs)
            returns = copies
            if share_prefill and copies > 1 and width > 1:
                kwargs["past_key_values"] = shared_prefill(model, input_ids, attention_mask, copies,
                                                           kwargs.get("past_key_values"))
                input_ids = input_ids.repeat_interleave(copies, dim=0)
                attention_mask = attention_mask.repeat_interleave(copies, dim=0)
                returns = 1
            output = model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                generation_config=self._generation_config(settings, returns, eos_ids, pad_id),
                logits_processor=LogitsProcessorList(processors),
                **kwargs,
            )
        return output[:, width:]

    def _count(self, row: list[int], eos_ids: list[int]) -> int:
        """Length of a generated row up to and including its first EOS (padding after it excluded); counted in
        `tokens_generated`."""
        end = next((i + 1 for i, token in enumerate(row) if token in eos_ids), len(row))
        self.tokens_generated += end
        return end

    def _decode(self, row: list[int], eos_ids: list[int]) -> str:
        """Text of one generated row before its first EOS (special tokens stripped); counts the generated tokens."""
        end = self._count(row, eos_ids)
        body = row[: end - 1] if row[end - 1] in eos_ids else row[:end]
        return self.backbone.tokenizer.decode(body, skip_special_tokens=True)

    def _eos_ids(self) -> list[int]:
        return eos_token_ids(self.backbone.model, self.backbone.tokenizer)

    @staticmethod
    def _generation_config(settings: SamplingSettings, copies: int, eos_ids: list[int], pad_id: int) -> Any:
        """Explicit settings, so that a model's shipped sampling defaults (top_k, repetition penalty) never leak
        in and the transformers and vLLM backends sample the same distribution. Sampling sets every warper to
        "off" here (temperature 1, top-k 0, top-p 1): the warpers come as explicit processors (`sampled_warpers`)."""
        from transformers import GenerationConfig

        sampling: dict[str, Any] = {"do_sample": False}
        if not settings.greedy:
            sampling = {"do_sample": True, "temperature": 1.0, "top_p": 1.0, "top_k": 0}
        return GenerationConfig(
            max_new_tokens=settings.max_new_tokens,
            min_new_tokens=settings.max_new_tokens if settings.ignore_eos else None,
            num_return_sequences=copies,
            repetition_penalty=1.0,
            eos_token_id=eos_ids,
            pad_token_id=pad_id,
            **sampling,
        )


class CachedEngine:
    """An engine behind a `RolloutCache`: cached prompts are read, the rest generated `batch_size` prompts at a
    time and stored after each batch. Missing prompts are batched in order of length (ties in their given order):
    a batch of similar lengths wastes little compute on left padding, and the order depends only on the prompts. All prompts are checked against the context first, so that an error names
    the caller's prompt index and comes before any work."""

    def __init__(self, engine: RolloutEngine, cache: RolloutCache, progress: bool = True) -> None:
        self.engine = engine
        self.cache = cache
        self.progress = progress
        self.fingerprint = engine.fingerprint
        self.producer = engine.producer
        self.batch_size = engine.batch_size

    @property
    def tokens_generated(self) -> int:
        return self.engine.tokens_generated

    def check_fits(self, prompts: Sequence[Chat], settings: SamplingSettings) -> None:
        self.engine.check_fits(prompts, settings)

    def generate(self, prompts: Sequence[Chat], settings: SamplingSettings, seed: int) -> list[list[str]]:
        """Greedy decoding ignores the seed, so greedy entries are shared by runs of every seed (key seed 0)."""
        from tqdm.auto import tqdm

        self.engine.check_fits(prompts, settings)
        seed = 0 if settings.greedy else seed
        results: list[list[str] | None] = [self.cache.get(self.fingerprint, self.producer, p, settings, seed)
                                           for p in prompts]
        missing = sorted((i for i, cached in enumerate(results) if cached is None), key=lambda i: _length(prompts[i]))
        with tqdm(total=len(missing), desc="generating", unit="prompt", disable=not self.progress or not missing,
                  leave=False) as bar:
            for start in range(0, len(missing), self.batch_size):
                indices = missing[start : start + self.batch_size]
                batch = [prompts[i] for i in indices]
                for index, completions in zip(indices, self.engine.generate(batch, settings, seed), strict=True):
                    self.cache.put(self.fingerprint, self.producer, prompts[index], settings, seed,
                                   completions)
                    results[index] = completions
                bar.update(len(batch))
        return [completions for completions in results if completions is not None]


def _length(prompt: Chat) -> int:
    """Characters of a chat's contents: a tokenizer-free proxy of its token length, for batching by length."""
    return sum(len(str(message.get("content", ""))) for message in prompt)


def make_engine(
    backend: str,
    backbone: Backbone,
    *,
    batch_size: int = 8,
    cache: RolloutCache | None = None,
    progress: bool = True,
) -> RolloutEngine:
    """The engine named `backend` ("transformers" or "vllm") for a loaded backbone, behind `cache` if given."""
    engine: RolloutEngine
    inner_progress = progress and cache is None
    if backend == "transformers":
        engine = TransformersEngine(backbone, batch_size=batch_size, progress=inner_progress)
    elif backend == "vllm":
        from bench.models.vllm_backend import VLLMEngine

        engine = VLLMEngine(backbone, batch_size=batch_size, progress=inner_progress)
    else:
        raise UnknownNameError("rollout backend", backend, list(BACKENDS))
    return CachedEngine(engine, cache, progress) if cache is not None else engine


def throughput_prompts(n_prompts: int) -> list[list[dict[str, str]]]:
    """Synthetic recommendation requests of varied length, for throughput measurements."""
    system = "You recommend movies. Answer with 20 titles, one per line, as Title (Year)."
    return [
        [
            {"role": "system", "content": system},
            {"role": "user", "content": f"I watched Movie {i} (19{50 + i % 50}) and liked it. " * (1 + i % 4)},
        ]
        for i in range(n_prompts)
    ]


def measure_throughput(
    backbone: Backbone, backend: str, n_prompts: int, settings: SamplingSettings, batch_size: int,
    warmup: bool = True,
) -> dict[str, Any]:
    """Time generation for `n_prompts` synthetic prompts (after a one-batch warm-up unless `warmup` is False,
    uncached, no progress bar).

    Returns backend, backbone, device, counts, wall seconds, new tokens per second, completions (examples) per
    second, and peak CUDA memory in GiB (transformers on CUDA only: vLLM preallocates its own pool in another
    process, so its peak is None here).
    """
    import torch

    engine = make_engine(backend, backbone, batch_size=batch_size, progress=False)
    prompts = throughput_prompts(n_prompts)
    engine.check_fits(prompts, settings)
    if warmup:
        engine.generate(prompts[: min(batch_size, n_prompts)], settings, seed=-1)
    device = backbone.model.device
    on_cuda = backend == "transformers" and device.type == "cuda"
    if on_cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    tokens_before = engine.tokens_generated
    start = time.perf_counter()
    engine.generate(prompts, settings, seed=0)
    if on_cuda:
        torch.cuda.synchronize(device)
    wall = time.perf_counter() - start
    tokens = engine.tokens_generated - tokens_before
    completions = n_prompts * settings.num_return_sequences
    return {
        "backend": backend,
        "backbone": backbone.spec.name,
        "random_init": backbone.random_init,
        "device": _device_name(backend, device),
        "dtype": str(backbone.model.dtype).removeprefix("torch."),
        "n_prompts": n_prompts,
        "batch_size": batch_size,
        "settings": asdict(settings),
        "completions": completions,
        "new_tokens": tokens,
        "wall_s": wall,
        "tokens_per_s": tokens / wall if wall > 0 else 0.0,
        "examples_per_s": completions / wall if wall > 0 else 0.0,
        "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if on_cuda else None,
    }


def _device_name(backend: str, device: Any) -> str:
    """A readable device: the GPU name for CUDA runs (vLLM always runs on CUDA), else the torch device."""
    import torch

    if device.type == "cuda" or (backend == "vllm" and torch.cuda.is_available()):
        return torch.cuda.get_device_name(device if device.type == "cuda" else 0)
    return str(device)
