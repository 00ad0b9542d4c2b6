"""Per-run records (`bench records`): every file a report reads is kept, the raw texts are dropped, incomplete runs
are skipped, and an unknown run id is one error naming it."""

import json
from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.runs.records import RECORD_FILES, export_records


def _run(root: Path, name: str, complete: bool = True) -> Path:
    folder = root / "runs" / name
    folder.mkdir(parents=True)
    for file in RECORD_FILES:
        if file != "metrics.json" or complete:
            (folder / file).write_text(f'{{"file": "{file}"}}\n', encoding="utf-8")
    examples = [{"id": "e1", "prompt_id": "p1", "text": "A long answer\n" * 20, "parsed": [["A", 2000]],
                 "groundtruth": [["A", 2000]], "scores": {"ndcg@20": 1.0}}]
    (folder / "examples.jsonl").write_text("".join(json.dumps(line) + "\n" for line in examples), encoding="utf-8")
    (folder / "model").mkdir()
    (folder / "model" / "model.safetensors").write_bytes(b"\0" * 64)
    return folder


def test_records_keep_what_reports_read_and_drop_texts_and_weights(tmp_path: Path) -> None:
    _run(tmp_path / "results", "sft-a")
    _run(tmp_path / "results", "grpo-b", complete=False)
    written = export_records(tmp_path / "results", tmp_path / "out")
    assert [path.name for path in written] == ["sft-a"]  # the incomplete run is not exported
    record = tmp_path / "out" / "runs" / "sft-a"
    assert sorted(path.name for path in record.iterdir()) == sorted([*RECORD_FILES, "examples.jsonl"])
    assert json.loads((record / "metrics.json").read_text()) == {"file": "metrics.json"}
    line = json.loads((record / "examples.jsonl").read_text())
    assert line == {"id": "e1", "prompt_id": "p1", "groundtruth": [["A", 2000]], "scores": {"ndcg@20": 1.0}}


def test_records_of_named_runs_only_and_unknown_names_fail(tmp_path: Path) -> None:
    _run(tmp_path / "results", "sft-a")
    _run(tmp_path / "results", "sft-b")
    assert [path.name for path in export_records(tmp_path / "results", tmp_path / "out", ["sft-b"])] == ["sft-b"]
    with pytest.raises(BenchError, match="no run folder for sft-c"):
        export_records(tmp_path / "results", tmp_path / "out", ["sft-c"])
    with pytest.raises(BenchError, match="no runs directory"):
        export_records(tmp_path / "nothing", tmp_path / "out")
