"""`bench check` as a command, on a cheap configuration (popularity on the synthetic check task): update measures
the bands by a perturbed rerun in a fresh process, the check passes (also as another machine, `--perturb`), a moved
reference fails in either direction (table, FAIL lines, --json), and a missing, corrupt, old or stale reference is one
line with the command that regenerates it. Never reads the committed reference numbers; the injected faults and a
trained configuration are in test_check_faults.py, the band arithmetic in tests/unit/test_check_bands.py."""

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench.data.datasets import load_dataset
from bench.runs.check import load_config
from cli import app

runner = CliRunner()
CONFIG = {"algos": ["popularity"], "models": ["tiny"], "datasets": ["synthetic:check"], "seeds": [0],
          "preset": "smoke", "preset_overrides": {"eval_limit": 20}, "metrics": ["recall@20", "in_catalog_rate"],
          "threads": 1, "perturbations": ["threads=2"], "band": {"runs": {"k": 3.0, "floor": 0.02}}}
KEY = "popularity/none/synthetic:check"
TARGET = f"{KEY} seed 0"


def test_the_check_task_is_a_named_synthetic_size() -> None:
    dataset = load_dataset("synthetic:check")
    assert {split: len(examples) for split, examples in dataset.splits.items()} == {
        "train": 400, "validation": 32, "test": 48}
    assert len(dataset.catalog.items) == 60


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


def _copy(updated: Path, folder: Path, document: dict | None = None, config: dict | None = None) -> Path:
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config or CONFIG))
    (folder / "metrics.json").write_text(json.dumps(document or json.loads((updated / "metrics.json").read_text())))
    return folder


def test_update_measures_bands_by_a_perturbed_rerun_then_the_check_passes(updated: Path, shared: Path) -> None:
    written = json.loads((updated / "metrics.json").read_text())
    assert written["command"] == (f"bench check --update --reference {updated} --results-dir {shared / 'update'}")
    assert written["config"] == CONFIG and load_config(updated).metrics == ("recall@20", "in_catalog_rate")
    assert [(p["label"], p["threads"]) for p in written["passes"]] == [("reference", 1), ("threads=2", 2)]
    target = written["targets"][TARGET]
    assert target["sources"] == ["reference", "threads=2"]
    cell = target["metrics"]["in_catalog_rate"]
    assert cell["sample"] == [1.0, 1.0] and cell["std"] == 0.0 and cell["half_width"] == 0.02  # the floor
    assert [(m["source"], m["passed"]) for m in written["leave_one_out"]] == [("reference", True),
                                                                              ("threads=2", True)]
    code, output = _check(updated, shared / "results")
    assert code == 0 and "check passed" in output, output
    assert re.search(rf"^{TARGET} +in_catalog_rate +1 +0\.02 +1 +\+0\.00 +ok$", output, re.MULTILINE), output


def test_a_check_as_another_machine_passes_and_a_bad_perturbation_is_one_line(updated: Path, shared: Path) -> None:
    code, output = _check(updated, shared / "perturbed", "--perturb", "threads=2,onednn=off,jitter=1e-7:9")
    assert code == 0 and "check passed" in output, output
    code, output = _check(updated, shared / "perturbed", "--perturb", "threads=many")
    assert code == 2 and output.strip().count("\n") == 0 and "bad perturbation 'threads=many'" in output


def test_every_run_is_rerun_unless_reuse_is_asked_for(updated: Path, shared: Path) -> None:
    results = shared / "stale-runs"
    assert _check(updated, results)[0] == 0
    metrics = next((results / "runs").glob("popularity-*")) / "metrics.json"
    metrics.write_text(json.dumps({**json.loads(metrics.read_text()), "in_catalog_rate": 0.5}))
    code, output = _check(updated, results, "--reuse")  # the stale folder is believed
    assert code == 1 and f"FAIL {TARGET} in_catalog_rate: 0.5 is 24.0 band half-widths below" in output
    assert _check(updated, results)[0] == 0  # the run is executed again and overwrites it


def test_a_moved_reference_fails_both_ways_and_json_says_the_same(updated: Path, shared: Path) -> None:
    document = json.loads((updated / "metrics.json").read_text())
    cells = document["targets"][TARGET]["metrics"]
    cells["in_catalog_rate"]["centre"] = 0.9  # observed 1.0: improved
    cells["recall@20"]["centre"] += 0.05  # observed lower: regressed
    moved = _copy(updated, shared / "moved", document)
    code, output = _check(moved, shared / "results")
    assert code == 1, output
    assert (f"FAIL {TARGET} in_catalog_rate: 1 is 4.0 band half-widths above the band 0.9 ± 0.02 (z = +5.0; "
            "centre ± max(3 x std, floor 0.02) over 2: reference, threads=2): improved; run `bench check --update` "
            "if intended") in output
    assert f"FAIL {TARGET} recall@20: " in output and "1.5 band half-widths below" in output and "regressed" in output

    result = runner.invoke(app, ["check", "--reference", str(moved), "--results-dir", str(shared / "results"),
                                 "--json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert not report["passed"] and len(report["problems"]) == 2
    assert {(row["target"], row["metric"], row["verdict"], round(row["z"], 3)) for row in report["rows"]} == {
        (TARGET, "recall@20", "regressed", -2.5), (TARGET, "in_catalog_rate", "improved", 5.0)}


def _one_line_error(reference: Path, shared: Path, expected: str) -> None:
    results = shared / f"untouched-{reference.name}"
    code, output = _check(reference, results)
    assert code == 2 and output.strip().count("\n") == 0, output
    assert expected in output and f"`bench check --update --reference {reference}`" in output, output
    assert not results.exists()  # nothing ran, nothing was written


def test_a_missing_corrupt_old_or_stale_reference_is_one_line_saying_how_to_regenerate(
        updated: Path, shared: Path) -> None:
    missing = _copy(updated, shared / "missing")
    (missing / "metrics.json").unlink()
    _one_line_error(missing, shared, f"{missing / 'metrics.json'}: missing: regenerate it with")
    corrupt = _copy(updated, shared / "corrupt")
    (corrupt / "metrics.json").write_text('{"targets": {')
    _one_line_error(corrupt, shared, f"{corrupt / 'metrics.json'}: corrupt JSON")
    old = _copy(updated, shared / "old", {"entries": {}, "config": CONFIG})
    _one_line_error(old, shared, "is not a reference of this `bench check` (no targets)")
    stale = _copy(updated, shared / "stale", config={**CONFIG, "seeds": [0, 1]})
    _one_line_error(stale, shared, "was made from another config.json: regenerate it with")
    no_config = _copy(updated, shared / "no-config")
    (no_config / "config.json").unlink()
    _one_line_error(no_config, shared, f"{no_config / 'config.json'}: missing; restore it (`git checkout -- ")
    bad_config = _copy(updated, shared / "bad-config", config={**CONFIG, "band": {"runs": {"k": 3.0}}})
    _one_line_error(bad_config, shared, "bad check configuration (TypeError")
