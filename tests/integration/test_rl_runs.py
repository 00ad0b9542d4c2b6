"""End-to-end RL runs of `bench run` on the tiny backbone (smoke preset, 4 steps, checkpoints every 2).

- grpo is interrupted right after its step-2 checkpoint and rerun: it resumes there (global step 2), the curve has
  each validation step once, and it finishes as a complete run folder;
- grpo, gspo and rank_grpo change the parameters of the SFT model they start from;
- every RL run writes train_log.jsonl (one line per step) and rollouts.jsonl (the step's completions at each
  validation step), whose advantages are the group-normalised rewards (per rank for Rank-GRPO);
- the TRL configs built for each algorithm: GSPO is GRPO with sequence-level ratios and loss, clipping per method,
  `bnpo` aggregation for GRPO and Rank-GRPO, Rank-GRPO is the published trainer unless the missing-rank credit is
  asked for, a step's prompts are split over processes and micro-batches;
- `bench bench step-time` prints both trainers' step times and their ratio.

The smoke SFT model answers with blank lines, so the real reward is 0 for every completion and no method would move
in 4 steps; the list reward's matcher is replaced by a stand-in (a line hits when its text has an even length) that
gives every group reward variance. All runs share one results folder, so the SFT warm start is built once.
"""

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback
from trl import GRPOConfig
from typer.testing import CliRunner

import algorithms.rl
import algorithms.training
from algorithms.rank_grpo import rank_advantages
from bench.data.datasets import load_dataset
from bench.errors import BenchError
from bench.evaluation.parsing import split_lines
from bench.models.backbones import fingerprint_dir
from bench.runs.context import RunContext
from bench.runs.folders import RunFolder
from bench.runs.specs import make_spec
from cli import app

RL_ARGS = ["--model", "tiny", "--preset", "smoke", "--limit", "4", "--max-new-tokens", "24", "--steps", "4"]
RUN_FILES = {"spec.json", "environment.json", "metrics.json", "summary.json", "examples.jsonl", "curve.jsonl",
             "train_log.jsonl", "rollouts.jsonl"}
G = 4  # smoke: 2 prompts x 4 completions per step
CURVE_CALLBACK = algorithms.training.curve_callback


class Interrupted(Exception):
    """Raised by the test hook to stop training as a crash or Ctrl-C would."""


def parity_hits(text: str, example: Any, catalog: Any, n_items: int) -> list[float]:
    """Stand-in for `bench.evaluation.evaluator.rank_hits`: the k-th non-blank line hits when its stripped text has an even
    number of characters."""
    row = [float(len(line.strip()) % 2 == 0) for line in split_lines(text)[:n_items]]
    return row + [0.0] * (n_items - len(row))


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("rl-results")


@pytest.fixture(autouse=True)
def stand_in_reward(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "bench-cache"))
    monkeypatch.setattr(algorithms.rl, "rank_hits", parity_hits)


def _hook_validation_callback(monkeypatch: pytest.MonkeyPatch, starts: list[int], stop_at: int | None) -> None:
    """Make RL trainings (not the SFT warm start) record the step they start from in `starts` and, when `stop_at`
    is given, raise Interrupted right after the checkpoint of that step is saved."""
    def hooked(logger: Any, interval: int, select_best: bool = False) -> TrainerCallback:
        class Hooked(type(CURVE_CALLBACK(logger, interval, select_best))):
            def on_train_begin(self, args, state, control, **kwargs):
                if isinstance(args, GRPOConfig):
                    starts.append(state.global_step)
                return super().on_train_begin(args, state, control, **kwargs)

            def on_save(self, args, state, control, **kwargs):
                if isinstance(args, GRPOConfig) and state.global_step == stop_at:
                    raise Interrupted(f"interrupted after the checkpoint of step {stop_at}")

        return Hooked()

    monkeypatch.setattr(algorithms.training, "curve_callback", hooked)


def _run(results: Path, algo: str) -> Any:
    return CliRunner().invoke(app, ["run", "--algo", algo, *RL_ARGS, "--results-dir", str(results)])


