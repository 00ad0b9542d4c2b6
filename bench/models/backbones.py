"""Backbones: CLI names (`bench.models.registry`) -> language models with their tokenizers, loaded the same way
for every method.

Four kinds of backbone:
- tiny ones (`tiny`, `tiny-m`), built locally from the task's text (see `bench.models.tiny`);
- `smollm2-135m`, a real instruct model whose 4-bit GGUF ships in a pip package, converted once into a plain
  checkpoint under the cache (see `bench.models.gguf`; installs offline);
- registered hub ones (`qwen2.5-0.5b`, ..., `llama3.1-8b`), loaded from the Hugging Face cache, never downloaded
  unless BENCH_ALLOW_DOWNLOAD=1 (offline first);
- any local model directory or hub id (a name containing '/').

Every backbone is loaded through `AutoModelForCausalLM` / `AutoTokenizer.from_pretrained` on a local directory,
the same directory `backbone_path` hands to trainers. `random_init=True` builds a registered real architecture at
its true size with random weights (for throughput and memory measurements without weights), with a stand-in
tokenizer: the tiny BPE tokenizer trained on the corpus, whose ids all fall inside the real vocabulary.
"""

import hashlib
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.errors import BenchError, UnknownNameError
from bench.models.gguf import ensure_converted, is_converted
from bench.models.registry import BackboneSpec, list_backbones, resolve_backbone
from bench.models.tiny import (
    FALLBACK_CORPUS,
    build_tokenizer,
    content_key,
    ensure_tiny,
    publish_dir,
    save_tokenizer,
    special_ids,
)

STANDIN_VOCAB_SIZE = 1000
"""Target vocabulary of the stand-in tokenizer used with `random_init` real architectures."""


@dataclass
class Backbone:
    """A loaded backbone. `path` is a directory `from_pretrained` can load (for `random_init`: config and
    tokenizer only, no weights); `fingerprint` identifies weights + tokenizer and keys the rollout cache."""

    spec: BackboneSpec
    model: Any
    tokenizer: Any
    path: Path
    fingerprint: str
    random_init: bool = False


_WEIGHT_SUFFIXES = (".safetensors", ".bin")
_HASH_WHOLE_FILE_BELOW = 8 << 20
_HASH_EDGE_BYTES = 1 << 20
_HASH_READ_BYTES = 8 << 20
"""Whole files are hashed in reads of this size, so a multi-GB checkpoint never sits in memory at once."""


def default_cache_dir() -> Path:
    """Where locally built backbones live: $BENCH_CACHE, else ~/.cache/bench."""
    return Path(os.environ.get("BENCH_CACHE") or Path.home() / ".cache" / "bench").expanduser()


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache as the environment says now (HF_HUB_CACHE, HF_HOME/hub, XDG, ~/.cache)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "huggingface" / "hub"


def backbone_path(
    name: str, *, corpus: Sequence[str] = (), cache_dir: Path | None = None, seed: int = 0
) -> Path:
    """A local directory loadable by `from_pretrained` (what trainers get): the tiny build (made if missing), the
    local directory, or the hub snapshot in the HF cache. Raises BenchError when real weights are absent."""
    spec = resolve_backbone(name)
    if spec.tiny is not None:
        return ensure_tiny(spec.tiny, corpus, seed, cache_dir or default_cache_dir())
    if spec.gguf is not None:
        return ensure_converted(spec.gguf, spec.name, cache_dir or default_cache_dir())
    assert spec.hf_id is not None
    local = Path(spec.hf_id)
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise BenchError(f"Backbone directory {local} has no config.json; it is not a Hugging Face model.")
        return local
    return _hub_snapshot(spec)


