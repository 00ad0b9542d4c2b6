"""The transformers rollout engine on a tiny backbone: seeded determinism, EOS, context errors, caching."""

import dataclasses
from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.models.backbones import Backbone, load_backbone
from bench.models.rollout_cache import RolloutCache, entry_key
from bench.models.rollouts import (
    SamplingSettings,
    TransformersEngine,
    make_engine,
    measure_throughput,
    prompt_token_ids,
)

CORPUS = [
    f"I liked Movie {i} ({1950 + i % 70}).\nRecommend ten titles, one per line, as Title (Year)."
    for i in range(80)
]
PROMPTS = [
    [{"role": "system", "content": "Recommend movies."}, {"role": "user", "content": f"I liked Movie {i} (1999)."}]
    for i in range(5)
]
SAMPLED = SamplingSettings(max_new_tokens=12, temperature=1.0, num_return_sequences=3)
GREEDY = SamplingSettings(max_new_tokens=12)


@pytest.fixture(scope="module")
def backbone(tmp_path_factory: pytest.TempPathFactory) -> Backbone:
    return load_backbone("tiny", corpus=CORPUS, cache_dir=tmp_path_factory.mktemp("cache"), device="cpu")


def test_sampling_is_reproducible_under_a_seed(backbone: Backbone) -> None:
    engine = TransformersEngine(backbone, batch_size=2, progress=False)
    first = engine.generate(PROMPTS, SAMPLED, seed=3)
    assert [len(c) for c in first] == [3] * len(PROMPTS)
    assert engine.generate(PROMPTS, SAMPLED, seed=3) == first
    assert engine.generate(PROMPTS, SAMPLED, seed=4) != first
    assert len(set(first[0])) > 1


def test_greedy_is_reproducible_and_copies_are_identical(backbone: Backbone) -> None:
    engine = TransformersEngine(backbone, batch_size=4, progress=False)
    settings = dataclasses.replace(GREEDY, num_return_sequences=2)
    first = engine.generate(PROMPTS, settings, seed=0)
    assert engine.generate(PROMPTS, settings, seed=1) == first
    assert all(len(c) == 2 and c[0] == c[1] for c in first)


def test_callers_random_state_is_untouched(backbone: Backbone) -> None:
    import torch

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    TransformersEngine(backbone, progress=False).generate(PROMPTS[:2], SAMPLED, seed=0)
    assert torch.equal(torch.rand(3), expected)


def test_generation_stops_at_eos_and_strips_it(backbone: Backbone) -> None:
    import torch

    prompt_ids = torch.tensor([prompt_token_ids(backbone.tokenizer, PROMPTS[0])])
    greedy_first = int(backbone.model.generate(input_ids=prompt_ids, max_new_tokens=1, do_sample=False)[0, -1])
    config = backbone.model.generation_config
    saved = config.eos_token_id
    engine = TransformersEngine(backbone, batch_size=1, progress=False)
    try:
        config.eos_token_id = [*saved, greedy_first]
        assert engine.generate(PROMPTS[:1], GREEDY, seed=0) == [[""]]
        assert engine.tokens_generated == 1
    finally:
        config.eos_token_id = saved


def test_ignore_eos_generates_exactly_max_new_tokens(backbone: Backbone) -> None:
    engine = TransformersEngine(backbone, batch_size=5, progress=False)
    engine.generate(PROMPTS, dataclasses.replace(GREEDY, ignore_eos=True), seed=0)
    assert engine.tokens_generated == len(PROMPTS) * GREEDY.max_new_tokens


def test_prompt_too_long_for_the_context_names_it(backbone: Backbone) -> None:
    context = backbone.model.config.max_position_embeddings
    long_prompt = [{"role": "user", "content": "Movie (1999)\n" * context}]
    engine = TransformersEngine(backbone, progress=False)
    with pytest.raises(BenchError, match=r"^Prompt 1 has \d+ tokens; with max_new_tokens=12"):
        engine.generate([PROMPTS[0], long_prompt], GREEDY, seed=0)
    fits = [{"role": "user", "content": "x"}]
    with pytest.raises(BenchError, match="Prompt 0"):
        engine.check_fits([fits], dataclasses.replace(GREEDY, max_new_tokens=context))


def test_cache_avoids_recomputation_and_recomputes_corrupt_entries(backbone: Backbone, tmp_path: Path) -> None:
    calls: list[int] = []
    original = backbone.model.generate

    def counting_generate(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(kwargs["input_ids"].shape[0])
        return original(*args, **kwargs)

    cache = RolloutCache(tmp_path / "rollouts")
    engine = make_engine("transformers", backbone, batch_size=2, cache=cache, progress=False)
    backbone.model.generate = counting_generate
    try:
        first = engine.generate(PROMPTS, GREEDY, seed=0)
        assert calls == [2, 2, 1]
        calls.clear()
        assert engine.generate(PROMPTS, GREEDY, seed=0) == first
        assert calls == []
        entry = cache.path_for(entry_key(backbone.fingerprint, engine.producer, PROMPTS[3], GREEDY, 0))
        entry.write_text(entry.read_text()[:-5])
        assert engine.generate(PROMPTS, GREEDY, seed=0) == first
        assert calls == [1] and cache.dropped == 1
    finally:
        del backbone.model.generate


def test_cache_context_errors_name_the_callers_index(backbone: Backbone, tmp_path: Path) -> None:
    engine = make_engine("transformers", backbone, cache=RolloutCache(tmp_path), progress=False)
    engine.generate(PROMPTS[:1], GREEDY, seed=0)
    long_prompt = [{"role": "user", "content": "Movie (1999)\n" * backbone.model.config.max_position_embeddings}]
    with pytest.raises(BenchError, match="Prompt 1 "):
        engine.generate([PROMPTS[0], long_prompt], GREEDY, seed=0)


def test_measure_throughput_reports_rates(backbone: Backbone) -> None:
    settings = SamplingSettings(max_new_tokens=16, ignore_eos=True)
    report = measure_throughput(backbone, "transformers", n_prompts=6, settings=settings, batch_size=3)
    assert report["new_tokens"] == 6 * 16 and report["completions"] == 6
    assert report["tokens_per_s"] > 0 and report["examples_per_s"] > 0 and report["device"] == "cpu"