def _folder(results: Path, algo: str) -> Path:
    (folder,) = [path for path in (results / "runs").iterdir() if path.name.startswith(f"{algo}-")]
    return folder


def _assert_complete_and_trained(results: Path, algo: str) -> None:
    folder = _folder(results, algo)
    assert RUN_FILES <= {path.name for path in folder.iterdir()}
    assert (folder / "model" / ".complete").is_file()
    assert json.loads((folder / "metrics.json").read_text())["n_examples"] == 4
    sft = load_file(_folder(results, "sft") / "model" / "model.safetensors")
    trained = load_file(folder / "model" / "model.safetensors")
    assert sft.keys() == trained.keys()
    unchanged = [name for name in sft if torch.equal(sft[name], trained[name])]
    assert not unchanged, f"{algo} left these SFT parameters unchanged: {unchanged}"
    sft_digest = json.loads((_folder(results, "sft") / "summary.json").read_text())["artifacts"]["model_digest"]
    assert json.loads((folder / "summary.json").read_text())["artifacts"]["sft_model_digest"] == sft_digest
    assert sft_digest == fingerprint_dir(_folder(results, "sft") / "model", whole_files=True)
    _assert_watch_files(folder, algo)


def _assert_watch_files(folder: Path, algo: str) -> None:
    log = [json.loads(line) for line in (folder / "train_log.jsonl").read_text().splitlines()]
    assert sorted({line["step"] for line in log}) == [1, 2, 3, 4]
    for line in log:
        assert {"loss", "reward_mean", "reward_std", "frac_tied_groups", "learning_rate", "step_seconds",
                "mean_completion_length", "items_emitted", "format_rate", "generated_tokens_per_s"} <= line.keys()
        assert 0.0 <= line["frac_tied_groups"] <= 1.0 and line["step_seconds"] > 0
    rollouts = [json.loads(line) for line in (folder / "rollouts.jsonl").read_text().splitlines()]
    by_step: dict[int, list[dict[str, Any]]] = {}
    for record in rollouts:
        by_step.setdefault(record["step"], []).append(record)
    assert sorted(by_step) == [2, 4] and all(len(records) == 2 * G for records in by_step.values())
    log_by_step = {line["step"]: line for line in log}
    for step, records in by_step.items():
        assert all(record["prompt_id"] and record["completion"] is not None for record in records)
        hits = torch.tensor([record["hits"] for record in records])
        if algo == "rank_grpo":  # exp_inf: per-rank rewards are the hits, normalised per rank over each group
            torch.testing.assert_close(torch.tensor([r["rank_rewards"] for r in records]), hits)
            expected = rank_advantages(hits, G)
            torch.testing.assert_close(torch.tensor([r["rank_advantages"] for r in records]), expected)
            rewards = hits
        else:  # scalar NDCG@20 reward, normalised over each group (TRL's scale_rewards="group")
            rewards = torch.tensor([[record["reward"]] for record in records])
            expected = rank_advantages(rewards, G)[:, 0]
            torch.testing.assert_close(torch.tensor([r["advantage"] for r in records]), expected)
        grouped = rewards.view(-1, G, rewards.size(1))  # a group is tied when every column ties across it
        tied = (grouped.amax(dim=1) == grouped.amin(dim=1)).all(dim=1).float().mean().item()
        assert log_by_step[step]["frac_tied_groups"] == pytest.approx(tied)


