"""RL rollouts through the shared engine (`algorithms.rollout_hook`) against TRL's own `generate`, on a tiny
backbone whose output layer is sharpened (final norm x 4) so that it samples a peaked distribution, as an SFT model
does, rather than near-uniform noise:

- the hook gets TRL's RepeatSampler layout (each prompt G times, consecutively), returns one completion per row,
  the prompt ids of TRL's own `_tokenize_prompts` (equal to the evaluation engine's), completions ending at their
  first EOS;
- the engine's log-probs equal the policy's, recomputed by a forward pass: TRL's own (`_get_per_token_logps_and_
  entropies`, temperature only) and, with top-k and top-p, the warped distribution;
- the engine and TRL's `generate` sample the same distribution (two-sample test that a wrong temperature fails);
- the engine decodes an in-place optimizer update (its packed weights follow the update);
- short GRPO runs through either path reach the same reward within the seed spread.
"""

import copy
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from datasets import Dataset
from scipy.stats import ks_2samp
from trl import GRPOConfig, GRPOTrainer

from algorithms.rollout_hook import EngineRollouts, rollout_kwargs
from algorithms.training import device_arguments, quiet_trl_deprecations
from bench.models.backbones import Backbone, load_backbone
from bench.models.rollouts import TransformersEngine
from bench.models.sampling import SamplingSettings, prompt_token_ids
from bench.models.token_sampling import sampled_warpers

CORPUS = [f"I liked Movie {i} ({1950 + i % 70}).\nRecommend ten titles, one per line, as Title (Year)."
          for i in range(80)]
PROMPTS = [[{"role": "user", "content": f"I liked Movie {i} (1999)."}] for i in range(10, 18)]
"""Prompts of one token length (no left padding, so TRL's forward, which takes no position ids, scores them at the
positions they were generated at)."""
G = 4
MAX_TOKENS = 10


@pytest.fixture(scope="module")
def sharpened(tmp_path_factory: pytest.TempPathFactory) -> Backbone:
    """The tiny backbone with its final norm scaled by 4 (logits x 4), saved where TRL can load it."""
    backbone = load_backbone("tiny", corpus=CORPUS, cache_dir=tmp_path_factory.mktemp("cache"), device="cpu")
    with torch.no_grad():
        backbone.model.model.norm.weight.mul_(4.0)
    directory = tmp_path_factory.mktemp("sharpened")
    backbone.model.save_pretrained(directory)
    backbone.tokenizer.save_pretrained(directory)
    backbone.path = directory
    return backbone


def _reward(completion_ids: list[list[int]], **_: Any) -> list[float]:
    """Toy learnable reward, dense enough to move in a few steps: the share of a completion's tokens whose id is
    even."""
    return [sum(token % 2 == 0 for token in ids) / len(ids) for ids in completion_ids]


def _trainer(backbone: Backbone, output_dir: Path, rollouts: str, *, seed: int = 0, steps: int = 1,
             temperature: float = 1.0, lr: float = 1e-5, top_k: int = 0, hook: Any = None) -> GRPOTrainer:
    args = GRPOConfig(output_dir=str(output_dir), max_steps=steps, per_device_train_batch_size=2 * G,
                      num_generations=G, max_completion_length=MAX_TOKENS, learning_rate=lr, beta=0.0,
                      temperature=temperature, top_k=top_k, logging_steps=1, seed=seed, save_strategy="no",
                      lr_scheduler_type="constant", warmup_steps=0, **device_arguments())
    generation = {"rollout_func": hook} if hook is not None else rollout_kwargs(rollouts, "tiny")
    dataset = Dataset.from_list([{"prompt": prompt} for prompt in PROMPTS])
    return GRPOTrainer(model=str(backbone.path), reward_funcs=_reward, args=args, train_dataset=dataset,
                       processing_class=backbone.tokenizer, **generation)


class Spy:
    """A rollout_func that records what TRL passes the engine hook and what the hook returns."""

    def __init__(self) -> None:
        self.hook = EngineRollouts("tiny")
        self.calls: list[tuple[list[Any], dict[str, Any]]] = []

    def __call__(self, prompts: list[Any], trainer: Any) -> dict[str, Any]:
        output = self.hook(prompts, trainer)
        self.calls.append((copy.deepcopy(prompts), output))
        return output


