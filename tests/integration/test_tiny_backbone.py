"""Tiny backbones: deterministic build, exact tokenizer round trip through AutoTokenizer, newline tokens, chat
template and end-of-turn EOS."""

from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.models.backbones import backbone_path, load_backbone
from bench.models.tiny import EOT_TOKEN, PAD_TOKEN, build_tokenizer, ensure_tiny, tiny_dir

CORPUS = [
    f"I loved Movie {i} ({1950 + i % 70}) and The Film Number {i * 7 % 100} ({1980 + i % 40}).\n"
    f"Any ideas?\n\n1. Amélie ({2001 + i % 3})\n2. Léon: The Professional (1994)\n"
    "3. Crouching Tiger 卧虎藏龙 (2000)"
    for i in range(120)
]

SAMPLES = [
    "1. The Matrix (1999)\n2. Heat (1995)\n\n3. Alien (1979)\n",
    "Amélie (2001) — naïve café, 卧虎藏龙 🎬\r\n  indented\n\n\n",
    "I liked Movie 12 (1962)!!\nWhat else?",
    "   leading spaces and trailing   \n",
    "<|im_start|>user\nhi<|im_end|>\n",
]


@pytest.fixture(scope="module")
def tiny_dir_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return backbone_path("tiny", corpus=CORPUS, cache_dir=tmp_path_factory.mktemp("cache"), seed=0)


@pytest.fixture(scope="module")
def tokenizer(tiny_dir_path: Path):  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_dir_path)


def test_reloaded_tokenizer_matches_the_trained_one(tokenizer) -> None:  # type: ignore[no-untyped-def]
    from bench.models.backbones import resolve_backbone

    config = resolve_backbone("tiny").tiny
    assert config is not None
    trained = build_tokenizer(CORPUS, config.vocab_size)
    assert type(tokenizer).__name__ == "TokenizersBackend"
    for text in SAMPLES + CORPUS[:5]:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert ids == trained.encode(text).ids
        assert tokenizer.decode(ids) == text


def test_newline_is_always_its_own_token(tokenizer) -> None:  # type: ignore[no-untyped-def]
    newline = tokenizer.convert_tokens_to_ids("Ċ")
    assert tokenizer("\n", add_special_tokens=False)["input_ids"] == [newline]
    assert tokenizer("\n\n\n", add_special_tokens=False)["input_ids"] == [newline] * 3
    assert [token for token in tokenizer.get_vocab() if "Ċ" in token] == ["Ċ"]
    for text in SAMPLES + CORPUS[:20]:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert ids.count(newline) == text.count("\n")
        pieces = [tokenizer.decode([i]) for i in ids]
        assert all(piece == "\n" or "\n" not in piece for piece in pieces)


def test_chat_template_and_end_of_turn_eos(tiny_dir_path: Path, tokenizer) -> None:  # type: ignore[no-untyped-def]
    from transformers import GenerationConfig

    messages = [
        {"role": "system", "content": "You recommend movies."},
        {"role": "user", "content": "I liked Heat (1995)."},
        {"role": "assistant", "content": "Ronin (1998)"},
        {"role": "user", "content": "More?"},
    ]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text.startswith("<|im_start|>system\nYou recommend movies.<|im_end|>\n")
    assert text.endswith("<|im_start|>user\nMore?<|im_end|>\n<|im_start|>assistant\n")
    assert not tokenizer.apply_chat_template(messages, tokenize=False).endswith("assistant\n")
    end_of_turn = tokenizer.convert_tokens_to_ids(EOT_TOKEN)
    assert tokenizer.eos_token == EOT_TOKEN and tokenizer.pad_token == PAD_TOKEN
    assert tokenizer(EOT_TOKEN, add_special_tokens=False)["input_ids"] == [end_of_turn]
    assert end_of_turn in GenerationConfig.from_pretrained(tiny_dir_path).eos_token_id


def test_build_is_deterministic_and_cached(tmp_path: Path, tiny_dir_path: Path) -> None:
    again = backbone_path("tiny", corpus=CORPUS, cache_dir=tmp_path, seed=0)
    assert again.name == tiny_dir_path.name
    for file in tiny_dir_path.iterdir():
        assert (again / file.name).read_bytes() == file.read_bytes(), file.name
    stamp = (again / "model.safetensors").stat().st_mtime_ns
    assert backbone_path("tiny", corpus=CORPUS, cache_dir=tmp_path, seed=0) == again
    assert (again / "model.safetensors").stat().st_mtime_ns == stamp
    assert [p.name for p in again.parent.iterdir()] == [again.name]
    assert backbone_path("tiny", corpus=CORPUS, cache_dir=tmp_path, seed=1) != again


def test_loaded_through_from_pretrained(tiny_dir_path: Path) -> None:
    backbone = load_backbone("tiny", corpus=CORPUS, cache_dir=tiny_dir_path.parent.parent, device="cpu")
    assert backbone.path == tiny_dir_path
    assert type(backbone.model).__name__ == "LlamaForCausalLM"
    assert backbone.model.config.max_position_embeddings >= 4096
    assert backbone.model.config.vocab_size == len(backbone.tokenizer)
    assert 100_000 < sum(p.numel() for p in backbone.model.parameters()) < 1_000_000
    assert len(backbone.fingerprint) == 32
    again = load_backbone("tiny", corpus=CORPUS, cache_dir=tiny_dir_path.parent.parent, device="cpu")
    assert again.fingerprint == backbone.fingerprint


def test_tiny_m_has_a_few_million_parameters(tmp_path: Path) -> None:
    backbone = load_backbone("tiny-m", corpus=CORPUS, cache_dir=tmp_path, device="cpu")
    assert 2_000_000 < sum(p.numel() for p in backbone.model.parameters()) < 10_000_000


def test_empty_corpus_still_builds(tmp_path: Path) -> None:
    from bench.models.backbones import resolve_backbone

    config = resolve_backbone("tiny").tiny
    assert config is not None
    path = ensure_tiny(config, (), 0, tmp_path)
    assert path == tiny_dir(config, (), 0, tmp_path) and (path / "model.safetensors").is_file()


def test_weight_jitter_moves_every_weight_by_about_one_part_in_its_scale(
        tmp_path: Path, tiny_dir_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from safetensors.torch import load_file

    monkeypatch.setenv("BENCH_TINY_JITTER", "1e-5:3")
    jittered = backbone_path("tiny", corpus=CORPUS, cache_dir=tmp_path, seed=0)
    assert jittered.name != tiny_dir_path.name  # the jitter is part of the cache key
    plain, moved = load_file(tiny_dir_path / "model.safetensors"), load_file(jittered / "model.safetensors")
    for name, weight in plain.items():
        relative = (moved[name] - weight).abs() / weight.abs().clamp(min=1e-30)
        assert 0 < float(relative.max()) < 1e-4, name
        assert float(torch.median(relative[weight != 0])) < 2e-5, name
    monkeypatch.setenv("BENCH_TINY_JITTER", "1e-5:4")
    other = load_file(backbone_path("tiny", corpus=CORPUS, cache_dir=tmp_path, seed=0) / "model.safetensors")
    assert any(not torch.equal(other[name], moved[name]) for name in plain)  # another seed, another jitter
    monkeypatch.setenv("BENCH_TINY_JITTER", "tiny")
    with pytest.raises(BenchError, match="BENCH_TINY_JITTER='tiny': expected RELATIVE"):
        backbone_path("tiny", corpus=CORPUS, cache_dir=tmp_path, seed=0)