def test_grpo_resumes_from_its_checkpoint_after_an_interruption(results: Path, monkeypatch: pytest.MonkeyPatch):
    starts: list[int] = []
    _hook_validation_callback(monkeypatch, starts, stop_at=2)
    interrupted = _run(results, "grpo")
    assert isinstance(interrupted.exception, Interrupted), interrupted.output
    folder = RunFolder(_folder(results, "grpo"))
    assert not folder.is_complete()
    assert [path.name for path in folder.checkpoints_dir.glob("checkpoint-*")] == ["checkpoint-2"]
    assert [point["step"] for point in folder.read_curve()] == [0, 2]

    _hook_validation_callback(monkeypatch, starts, stop_at=None)
    resumed = _run(results, "grpo")
    assert resumed.exit_code == 0, resumed.output
    assert starts == [0, 2]
    raw_steps = [json.loads(line)["step"] for line in folder.curve_path.read_text().splitlines()]
    assert raw_steps == [0, 2, 4]  # no step validated twice, even before RunFolder.read_curve's dedupe
    state = json.loads((folder.checkpoints_dir / "checkpoint-4" / "trainer_state.json").read_text())
    assert [entry["step"] for entry in state["log_history"] if "loss" in entry] == [1, 2, 3, 4]
    _assert_complete_and_trained(results, "grpo")


@pytest.mark.parametrize("algo", ["gspo", "rank_grpo"])
def test_rl_smoke_run_trains_the_sft_model(results: Path, algo: str):
    result = _run(results, algo)
    assert result.exit_code == 0, result.output
    _assert_complete_and_trained(results, algo)
    spec = json.loads((_folder(results, algo) / "spec.json").read_text())
    assert spec["missing_rank_credit"] is False
    clip = {"gspo": (3e-4, 4e-4, "grpo"), "rank_grpo": (0.06, 0.08, "bnpo")}[algo]
    assert (spec["epsilon_low"], spec["epsilon_high"], spec["loss_type"]) == clip


def test_null_control_logs_real_scores_and_feeds_calibration(results: Path):
    result = CliRunner().invoke(app, ["run", "--algo", "grpo", "--reward-signal", "shuffled", *RL_ARGS,
                                      "--results-dir", str(results)])
    assert result.exit_code == 0, result.output
    (folder,) = [path for path in (results / "runs").iterdir()
                 if json.loads((path / "spec.json").read_text())["reward_signal"] == "shuffled"]
    assert "grpo+null" in result.output
    log = [json.loads(line) for line in (folder / "train_log.jsonl").read_text().splitlines()]
    assert all({"sampled_ndcg@20", "best_of_g_ndcg@20"} <= line.keys() for line in log)
    assert all(line["best_of_g_ndcg@20"] >= line["sampled_ndcg@20"] for line in log)
    curve = RunFolder(folder).read_curve()
    assert {"batch_greedy_ndcg@20", "batch_sampled_ndcg@20", "ndcg@20_se"} <= curve[-1].keys()
    # the rewards TRL got are the real ones (from the logged hits) permuted within each group, and not all in place
    data = load_dataset("redial")
    scorer = algorithms.rl.ListRewards({example.id: example for example in data.split("train")}, data.catalog)
    records = [json.loads(line) for line in (folder / "rollouts.jsonl").read_text().splitlines()]
    moved = 0
    for start in range(0, len(records), G):
        group = records[start:start + G]
        real = [scorer.ndcg(record["hits"], record["example_id"]) for record in group]
        assert sorted(record["reward"] for record in group) == pytest.approx(sorted(real))
        moved += any(record["reward"] != pytest.approx(value) for record, value in zip(group, real))
    assert moved > 0
    calibrated = CliRunner().invoke(app, ["calibrate", "--dataset", "redial", "--preset", "smoke", "--seeds", "0",
                                          "--temperatures", "0.5,1.0", "--prompts", "2", *RL_ARGS[4:],
                                          "--results-dir", str(results)])
    assert calibrated.exit_code == 0, calibrated.output
    assert "grpo+null lr 0.0001: 1 seeds" in calibrated.output and "n/a (one seed)" in calibrated.output
    written = json.loads((results / "calibration" / "redial-tiny-smoke.json").read_text())
    assert [row["temperature"] for row in written["temperatures"]] == [0.5, 1.0]
    assert all(row["groups"] == 2 and row["tied_ci95"][0] <= row["tied_share"] <= row["tied_ci95"][1]
               and row["no_hit_share"] <= row["tied_share"] for row in written["temperatures"])
    assert written["null_drift"][0]["method"] == "grpo"
    assert (written["learning_rate"], written["learning_rate_qualified"]) == (1e-4, False)  # one seed: no bound


