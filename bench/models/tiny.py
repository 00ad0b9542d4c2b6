"""Locally built tiny backbones: a BPE tokenizer trained on the task's own text plus a randomly initialised Llama.

Weights cannot be downloaded here, so tests and fast experiments use models built from (TinyConfig, corpus, seed).
The build is deterministic and cached under `cache_dir/tiny/<name>-<hash>/` in Hugging Face format, and the caller
always loads it back through `AutoModelForCausalLM` / `AutoTokenizer.from_pretrained`, the same path as real models.

Two facts the rest of the suite relies on (DESIGN.md):
- "\\n" is always its own single token (Rank-GRPO maps tokens to list lines by finding newline tokens);
- the saved tokenizer reloads through `AutoTokenizer` as the same class with the same ids. `tokenizer_class` is
  pinned to `TokenizersBackend`, and the architecture is Llama rather than Qwen2: for `model_type: qwen2`,
  transformers 5 overrides the declared class with `Qwen2Tokenizer`, which rebuilds its own pre-tokenizer and
  splits text differently (the prototype's silent RL breakage). Llama and Qwen2 blocks differ only by Qwen2's
  q/k/v biases, which do not matter for a randomly initialised stand-in.
"""

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.models.numerics import weight_jitter

PAD_TOKEN = "<|endoftext|>"
BOS_TOKEN = "<|im_start|>"
EOT_TOKEN = "<|im_end|>"
SPECIAL_TOKENS = (PAD_TOKEN, BOS_TOKEN, EOT_TOKEN)

CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
"""ChatML, as Qwen uses it: system/user/assistant turns, each closed by the end-of-turn token `<|im_end|>`."""

FALLBACK_CORPUS = (
    "Recommend ten movies, one per line, as Title (Year).\n"
    "I loved The Matrix (1999) and Alien (1979); something like those, please.\n"
    "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 .,:;!?'\"()-&\n",
)
"""Used when no corpus is given, so that a tokenizer can always be trained (byte fallback covers the rest)."""

BUILD_FORMAT = 1
"""Bumped when the build procedure changes, so that stale cached builds are not reused."""

@dataclass(frozen=True)
class TinyConfig:
    """Shape of a tiny Llama-architecture backbone. `vocab_size` is a target: the trained vocabulary may be
    smaller on a small corpus, and the model's embedding matrix takes the tokenizer's actual size (no unreachable
    ids, so a random model never emits a token that decodes to nothing)."""

    name: str
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: int = 4096
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = True


def build_key(config: TinyConfig, corpus: Sequence[str], seed: int) -> str:
    """A short hash of everything that determines the build: config, corpus texts (in order), seed, format, and the
    weight jitter when one is asked for (`BENCH_TINY_JITTER`, `bench.models.numerics`)."""
    settings: dict[str, Any] = {"config": asdict(config), "seed": seed}
    jitter = weight_jitter()
    if jitter is not None:
        settings["jitter"] = list(jitter)
    return content_key(settings, corpus)


def content_key(settings: dict[str, Any], corpus: Sequence[str]) -> str:
    """A short hash of JSON-able settings, the corpus texts (in order) and the build format."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"settings": settings, "format": BUILD_FORMAT}, sort_keys=True).encode())
    for text in corpus:
        digest.update(b"\x00" + text.encode("utf-8"))
    return digest.hexdigest()[:16]


def tiny_dir(config: TinyConfig, corpus: Sequence[str], seed: int, cache_dir: Path) -> Path:
    """Where the build for these inputs lives (whether or not it exists yet)."""
    return cache_dir / "tiny" / f"{config.name}-{build_key(config, corpus, seed)}"


def ensure_tiny(config: TinyConfig, corpus: Sequence[str], seed: int, cache_dir: Path) -> Path:
    """Return the directory of the tiny backbone, building it first if missing."""

    def build(staging: Path) -> None:
        tokenizer = build_tokenizer(corpus or FALLBACK_CORPUS, config.vocab_size)
        save_tokenizer(tokenizer, staging, config.max_position_embeddings)
        model = build_model(config, vocab_size=tokenizer.get_vocab_size(), seed=seed, token_ids=special_ids(tokenizer))
        model.save_pretrained(staging)

    return publish_dir(tiny_dir(config, corpus, seed, cache_dir), build)


def publish_dir(target: Path, build: Callable[[Path], None]) -> Path:
    """Return `target` if it holds a config.json; else run `build` on a temporary sibling directory and rename it
    into place, so that a crashed or concurrent build never leaves a half-written model at the final path."""
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        build(staging)
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / "config.json").is_file():
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def build_tokenizer(corpus: Iterable[str], vocab_size: int) -> Any:
    """Train a byte-level BPE `tokenizers.Tokenizer` on the corpus.

    Pre-tokenization first isolates every "\\n" as its own piece, so that no merge can ever join a newline with
    another character; byte-level encoding then guarantees every input is representable (no unknown tokens).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split("\n", behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(list(corpus), trainer=trainer)
    return tokenizer


def special_ids(tokenizer: Any) -> dict[str, int]:
    """Ids of the pad, start-of-turn and end-of-turn tokens in a trained `tokenizers.Tokenizer`."""
    return {
        "pad": tokenizer.token_to_id(PAD_TOKEN),
        "bos": tokenizer.token_to_id(BOS_TOKEN),
        "eot": tokenizer.token_to_id(EOT_TOKEN),
    }


def save_tokenizer(tokenizer: Any, directory: Path, model_max_length: int) -> None:
    """Save a trained tokenizer in Hugging Face format with the chat template, pinned to `TokenizersBackend`."""
    from transformers import PreTrainedTokenizerFast

    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=None,
        eos_token=EOT_TOKEN,
        pad_token=PAD_TOKEN,
        unk_token=None,
        model_max_length=model_max_length,
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )
    wrapped.chat_template = CHAT_TEMPLATE
    wrapped.save_pretrained(directory)
    config_path = directory / "tokenizer_config.json"
    tokenizer_config = json.loads(config_path.read_text())
    tokenizer_config["tokenizer_class"] = "TokenizersBackend"
    config_path.write_text(json.dumps(tokenizer_config, indent=2, sort_keys=True))


def build_model(config: TinyConfig, *, vocab_size: int, seed: int, token_ids: dict[str, int]) -> Any:
    """A randomly initialised `LlamaForCausalLM` (float32) with end-of-turn and pad as generation EOS ids; its weights
    jittered when `BENCH_TINY_JITTER` asks for it (`bench.models.numerics`)."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    model_config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_kv_heads,
        max_position_embeddings=config.max_position_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": config.rope_theta},
        tie_word_embeddings=config.tie_word_embeddings,
        bos_token_id=token_ids["bos"],
        eos_token_id=token_ids["eot"],
        pad_token_id=token_ids["pad"],
        dtype="float32",
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(model_config)
    jitter = weight_jitter()
    if jitter is not None:
        generator = torch.Generator().manual_seed(jitter[1])
        with torch.no_grad():
            for parameter in model.parameters():
                noise = torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype)
                parameter.mul_(1.0 + jitter[0] * noise)
    model.generation_config = GenerationConfig(
        bos_token_id=token_ids["bos"],
        eos_token_id=[token_ids["eot"], token_ids["pad"]],
        pad_token_id=token_ids["pad"],
    )
    return model
