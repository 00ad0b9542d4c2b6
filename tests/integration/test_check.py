"""`bench check`: verdicts and tolerances on hand-made numbers, then the command on a cheap configuration (popularity
on the synthetic dataset): update measures the tolerance by a rerun in a fresh process, the check passes, a moved
reference fails in either direction (table, FAIL lines, --json), a stale reference is an error. Never reads the
committed reference numbers; the injected faults are in test_check_faults.py."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench.data.datasets import load_dataset
from bench.runs.check import load_config
from bench.runs.verdicts import (
    Observation,
    Pass,
    TolerancePolicy,
    build_reference,
    compare,
    verdict,
)
from cli import app

runner = CliRunner()
CONFIG = {"algos": ["popularity"], "models": ["tiny"], "datasets": ["synthetic:check"], "seeds": [0],
          "preset": "smoke", "preset_overrides": {"eval_limit": 20}, "metrics": ["recall@20", "in_catalog_rate"],
          "threads": 1, "tolerance": {"rerun_threads": [2], "margin": 3.0, "absolute": 1e-6}}
KEY = "popularity/none/synthetic:check"
POLICY = TolerancePolicy(rerun_threads=(1,), margin=3.0, absolute=1e-6, seed_std_multiplier=3.0, seed_floor=0.02)


def test_the_check_task_is_a_named_synthetic_size() -> None:
    dataset = load_dataset("synthetic:check")
    assert {split: len(examples) for split, examples in dataset.splits.items()} == {
        "train": 400, "validation": 32, "test": 48}
    assert len(dataset.catalog.items) == 60


def test_verdict_fails_a_move_beyond_tolerance_either_way() -> None:
    assert verdict("ndcg@20", 0.5, 0.01, 0.505) == "ok"
    assert verdict("ndcg@20", 0.5, 0.01, 0.51) == "ok"  # exactly the tolerance
    assert verdict("ndcg@20", 0.5, 0.01, 0.48) == "regressed"
    assert verdict("ndcg@20", 0.5, 0.01, 0.52) == "improved"
    assert verdict("duplicate_rate", 0.5, 0.01, 0.48) == "improved"  # lower is better
    assert verdict("duplicate_rate", 0.5, 0.01, 0.52) == "regressed"


def _pass(values: dict[int, float], threads: int = 1) -> Pass:
    return Pass(tuple(Observation("sft", "tiny", "synthetic", seed, {"ndcg@20": value})
                      for seed, value in values.items()), (), threads, 1.0)


def test_tolerance_is_the_margin_times_the_rerun_movement_or_absolute_when_exact() -> None:
    document = build_reference(_pass({0: 0.30, 1: 0.40}), [_pass({0: 0.31, 1: 0.40}, threads=2)], ["ndcg@20"],
                               POLICY, {"any": "config"}, "bench check --update")
    entry = document["entries"]["sft/tiny/synthetic"]
    moved, exact = entry["runs"]["0"]["ndcg@20"], entry["runs"]["1"]["ndcg@20"]
    assert moved["movement"] == pytest.approx(0.01) and moved["tolerance"] == pytest.approx(0.03)
    assert not moved["deterministic"] and moved["reruns"] == [0.31]
    assert exact["deterministic"] and exact["tolerance"] == 1e-6
    noise = entry["seed_noise"]["ndcg@20"]  # std 0.0707 -> half width 0.212
    assert noise["mean"] == pytest.approx(0.35) and noise["high"] == pytest.approx(0.35 + 3 * 0.0707107, abs=1e-6)
    assert [p["role"] for p in document["passes"]] == ["reference", "rerun"]

    rows = compare(document, [Observation("sft", "tiny", "synthetic", 0, {"ndcg@20": 0.32}),
                              Observation("sft", "tiny", "synthetic", 1, {"ndcg@20": 0.40}),
                              Observation("sft", "tiny", "synthetic", 2, {"ndcg@20": 0.40})], ["ndcg@20"])
    assert [(row.run, row.verdict) for row in rows] == [("sft/tiny/synthetic seed 0", "ok"),
                                                        ("sft/tiny/synthetic seed 1", "ok"),
                                                        ("sft/tiny/synthetic seed 2", "no reference")]
    assert compare(document, [Observation("sft", "tiny", "synthetic", 1, {"ndcg@20": 0.41})],
                   ["ndcg@20"])[0].message() == ("sft/tiny/synthetic seed 1 ndcg@20: 0.410000 vs reference 0.400000 "
                                                 "± 1e-06: improved; run `bench check --update` if intended")


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("check")


@pytest.fixture(autouse=True)
def bench_cache(shared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_CACHE", str(shared / "cache"))


def _check(reference: Path, results: Path, *extra: str) -> tuple[int, str]:
    result = runner.invoke(app, ["check", "--reference", str(reference), "--results-dir", str(results), *extra])
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def updated(shared: Path) -> Path:
    reference = shared / "reference"
    reference.mkdir()
    (reference / "config.json").write_text(json.dumps(CONFIG))
    result = runner.invoke(app, ["check", "--update", "--reference", str(reference), "--results-dir",
                                 str(shared / "update")], env={"BENCH_CACHE": str(shared / "cache")})
    assert result.exit_code == 0, result.output
    return reference


def test_update_measures_tolerances_by_a_rerun_then_the_check_passes(updated: Path, shared: Path) -> None:
    written = json.loads((updated / "metrics.json").read_text())
    assert written["command"] == (f"bench check --update --reference {updated} --results-dir {shared / 'update'}")
    assert written["config"] == CONFIG and load_config(updated).metrics == ("recall@20", "in_catalog_rate")
    assert [(p["role"], p["threads"]) for p in written["passes"]] == [("reference", 1), ("rerun", 2)]
    cell = written["entries"][KEY]["runs"]["0"]["in_catalog_rate"]
    assert cell == {"value": 1.0, "reruns": [1.0], "movement": 0.0, "deterministic": True, "tolerance": 1e-6}
    code, output = _check(updated, shared / "results")
    assert code == 0 and "check passed" in output, output
    assert f"{KEY} seed 0  in_catalog_rate  1.000000" in output and "ok" in output


def test_every_run_is_rerun_unless_reuse_is_asked_for(updated: Path, shared: Path) -> None:
    results = shared / "stale-runs"
    assert _check(updated, results)[0] == 0
    metrics = next((results / "runs").glob("popularity-*")) / "metrics.json"
    metrics.write_text(json.dumps({**json.loads(metrics.read_text()), "in_catalog_rate": 0.5}))
    code, output = _check(updated, results, "--reuse")  # the stale folder is believed
    assert code == 1 and f"FAIL {KEY} seed 0 in_catalog_rate: 0.500000" in output
    assert _check(updated, results)[0] == 0  # the run is executed again and overwrites it


def test_a_moved_reference_fails_both_ways_and_json_says_the_same(updated: Path, shared: Path) -> None:
    moved = shared / "moved"
    moved.mkdir()
    (moved / "config.json").write_text(json.dumps(CONFIG))
    document = json.loads((updated / "metrics.json").read_text())
    cells = document["entries"][KEY]["runs"]["0"]
    cells["in_catalog_rate"]["value"] = 0.9  # observed 1.0: improved
    cells["recall@20"]["value"] += 0.05  # observed lower: regressed
    (moved / "metrics.json").write_text(json.dumps(document))
    code, output = _check(moved, shared / "results")
    assert code == 1, output
    assert f"FAIL {KEY} seed 0 in_catalog_rate: 1.000000 vs reference 0.900000 ± 1e-06: improved; " \
           "run `bench check --update` if intended" in output
    assert f"FAIL {KEY} seed 0 recall@20:" in output and "regressed" in output

    result = runner.invoke(app, ["check", "--reference", str(moved), "--results-dir", str(shared / "results"),
                                 "--json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert not report["passed"] and len(report["problems"]) == 2
    assert {(row["run"], row["metric"], row["verdict"]) for row in report["rows"]} == {
        (f"{KEY} seed 0", "recall@20", "regressed"), (f"{KEY} seed 0", "in_catalog_rate", "improved")}


def test_a_changed_configuration_makes_the_reference_stale(updated: Path, shared: Path) -> None:
    stale = shared / "stale"
    stale.mkdir()
    (stale / "metrics.json").write_text((updated / "metrics.json").read_text())
    (stale / "config.json").write_text(json.dumps({**CONFIG, "seeds": [0, 1]}))
    code, output = _check(stale, shared / "results")
    assert code == 2 and "made from another config.json" in output
