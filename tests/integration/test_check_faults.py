"""Proof that `bench check` catches regressions: seven faults, each injected here by monkeypatching (never a switch
in product code), each makes the check fail with a FAIL line naming the run and the metric that moved.

One reference is built per test session (`bench check --update` on a small configuration: popularity, EASE, SFT,
GRPO and Rank-GRPO on `synthetic:check` with the tiny backbone, one seed, 1 thread), its tolerances measured as for
the committed reference, by a rerun in a fresh process and cache with another thread count (2). Each fault then
reruns, in this process, only the runs that could see it (`bench check --only ...`) in a fresh results folder. For
faults inside RL training the SFT warm start is copied over from the reference's results first and kept
(`--reuse`): SFT does not run that code.
"""

import random
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

import algorithms.rank_grpo_trainer
import algorithms.rl
import algorithms.sft
import bench.evaluation.evaluator
import bench.evaluation.parsing
from bench.runs.check import update_reference
from bench.runs.folders import atomic_write_json, runs_dir
from cli import app

pytestmark = pytest.mark.slow

DATASET = "synthetic:check"
CONFIG = {
    "grids": [{"algos": ["popularity", "ease", "sft", "grpo", "rank_grpo"], "models": ["tiny"],
               "datasets": [DATASET], "seeds": [0], "preset": "smoke",
               "preset_overrides": {"eval_limit": 32, "max_new_tokens": 96, "sft_max_steps": 150, "sft_lr": 0.003,
                                    "sft_batch_size": 16, "validation_size": 2, "rl_steps": 8,
                                    "rl_lr": 0.00003, "num_generations": 8, "prompts_per_step": 4,
                                    "eval_interval": 100}}],
    "metrics": ["recall@5", "recall@20", "ndcg@5", "ndcg@20", "in_catalog_rate", "format_rate", "duplicate_rate"],
    "threads": 1,
    "tolerance": {"rerun_threads": [2], "margin": 3.0, "absolute": 1e-6},
}
runner = CliRunner()


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The session's reference folder (config.json + metrics.json); its runs are in `<reference>/../results`."""
    root = tmp_path_factory.mktemp("check-faults")
    folder = root / "reference"
    folder.mkdir()
    atomic_write_json(folder / "config.json", CONFIG)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BENCH_CACHE", str(root / "cache"))
        update_reference(folder, root / "results", "bench check --update (test session)", echo=lambda _: None)
    yield folder