def _policy_logps(trainer: GRPOTrainer, prompt_ids: list[list[int]],
                  completion_ids: list[list[int]]) -> list[list[float]]:
    """TRL's own per-token log-probs of the completions (right-padded) under the trainer's model."""
    pad = trainer.processing_class.pad_token_id
    width = max(len(ids) for ids in completion_ids)
    completions = torch.tensor([ids + [pad] * (width - len(ids)) for ids in completion_ids])
    mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids in completion_ids])
    prompts = torch.tensor(prompt_ids)
    with torch.no_grad():
        logps, _, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model, torch.cat([prompts, completions], 1), torch.cat([torch.ones_like(prompts), mask], 1),
            width)
    return [row[: len(ids)].tolist() for row, ids in zip(logps, completion_ids, strict=True)]


def test_the_hook_gets_trl_rows_and_returns_trl_prompt_ids(sharpened: Backbone, tmp_path: Path) -> None:
    spy = Spy()
    trainer = _trainer(sharpened, tmp_path, "engine", hook=spy)
    with quiet_trl_deprecations():
        trainer.train()
    prompts, output = spy.calls[0]
    assert len(prompts) == 2 * G
    assert all(prompts[i] == prompts[i - i % G] for i in range(len(prompts)))  # G copies, consecutive
    assert prompts[0] != prompts[G]
    expected = trainer._tokenize_prompts(prompts)[0]
    assert output["prompt_ids"] == [list(ids) for ids in expected]
    assert output["prompt_ids"] == [prompt_token_ids(sharpened.tokenizer, prompt) for prompt in prompts]
    eos = set(trainer.eos_token_ids)
    assert len(output["completion_ids"]) == len(output["logprobs"]) == 2 * G
    for ids, logps in zip(output["completion_ids"], output["logprobs"], strict=True):
        assert 1 <= len(ids) <= MAX_TOKENS and len(logps) == len(ids)
        assert not eos & set(ids[:-1])  # an EOS only ever ends a completion
        assert all(logp <= 0 for logp in logps)
    assert trainer.state.log_history[0]["rollout/seconds"] > 0


def test_engine_logprobs_are_the_policys(sharpened: Backbone, tmp_path: Path) -> None:
    """Temperature 0.7: the log-prob the engine returns for each sampled token equals TRL's forward pass over the
    prompt and completion (the log-probs the GRPO loss uses), to float tolerance."""
    trainer = _trainer(sharpened, tmp_path, "engine", temperature=0.7)
    trainer.model.eval()
    output = trainer.rollout_func([PROMPTS[0]] * G + [PROMPTS[1]] * G, trainer)
    recomputed = _policy_logps(trainer, output["prompt_ids"], output["completion_ids"])
    for engine_row, policy_row in zip(output["logprobs"], recomputed, strict=True):
        assert engine_row == pytest.approx(policy_row, abs=1e-5)


def test_engine_logprobs_follow_top_k_and_top_p(sharpened: Backbone) -> None:
    """With top-k and top-p the engine returns the log-probs of the warped distribution the token was drawn from:
    a forward pass, the same warpers applied position by position, log-softmax."""
    settings = SamplingSettings(max_new_tokens=MAX_TOKENS, temperature=0.8, top_k=6, top_p=0.9,
                                num_return_sequences=6)
    engine = TransformersEngine(sharpened, batch_size=1, progress=False)
    ids = prompt_token_ids(sharpened.tokenizer, PROMPTS[0])
    warpers = sampled_warpers(settings)
    for completion in engine.generate_tokens([ids], settings, seed=3)[0]:
        sequence = torch.tensor([ids + completion.token_ids])
        with torch.no_grad():
            logits = sharpened.model(sequence).logits[0, len(ids) - 1 : -1].float()
        expected = []
        for position, token in enumerate(completion.token_ids):
            scores = logits[position : position + 1]
            for warper in warpers:
                scores = warper(sequence[:, : len(ids) + position], scores)
            expected.append(torch.log_softmax(scores, dim=-1)[0, token].item())
        assert completion.logprobs == pytest.approx(expected, abs=1e-5)
        assert all(math.isfinite(logp) for logp in completion.logprobs)


