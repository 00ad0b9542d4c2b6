"""`bench calibrate` passes every option set to the runs it builds: the SFT starts it probes must be the ones the
matrix will use (issue 27's rule S compares a LoRA SFT start with full fine-tuning through this command)."""

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import experiments.calibration
from bench.errors import BenchError
from cli import app


def test_lora_and_sft_options_reach_the_probed_specs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    def capture(model: str, dataset: str, preset: str, seeds: Any, temperatures: Any, prompts: int,
                results_dir: Path, overrides: dict[str, Any], fields: dict[str, Any], log: Any) -> None:
        seen.update(model=model, overrides=overrides, fields=fields, temperatures=temperatures, seeds=seeds)
        raise BenchError("stop here")

    monkeypatch.setattr(experiments.calibration, "calibrate", capture, raising=True)
    result = CliRunner().invoke(app, ["calibrate", "--model", "smollm2-135m", "--dataset", "redial", "--preset",
                                      "cpu-small", "--seeds", "100", "--temperatures", "0.7,1.0", "--lora-r", "16",
                                      "--sft-steps", "150", "--num-generations", "8", "--backend", "vllm",
                                      "--results-dir", str(tmp_path)])
    assert result.exit_code == 2 and "stop here" in result.output
    assert seen["fields"]["lora_r"] == 16 and seen["fields"]["backend"] == "vllm"
    assert seen["overrides"]["sft_max_steps"] == 150 and seen["overrides"]["num_generations"] == 8
    assert list(seen["seeds"]) == [100] and list(seen["temperatures"]) == [0.7, 1.0]
