"""End-to-end `bench run` on the tiny backbone: zero-shot, popularity, SFT; run folders, skip and errors."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app

runner = CliRunner()
RUN_FILES = {"spec.json", "environment.json", "metrics.json", "summary.json", "examples.jsonl"}


@pytest.fixture
def bench_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path_factory.getbasetemp() / "bench-cache"
    monkeypatch.setenv("BENCH_CACHE", str(cache))
    return cache


def _run(results: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["run", *args, "--results-dir", str(results), "--preset", "smoke"])
    return result.exit_code, result.output


def _single_run(results: Path, algo: str) -> Path:
    (folder,) = [p for p in (results / "runs").iterdir() if p.name.startswith(algo)]
    return folder


def test_zero_shot_tiny_writes_a_complete_run_and_skips_a_rerun(tmp_path: Path, bench_cache: Path) -> None:
    code, output = _run(tmp_path, "--algo", "zero_shot", "--model", "tiny", "--limit", "6", "--max-new-tokens", "16")
    assert code == 0, output
    folder = _single_run(tmp_path, "zero_shot")
    assert RUN_FILES <= {p.name for p in folder.iterdir()}
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["n_examples"] == 6 and metrics["protocol"] == "standard"
    examples = [json.loads(line) for line in (folder / "examples.jsonl").read_text().splitlines()]
    assert len(examples) == 6 and {"id", "prompt_id", "text", "parsed", "scores"} <= set(examples[0])
    spec = json.loads((folder / "spec.json").read_text())
    assert spec["settings"]["eval_limit"] == 6 and spec["settings"]["max_new_tokens"] == 16
    code, output = _run(tmp_path, "--algo", "zero_shot", "--model", "tiny", "--limit", "6", "--max-new-tokens", "16")
    assert code == 0 and "skipped" in output


def test_popularity_needs_no_model(tmp_path: Path, bench_cache: Path) -> None:
    code, output = _run(tmp_path, "--algo", "popularity", "--limit", "10")
    assert code == 0, output
    folder = _single_run(tmp_path, "popularity")
    assert "-none-" in folder.name
    assert json.loads((folder / "metrics.json").read_text())["in_catalog_rate"] == 1.0


def test_sft_smoke_trains_logs_a_curve_and_saves_a_model(tmp_path: Path, bench_cache: Path) -> None:
    code, output = _run(tmp_path, "--algo", "sft", "--model", "tiny", "--limit", "4", "--max-new-tokens", "24")
    assert code == 0, output
    folder = _single_run(tmp_path, "sft")
    curve = [json.loads(line) for line in (folder / "curve.jsonl").read_text().splitlines()]
    assert curve[0]["step"] == 0 and curve[-1]["step"] == 12
    assert (folder / "model" / ".complete").is_file()
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["artifacts"]["demonstrations"] == "remap-reflect-adjust:ease"


def test_unknown_names_and_missing_weights_fail_with_one_line(tmp_path: Path, bench_cache: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    result = runner.invoke(app, ["run", "--algo", "rank_grp", "--results-dir", str(tmp_path)])
    assert result.exit_code == 2 and "Did you mean 'rank_grpo'" in result.stderr
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = runner.invoke(app, ["run", "--algo", "zero_shot", "--model", "qwen2.5-0.5b", "--preset", "smoke",
                                 "--results-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "Qwen/Qwen2.5-0.5B-Instruct" in result.stderr and len(result.stderr.strip().splitlines()) == 1
