"""Every committed report that names committed per-run records (`runs_from` in its report.json) is rebuilt from
them by `bench report`'s own code with its recorded options, and its tables come out identical (issue 25: a reader
can recompute every committed table, CI and seed count from the repository)."""

import json
from pathlib import Path

import pytest

from bench.report.build import ReportOptions, build_report

ROOT = Path(__file__).resolve().parents[2]
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
