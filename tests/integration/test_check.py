"""`bench check`: the band rule and the comparison on hand-made numbers, then pass / fail / update / stale on a
hand-made reference over a cheap configuration (popularity on the synthetic dataset). Never reads the committed
reference numbers."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench.runs.check import Observation, band, compare, load_config
from cli import app

runner = CliRunner()
CONFIG = {"algos": ["popularity"], "models": ["tiny"], "datasets": ["synthetic"], "seeds": [0], "preset": "smoke",
          "preset_overrides": {"eval_limit": 20}, "metrics": ["recall@20", "in_catalog_rate"],
          "tolerance": {"std_multiplier": 3.0, "floor": 0.02}}
KEY = "popularity/none/synthetic"


def test_band_is_mean_plus_minus_the_larger_of_three_std_and_the_floor() -> None:
    wide = band([0.1, 0.2, 0.3], 3.0, 0.02)  # sample std 0.1 -> half width 0.3
    assert wide["mean"] == pytest.approx(0.2) and wide["std"] == pytest.approx(0.1)
    assert (wide["low"], wide["high"]) == (pytest.approx(-0.1), pytest.approx(0.5))
    narrow = band([0.5, 0.5], 3.0, 0.02)  # std 0 -> the floor
    assert (narrow["low"], narrow["high"]) == (pytest.approx(0.48), pytest.approx(0.52))
    assert band([0.4], 3.0, 0.05)["std"] == 0.0


def test_compare_flags_only_metrics_outside_their_band() -> None:
    reference = {"entries": {KEY: {"metrics": {"recall@20": {"mean": 0.2, "low": 0.1, "high": 0.3},
                                               "in_catalog_rate": {"mean": 1.0, "low": 0.98, "high": 1.02}}}}}
    inside = Observation("popularity", "none", "synthetic", 0, {"recall@20": 0.25, "in_catalog_rate": 1.0})
    outside = Observation("popularity", "none", "synthetic", 1, {"recall@20": 0.35, "in_catalog_rate": 1.0})
    unknown = Observation("ease", "none", "synthetic", 0, {"recall@20": 0.2, "in_catalog_rate": 1.0})
    assert compare(reference, [inside], ["recall@20", "in_catalog_rate"]) == []
    problems = compare(reference, [inside, outside, unknown], ["recall@20", "in_catalog_rate"])
    assert problems == [f"{KEY} seed 1 recall@20 = 0.3500 outside [0.1000, 0.3000] (reference mean 0.2000)",
                        "ease/none/synthetic seed 0: no reference entry"]


def _reference(folder: Path, in_catalog: tuple[float, float]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(CONFIG))
    metrics = {"recall@20": {"mean": 0.5, "low": 0.0, "high": 1.0},
               "in_catalog_rate": {"mean": sum(in_catalog) / 2, "low": in_catalog[0], "high": in_catalog[1]}}
    (folder / "metrics.json").write_text(json.dumps({"config": CONFIG, "entries": {KEY: {"metrics": metrics}}}))
    return folder


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("check")


@pytest.fixture(autouse=True)
def bench_cache(shared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_CACHE", str(shared / "cache"))


def _check(reference: Path, results: Path, *extra: str) -> tuple[int, str]:
    result = runner.invoke(app, ["check", "--reference", str(reference), "--results-dir", str(results), *extra])
    return result.exit_code, result.output


def test_check_passes_inside_and_fails_outside_the_band(shared: Path) -> None:
    results = shared / "results"
    code, output = _check(_reference(shared / "pass", (0.99, 1.01)), results)
    assert code == 0 and "check passed" in output, output
    code, output = _check(_reference(shared / "fail", (0.5, 0.6)), results)  # popularity's in-catalog rate is 1
    assert code == 1, output
    assert f"FAIL {KEY} seed 0 in_catalog_rate = 1.0000 outside [0.5000, 0.6000]" in output
    assert "recall@20 =" not in output


def test_update_writes_the_reference_with_its_command_then_passes(shared: Path) -> None:
    reference, results = shared / "update", shared / "results"
    reference.mkdir()
    (reference / "config.json").write_text(json.dumps(CONFIG))
    code, output = _check(reference, results, "--update")
    assert code == 0, output
    written = json.loads((reference / "metrics.json").read_text())
    assert written["command"] == f"bench check --update --reference {reference} --results-dir {results}"
    assert written["config"] == CONFIG and load_config(reference).metrics == ("recall@20", "in_catalog_rate")
    entry = written["entries"][KEY]["metrics"]["in_catalog_rate"]
    assert entry["values"] == [1.0] and (entry["low"], entry["high"]) == (pytest.approx(0.98), pytest.approx(1.02))
    assert _check(reference, results)[0] == 0

    (reference / "config.json").write_text(json.dumps({**CONFIG, "seeds": [0, 1]}))
    code, output = _check(reference, results)
    assert code == 2 and "made from another config.json" in output
