"""Backbone registry, offline weight lookup, random-init architectures (on the meta device) and fingerprints."""

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bench.errors import BenchError, UnknownNameError
from bench.models.backbones import (
    backbone_path,
    fingerprint_dir,
    list_backbones,
    load_backbone,
    resolve_backbone,
)

REAL = {
    "qwen2.5-0.5b": "Qwen/Qwen2.5-0.5B-Instruct",
    "qwen2.5-1.5b": "Qwen/Qwen2.5-1.5B-Instruct",
    "llama3.2-1b": "meta-llama/Llama-3.2-1B-Instruct",
    "llama3.2-3b": "meta-llama/Llama-3.2-3B-Instruct",
    "llama3.1-8b": "meta-llama/Llama-3.1-8B-Instruct",
}

PUBLISHED_PARAMETER_COUNTS = {
    "qwen2.5-0.5b": 494_032_768,
    "qwen2.5-1.5b": 1_543_714_304,
    "llama3.2-1b": 1_235_814_400,
    "llama3.2-3b": 3_212_749_824,
    "llama3.1-8b": 8_030_261_248,
}


@pytest.fixture
def offline_empty_hf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face home, offline."""
    home = tmp_path / "hf"
    home.mkdir()
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("BENCH_ALLOW_DOWNLOAD", raising=False)
    return home


def test_registry_lists_tiny_and_real_backbones() -> None:
    specs = {spec.name: spec for spec in list_backbones()}
    assert set(specs) == {"tiny", "tiny-m", "smollm2-135m", *REAL}
    assert specs["tiny"].tiny is not None and specs["tiny"].hf_id is None
    smol = specs["smollm2-135m"]
    assert smol.gguf is not None and smol.hf_id is None and smol.tiny is None and smol.arch is not None
    for name, hf_id in REAL.items():
        assert specs[name].hf_id == hf_id and specs[name].arch is not None and specs[name].tiny is None


def test_unknown_name_suggests_the_closest() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'qwen2.5-0.5b'"):
        resolve_backbone("qwen2.5-05b")


def test_local_directory_and_hub_id_are_accepted(tmp_path: Path) -> None:
    assert resolve_backbone(str(tmp_path)).hf_id == str(tmp_path)
    assert resolve_backbone("someone/some-model").hf_id == "someone/some-model"


def test_missing_real_weights_fail_fast_with_one_line(offline_empty_hf: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Fast means without touching the network (not timed: a busy machine is slow at anything): every name lookup
    and connection attempt is recorded and refused."""
    attempts: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(args)
        raise OSError("the test refuses network access")

    for owner, name in ((socket, "getaddrinfo"), (socket.socket, "connect"), (socket.socket, "connect_ex")):
        monkeypatch.setattr(owner, name, refuse)
    with pytest.raises(BenchError) as caught:
        load_backbone("qwen2.5-0.5b")
    assert attempts == [], "the weight lookup must not wait on the network"
    message = str(caught.value)
    assert "\n" not in message
    assert "Qwen/Qwen2.5-0.5B-Instruct" in message and "HF_HOME" in message
    assert str(offline_empty_hf / "hub") in message


def test_missing_hub_id_names_it(offline_empty_hf: Path) -> None:
    with pytest.raises(BenchError, match="someone/missing-model"):
        backbone_path("someone/missing-model")


def test_missing_local_checkpoint_path_is_a_user_error(offline_empty_hf: Path) -> None:
    with pytest.raises(BenchError, match="runs/x/checkpoint-10"):
        backbone_path("runs/x/checkpoint-10")


def _fake_snapshot(home: Path, repo_id: str, files: dict[str, bytes]) -> Path:
    """A hub-cache layout (refs/main -> snapshots/<commit>/...) as `hf download` leaves it."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = home / "hub" / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name, content in files.items():
        (snapshot / name).write_bytes(content)
    return snapshot


def test_cached_hub_snapshot_is_found_offline(offline_empty_hf: Path) -> None:
    snapshot = _fake_snapshot(
        offline_empty_hf, "Qwen/Qwen2.5-0.5B-Instruct", {"config.json": b"{}", "model.safetensors": b"x"}
    )
    assert backbone_path("qwen2.5-0.5b") == snapshot


def test_snapshot_without_weights_counts_as_missing(offline_empty_hf: Path) -> None:
    _fake_snapshot(offline_empty_hf, "Qwen/Qwen2.5-0.5B-Instruct", {"config.json": b"{}"})
    with pytest.raises(BenchError, match="not found"):
        backbone_path("qwen2.5-0.5b")


def test_local_directory_without_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="no config.json"):
        backbone_path(str(tmp_path))


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMETER_COUNTS))
def test_random_init_builds_the_true_architecture(name: str, tmp_path: Path) -> None:
    backbone = load_backbone(name, cache_dir=tmp_path, device="meta", random_init=True)
    assert backbone.random_init
    assert sum(p.numel() for p in backbone.model.parameters()) == PUBLISHED_PARAMETER_COUNTS[name]
    assert max(backbone.tokenizer.get_vocab().values()) < backbone.model.config.vocab_size
    assert not any(p.name.endswith(".safetensors") for p in backbone.path.iterdir())


def test_random_init_config_numbers_match_qwen_0_5b(tmp_path: Path) -> None:
    config = load_backbone("qwen2.5-0.5b", cache_dir=tmp_path, device="meta", random_init=True).model.config
    assert config.model_type == "qwen2"
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (896, 24, 14)
    assert (config.num_key_value_heads, config.intermediate_size, config.vocab_size) == (2, 4864, 151936)
    assert config.max_position_embeddings == 32768 and config.tie_word_embeddings
    assert config.rope_parameters["rope_theta"] == 1_000_000.0


def test_random_init_of_a_hub_id_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="random_init needs a registered"):
        load_backbone("someone/model", cache_dir=tmp_path, device="meta", random_init=True)


def test_bad_dtype_and_device_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UnknownNameError, match="dtype"):
        load_backbone("tiny", cache_dir=tmp_path, dtype="float8")
    with pytest.raises(BenchError, match="Unknown device"):
        load_backbone("tiny", cache_dir=tmp_path, device="tpu-ish")


def test_fingerprint_follows_content(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"a": 1}))
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * (9 << 20))
    first = fingerprint_dir(tmp_path)
    assert fingerprint_dir(tmp_path) == first
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * (9 << 20) + b"\x01")
    assert fingerprint_dir(tmp_path) != first


def test_whole_file_fingerprint_sees_a_change_the_edges_miss(tmp_path: Path) -> None:
    """A 9 MiB weight file changed only in its middle byte: the fast fingerprint (first and last MiB) is blind to
    it, the whole-file one (trained weights' identity) is not."""
    weights = bytearray(9 << 20)
    (tmp_path / "model.safetensors").write_bytes(bytes(weights))
    fast, whole = fingerprint_dir(tmp_path), fingerprint_dir(tmp_path, whole_files=True)
    weights[len(weights) // 2] = 1
    (tmp_path / "model.safetensors").write_bytes(bytes(weights))
    assert fingerprint_dir(tmp_path) == fast
    assert fingerprint_dir(tmp_path, whole_files=True) != whole


def test_importing_the_modules_is_cheap() -> None:
    code = (
        "import sys, bench.models.backbones, bench.models.rollouts, bench.models.rollout_cache, bench.models.vllm_backend, bench.models.tiny;"
        "heavy = [m for m in ('torch', 'transformers', 'tokenizers', 'vllm') if m in sys.modules];"
        "print(heavy)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
