"""Committed per-run records stand on their own.

- Every committed report that names committed per-run records (`runs_from` in its report.json) is rebuilt from them
  by `bench report`'s own code with its recorded options, and its tables come out identical (issue 25: a reader can
  recompute every committed table, CI and seed count from the repository).
- Every committed RL run that records the digest of the SFT weights it started from (`sft_model_digest`, code
  d0282f0 on) sits beside its SFT start's record, and that record's `model_digest` is the same (issue 27: a seed's
  RL runs and its null control are paired with one SFT start, also when they ran in different sessions).
"""

import json
from pathlib import Path

import pytest

from bench.report.build import ReportOptions, build_report

ROOT = Path(__file__).resolve().parents[2]
RUN_SUMMARIES = sorted((ROOT / "results").rglob("runs/*/summary.json"))
REBUILDABLE = sorted(path for path in (ROOT / "results").rglob("report.json")
                     if (ROOT / json.loads(path.read_text(encoding="utf-8")).get("runs_from", "/nonexistent")
                         / "runs").is_dir())


def test_some_committed_report_is_rebuildable() -> None:
    assert REBUILDABLE, "no committed report names committed run records"


@pytest.mark.parametrize("report_json", REBUILDABLE, ids=lambda path: str(path.parent.relative_to(ROOT)))
def test_a_committed_report_rebuilds_from_its_records(report_json: Path, tmp_path: Path) -> None:
    committed = json.loads(report_json.read_text(encoding="utf-8"))
    build_report(ROOT / committed["runs_from"], tmp_path, ReportOptions.from_json(committed["options"]))
    tables = sorted(report_json.parent.rglob("*.csv"))
    assert tables
    for table in tables:
        rebuilt = tmp_path / table.relative_to(report_json.parent)
        assert rebuilt.read_text(encoding="utf-8") == table.read_text(encoding="utf-8"), table


def unpaired_rl_runs(runs_dir: Path) -> list[str]:
    """One line per RL run record in `runs_dir` whose SFT start is not the SFT record beside it: the start's folder
    (named by `artifacts.sft_model`) is missing from `runs_dir`, or its `model_digest` differs from the RL run's
    `sft_model_digest`. Records written before the digests existed (either field absent) are not judged."""
    problems = []
    for summary_path in sorted(runs_dir.glob("*/summary.json")):
        artifacts = json.loads(summary_path.read_text(encoding="utf-8")).get("artifacts", {})
        if "sft_model_digest" not in artifacts:
            continue
        sft_summary = runs_dir / Path(artifacts["sft_model"]).parent.name / "summary.json"
        if not sft_summary.is_file():
            problems.append(f"{summary_path.parent.name}: its SFT start {sft_summary.parent.name} is not in {runs_dir}")
            continue
        sft_digest = json.loads(sft_summary.read_text(encoding="utf-8")).get("artifacts", {}).get("model_digest")
        if sft_digest is not None and sft_digest != artifacts["sft_model_digest"]:
            problems.append(f"{summary_path.parent.name}: started from weights {artifacts['sft_model_digest']}, "
                            f"but {sft_summary.parent.name} saved {sft_digest}")
    return problems


def _write_summary(folder: Path, artifacts: dict) -> None:
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps({"artifacts": artifacts}), encoding="utf-8")


def test_the_pairing_check_names_a_run_from_other_weights_and_a_missing_start(tmp_path: Path) -> None:
    _write_summary(tmp_path / "sft-s4", {"model_digest": "aaa"})
    _write_summary(tmp_path / "sft-s2", {})
    _write_summary(tmp_path / "grpo-s4", {"sft_model": "/elsewhere/runs/sft-s4/model", "sft_model_digest": "aaa"})
    _write_summary(tmp_path / "rank_grpo-s4", {"sft_model": "/x/runs/sft-s4/model", "sft_model_digest": "bbb"})
    _write_summary(tmp_path / "rank_grpo-s5", {"sft_model": "/x/runs/sft-s5/model", "sft_model_digest": "ccc"})
    _write_summary(tmp_path / "grpo-s2", {"sft_model": "/x/runs/sft-s2/model", "sft_model_digest": "ddd"})
    _write_summary(tmp_path / "grpo-s1", {"sft_model": "/x/runs/sft-s1/model"})
    assert unpaired_rl_runs(tmp_path) == [
        "rank_grpo-s4: started from weights bbb, but sft-s4 saved aaa",
        f"rank_grpo-s5: its SFT start sft-s5 is not in {tmp_path}",
    ]


def test_some_committed_rl_run_records_its_start() -> None:
    assert any("sft_model_digest" in json.loads(path.read_text(encoding="utf-8")).get("artifacts", {})
               for path in RUN_SUMMARIES)


@pytest.mark.parametrize("runs_dir", sorted({path.parent.parent for path in RUN_SUMMARIES}),
                         ids=lambda path: str(path.relative_to(ROOT)))
def test_committed_rl_runs_started_from_the_sft_record_beside_them(runs_dir: Path) -> None:
    assert unpaired_rl_runs(runs_dir) == []
