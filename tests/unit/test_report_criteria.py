"""Calibration criteria of `bench report` (bench/report/criteria.py) on small hand-made run folders: headroom margins
worked by hand (met, not met, not measurable without EASE), the signal criterion from tied shares in train_log.jsonl,
room at every rank from ground-truth sizes and SFT hit rates (a known minimum at a known rank, and the single-item
case), malformed examples.jsonl lines skipped and counted, and the section and report.json key."""

import json
from pathlib import Path
from typing import Any

import pytest
from test_report_diagnostics import (
    write_run,  # the fixture writer, loaded once (tests/unit is on sys.path)
)

from bench.report.analysis import AnalysisOptions, analyse
from bench.report.build import build_report
from bench.report.criteria import Criterion, calibrate, read_groundtruth, room
from bench.report.data import group_runs, load_runs
from bench.report.diagnostics import diagnose_group
from bench.runs.folders import atomic_write_json, atomic_write_jsonl
from bench.runs.specs import ALGORITHMS, make_spec

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "report"
CURVE = [[0, 0.1], [4, 0.2]]
OPTIONS = AnalysisOptions(n_bootstrap=200, n_permutations=200)


def run(results: Path, algo: str, seed: int, ranks: list[int], *, groundtruth: list[int] | None = None,
        hit_rate: list[float] | None = None, tied: list[float] | None = None, **fields: Any) -> Path:
    """A complete run folder (tests/fixtures/report/write_runs.py: a number in `ranks` is the rank of the example's
    one hit, 0 none, so NDCG@20 is 1 for rank 1). `groundtruth`: ground-truth list sizes per example;
    `hit_rate`: summary.json hit_rate_at_rank, its first ranks (the rest 0); `tied`: frac_tied_groups per step."""
    write_run(results, algo, seed, ranks, CURVE if ALGORITHMS[algo].trained else None, **fields)
    folder = results / "runs" / make_spec(algo, "tiny", "smoke", dataset="synthetic", seed=seed, **fields).run_id
    if groundtruth is not None:
        examples = [json.loads(line) for line in (folder / "examples.jsonl").read_text().splitlines()]
        atomic_write_jsonl(folder / "examples.jsonl", [{**example, "groundtruth": [f"item{i}" for i in range(size)]}
                                                       for example, size in zip(examples, groundtruth, strict=True)])
    if hit_rate is not None:
        summary = json.loads((folder / "summary.json").read_text())
        atomic_write_json(folder / "summary.json", {**summary, "hit_rate_at_rank": hit_rate + [0.0] * (20 - len(hit_rate))})
    if tied is not None:
        (folder / "train_log.jsonl").write_text("".join(json.dumps({"step": step, "frac_tied_groups": value}) + "\n"
                                                        for step, value in enumerate(tied, start=1)))
    return folder


def calibration(results: Path) -> dict[str, Criterion]:
    records, _ = load_runs(results)
    (group,) = group_runs(records)
    return {c.name: c for c in calibrate(analyse(group, OPTIONS), diagnose_group(group, n_resamples=200))}


def hits(n: int) -> list[int]:
    """10 examples, the first `n` hit at rank 1: NDCG@20 = n / 10."""
    return [1] * n + [0] * (10 - n)


def test_headroom_met_with_margins_by_hand(tmp_path: Path) -> None:
    # S = mean(0.2, 0.1) = 0.15, R = mean(0.1, 0.0) = 0.05, C = 0.3 (EASE, one deterministic run).
    run(tmp_path, "sft", 0, hits(2))
    run(tmp_path, "sft", 1, hits(1))
    run(tmp_path, "random", 0, hits(1))
    run(tmp_path, "random", 1, hits(0))
    run(tmp_path, "ease", 0, hits(3))
    found = calibration(tmp_path)["headroom"]
    measured = found.measured
    assert (measured["sft"]["mean"], measured["random"]["mean"], measured["ease"]["mean"]) == pytest.approx(
        (0.15, 0.05, 0.3))
    # S - R = 0.10, equal to the target up to rounding: it meets it; C - S = 0.15.
    assert (measured["lower_margin"], measured["upper_margin"]) == pytest.approx((0.10, 0.15))
    assert found.met is True and measured["planted_optimum"] == 1.0 and measured["notes"] == []
    assert "S - R = +0.1000, C - S = +0.1500" in found.text and "1.0 by the definition of NDCG" in found.text
    assert measured["sft"]["ci_low"] <= 0.15 <= measured["sft"]["ci_high"]


def test_headroom_not_met_when_the_ceiling_is_close(tmp_path: Path) -> None:
    # S = mean(0.4, 0.2) = 0.3, R = 0.1 (one seed), C = (3 + 1 / log2(4)) / 10 = 0.35 (three hits at rank 1, one
    # at rank 3): lower margin 0.2 met, upper 0.05 not.
    run(tmp_path, "sft", 0, hits(4))
    run(tmp_path, "sft", 1, hits(2))
    run(tmp_path, "random", 0, hits(1))
    run(tmp_path, "ease", 0, [1, 1, 1, 3, 0, 0, 0, 0, 0, 0])
    found = calibration(tmp_path)["headroom"]
    assert found.measured["ease"]["mean"] == pytest.approx(0.35)
    assert (found.measured["lower_margin"], found.measured["upper_margin"]) == pytest.approx((0.2, 0.05))
    assert found.met is False and "C - S = +0.0500" in found.text