def _sequence_logps(trainer: GRPOTrainer, prompt: list[int], completions: list[list[int]]) -> list[float]:
    return [sum(row) for row in _policy_logps(trainer, [prompt] * len(completions), completions)]


def test_engine_and_trl_generate_sample_one_distribution(sharpened: Backbone, tmp_path: Path) -> None:
    """256 completions of one prompt from TRL's `generate` (`_generate_single_turn`, TRL's generation config) and
    from the engine, same seed; each completion's log-probability under the policy is one draw of a scalar whose
    distribution is that of the sampler. A two-sample Kolmogorov-Smirnov test keeps the two samplers together
    (p > 0.01: identical samplers fail this for 1% of seeds, and the seeds are fixed, so the test is
    deterministic) and separates a sampler at the wrong temperature (1.5 instead of 1.0: p < 1e-4 at this size;
    the KS statistic's 1e-4 critical value for 256 + 256 draws is 1.93 x sqrt(2/256) = 0.17), so it cannot pass
    by accident."""
    trainer = _trainer(sharpened, tmp_path, "trl")
    trainer.model.eval()
    prompt = prompt_token_ids(sharpened.tokenizer, PROMPTS[0])
    n = 256
    torch.manual_seed(0)
    trl_ids, _ = trainer._generate_single_turn([prompt] * n, None, {}, n)
    engine = TransformersEngine(Backbone(sharpened.spec, trainer.model, sharpened.tokenizer, sharpened.path, "x"),
                                batch_size=1, progress=False)

    def engine_sample(temperature: float) -> list[list[int]]:
        settings = SamplingSettings(max_new_tokens=MAX_TOKENS, temperature=temperature, num_return_sequences=n)
        return [c.token_ids for c in engine.generate_tokens([prompt], settings, 0, trainer.eos_token_ids)[0]]

    trl_logps = _sequence_logps(trainer, prompt, trl_ids)
    same = ks_2samp(trl_logps, _sequence_logps(trainer, prompt, engine_sample(1.0)))
    hotter = ks_2samp(trl_logps, _sequence_logps(trainer, prompt, engine_sample(1.5)))
    assert same.pvalue > 0.01, same
    assert hotter.pvalue < 1e-4, hotter


@pytest.mark.parametrize("fused", [True, False])
def test_a_live_engine_decodes_the_weights_as_updated_in_place(sharpened: Backbone, fused: bool) -> None:
    """An AdamW step changes the weights in place, the fused one (transformers' default optimizer) without bumping
    their version counters: a live engine then decodes exactly what a fresh engine on a fresh copy of the updated
    model decodes, and not what it decoded before."""
    model = copy.deepcopy(sharpened.model)
    engine = TransformersEngine(Backbone(sharpened.spec, model, sharpened.tokenizer, sharpened.path, "live"),
                                batch_size=2, progress=False, live=True)
    ids = [prompt_token_ids(sharpened.tokenizer, prompt) for prompt in PROMPTS[:2]]
    settings = SamplingSettings(max_new_tokens=MAX_TOKENS, temperature=1.0, num_return_sequences=3)
    before = engine.generate_tokens(ids, settings, seed=1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.05, fused=fused, foreach=None if fused else True)
    model(torch.tensor([ids[0]]), labels=torch.tensor([ids[0]])).loss.backward()
    optimizer.step()
    after = engine.generate_tokens(ids, settings, seed=1)
    fresh = TransformersEngine(Backbone(sharpened.spec, copy.deepcopy(model), sharpened.tokenizer, sharpened.path,
                                        "fresh"), batch_size=2, progress=False)
    assert after == fresh.generate_tokens(ids, settings, seed=1)
    assert after != before


