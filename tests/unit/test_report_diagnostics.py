"""Training diagnostics of `bench report` (bench/report/diagnostics.py) on small hand-made run folders: the hit gain
per rank and the tied-group shares worked by hand, collapse flagged on a shrinking run and not on a healthy one,
malformed train_log lines skipped and counted, missing files named, compute summed, and report.json strict."""

import importlib.util
import json
import math
import os
from pathlib import Path
from typing import Any

import pytest

from bench.report.build import build_report
from bench.report.data import group_runs, load_runs
from bench.report.diagnostics import (
    GroupDiagnostics,
    diagnose_group,
    phases,
    read_train_log,
)
from bench.runs.folders import atomic_write_json
from bench.runs.specs import make_spec

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "report"
CURVE = [[0, 0.1], [4, 0.2]]


def _write_run() -> Any:
    spec = importlib.util.spec_from_file_location("report_fixture_runs", FIXTURES / "write_runs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.write_run


write_run = _write_run()


def _folder(results: Path, algo: str, seed: int) -> Path:
    return results / "runs" / make_spec(algo, "tiny", "smoke", dataset="synthetic", seed=seed).run_id


def run(results: Path, algo: str, seed: int, ranks: list[int], train_log: list[Any] | None = None,
        threads: int | None = None, **summary: Any) -> Path:
    """A complete run folder (tests/fixtures/report/write_runs.py) with summary fields, a train_log.jsonl (dicts are
    lines as JSON, strings are written as they are) and an environment.json added."""
    write_run(results, algo, seed, ranks, CURVE if algo != "popularity" else None)
    folder = _folder(results, algo, seed)
    found = json.loads((folder / "summary.json").read_text())
    atomic_write_json(folder / "summary.json", {**found, **summary})
    if train_log is not None:
        (folder / "train_log.jsonl").write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n"
                                                        for line in train_log))
    if threads is not None:
        atomic_write_json(folder / "environment.json", {"torch_threads": threads})
    return folder


def diagnose(results: Path) -> GroupDiagnostics:
    records, _ = load_runs(results)
    (group,) = group_runs(records)
    return diagnose_group(group, n_resamples=2000)


def steps(n: int, **fields: Any) -> list[dict[str, Any]]:
    """n train_log lines, steps 1..n; a callable field is called with the step."""
    return [{"step": step, **{name: value(step) if callable(value) else value for name, value in fields.items()}}
            for step in range(1, n + 1)]


def test_hit_gain_per_rank_by_hand(tmp_path: Path) -> None:
    # 4 test examples each; a number is the rank of the example's hit (0: none), so the hit rate at rank r is the
    # share of examples whose number is r.
    run(tmp_path, "sft", 0, [2, 0, 0, 0])      # rank 2: 1/4
    run(tmp_path, "sft", 1, [0, 0, 1, 0])      # rank 1: 1/4
    run(tmp_path, "grpo", 0, [1, 0, 3, 0])     # rank 1: 1/4, rank 3: 1/4 -> gain r1 +1/4, r2 -1/4, r3 +1/4
    run(tmp_path, "grpo", 1, [1, 1, 0, 7])     # rank 1: 2/4, rank 7: 1/4 -> gain r1 +1/4, r7 +1/4
    (method,) = diagnose(tmp_path).methods
    expected = [0.0] * 20
    expected[0], expected[1], expected[2], expected[6] = 0.25, -0.125, 0.125, 0.125
    assert method.hit_gain == pytest.approx(expected)
    assert [run.hit_gain[:7] for run in method.runs] == [pytest.approx([0.25, -0.25, 0.25, 0, 0, 0, 0]),
                                                        pytest.approx([0.25, 0, 0, 0, 0, 0, 0.25])]
    assert method.ranks_2_5 == pytest.approx((-0.125 + 0.125) / 4)
    assert method.ranks_6_20 == pytest.approx(0.125 / 15)
    # Ranks 2-20 per seed: 0 and 0.25 / 19; both seeds gain 1/4 at rank 1, so its seed interval is that point.
    assert method.ranks_2_20 is not None and method.ranks_2_20.mean == pytest.approx(0.125 / 19)
    assert method.ranks_2_20.low < method.ranks_2_20.mean < method.ranks_2_20.high
    assert method.rank1 is not None and (method.rank1.low, method.rank1.high) == pytest.approx((0.25, 0.25))
    assert method.n_gain_seeds == 2