def _config(algo: str, tmp_path: Path, preset: str = "smoke", report_to: str = "none", **fields: Any) -> Any:
    spec = make_spec(algo, "tiny", preset, **fields)
    context = RunContext(spec, load_dataset(spec.dataset), RunFolder(tmp_path), tmp_path, tmp_path,
                         report_to=report_to)
    return algorithms.rl.rl_config(context, tmp_path)


def test_trl_configs_per_algorithm(tmp_path: Path):
    gspo = _config("gspo", tmp_path)
    assert (gspo.importance_sampling_level, gspo.loss_type, gspo.epsilon, gspo.epsilon_high) == (
        "sequence", "grpo", 3e-4, 4e-4)
    grpo = _config("grpo", tmp_path)
    assert (grpo.importance_sampling_level, grpo.loss_type, grpo.epsilon, grpo.epsilon_high) == (
        "token", "bnpo", 0.2, 0.2)
    rank = _config("rank_grpo", tmp_path)
    assert rank.length_shaping and not rank.missing_rank_credit and rank.importance_sampling_level == "token"
    assert (rank.loss_type, rank.epsilon, rank.epsilon_high, rank.beta) == ("bnpo", 0.06, 0.08, 0.0)
    assert _config("rank_grpo", tmp_path, missing_rank_credit=True).missing_rank_credit
    unshaped = _config("rank_grpo", tmp_path, length_shaping=False)
    assert not unshaped.length_shaping and not unshaped.missing_rank_credit
    assert _config("rank_grpo", tmp_path, loss_type="dapo", epsilon_high=0.1).epsilon_high == 0.1
    assert gspo.per_device_train_batch_size == 8  # smoke: 2 prompts x 4 completions, one process
    assert (gspo.gradient_accumulation_steps, gspo.optim, gspo.adam_beta2) == (1, "adamw_torch", 0.999)
    assert gspo.report_to == [] and _config("grpo", tmp_path, report_to="tensorboard").report_to == ["tensorboard"]
    with pytest.raises(BenchError, match="--report-to"):
        _config("grpo", tmp_path, report_to="mlflow")


def test_paper_config_reaches_384_completions_by_accumulation(tmp_path: Path):
    paper = _config("rank_grpo", tmp_path, preset="paper")
    assert (paper.per_device_train_batch_size, paper.gradient_accumulation_steps) == (16, 24)  # 16 x 24 = 48 x 8
    assert (paper.adam_beta1, paper.adam_beta2, paper.learning_rate, paper.beta) == (0.9, 0.99, 1e-6, 1e-3)
    assert (paper.max_completion_length, paper.num_generations, paper.temperature) == (1024, 8, 1.0)
    assert paper.max_steps == 116  # ceil(2 epochs x 2,771 ReDial training examples / 48 prompts)
    assert paper.optim in ("paged_adamw_8bit", "adamw_torch")


def test_a_step_splits_over_processes():
    assert algorithms.rl.per_device_batch(32, 4) == 8
    with pytest.raises(BenchError, match="do not split over 3 processes"):
        algorithms.rl.per_device_batch(32, 3)


def test_step_time_command_prints_both_trainers_and_the_ratio():
    result = CliRunner().invoke(app, ["bench", "step-time", "--model", "tiny", "--steps", "1", "--num-generations",
                                      "2", "--prompts", "2", "--max-new-tokens", "8", "--preset", "smoke"])
    assert result.exit_code == 0, result.output
    lines = dict(line.split(":", 1) for line in result.output.strip().splitlines()[-3:])
    assert {"rank_grpo", "grpo", "ratio"} == {key.strip() for key in lines}
    assert float(lines["rank_grpo"].split()[0]) > 0 and float(lines["grpo"].split()[0]) > 0
