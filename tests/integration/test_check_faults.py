"""Proof that `bench check` passes on another machine and still catches regressions: a check made to round like
another machine passes; thirteen faults, each injected here by monkeypatching (never a switch in product code), each
make it fail with a FAIL line naming the target and the value that left its band: seven in rewards, advantages,
the evaluator and SFT data, and six that stop RL from learning (learning rate 0, no optimizer step, sampling from a
stale copy of the policy, LoRA adapters dropped instead of merged, the KL term's sign flipped, half the update lost
before saving), which the RL probe's optimizer step shows (`experiments.update_probe`).

One reference is built per test session (`bench check --update` on a small configuration: popularity, EASE, SFT,
GRPO and Rank-GRPO on `synthetic:check` with the tiny backbone, one seed, 1 thread; SFT is short, so its lists are
formatted but miss the catalog, and their format and duplicate rates are what chaos moves), its bands measured as
for the committed reference, by a perturbed rerun in a fresh process with an empty cache (oneDNN off, the initial
weights jittered by 1e-7). With two values per target its run bands rest on their floor (0.1); the committed
reference's k and floor are measured (results/reference/README.md). The false-alarm test runs the whole check (every
run trained again, every probe) under a perturbation the bands never saw (`--perturb onednn=off,jitter=1e-7:7`).
Each fault reruns, in this process, only the part of the check that could see it, with `--no-training` (the
untrained runs and the trained methods' deterministic probes), which is where the check must catch them: a subtle RL
fault moves the end-to-end metrics by less than another machine's chaos, but moves the probe of the trainer it
breaks by many band widths.
"""

import random
import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import accelerate.optimizer
import peft
import pytest
import torch
import trl
from typer.testing import CliRunner

import algorithms.lora
import algorithms.rank_grpo_trainer
import algorithms.rl
import algorithms.rollout_hook
import algorithms.sft
import bench.evaluation.evaluator
import bench.evaluation.parsing
from bench.runs.check import update_reference
from bench.runs.folders import atomic_write_json
from cli import app

pytestmark = pytest.mark.slow

DATASET = "synthetic:check"
CONFIG = {
    "grids": [{"algos": ["popularity", "ease", "sft", "grpo", "rank_grpo"], "models": ["tiny"],
               "datasets": [DATASET], "seeds": [0], "preset": "smoke",
               "preset_overrides": {"eval_limit": 16, "max_new_tokens": 64, "sft_max_steps": 50, "sft_lr": 0.006,
                                    "sft_batch_size": 16, "validation_size": 2, "rl_steps": 4,
                                    "rl_lr": 0.00003, "num_generations": 4, "prompts_per_step": 2, "beta": 0.04,
                                    "eval_interval": 100}}],
    "metrics": ["recall@5", "recall@20", "ndcg@5", "ndcg@20", "in_catalog_rate", "format_rate", "duplicate_rate"],
    "threads": 1,
    "perturbations": ["onednn=off,jitter=1e-7:1"],
    "band": {"runs": {"k": 6.0, "floor": 0.1}, "probes": {"k": 10.0, "floor": 1e-6, "relative_floor": 0.005}},
}
runner = CliRunner()


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The session's reference folder (config.json + metrics.json); its cache is `<reference>/../cache`."""
    root = tmp_path_factory.mktemp("check-faults")
    folder = root / "reference"
    folder.mkdir()
    atomic_write_json(folder / "config.json", CONFIG)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BENCH_CACHE", str(root / "cache"))
        update_reference(folder, root / "results", "bench check --update (test session)", echo=lambda _: None)
    yield folder


def _check(reference: Path, results: Path, *extra: str) -> tuple[int, str]:
    result = runner.invoke(app, ["check", "--reference", str(reference), "--results-dir", str(results), *extra])
    return result.exit_code, result.output


def _failures(reference: Path, tmp_path: Path, only: str) -> set[tuple[str, str]]:
    """Run `bench check --only ONLY --no-training`; it must exit 1; its FAIL lines as (target, metric)."""
    code, output = _check(reference, tmp_path / "results", "--only", only, "--no-training")
    assert code == 1, output
    found = re.findall(r"^FAIL (\S+ (?:seed \d+|probe)) (\S+): .* band half-widths (?:above|below) the band .*: "
                       r"(?:regressed|improved|changed)", output, re.MULTILINE)
    assert found, output
    return set(found)


