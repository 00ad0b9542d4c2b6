"""CUDA checks: the transformers engine on GPU, a true-size random-init backbone's throughput, and vLLM (when
installed). Skipped without CUDA; the vLLM ones also without vLLM."""

import json
from pathlib import Path

import pytest

from bench.models.backbones import Backbone, load_backbone
from bench.models.rollout_cache import RolloutCache
from bench.models.rollouts import make_engine, measure_throughput
from bench.models.sampling import SamplingSettings

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]

CORPUS = [
    f"I liked Movie {i} ({1950 + i % 70}).\nRecommend ten titles, one per line, as Title (Year)."
    for i in range(80)
]
PROMPTS = [[{"role": "user", "content": f"I liked Movie {i} (1999). More?"}] for i in range(16)]


def _vllm_available() -> bool:
    try:
        import vllm  # noqa: F401
    except ImportError:
        return False
    return True


needs_vllm = pytest.mark.skipif(not _vllm_available(), reason="needs vLLM (pip install 'bench[gpu]')")


@pytest.fixture(scope="module")
def tiny_cuda(tmp_path_factory: pytest.TempPathFactory) -> Backbone:
    return load_backbone("tiny", corpus=CORPUS, cache_dir=tmp_path_factory.mktemp("cache"), device="cuda")


def test_transformers_engine_on_cuda_is_seeded(tiny_cuda: Backbone) -> None:
    assert tiny_cuda.model.device.type == "cuda"
    engine = make_engine("transformers", tiny_cuda, batch_size=8, progress=False)
    settings = SamplingSettings(max_new_tokens=24, temperature=1.0, num_return_sequences=4)
    first = engine.generate(PROMPTS, settings, seed=5)
    assert engine.generate(PROMPTS, settings, seed=5) == first
    assert [len(c) for c in first] == [4] * len(PROMPTS)


def test_random_init_qwen_0_5b_throughput(tmp_path: Path) -> None:
    backbone = load_backbone("qwen2.5-0.5b", corpus=CORPUS, cache_dir=tmp_path, device="cuda", random_init=True)
    assert backbone.model.dtype in (torch.bfloat16, torch.float16)
    settings = SamplingSettings(max_new_tokens=128, temperature=1.0, ignore_eos=True)
    report = measure_throughput(backbone, "transformers", n_prompts=32, settings=settings, batch_size=16)
    print(json.dumps(report))
    assert report["new_tokens"] == 32 * 128
    assert report["tokens_per_s"] > 0 and report["peak_memory_gib"] > 0.9


@needs_vllm
def test_vllm_engine_on_tiny_is_seeded_and_cached(tmp_path: Path) -> None:
    backbone = load_backbone("tiny", corpus=CORPUS, cache_dir=tmp_path / "models", device="cpu")
    engine = make_engine("vllm", backbone, batch_size=8, cache=RolloutCache(tmp_path / "rollouts"), progress=False)
    settings = SamplingSettings(max_new_tokens=24, temperature=1.0, num_return_sequences=2)
    first = engine.generate(PROMPTS, settings, seed=1)
    assert [len(c) for c in first] == [2] * len(PROMPTS)
    tokens = engine.tokens_generated
    assert engine.generate(PROMPTS, settings, seed=1) == first
    assert engine.tokens_generated == tokens


@needs_vllm
def test_vllm_random_init_qwen_0_5b_throughput(tmp_path: Path) -> None:
    backbone = load_backbone(
        "qwen2.5-0.5b", corpus=CORPUS, cache_dir=tmp_path, device="meta", dtype="bfloat16", random_init=True
    )
    settings = SamplingSettings(max_new_tokens=128, temperature=1.0, ignore_eos=True)
    report = measure_throughput(backbone, "vllm", n_prompts=64, settings=settings, batch_size=64)
    print(json.dumps(report))
    assert report["new_tokens"] == 64 * 128 and report["tokens_per_s"] > 0