def test_one_seed_has_no_interval_and_says_so(tmp_path: Path) -> None:
    run(tmp_path, "sft", 0, [2, 0])
    run(tmp_path, "grpo", 0, [1, 0])
    report = build_report(tmp_path, tmp_path / "report").report
    (entry,) = report["tables"][0]["diagnostics"]["methods"]
    assert entry["hit_gain_rank1"] == {"mean": 0.5, "ci_low": None, "ci_high": None}
    assert "+0.5000 (1 seed)" in (tmp_path / "report" / "report.md").read_text()


def test_phases_by_hand() -> None:
    # 20 steps logging step / 20: the first 10% is steps 1-2, the last 10% steps 19-20, the middle steps 3-18.
    found = phases(steps(20, frac_tied_groups=lambda s: s / 20), "frac_tied_groups")
    assert (found.start, found.middle, found.end, found.n_steps) == pytest.approx((0.075, 0.525, 0.975, 20))
    # At least one step: 5 steps -> first step, steps 2-4, last step; a single step is start and end, no middle.
    five = phases(steps(5, x=lambda s: float(s)), "x")
    assert (five.start, five.middle, five.end) == pytest.approx((1.0, 3.0, 5.0))
    one = phases(steps(1, x=0.4), "x")
    assert (one.start, one.middle, one.end) == (0.4, None, 0.4)
    # Steps without the field (mu > 1 reuses a batch) and non-numbers do not count.
    assert phases([{"step": 1}, {"step": 2, "x": "a"}, {"step": 3, "x": True}], "x").n_steps == 0


def test_tied_share_start_middle_end_per_method_and_run(tmp_path: Path) -> None:
    run(tmp_path, "sft", 0, [1, 0])
    run(tmp_path, "sft", 1, [1, 0])
    # Seed 0 ties 20% then 50% then 80%; seed 1 ties 40% throughout: start (0.2 + 0.4) / 2 = 0.3, target met.
    tied0 = lambda s: 0.2 if s <= 2 else 0.8 if s >= 19 else 0.5
    run(tmp_path, "rank_grpo", 0, [1, 0], steps(20, frac_tied_groups=tied0, mean_completion_length=50.0,
                                                  items_emitted=20.0))
    run(tmp_path, "rank_grpo", 1, [1, 0], steps(10, frac_tied_groups=0.4, mean_completion_length=lambda s: 40.0 + s,
                                                  items_emitted=20.0))
    report = build_report(tmp_path, tmp_path / "report").report
    (method,) = report["tables"][0]["diagnostics"]["methods"]
    assert (method["tied_start"], method["tied_middle"], method["tied_end"]) == pytest.approx((0.3, 0.45, 0.6))
    assert method["tied_start_meets_target"] is True
    assert [r["tied_start"] for r in method["runs"]] == pytest.approx([0.2, 0.4])
    # Completion length: seed 0 50 -> 50, seed 1 41 (step 1) -> 50 (step 10).
    assert (method["completion_length_first"], method["completion_length_last"]) == pytest.approx((45.5, 50.0))
    page = (tmp_path / "report" / "report.md").read_text()
    assert "30% / 45% / 60%" in page and "45.5 → 50.0" in page and "no collapse." in page


