"""`released_engines`: a run drops the shared vLLM engines it started (and their memory), keeps the ones started
before it, and shares an engine within itself. vLLM is not needed: the engine builder is replaced."""

import weakref

import pytest

from bench.models import vllm_backend


class FakeLLM:
    """Stands in for a `vllm.LLM`."""


@pytest.fixture
def fake_engines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vllm_backend, "build_llm", lambda *args, **kwargs: FakeLLM())
    monkeypatch.setattr(vllm_backend, "_SHARED", {})


def test_a_run_releases_the_engines_it_started_and_keeps_older_ones(fake_engines: None) -> None:
    older = vllm_backend.shared_llm("server-model", "float32", 512, False, "weights-a")
    with vllm_backend.released_engines():
        engine = vllm_backend.shared_llm("run-model", "float32", 512, False, "weights-b")
        assert vllm_backend.shared_llm("run-model", "float32", 512, False, "weights-b") is engine
        freed = weakref.ref(engine)
        del engine
    assert freed() is None
    assert list(vllm_backend._SHARED.values()) == [older]
    assert vllm_backend.shared_llm("server-model", "float32", 512, False, "weights-a") is older


def test_engines_are_released_when_the_run_fails(fake_engines: None) -> None:
    with pytest.raises(RuntimeError), vllm_backend.released_engines():
        vllm_backend.shared_llm("run-model", "float32", 512, False, "weights-b")
        raise RuntimeError("the run failed")
    assert vllm_backend._SHARED == {}