def load_backbone(
    name: str,
    *,
    corpus: Sequence[str] = (),
    cache_dir: Path | None = None,
    seed: int = 0,
    device: str = "auto",
    dtype: str = "auto",
    random_init: bool = False,
) -> Backbone:
    """Load a backbone by name onto `device` ("auto", "cpu", "cuda", "cuda:N", "meta") in `dtype` ("auto",
    "float32", "bfloat16", "float16"). "auto" picks CUDA when available, bf16 on CUDA, float32 on CPU."""
    spec = resolve_backbone(name)
    torch_device = _resolve_device(device)
    torch_dtype = _resolve_dtype(dtype, torch_device)
    if random_init and spec.tiny is None:
        return _load_random_init(spec, corpus, cache_dir or default_cache_dir(), seed, torch_device, torch_dtype)
    path = backbone_path(name, corpus=corpus, cache_dir=cache_dir, seed=seed)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    device_map = str(torch_device) if torch_device.type == "cuda" else None
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=torch_dtype, device_map=device_map, local_files_only=True
    )
    model.to(torch_device).eval()
    _ensure_padding(tokenizer)
    return Backbone(spec, model, tokenizer, path, fingerprint_dir(path))


def require_weights(name: str) -> None:
    """Raise a one-line BenchError when a real backbone's weights are absent, before any work and without building
    anything (tiny backbones are built on demand; a GGUF package only needs to be installed)."""
    spec = resolve_backbone(name)
    if spec.gguf is not None:
        spec.gguf.require(spec.name)
    elif spec.tiny is None:
        backbone_path(name)


def weights_status(spec: BackboneSpec, cache_dir: Path | None = None) -> tuple[str, str]:
    """(where a backbone's weights come from, whether they are present here) for `bench models`; offline."""
    cache = cache_dir or default_cache_dir() / "backbones"
    if spec.tiny is not None:
        return "built locally from the dataset's text (BPE tokenizer + random init)", "built on first use"
    if spec.gguf is not None:
        if spec.gguf.locate() is None:
            return spec.gguf.describe(), f"absent: {spec.gguf.install_command}"
        converted = is_converted(spec.gguf, spec.name, cache)
        return spec.gguf.describe(), "present (converted)" if converted else "present (converted on first use)"
    assert spec.hf_id is not None
    try:
        _hub_snapshot(spec, allow_download=False)
    except BenchError:
        return f"Hugging Face {spec.hf_id}", f"absent from {hf_hub_cache()} (hf download {spec.hf_id})"
    return f"Hugging Face {spec.hf_id}", "present"


def fingerprint_dir(path: Path, whole_files: bool = False) -> str:
    """A stable hash of a model directory's files: full content for small files (configs, tokenizer, tiny
    weights), and name, size and first/last MiB for large weight files (fast on multi-GB checkpoints, and stable
    under copying, unlike mtimes). `whole_files` hashes every byte of every file: the identity of trained weights
    (an SFT run's model and each RL run's start, in their summaries), where two trainings may differ only in
    rounding and the edges alone could miss it."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")):
        size = file.stat().st_size
        digest.update(f"{file.name}\x00{size}\x00".encode())
        with file.open("rb") as handle:
            if whole_files or size <= _HASH_WHOLE_FILE_BELOW:
                for block in iter(lambda: handle.read(_HASH_READ_BYTES), b""):
                    digest.update(block)
            else:
                digest.update(handle.read(_HASH_EDGE_BYTES))
                handle.seek(size - _HASH_EDGE_BYTES)
                digest.update(handle.read(_HASH_EDGE_BYTES))
    return digest.hexdigest()[:32]


def _hub_snapshot(spec: BackboneSpec, allow_download: bool = True) -> Path:
    """The cached snapshot directory of a hub model, checked to hold a config and weights, without network
    unless `allow_download` and BENCH_ALLOW_DOWNLOAD=1 (and HF_HUB_OFFLINE unset)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError

    assert spec.hf_id is not None
    cache = hf_hub_cache()
    online = allow_download and _env_flag("BENCH_ALLOW_DOWNLOAD") and not _env_flag("HF_HUB_OFFLINE")
    where = f"the Hugging Face cache {cache}" if spec.arch else f"a local directory or the Hugging Face cache {cache}"
    missing = (
        f"Backbone '{spec.name}': weights for {spec.hf_id} not found in {where}; set HF_HOME to a cache that has "
        f"them, pass a local model directory, or run `hf download {spec.hf_id}` "
        f"(or set BENCH_ALLOW_DOWNLOAD=1 to let bench download)."
    )
    try:
        snapshot = Path(
            snapshot_download(
                spec.hf_id,
                cache_dir=cache,
                local_files_only=not online,
                allow_patterns=["*.json", "*.safetensors", "*.jinja", "*.model", "*.txt", "tokenizer*"],
            )
        )
    except (LocalEntryNotFoundError, FileNotFoundError, HFValidationError):
        raise BenchError(missing) from None
    except (HfHubHTTPError, OSError) as error:
        raise BenchError(f"Backbone '{spec.name}': downloading {spec.hf_id} failed: {error}".splitlines()[0]) from None
    has_weights = any(p.name.endswith(_WEIGHT_SUFFIXES) for p in snapshot.iterdir())
    if not (snapshot / "config.json").is_file() or not has_weights:
        raise BenchError(missing)
    return snapshot