def test_collapse_flagged_on_a_shrinking_run_and_not_on_a_healthy_one(tmp_path: Path) -> None:
    for seed in (0, 1):
        run(tmp_path, "sft", seed, [1, 0], mean_list_length=18.0)
    # Seed 0 shrinks: 20 items per completion at first, 6 at the end (below half), test list length 3 < 5 from 18.
    shrinking = run(tmp_path, "grpo", 0, [1, 0], steps(10, items_emitted=lambda s: 20.0 if s == 1 else 6.0 if s == 10
                                                         else 12.0), mean_list_length=3.0)
    run(tmp_path, "grpo", 1, [1, 0], steps(10, items_emitted=lambda s: 19.0 + s % 2), mean_list_length=17.0)
    diagnostics = diagnose(tmp_path)
    (method,) = diagnostics.methods
    sick, healthy = method.runs
    assert sick.collapsed and len(sick.collapse_reasons) == 2 and not healthy.collapsed
    assert [run.run_id for run in diagnostics.collapsed] == [shrinking.name]
    assert sick.list_length_drift == pytest.approx(-15.0) and healthy.list_length_drift == pytest.approx(-1.0)
    build_report(tmp_path, tmp_path / "report")
    page = (tmp_path / "report" / "report.md").read_text()
    assert f"{shrinking.name} (test list length 3.0 < 5 (SFT start 18.0), items emitted 20.0 -> 6.0" in page
    assert json.loads((tmp_path / "report" / "report.json").read_text())["tables"][0]["diagnostics"][
        "collapsed"] == [shrinking.name]


def test_a_short_list_is_no_collapse_when_sft_was_short_too(tmp_path: Path) -> None:
    run(tmp_path, "sft", 0, [1, 0], mean_list_length=6.0)
    run(tmp_path, "grpo", 0, [1, 0], steps(3, items_emitted=5.0), mean_list_length=4.0)
    assert not diagnose(tmp_path).collapsed


def test_malformed_train_log_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    run(tmp_path, "sft", 0, [1, 0])
    lines = [{"step": 1, "frac_tied_groups": 0.5}, "not json {", "[1, 2]", {"loss": 1.0}, {"step": "2"},
             {"step": True}, "", {"step": 2, "frac_tied_groups": 0.9}, {"step": 2, "frac_tied_groups": 0.1},
             '{"step": 3, "frac_tied_gr']  # the last one torn by an interruption; step 2 logged again (resume)
    folder = run(tmp_path, "grpo", 0, [1, 0], lines)
    log = read_train_log(folder / "train_log.jsonl")
    assert log.skipped == 6 and [line["step"] for line in log.lines] == [1, 2] and log.lines[1][
        "frac_tied_groups"] == 0.1
    report = build_report(tmp_path, tmp_path / "report").report
    (entry,) = report["tables"][0]["diagnostics"]["methods"][0]["runs"]
    assert entry["train_log_skipped"] == 6 and entry["train_log_steps"] == 2
    assert f"{folder.name}: 6 malformed train_log.jsonl lines skipped." in (tmp_path / "report" / "report.md").read_text()
    (folder / "train_log.jsonl").write_bytes(b"\xff\xfe{\x00\n")  # not even UTF-8
    assert read_train_log(folder / "train_log.jsonl").skipped == 1


def test_missing_files_are_named_and_break_nothing(tmp_path: Path) -> None:
    run(tmp_path, "sft", 0, [1, 0])
    old = run(tmp_path, "grpo", 0, [1, 0])  # an old run: no train_log.jsonl, no environment.json
    orphan = run(tmp_path, "gspo", 1, [0, 1], steps(2, frac_tied_groups=0.5))  # its SFT start (seed 1) is absent
    odd = run(tmp_path, "rank_grpo", 0, [0, 1])
    (odd / "summary.json").write_text("[]")  # a summary that is not an object: the run is left out, named
    _, left_out = load_runs(tmp_path)
    assert [note for note in left_out if note.startswith(odd.name) and "not a JSON object" in note]
    diagnostics = diagnose(tmp_path)
    grpo, gspo = diagnostics.methods
    assert grpo.runs[0].missing == ("no train_log.jsonl",) and grpo.hit_gain is not None
    assert gspo.hit_gain is None and gspo.runs[0].tied.start == 0.5
    assert f"no train_log.jsonl: {old.name}." in diagnostics.notes
    assert any(note.startswith("no SFT start found") and orphan.name in note for note in diagnostics.notes)
    build_report(tmp_path, tmp_path / "report")
    page = (tmp_path / "report" / "report.md").read_text()
    assert page.index("### Training curves") < page.index("### Training diagnostics") < page.index(
        "### Recall at k")
    assert "Missing or skipped: " in page and "no train_log.jsonl" in page