def _final_reward(backbone: Backbone, output_dir: Path, rollouts: str, seed: int) -> tuple[float, float]:
    trainer = _trainer(backbone, output_dir, rollouts, seed=seed, steps=10, lr=3e-3)
    with quiet_trl_deprecations():
        trainer.train()
    rewards = [entry["reward"] for entry in trainer.state.log_history if "reward" in entry]
    return rewards[0], sum(rewards[-4:]) / 4


def test_short_grpo_runs_through_either_path_land_together(sharpened: Backbone, tmp_path: Path) -> None:
    """10 GRPO steps on the toy reward, 3 seeds per path: every run learns (its last 4 steps' reward above its first
    step's), and the two paths' mean final rewards differ by less than the larger seed range of the two."""
    finals: dict[str, list[float]] = {}
    for rollouts in ("engine", "trl"):
        for seed in range(3):
            first, last = _final_reward(sharpened, tmp_path / f"{rollouts}{seed}", rollouts, seed)
            assert last > first, (rollouts, seed, first, last)
            finals.setdefault(rollouts, []).append(last)
    spread = max(max(values) - min(values) for values in finals.values())
    means = {name: sum(values) / len(values) for name, values in finals.items()}
    assert abs(means["engine"] - means["trl"]) < spread, (finals, spread)


def test_rl_step_command_times_both_paths() -> None:
    """`bench bench rl-step` trains both paths and prints each one's step and generation seconds, then the
    speedups; a bad count is one line naming the flag."""
    from typer.testing import CliRunner

    from cli import app

    result = CliRunner().invoke(app, ["bench", "rl-step", "--model", "tiny", "--preset", "smoke", "--steps", "1",
                                      "--warmup-steps", "0"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()[-3:]
    assert [line.split()[0] for line in lines[:2]] == ["trl", "engine"]
    for line in lines[:2]:
        step, generation = float(line.split()[2]), float(line.split()[5])
        assert 0 < generation < step
    assert lines[2].startswith("speedup (trl / engine): generation ")
    bad = CliRunner().invoke(app, ["bench", "rl-step", "--model", "tiny", "--steps", "0"])
    assert bad.exit_code == 2 and "--steps" in bad.output
    unknown = CliRunner().invoke(app, ["bench", "rl-step", "--model", "tiny", "--paths", "trl,vlm"])
    assert unknown.exit_code == 2 and "Did you mean 'vllm'" in unknown.output


def test_explicit_warpers_sample_what_generate_configured_samples(sharpened: Backbone) -> None:
    """The engine passes temperature, top-k and top-p as explicit processors (to read log-probs after them): under
    the same seed it draws exactly the tokens `generate` draws when the same settings are in its config."""
    from transformers import GenerationConfig

    from bench.models.cpu_decoding import cpu_decoding
    from bench.models.sampling import batch_seed

    settings = SamplingSettings(max_new_tokens=MAX_TOKENS, temperature=0.7, top_p=0.9, top_k=8,
                                num_return_sequences=3)
    engine = TransformersEngine(sharpened, batch_size=1, progress=False)
    texts = engine.generate(PROMPTS[:1], settings, seed=4)[0]
    ids = torch.tensor([prompt_token_ids(sharpened.tokenizer, PROMPTS[0])])
    eos = engine._eos_ids()
    config = GenerationConfig(do_sample=True, temperature=0.7, top_p=0.9, top_k=8, max_new_tokens=MAX_TOKENS,
                              num_return_sequences=3, repetition_penalty=1.0, eos_token_id=eos,
                              pad_token_id=sharpened.tokenizer.pad_token_id)
    capacity = ids.shape[1] + MAX_TOKENS
    with torch.random.fork_rng(), torch.inference_mode(), cpu_decoding(sharpened.model, capacity) as decoding:
        torch.manual_seed(batch_seed(4, PROMPTS[:1], settings))
        rows = sharpened.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config,
                                        **decoding)[:, ids.shape[1]:].tolist()
    ends = [next((i for i, token in enumerate(row) if token in eos), len(row)) for row in rows]
    expected = [sharpened.tokenizer.decode(row[:end], skip_special_tokens=True) for row, end in zip(rows, ends)]
    assert texts == expected