@pytest.fixture
def cache(reference: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_CACHE", str(reference.parent / "cache"))


def test_a_check_on_another_machine_passes(reference: Path, tmp_path: Path) -> None:
    """The whole check (every run trained again, every probe) rounding as the bands never saw."""
    code, output = _check(reference, tmp_path / "results", "--perturb", "onednn=off,jitter=1e-7:7")
    assert code == 0 and "check passed" in output, output


def test_the_unfaulted_code_passes_without_training(reference: Path, tmp_path: Path, cache: None) -> None:
    code, output = _check(reference, tmp_path / "results", "--no-training")
    assert code == 0, output
    assert "sft/tiny/synthetic:check probe" in output and "rank_grpo/tiny/synthetic:check probe" in output


def test_constant_reward(reference: Path, tmp_path: Path, cache: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(algorithms.rl, "rank_hits", lambda text, example, catalog, n_items=20: [1.0] * n_items)
    failures = _failures(reference, tmp_path, "grpo,rank_grpo")
    assert {("grpo/tiny/synthetic:check probe", "grad_norm"), ("rank_grpo/tiny/synthetic:check probe", "loss")} \
        <= failures


def test_reward_sign_flipped(reference: Path, tmp_path: Path, cache: None, monkeypatch: pytest.MonkeyPatch) -> None:
    hits, call = algorithms.rl.rank_hits, algorithms.rl.ListRewards.__call__
    # Rank-GRPO's per-rank rewards come from the hits; GRPO's scalar NDCG counts a hit wherever one is nonzero
    monkeypatch.setattr(algorithms.rl, "rank_hits", lambda *args, **kwargs: [-h for h in hits(*args, **kwargs)])
    monkeypatch.setattr(algorithms.rl.ListRewards, "__call__",
                        lambda self, *args, **kwargs: [-reward for reward in call(self, *args, **kwargs)])
    failures = _failures(reference, tmp_path, "grpo,rank_grpo")
    assert {("grpo/tiny/synthetic:check probe", "grad_projection"),
            ("rank_grpo/tiny/synthetic:check probe", "loss")} <= failures  # a norm cannot see a sign


def test_rank_grpo_segmentation_shifted_by_one_token(reference: Path, tmp_path: Path, cache: None,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    original = algorithms.rank_grpo_trainer.segment_ranks

    def shifted(completion_ids: torch.Tensor, completion_mask: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        rank_ids = original(completion_ids, completion_mask, *args, **kwargs).roll(1, dims=1)
        rank_ids[:, 0] = -1  # every token takes the rank of the token before it
        return rank_ids.masked_fill(~completion_mask.bool(), -1)

    monkeypatch.setattr(algorithms.rank_grpo_trainer, "segment_ranks", shifted)
    failures = _failures(reference, tmp_path, "rank_grpo")
    assert ("rank_grpo/tiny/synthetic:check probe", "grad_projection") in failures


def test_advantages_not_normalised_per_rank(reference: Path, tmp_path: Path, cache: None,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    def pooled(rewards: torch.Tensor, group_size: int, scale: bool = True) -> torch.Tensor:
        grouped = rewards.reshape(-1, group_size * rewards.size(1))  # one mean and std over all ranks of a group
        centred = grouped - grouped.mean(dim=1, keepdim=True)
        if scale:
            centred = centred / (grouped.std(dim=1, keepdim=True) + 1e-4)
        return centred.reshape_as(rewards)

    monkeypatch.setattr(algorithms.rank_grpo_trainer, "rank_advantages", pooled)
    failures = _failures(reference, tmp_path, "rank_grpo")
    assert ("rank_grpo/tiny/synthetic:check probe", "advantage_abs_mean") in failures


def test_evaluator_ranking_reversed(reference: Path, tmp_path: Path, cache: None,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    original = bench.evaluation.evaluator.cutoff_metrics
    monkeypatch.setattr(bench.evaluation.evaluator, "cutoff_metrics",
                        lambda hits, *args, **kwargs: original(list(reversed(hits)), *args, **kwargs))
    failures = _failures(reference, tmp_path, "popularity,ease,sft")
    assert {("ease/none/synthetic:check seed 0", "ndcg@5"), ("sft/tiny/synthetic:check probe", "demo_ndcg@5")} \
        <= failures  # EASE's hits sit at the top, as do a demonstration's


def test_parser_dropping_the_first_line(reference: Path, tmp_path: Path, cache: None,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    original = bench.evaluation.parsing.split_lines
    monkeypatch.setattr(bench.evaluation.parsing, "split_lines", lambda text: original(text)[1:])
    failures = _failures(reference, tmp_path, "popularity,ease,sft")
    assert {("ease/none/synthetic:check seed 0", "recall@20"), ("sft/tiny/synthetic:check probe", "demo_recall@20")} \
        <= failures  # their first line often hits


def test_sft_demonstrations_shuffled_across_prompts(reference: Path, tmp_path: Path, cache: None,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    original = algorithms.sft.demonstrations

    def shuffled(ctx: Any) -> tuple[list[tuple[Any, str]], str]:
        pairs, source = original(ctx)
        texts = [text for _, text in pairs]
        random.Random(0).shuffle(texts)
        return [(example, text) for (example, _), text in zip(pairs, texts, strict=True)], source

    monkeypatch.setattr(algorithms.sft, "demonstrations", shuffled)
    failures = _failures(reference, tmp_path, "sft")
    assert ("sft/tiny/synthetic:check probe", "demo_ndcg@20") in failures


# Faults the check was not built against (issue 28): RL that stops learning. Each is caught by what the GRPO
# probe's optimizer step moved (`experiments.update_probe`). End to end (`rl_shift_steps`) they are measured against the
# committed reference only: this session's 50-step SFT misses every title, so its RL has no reward signal and moves
# nothing (results/reference/README.md).
GRPO_PROBE = "grpo/tiny/synthetic:check probe"


def test_learning_rate_zero(reference: Path, tmp_path: Path, cache: None, monkeypatch: pytest.MonkeyPatch) -> None:
    original = algorithms.rl.rl_config
    monkeypatch.setattr(algorithms.rl, "rl_config",
                        lambda ctx, output_dir, **overrides: original(ctx, output_dir, **{**overrides,
                                                                                           "learning_rate": 0.0}))
    failures = _failures(reference, tmp_path, "grpo")
    assert {(GRPO_PROBE, "update_norm"), (GRPO_PROBE, "advantaged_logp_change"), (GRPO_PROBE, "kl_term"),
            (GRPO_PROBE, "saved_update_norm")} <= failures
    assert (GRPO_PROBE, "grad_norm") not in failures  # the gradient is unchanged: only the update sees it


def test_optimizer_skipping_its_step(reference: Path, tmp_path: Path, cache: None,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(accelerate.optimizer.AcceleratedOptimizer, "step", lambda self, closure=None: None)
    failures = _failures(reference, tmp_path, "grpo")
    assert {(GRPO_PROBE, "update_norm"), (GRPO_PROBE, "saved_update_norm")} <= failures


def test_sampling_from_a_stale_copy_of_the_policy(reference: Path, tmp_path: Path, cache: None,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The shared engine samples from a copy of the policy it took at its first call."""
    original = algorithms.rollout_hook.EngineRollouts._sample_engine

    def stale(self: Any, trainer: Any, *args: Any, **kwargs: Any) -> Any:
        if not hasattr(self, "copy"):
            live = trainer.accelerator.unwrap_model(trainer.model_wrapped)
            self.copy = type(live)(live.config)
            self.copy.load_state_dict(live.state_dict())
            self.copy.generation_config = live.generation_config
        view = SimpleNamespace(**{name: getattr(trainer, name) for name in ("accelerator", "args",
                                                                            "processing_class", "eos_token_ids")},
                               model_wrapped=self.copy)
        return original(self, view, *args, **kwargs)

    monkeypatch.setattr(algorithms.rollout_hook.EngineRollouts, "_sample_engine", stale)
    failures = _failures(reference, tmp_path, "grpo")
    assert (GRPO_PROBE, "sampler_on_policy") in failures


def test_lora_adapters_not_merged_into_the_saved_model(reference: Path, tmp_path: Path, cache: None,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The adapters are dropped instead of merged (`unload` for `merge_and_unload`): the saved model is the base."""
    def unmerged(trainer: Any) -> None:
        model = trainer.accelerator.unwrap_model(trainer.model)
        if isinstance(model, peft.PeftModel):
            trainer.model = trainer.model_wrapped = model.unload()

    monkeypatch.setattr(algorithms.lora, "merge_adapters", unmerged)
    failures = _failures(reference, tmp_path, "grpo")
    assert (GRPO_PROBE, "lora_saved_update_norm") in failures


def test_kl_term_sign_flipped(reference: Path, tmp_path: Path, cache: None, monkeypatch: pytest.MonkeyPatch) -> None:
    original = trl.GRPOTrainer.__init__

    def flipped(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.beta = -self.beta  # the loss adds -beta x KL

    monkeypatch.setattr(trl.GRPOTrainer, "__init__", flipped)
    failures = _failures(reference, tmp_path, "grpo,rank_grpo")
    assert {(GRPO_PROBE, "kl_term"), ("rank_grpo/tiny/synthetic:check probe", "kl_term")} <= failures


def test_half_of_the_rl_update_lost_before_saving(reference: Path, tmp_path: Path, cache: None,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The saved weights are pulled half way back to the reference model (the RL start)."""
    original = algorithms.lora.merge_adapters

    def halved(trainer: Any) -> None:
        original(trainer)
        if trainer.ref_model is not None:
            with torch.no_grad():
                for weight, start in zip(trainer.model.parameters(), trainer.ref_model.parameters(), strict=True):
                    weight.copy_((weight + start) / 2)

    monkeypatch.setattr(algorithms.lora, "merge_adapters", halved)
    failures = _failures(reference, tmp_path, "grpo")
    assert (GRPO_PROBE, "saved_update_norm") in failures
    assert (GRPO_PROBE, "update_norm") not in failures  # the trainer's own update was whole
