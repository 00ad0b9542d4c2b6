"""SFT keeps the checkpoint with the best validation NDCG@20 (issue 10): the validation is replaced by a fixed
curve whose best trained step is 5 (step 0, the untrained start, scores higher and must not be chosen); the saved
model must then hold checkpoint-5's weights, not the last step's, and train_log.jsonl one line per step.

An SFT run interrupted right after a checkpoint past its best one resumes there when run again (`bench matrix`
reruns an unfinished run): it keeps step 5 as the best, validates and logs each step once, and saves the weights an
uninterrupted run saves."""

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

import algorithms.training
from bench.runs.folders import append_jsonl
from bench.runs.runner import execute
from bench.runs.specs import make_spec

CURVE = {0: 0.9, 5: 0.5, 9: 0.5 - 1e-6}
"""NDCG@20 by step; every other step scores 0.1."""
CURVE_CALLBACK = algorithms.training.curve_callback


class Interrupted(Exception):
    """Raised by the test hook to stop training as a crash or Ctrl-C would."""


def fixed_validation(self: Any, model: Any, tokenizer: Any, step: int, write: bool = True) -> dict[str, Any]:
    point = {"step": step, "wall_seconds": 0.0, "ndcg@20": CURVE.get(step, 0.1)}
    if write:
        append_jsonl(self.ctx.folder.curve_path, point)
    return point


def test_sft_keeps_the_best_validated_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(algorithms.training.CurveLogger, "validate", fixed_validation)
    spec = make_spec("sft", "tiny", "smoke", {"eval_limit": 2, "max_new_tokens": 8})
    outcome = execute(spec, tmp_path / "results", cache_dir=tmp_path / "cache", progress=False)
    folder = outcome.folder
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["artifacts"]["selected_step"] == 5 and summary["artifacts"]["train_steps"] == 12
    checkpoints = sorted(path.name for path in (folder / "checkpoints").glob("checkpoint-*"))
    assert checkpoints == ["checkpoint-12", "checkpoint-5"]  # rotation keeps the best and the last
    kept = load_file(folder / "model" / "model.safetensors")
    best = load_file(folder / "checkpoints" / "checkpoint-5" / "model.safetensors")
    last = load_file(folder / "checkpoints" / "checkpoint-12" / "model.safetensors")
    assert all(torch.equal(kept[name], best[name]) for name in best)
    assert not all(torch.equal(kept[name], last[name]) for name in last)
    log = [json.loads(line) for line in (folder / "train_log.jsonl").read_text().splitlines()]
    assert [line["step"] for line in log] == list(range(1, 13))
    assert all({"loss", "learning_rate", "grad_norm", "step_seconds"} <= line.keys() for line in log)
    assert log[0]["learning_rate"] == 0.0  # 5% warm-up of 12 steps: one step from 0


def test_a_bf16_run_trains_and_saves_float32_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The spec's dtype is the decoding dtype: SFT loads, trains and saves float32 weights whatever it is (on CUDA,
    bf16 autocast over them), so a bf16 run's small steps are not rounded away (`algorithms.training.TRAIN_DTYPE`)."""
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(algorithms.training.CurveLogger, "validate", fixed_validation)
    spec = make_spec("sft", "tiny", "smoke", {"eval_limit": 2, "max_new_tokens": 8}, dtype="bfloat16")
    outcome = execute(spec, tmp_path / "results", cache_dir=tmp_path / "cache", progress=False)
    assert json.loads((outcome.folder / "spec.json").read_text())["dtype"] == "bfloat16"
    saved = load_file(outcome.folder / "model" / "model.safetensors")
    assert {tensor.dtype for tensor in saved.values()} == {torch.float32}


def _hook_sft_callback(monkeypatch: pytest.MonkeyPatch, starts: list[int], stop_at: int | None) -> None:
    """Make SFT record the step each training starts from in `starts` and, when `stop_at` is given, raise
    Interrupted right after the checkpoint of that step is saved."""
    def hooked(logger: Any, interval: int, select_best: bool = False) -> TrainerCallback:
        class Hooked(type(CURVE_CALLBACK(logger, interval, select_best))):
            def on_train_begin(self, args, state, control, **kwargs):
                starts.append(state.global_step)
                return super().on_train_begin(args, state, control, **kwargs)

            def on_save(self, args, state, control, **kwargs):
                if state.global_step == stop_at:
                    raise Interrupted(f"interrupted after the checkpoint of step {stop_at}")

        return Hooked()

    monkeypatch.setattr(algorithms.training, "curve_callback", hooked)


def test_an_interrupted_sft_resumes_to_the_uninterrupted_weights(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(algorithms.training.CurveLogger, "validate", fixed_validation)
    spec = make_spec("sft", "tiny", "smoke", {"eval_limit": 2, "max_new_tokens": 8})
    straight = execute(spec, tmp_path / "straight", cache_dir=tmp_path / "cache", progress=False).folder

    starts: list[int] = []
    _hook_sft_callback(monkeypatch, starts, stop_at=7)
    with pytest.raises(Interrupted):
        execute(spec, tmp_path / "resumed", cache_dir=tmp_path / "cache", progress=False)
    _hook_sft_callback(monkeypatch, starts, stop_at=None)
    resumed = execute(spec, tmp_path / "resumed", cache_dir=tmp_path / "cache", progress=False).folder

    assert starts == [0, 7]  # the rerun started from checkpoint-7
    summary = json.loads((resumed / "summary.json").read_text())
    assert summary["artifacts"]["selected_step"] == 5 and summary["artifacts"]["train_steps"] == 12
    log = [json.loads(line)["step"] for line in (resumed / "train_log.jsonl").read_text().splitlines()]
    assert log == list(range(1, 13))  # steps 1-7, then 8-12 after the resume: none trained twice
    assert [json.loads(line)["step"] for line in (resumed / "curve.jsonl").read_text().splitlines()] == \
        list(range(13))
    kept, reference = (load_file(folder / "model" / "model.safetensors") for folder in (resumed, straight))
    assert kept.keys() == reference.keys()
    for name in reference:
        torch.testing.assert_close(kept[name], reference[name], rtol=0, atol=1e-6)
    last = load_file(resumed / "checkpoints" / "checkpoint-12" / "model.safetensors")
    straight_last = load_file(straight / "checkpoints" / "checkpoint-12" / "model.safetensors")
    for name in straight_last:  # training after the resume followed the same path, not only the restored best
        torch.testing.assert_close(last[name], straight_last[name], rtol=0, atol=1e-6)