@pytest.fixture
def fresh_results(reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """A fresh results folder (sharing the session's cache), holding copies of the reference's runs of `reuse`."""
    monkeypatch.setenv("BENCH_CACHE", str(reference.parent / "cache"))

    def make(*reuse: str) -> Path:
        for run in runs_dir(reference.parent / "results").iterdir():
            if run.name.split("-")[0] in reuse:
                shutil.copytree(run, runs_dir(tmp_path / "results") / run.name)
        return tmp_path / "results"

    return make


def _failures(reference: Path, results: Path, only: str) -> list[tuple[str, str, str]]:
    """Run `bench check --only ONLY --reuse`; it must exit 1; its FAIL lines as (run, metric, verdict)."""
    result = runner.invoke(app, ["check", "--reference", str(reference), "--results-dir", str(results),
                                 "--only", only, "--reuse"])
    assert result.exit_code == 1, result.output
    found = re.findall(r"^FAIL (\S+ seed \d+) (\S+): .*: (regressed|improved)", result.output, re.MULTILINE)
    assert found, result.output
    return found


def _runs(failures: list[tuple[str, str, str]]) -> set[str]:
    return {run.split("/")[0] for run, _, _ in failures}


def test_the_unfaulted_code_passes(reference: Path, fresh_results: Callable[..., Path]) -> None:
    results = fresh_results("sft")
    result = runner.invoke(app, ["check", "--reference", str(reference), "--results-dir", str(results),
                                 "--only", "popularity,ease,grpo,rank_grpo", "--reuse"])
    assert result.exit_code == 0, result.output


def test_constant_reward(reference: Path, fresh_results: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(algorithms.rl, "rank_hits", lambda text, example, catalog, n_items=20: [1.0] * n_items)
    assert _runs(_failures(reference, fresh_results("sft"), "grpo,rank_grpo")) == {"grpo", "rank_grpo"}


def test_reward_sign_flipped(reference: Path, fresh_results: Callable[..., Path],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    hits, ndcg = algorithms.rl.rank_hits, algorithms.rl.ListRewards.__call__
    # Rank-GRPO's per-rank rewards come from the hits; GRPO's scalar NDCG counts a hit wherever one is nonzero
    monkeypatch.setattr(algorithms.rl, "rank_hits", lambda *args, **kwargs: [-h for h in hits(*args, **kwargs)])
    monkeypatch.setattr(algorithms.rl.ListRewards, "__call__",
                        lambda self, *args, **kwargs: [-reward for reward in ndcg(self, *args, **kwargs)])
    assert _runs(_failures(reference, fresh_results("sft"), "grpo,rank_grpo")) == {"grpo", "rank_grpo"}


def test_rank_grpo_segmentation_shifted_by_one_token(reference: Path, fresh_results: Callable[..., Path],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    original = algorithms.rank_grpo_trainer.segment_ranks

    def shifted(completion_ids: torch.Tensor, completion_mask: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        rank_ids = original(completion_ids, completion_mask, *args, **kwargs).roll(1, dims=1)
        rank_ids[:, 0] = -1  # every token takes the rank of the token before it
        return rank_ids.masked_fill(~completion_mask.bool(), -1)

    monkeypatch.setattr(algorithms.rank_grpo_trainer, "segment_ranks", shifted)
    assert _runs(_failures(reference, fresh_results("sft"), "rank_grpo")) == {"rank_grpo"}


def test_advantages_not_normalised_per_rank(reference: Path, fresh_results: Callable[..., Path],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    def pooled(rewards: torch.Tensor, group_size: int, scale: bool = True) -> torch.Tensor:
        grouped = rewards.reshape(-1, group_size * rewards.size(1))  # one mean and std over all ranks of a group
        centred = grouped - grouped.mean(dim=1, keepdim=True)
        if scale:
            centred = centred / (grouped.std(dim=1, keepdim=True) + 1e-4)
        return centred.reshape_as(rewards)

    monkeypatch.setattr(algorithms.rank_grpo_trainer, "rank_advantages", pooled)
    assert _runs(_failures(reference, fresh_results("sft"), "rank_grpo")) == {"rank_grpo"}


def test_evaluator_ranking_reversed(reference: Path, fresh_results: Callable[..., Path],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    original = bench.evaluation.evaluator.cutoff_metrics
    monkeypatch.setattr(bench.evaluation.evaluator, "cutoff_metrics",
                        lambda hits, *args, **kwargs: original(list(reversed(hits)), *args, **kwargs))
    failures = _failures(reference, fresh_results(), "popularity,ease")
    assert ("ease/none/synthetic:check seed 0", "ndcg@5", "regressed") in failures  # its hits sit at the top


def test_parser_dropping_the_first_line(reference: Path, fresh_results: Callable[..., Path],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    original = bench.evaluation.parsing.split_lines
    monkeypatch.setattr(bench.evaluation.parsing, "split_lines", lambda text: original(text)[1:])
    failures = _failures(reference, fresh_results(), "popularity,ease")
    assert ("ease/none/synthetic:check seed 0", "recall@20", "regressed") in failures  # its first line often hits


def test_sft_demonstrations_shuffled_across_prompts(reference: Path, fresh_results: Callable[..., Path],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    original = algorithms.sft.demonstrations

    def shuffled(ctx: Any) -> tuple[list[tuple[Any, str]], str]:
        pairs, source = original(ctx)
        texts = [text for _, text in pairs]
        random.Random(0).shuffle(texts)
        return [(example, text) for (example, _), text in zip(pairs, texts, strict=True)], source

    monkeypatch.setattr(algorithms.sft, "demonstrations", shuffled)
    assert _runs(_failures(reference, fresh_results(), "sft")) == {"sft"}