def _load_random_init(
    spec: BackboneSpec, corpus: Sequence[str], cache_dir: Path, seed: int, device: Any, dtype: Any
) -> Backbone:
    """A registered real architecture at true size with random weights, plus the stand-in tokenizer.

    Its directory holds config.json, generation_config.json and the tokenizer, no weights (vLLM can load it with
    `load_format="dummy"`). The tokenizer is loaded as `TokenizersBackend` directly: for `model_type: qwen2`,
    `AutoTokenizer` would substitute `Qwen2Tokenizer` and change the splitting.
    """
    if spec.arch is None:
        known = [s.name for s in list_backbones() if s.arch is not None]
        raise BenchError(f"random_init needs a registered real backbone ({', '.join(known)}), not '{spec.name}'.")
    import torch
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    path = _ensure_random_init_dir(spec, corpus, cache_dir)
    config = _read_config(path)
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.eval()
    tokenizer = PreTrainedTokenizerFast.from_pretrained(path)
    _ensure_padding(tokenizer)
    identity = f"random_init\x00{seed}\x00{device}\x00{dtype}\x00{fingerprint_dir(path)}"
    fingerprint = hashlib.sha256(identity.encode()).hexdigest()[:32]
    return Backbone(spec, model, tokenizer, path, fingerprint, random_init=True)


def _ensure_random_init_dir(spec: BackboneSpec, corpus: Sequence[str], cache_dir: Path) -> Path:
    """Build (once) the weightless directory of a random-init backbone: true config + stand-in tokenizer."""
    from transformers import GenerationConfig

    assert spec.arch is not None
    arch = spec.arch

    def build(staging: Path) -> None:
        tokenizer = build_tokenizer(corpus or FALLBACK_CORPUS, STANDIN_VOCAB_SIZE)
        ids = special_ids(tokenizer)
        save_tokenizer(tokenizer, staging, arch.max_position_embeddings)
        arch.to_hf_config(ids).save_pretrained(staging)
        GenerationConfig(
            bos_token_id=ids["bos"], eos_token_id=[ids["eot"], ids["pad"]], pad_token_id=ids["pad"]
        ).save_pretrained(staging)

    key = content_key({"arch": asdict(arch), "standin_vocab": STANDIN_VOCAB_SIZE}, corpus)
    return publish_dir(cache_dir / "random" / f"{spec.name}-{key}", build)


def _read_config(path: Path) -> Any:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(path, local_files_only=True)


def _env_flag(name: str) -> bool:
    """Whether an environment variable is set to a true value (1, true, yes, on)."""
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _ensure_padding(tokenizer: Any) -> None:
    """Left padding for batched generation; a pad token (falls back to EOS, as Llama ships none)."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token


def default_dtype() -> str:
    """The dtype name "auto" resolves to on this machine: bf16 (fp16 without bf16) on CUDA, float32 on CPU."""
    return str(_resolve_dtype("auto", _resolve_device("auto"))).removeprefix("torch.")


def _resolve_device(device: str) -> Any:
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise BenchError(f"Unknown device '{device}'; use auto, cpu, cuda, cuda:N or meta.") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise BenchError(f"Device '{device}' requested but CUDA is not available here; use --device cpu.")
    return resolved


def _resolve_dtype(dtype: str, device: Any) -> Any:
    import torch

    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    names = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype not in names:
        raise UnknownNameError("dtype", dtype, ["auto", *names])
    return names[dtype]