def test_headroom_not_measurable_without_ease(tmp_path: Path) -> None:
    run(tmp_path, "sft", 0, hits(3))
    run(tmp_path, "random", 0, hits(0))
    found = calibration(tmp_path)["headroom"]
    assert found.met is None and found.measured["ease"] is None and found.measured["upper_margin"] is None
    assert found.measured["lower_margin"] == pytest.approx(0.3)
    assert found.text.startswith("not measurable: no ease row") and "no ease row." in found.measured["notes"]


def test_signal_from_tied_shares_in_train_log(tmp_path: Path) -> None:
    for seed in (0, 1):
        run(tmp_path, "sft", seed, hits(1))
    # 10 logged steps: the first 10% is step 1 alone. grpo starts at 0.2 and 0.3 tied (mean 0.25, later steps
    # ignored), rank_grpo at 0.5, the variant rank_grpo+log_decay at 0.1.
    run(tmp_path, "grpo", 0, hits(1), tied=[0.2] + [0.9] * 9)
    run(tmp_path, "grpo", 1, hits(1), tied=[0.3] + [0.9] * 9)
    rank = run(tmp_path, "rank_grpo", 0, hits(1), tied=[0.5] * 10)
    run(tmp_path, "rank_grpo", 0, hits(1), tied=[0.1] * 10, reward="log_decay")
    found = calibration(tmp_path)["signal"]
    values = {entry["method"]: entry["tied_start"] for entry in found.measured["methods"]}
    assert values == pytest.approx({"grpo": 0.25, "rank_grpo": 0.5, "rank_grpo+log_decay": 0.1})
    assert found.measured["published"] == ["grpo", "rank_grpo"] and found.met is False
    assert "grpo 0.250, rank_grpo 0.500, rank_grpo+log_decay 0.100" in found.text
    # rank_grpo's tied share at 0.3 exactly: both published rows meet the target.
    (rank / "train_log.jsonl").write_text("".join(json.dumps({"step": s, "frac_tied_groups": 0.3}) + "\n"
                                                  for s in range(1, 11)))
    assert calibration(tmp_path)["signal"].met is True
    # Without a train log for rank_grpo, and no failure elsewhere: not measurable, named.
    (rank / "train_log.jsonl").unlink()
    found = calibration(tmp_path)["signal"]
    assert found.met is None and found.text.startswith("not measurable: no tied share for rank_grpo")


def test_signal_needs_only_the_published_rows_present_and_is_not_measurable_without_either(tmp_path: Path) -> None:
    run(tmp_path, "sft", 0, hits(1))
    run(tmp_path, "grpo", 0, hits(1), tied=[0.1] * 10)
    assert calibration(tmp_path)["signal"].met is True  # rank_grpo absent: grpo alone decides
    other = tmp_path / "other"
    run(other, "sft", 0, hits(1))
    run(other, "rank_grpo", 0, hits(1), tied=[0.1] * 10, reward="log_decay")
    found = calibration(other)["signal"]
    assert found.met is None and found.measured["published"] == [] and "rank_grpo+log_decay 0.100" in found.text
    assert found.text.startswith("not measurable: no grpo or rank_grpo runs")


def test_room_at_every_rank_with_a_known_minimum(tmp_path: Path) -> None:
    # Ground-truth sizes [3, 4, 5, 3]: max_k = 1 for k <= 3, 2/4 at k = 4 (sizes 4 and 5), 1/4 at k = 5, 0 beyond;
    # considered ranks 2-5 (max_k >= 0.25). SFT hit rates, mean over two seeds: rank 2 (0.5 + 0.25) / 2 = 0.375,
    # rank 3 0.75, rank 4 0.25, rank 5 (0.25 + 0) / 2 = 0.125 -> room 0.625, 0.25, 0.25, 0.125: min 0.125 at rank 5.
    run(tmp_path, "sft", 0, [1, 0, 0, 0], groundtruth=[3, 4, 5, 3], hit_rate=[0.5, 0.5, 0.75, 0.25, 0.25, 0.5])
    second = run(tmp_path, "sft", 1, [1, 0, 0, 0], groundtruth=[1, 1, 1, 1],  # only the first run's are read
                 hit_rate=[0.5, 0.25, 0.75, 0.25, 0.0])
    found = calibration(tmp_path)["room"]
    measured = found.measured
    assert measured["max_hit_rate_at_rank"][:6] == [1.0, 1.0, 1.0, 0.5, 0.25, 0.0]
    assert measured["considered_ranks"] == [2, 3, 4, 5] and measured["n_examples"] == 4
    assert [entry["room"] for entry in measured["room_at_rank"]] == pytest.approx([0.625, 0.25, 0.25, 0.125])
    assert (measured["min_room"], measured["min_room_rank"]) == pytest.approx((0.125, 5)) and found.met is True
    assert "ranks 2-5 considered" in found.text and "min room 0.125 at rank 5" in found.text
    assert "rank 2: 0.625, rank 3: 0.250, rank 4: 0.250, rank 5: 0.125" in found.text
    # Seed 1 reaching 0.75 at rank 4: sft_4 = 0.5 = max_4, room 0 there: not met, the minimum at rank 4.
    summary = json.loads((second / "summary.json").read_text())
    summary["hit_rate_at_rank"][3] = 0.75
    atomic_write_json(second / "summary.json", summary)
    found = calibration(tmp_path)["room"]
    assert (found.measured["min_room"], found.measured["min_room_rank"]) == pytest.approx((0.0, 4))
    assert found.met is False


