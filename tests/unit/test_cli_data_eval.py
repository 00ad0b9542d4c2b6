"""`bench data` and `bench eval` through Typer's test runner."""

import json
from pathlib import Path

from typer.testing import CliRunner

from bench.data.datasets import load_dataset
from cli import app

runner = CliRunner()


def test_data_info_prints_real_split_sizes() -> None:
    result = runner.invoke(app, ["data", "info", "redial"])
    assert result.exit_code == 0
    sizes = {split: len(examples) for split, examples in load_dataset("redial").splits.items()}
    assert f"{sizes['test']} samples" in result.output


def test_eval_json_prints_only_the_documented_keys(tmp_path: Path) -> None:
    test = load_dataset("redial").split("test")
    predictions = tmp_path / "p.jsonl"
    lines = [json.dumps({"id": e.id, "text": "\n".join(f"{t} ({y})" for t, y in e.groundtruth)}) for e in test[:50]]
    predictions.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = runner.invoke(app, ["eval", "--dataset", "redial", "--predictions", str(predictions), "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    expected = {f"{m}@{k}" for m in ("recall", "ndcg") for k in (5, 10, 15, 20)}
    expected |= {"in_catalog_rate", "format_rate", "duplicate_rate", "n_examples", "n_missing", "protocol"}
    assert set(metrics) == expected
    assert metrics["n_missing"] == len(test) - 50
    assert metrics["recall@5"] > 0


def test_eval_errors_are_one_line(tmp_path: Path) -> None:
    predictions = tmp_path / "p.jsonl"
    predictions.write_text('{"id": "nope", "text": "x"}\n', encoding="utf-8")
    result = runner.invoke(app, ["eval", "--predictions", str(predictions), "--json"])
    assert result.exit_code == 2
    assert "'nope'" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    predictions.write_text("{broken\n", encoding="utf-8")
    result = runner.invoke(app, ["eval", "--predictions", str(predictions)])
    assert result.exit_code == 2 and "p.jsonl: line 1" in result.stderr
