"""`released_engines` (bench.models.vllm_backend): a run shuts down the vLLM engines it started when it ends, all
together and only when no engine from before it is alive (shutting one down tears down vLLM's process-wide parallel
state under every other live engine), and holds them until then. vLLM is not needed: engines are stand-ins whose
collection is recorded, as vLLM's in-process client shuts its engine down from a finalizer."""

import gc
import weakref

import pytest

from bench.models import vllm_backend


class FakeLLM:
    """Stands in for a `vllm.LLM`; `shutdowns` lists the names of the collected ones."""

    shutdowns: list[str] = []

    def __init__(self, name: str) -> None:
        weakref.finalize(self, FakeLLM.shutdowns.append, name)


@pytest.fixture(autouse=True)
def fake_engines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vllm_backend, "build_llm",
                        lambda path, *args, **kwargs: vllm_backend._registered(FakeLLM(path)))
    monkeypatch.setattr(vllm_backend, "_SHARED", {})
    monkeypatch.setattr(vllm_backend, "_LIVE", weakref.WeakSet())
    monkeypatch.setattr(vllm_backend, "_HELD", [])
    monkeypatch.setattr(vllm_backend, "_KEPT", [])
    monkeypatch.setattr(FakeLLM, "shutdowns", [])


def shared(name: str) -> FakeLLM:
    return vllm_backend.shared_llm(name, "float32", 512, False, "weights")


def test_a_run_shuts_down_its_engines_together_at_its_end() -> None:
    with vllm_backend.released_engines():
        evaluation = shared("run-model")
        assert shared("run-model") is evaluation  # shared within the run
        unshared = vllm_backend.build_llm("rl-engine")  # an RL run's synced engine, dropped by its trainer
        del evaluation, unshared
        gc.collect()
        assert FakeLLM.shutdowns == []  # held until the run ends: nothing is torn down mid-run
    assert sorted(FakeLLM.shutdowns) == ["rl-engine", "run-model"] and vllm_backend._SHARED == {}


def test_runs_in_a_row_keep_no_earlier_engines() -> None:
    for run in range(3):
        with vllm_backend.released_engines():
            shared(f"model-{run}")
        assert len(vllm_backend._LIVE) == 0
    assert len(FakeLLM.shutdowns) == 3


def test_an_older_live_engine_keeps_the_runs_engines_alive() -> None:
    server = shared("server-model")
    with vllm_backend.released_engines():
        shared("run-model")
        vllm_backend.build_llm("rl-engine")
    gc.collect()
    assert FakeLLM.shutdowns == []  # shutting any down would break the server's engine
    assert shared("server-model") is server and "run-model" in {key[0] for key in vllm_backend._SHARED}


def test_engines_are_released_when_the_run_fails() -> None:
    with pytest.raises(RuntimeError), vllm_backend.released_engines():
        shared("run-model")
        raise RuntimeError("the run failed")
    assert FakeLLM.shutdowns == ["run-model"] and vllm_backend._SHARED == {}


def test_a_nested_run_releases_its_own_engines_before_the_outer_one_ends() -> None:
    with vllm_backend.released_engines():  # an RL run that first builds its SFT start
        with vllm_backend.released_engines():
            shared("sft-model")
        assert FakeLLM.shutdowns == ["sft-model"]
        shared("rl-model")
    assert FakeLLM.shutdowns == ["sft-model", "rl-model"]


def test_an_engine_still_referenced_after_its_run_is_kept_for_good() -> None:
    """Its later collection would tear vLLM's state down under whatever engine is live then."""
    with vllm_backend.released_engines():
        outliving = shared("run-model")
    assert FakeLLM.shutdowns == [] and vllm_backend._KEPT == [outliving]
    del outliving
    gc.collect()
    assert FakeLLM.shutdowns == []