def test_room_not_measurable_with_single_item_ground_truths(tmp_path: Path) -> None:
    run(tmp_path, "sft", 0, [1, 0, 0, 0], groundtruth=[1, 1, 1, 1])
    found = calibration(tmp_path)["room"]
    assert found.met is None and found.measured["considered_ranks"] == []
    assert found.text == "not measurable: fewer than 25% of examples have 2+ ground-truth items (0% of 4)"
    # One example of four with two items: exactly 25%, so rank 2 alone is considered.
    boundary = tmp_path / "boundary"
    run(boundary, "sft", 0, [1, 0, 0, 0], groundtruth=[2, 1, 1, 1], hit_rate=[0.25, 0.1])
    found = calibration(boundary)["room"]
    assert found.measured["considered_ranks"] == [2] and found.measured["min_room"] == pytest.approx(0.15)
    assert found.met is True and "rank 2 considered" in found.text


def test_malformed_examples_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "examples.jsonl"
    lines = [json.dumps({"groundtruth": ["a", "b"]}), "not json {", "[1, 2]", json.dumps({"id": "x"}),
             json.dumps({"groundtruth": "a"}), "", json.dumps({"groundtruth": []}), '{"groundtruth": ["a"']
    path.write_text("\n".join(lines) + "\n")
    found = read_groundtruth(path)
    assert found.sizes == (2, 0) and found.skipped == 5 and found.problem is None
    path.write_bytes(b"\xff\xfe{\x00\n")  # not even UTF-8
    assert read_groundtruth(path).skipped == 1
    assert read_groundtruth(tmp_path / "absent.jsonl").problem == "no absent.jsonl"  # the missing file, by name
    # In a report: an example line without groundtruth is skipped (max_k over the other three) and named.
    folder = run(tmp_path / "results", "sft", 0, [1, 0, 0, 0], groundtruth=[2, 2, 1, 1], hit_rate=[0.5, 0.25])
    examples = (folder / "examples.jsonl").read_text().splitlines()
    first = json.loads(examples[0])
    del first["groundtruth"]
    (folder / "examples.jsonl").write_text("\n".join([json.dumps(first), *examples[1:]]) + "\n")
    report = build_report(tmp_path / "results", tmp_path / "report").report
    measured = report["tables"][0]["calibration"][2]["measured"]
    assert (measured["n_examples"], measured["lines_skipped"]) == (3, 1)
    assert measured["max_hit_rate_at_rank"][1] == pytest.approx(1 / 3)
    assert f"{folder.name}: 1 examples.jsonl line skipped" in (tmp_path / "report" / "report.md").read_text()
    # The file gone after the runs were read: not measurable, named, nothing raised.
    records, _ = load_runs(tmp_path / "results")
    (group,) = group_runs(records)
    (folder / "examples.jsonl").unlink()
    gone = room(analyse(group, OPTIONS))
    assert gone.met is None and gone.text == f"not measurable: no examples.jsonl ({folder.name})"


def test_section_follows_diagnostics_and_report_json_is_strict(tmp_path: Path) -> None:
    run(tmp_path, "sft", 0, hits(2), groundtruth=[3] * 10, hit_rate=[0.2, 0.1])
    run(tmp_path, "random", 0, hits(0))
    run(tmp_path, "grpo", 0, hits(2), tied=[float("nan")] * 4)
    build_report(tmp_path, tmp_path / "report")
    page = (tmp_path / "report" / "report.md").read_text()
    assert (page.index("### Training diagnostics") < page.index("### Calibration: can this table separate methods?")
            < page.index("### Recall at k"))
    assert "| criterion | measured | target | met |" in page and "not which method is better" in page
    assert "| headroom | not measurable: no ease row" in page
    text = (tmp_path / "report" / "report.json").read_text()
    table = json.loads(text, parse_constant=lambda name: pytest.fail(f"non-strict JSON {name}"))["tables"][0]
    entries = table["calibration"]
    assert [entry["criterion"] for entry in entries] == ["headroom", "signal", "room"]
    assert all(set(entry) == {"criterion", "measured", "target", "met"} for entry in entries)
    assert [entry["met"] for entry in entries] == [None, None, True]
    assert entries[1]["measured"]["methods"][0]["tied_start"] is None