def test_a_table_without_rl_says_so(tmp_path: Path) -> None:
    run(tmp_path, "popularity", 0, [1, 0], predict_seconds=2.5, threads=1)
    run(tmp_path, "sft", 0, [1, 0], predict_seconds=10.0, threads=1)
    build_report(tmp_path, tmp_path / "report")
    page = (tmp_path / "report" / "report.md").read_text()
    assert "### Training diagnostics" in page and "No RL runs (grpo, gspo, rank_grpo) in this table" in page
    assert "12.5 wall seconds on 1 thread over the table's 2 run folders" in page


def test_compute_wall_and_thread_seconds_with_a_nested_sft_start(tmp_path: Path) -> None:
    run(tmp_path, "popularity", 0, [1, 0], predict_seconds=1.0, threads=2)
    sft = run(tmp_path, "sft", 0, [1, 0], predict_seconds=100.0, threads=2)
    run(tmp_path, "sft", 1, [1, 0], predict_seconds=50.0, threads=2)
    inside = run(tmp_path, "grpo", 0, [1, 0], predict_seconds=300.0, threads=2)
    run(tmp_path, "grpo", 1, [1, 0], predict_seconds=80.0, threads=4)
    beside = run(tmp_path, "rank_grpo", 0, [1, 0], predict_seconds=500.0, threads=2)
    # grpo seed 0 built its SFT start itself: sft's metrics.json written after grpo's spec.json, before its summary.
    # rank_grpo seed 0 ran at the same time (it waited on that SFT run): the SFT seconds come off once, not twice.
    for folder in (inside, beside):
        os.utime(folder / "spec.json", ns=(10**18, 10**18))
        os.utime(folder / "summary.json", ns=(3 * 10**18, 3 * 10**18))
    os.utime(sft / "metrics.json", ns=(2 * 10**18, 2 * 10**18))
    diagnostics = diagnose(tmp_path)
    rows = {row.method: row for row in diagnostics.compute}
    assert rows["sft"].wall_seconds == 150.0 and rows["grpo"].wall_seconds == 200.0 + 80.0
    assert rows["grpo"].threads == (2, 4) and rows["grpo"].thread_seconds == 200.0 * 2 + 80.0 * 4
    assert diagnostics.nested_sft_seconds == 100.0 and rows["rank_grpo"].wall_seconds == 500.0
    total = diagnostics.total
    assert (total.wall_seconds, total.thread_seconds, total.n_runs) == (931.0, 1.0 * 2 + 300.0 + 720.0 + 1000.0, 6)
    # A run without environment.json: its threads unknown, so no thread-seconds for its row or the total.
    (inside / "environment.json").unlink()
    unknown = diagnose(tmp_path)
    assert {row.method: row.thread_seconds for row in unknown.compute}["grpo"] is None
    assert unknown.total.thread_seconds is None and unknown.total.runs_without_threads == 1
    report = build_report(tmp_path, tmp_path / "report").report
    compute = report["tables"][0]["diagnostics"]["compute"]
    assert compute["wall_seconds"] == 931.0 and compute["thread_seconds"] is None and compute["threads"] == [2, 4]


def test_report_json_diagnostics_are_strict_json(tmp_path: Path) -> None:
    run(tmp_path, "sft", 0, [1, 0])
    run(tmp_path, "grpo", 0, [1, 0], steps(4, frac_tied_groups=float("nan"), items_emitted=3.0))
    build_report(tmp_path, tmp_path / "report")
    text = (tmp_path / "report" / "report.json").read_text()
    diagnostics = json.loads(text, parse_constant=lambda name: pytest.fail(f"non-strict JSON {name}"))["tables"][0][
        "diagnostics"]
    (entry,) = diagnostics["methods"]
    assert entry["tied_start"] is None and entry["items_first"] == 3.0 and entry["hit_gain_ranks_2_20"]["ci_low"] is None
    assert set(entry) >= {"hit_gain_at_rank", "hit_gain_rank1", "hit_gain_ranks_2_5", "hit_gain_ranks_6_20",
                          "list_length_drift", "tied_start", "tied_middle", "tied_end", "runs"}
    assert len(entry["hit_gain_at_rank"]) == 20 and not any(math.isnan(v) for v in entry["hit_gain_at_rank"])
