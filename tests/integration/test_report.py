"""`bench report` on the committed fixture runs (tests/fixtures/report/runs.json): the report.json contract, the
golden numbers, the declared testing family with Holm worked by hand, deterministic methods counted once, the
page's order, byte-identical rebuilds and clear errors."""

import importlib.util
import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bench.report.stats import holm
from bench.runs.folders import atomic_write_json
from bench.runs.specs import make_spec
from cli import app

runner = CliRunner()
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "report"
GROUP = "synthetic-tiny-smoke-limit24"
CELL_KEYS = {"method", "metric", "mean", "ci_low", "ci_high", "n_runs", "deterministic"}
COMPARISON_KEYS = {"a", "b", "metric", "diff", "ci_low", "ci_high", "p_value", "p_holm", "significant",
                   "prob_improvement", "in_family"}
RUN_DIGEST = re.compile(r"(-s\d+)-[0-9a-f]{10}\b")
"""A run id's spec digest (training diagnostics name runs): a new RunSpec field changes it, not the numbers."""


def _fixture_module() -> Any:
    spec = importlib.util.spec_from_file_location("report_fixture_runs", FIXTURES / "write_runs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("results")
    _fixture_module().write_runs(root)
    incomplete = make_spec("zero_shot", "tiny", "smoke", dataset="synthetic", seed=0)
    atomic_write_json(root / "runs" / incomplete.run_id / "spec.json", incomplete.to_json())
    return root


@pytest.fixture(scope="module")
def built(results: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    out = tmp_path_factory.mktemp("report")
    result = runner.invoke(app, ["report", "--results-dir", str(results), "--out", str(out), "--html", "--json"])
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout), result.stderr


def _close(actual: Any, expected: Any, path: str = "") -> None:
    """Number for number (relative 1e-9), everything else equal."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and set(actual) == set(expected), path
        for key in expected:
            _close(actual[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), path
        for index, (left, right) in enumerate(zip(actual, expected, strict=True)):
            _close(left, right, f"{path}[{index}]")
    elif isinstance(expected, float) and not isinstance(expected, bool):
        assert math.isclose(actual, expected, rel_tol=1e-9, abs_tol=1e-12), (path, actual, expected)
    elif isinstance(expected, str) and isinstance(actual, str):
        assert RUN_DIGEST.sub(r"\1-<digest>", actual) == RUN_DIGEST.sub(r"\1-<digest>", expected), (path, actual)
    else:
        assert actual == expected, (path, actual, expected)


def test_json_on_stdout_is_report_json_and_follows_the_contract(built: tuple[Path, dict[str, Any], str]) -> None:
    out, printed, errors = built
    assert printed == json.loads((out / "report.json").read_text())
    assert "incomplete" in errors
    (table,) = printed["tables"]
    assert set(table) == {"dataset", "model", "preset", "primary", "cells", "comparisons", "diagnostics",
                          "calibration"}
    assert (table["dataset"], table["model"], table["preset"], table["primary"]) == ("synthetic", "tiny", "smoke",
                                                                                     "ndcg@20")
    assert all(set(cell) == CELL_KEYS for cell in table["cells"])
    assert all(set(comparison) == COMPARISON_KEYS for comparison in table["comparisons"])
    runs = {cell["method"]: (cell["n_runs"], cell["deterministic"]) for cell in table["cells"]}
    # Popularity's two identical seed folders and EASE's single run are one deterministic run each.
    assert runs == {"popularity": (1, True), "ease": (1, True), "random": (3, False), "sft": (3, False),
                    "grpo": (3, False), "rank_grpo": (3, False)}


def test_golden_report_number_for_number(built: tuple[Path, dict[str, Any], str]) -> None:
    report = built[1]
    _close(report["tables"], json.loads((FIXTURES / "expected_report.json").read_text())["tables"])
    # What a rebuild needs: where the runs came from and the options they were reported with.
    assert report["runs_from"].endswith("results0") and report["options"]["analysis"]["n_bootstrap"] == 10_000


def test_family_is_the_primary_metric_against_baseline_and_reference_with_holm_by_hand(
        built: tuple[Path, dict[str, Any], str]) -> None:
    comparisons = built[1]["tables"][0]["comparisons"]
    pairs = {(c["a"], c["b"]) for c in comparisons}
    assert pairs == {("rank_grpo", m) for m in ("popularity", "ease", "random", "sft", "grpo")} | {
        ("popularity", m) for m in ("ease", "random", "sft", "grpo")}
    assert {c["metric"] for c in comparisons} == {"ndcg@20"}
    p = {(c["a"], c["b"]): c["p_value"] for c in comparisons}
    # Per-seed NDCG@20 (ranks in runs.json): rank_grpo 0.1718, 0.1667, 0.1572; grpo 0.1084, 0.1359, 0.0625 -> every
    # paired difference has one sign: p = 2 / 2^3. Popularity (0.1798) is above every rank_grpo seed: against one
    # deterministic run, also 2 / 8. Random (0.0278, 0, 0.0093) is below every rank_grpo seed, unpaired: 2 / C(6, 3).
    assert p[("rank_grpo", "grpo")] == pytest.approx(0.25) and p[("rank_grpo", "popularity")] == pytest.approx(0.25)
    assert p[("rank_grpo", "random")] == pytest.approx(0.1)
    # EASE vs popularity, both deterministic: the unit is the example; three nonzero per-example differences, all
    # positive (+0.631, +1, +0.431): 2 of 8 sign patterns as extreme.
    assert p[("popularity", "ease")] == pytest.approx(0.25)
    # Holm over these 9 (and only these): 0.1 x 9 = 0.9, then 0.25 x 8 capped at 1.
    assert [c["p_holm"] for c in comparisons] == pytest.approx(holm([c["p_value"] for c in comparisons]))
    holm_of = {(c["a"], c["b"]): c["p_holm"] for c in comparisons}
    assert holm_of[("rank_grpo", "random")] == pytest.approx(0.9)
    assert all(value == 1.0 for pair, value in holm_of.items() if pair != ("rank_grpo", "random"))
    assert not any(c["significant"] for c in comparisons)
    # Direction: diff = mean(b) - mean(a); prob_improvement = P(b beats a).
    grpo = next(c for c in comparisons if c["b"] == "grpo" and c["a"] == "rank_grpo")
    assert grpo["diff"] == pytest.approx((0.75 + 1.30103 + 1.63093) / 36 - (2.06161 + 2 + 1.88685) / 36, abs=1e-4)
    assert grpo["prob_improvement"] == pytest.approx(0.0) and grpo["ci_low"] <= grpo["diff"] <= grpo["ci_high"]


def test_a_declared_family_is_the_only_one_holm_runs_over(results: Path, tmp_path: Path) -> None:
    declared = "grpo:rank_grpo,random:rank_grpo,grpo:random"
    result = runner.invoke(app, ["report", "--results-dir", str(results), "--out", str(tmp_path), "--json",
                                 "--family", declared])
    assert result.exit_code == 0, result.output
    table = next(t for t in json.loads(result.stdout)["tables"] if t["model"] == "tiny")
    by_pair = {(c["a"], c["b"]): c for c in table["comparisons"]}
    family = {pair for pair, c in by_pair.items() if c["in_family"]}
    # grpo:random is not a default pair (neither is the baseline or the reference): it is added, oriented as declared.
    assert family == {("rank_grpo", "grpo"), ("rank_grpo", "random"), ("random", "grpo")}
    # Raw p by hand: grpo and random seeds are 3 + 3 unpaired with every grpo seed (0.108, 0.136, 0.063) above every
    # random one (0.028, 0, 0.009): 2 / C(6, 3) = 0.1; the other two as in the default family (0.25, 0.1).
    assert by_pair[("random", "grpo")]["p_value"] == pytest.approx(0.1)
    # Holm over these three only: sorted 0.1, 0.1, 0.25 -> 0.3, max(0.3, 0.2), max(0.3, 0.25): 0.3 each.
    assert [by_pair[pair]["p_holm"] for pair in sorted(family)] == pytest.approx([0.3, 0.3, 0.3])
    undeclared = [c for c in table["comparisons"] if not c["in_family"]]
    assert undeclared and all(c["p_holm"] is None and not c["significant"] for c in undeclared)
    page = (tmp_path / "report.md").read_text()
    assert "of 3 declared comparisons" in page and "/ undeclared" in page
    assert json.loads((tmp_path / "report.json").read_text())["options"]["analysis"]["family"] == declared.split(",")


def test_a_malformed_family_is_one_line_naming_the_flag(results: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["report", "--results-dir", str(results), "--out", str(tmp_path),
                                 "--family", "rank_grpo"])
    assert result.exit_code == 2 and "--family 'rank_grpo': expected METHOD:COMPARATOR" in result.output
    assert not (tmp_path / "report.json").exists()


def test_pages_lead_with_the_primary_metric_and_state_units(built: tuple[Path, dict[str, Any], str]) -> None:
    out = built[0]
    files = {path.name for path in (out / GROUP).iterdir()}
    assert {"main.md", "main.csv", "main.tex", "lead.tex", "comparisons.csv", "steps_to_reach.csv", "auc.csv",
            "forest.png", "convergence.png", "recall_at_k.png", "hit_rate.png"} == files
    page = (out / "report.md").read_text()
    assert page.index("forest.png") < page.index("### All metrics")
    assert "1 (deterministic, 2 folders)" in page and "3 seeds*" in page and "interval unreliable" in page
    assert "≤ 0.25 (floor)" in page and "▼" in page and "seeds, paired by SFT start" in page
    assert "test examples (both deterministic)" in page and "(comparator)" in page
    assert "RL step 0 is SFT's last step" in page and "8 validation prompts" in page
    assert "2 of 3" in page and "MDD = (t(df, 1 - alpha/2) + t(df, power)) x SE" in page
    assert "units for the observed Δ" in page
    # Training diagnostics follow the curves; the fixture runs have no train_log.jsonl, and the section says so.
    assert page.index("### Training curves") < page.index("### Training diagnostics") < page.index("### All metrics")
    assert "Missing or skipped: no train_log.jsonl: grpo-tiny" in page and "no collapse." in page
    # Calibration follows the diagnostics; the fixture's examples list no ground truth, so room is not measurable.
    assert page.index("### Training diagnostics") < page.index("### Calibration: can this table separate methods?")
    assert "| room | not measurable: fewer than 25% of examples have 2+ ground-truth items" in page
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4 and "src=\"http" not in html and "<figcaption>" in html
    assert "p / Holm vs rank_grpo" in html and "<h3>Training diagnostics</h3>" in html


def test_rebuild_is_byte_identical_and_primary_is_declared(results: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    for out in (first, second):
        result = runner.invoke(app, ["report", "--results-dir", str(results), "--out", str(out), "--bootstrap",
                                     "2000", "--primary", "recall@20"])
        assert result.exit_code == 0, result.output
    files = sorted(path.relative_to(first) for path in first.rglob("*") if path.is_file())
    assert files == sorted(path.relative_to(second) for path in second.rglob("*") if path.is_file())
    for relative in files:
        assert (first / relative).read_bytes() == (second / relative).read_bytes(), relative
    table = json.loads((first / "report.json").read_text())["tables"][0]
    assert table["primary"] == "recall@20" and {c["metric"] for c in table["comparisons"]} == {"recall@20"}
    wrong = runner.invoke(app, ["report", "--results-dir", str(results), "--out", str(tmp_path / "x"), "--primary",
                                "in_catalog_rate"])
    assert wrong.exit_code == 2 and "--primary must be one of" in wrong.output


def test_report_without_runs_is_one_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["report", "--results-dir", str(tmp_path)])
    assert result.exit_code == 2 and "no runs to report" in result.output
    assert "Traceback" not in result.output


def test_methods_are_named_by_label_and_a_digest_only_separates_equal_labels(tmp_path: Path) -> None:
    from bench.report.data import group_runs, load_runs

    write_run = _fixture_module().write_run
    write_run(tmp_path, "rank_grpo", 0, [1, 0], reward="log_decay")
    write_run(tmp_path, "rank_grpo", 0, [1, 0])
    write_run(tmp_path, "grpo", 0, [1, 0])
    write_run(tmp_path, "grpo", 0, [0, 1], preset_overrides={"rl_lr": 1e-3})
    records, _ = load_runs(tmp_path)
    (group,) = group_runs(records)
    names = list(group.methods)
    assert "rank_grpo" in names and "rank_grpo+log_decay" in names
    grpo = [name for name in names if name.startswith("grpo")]
    assert len(grpo) == 2 and all(name.startswith("grpo [") and name.endswith("]") for name in grpo)


def test_identical_seeds_are_one_run_only_for_untrained_methods(tmp_path: Path) -> None:
    from bench.report.data import group_runs, is_deterministic, load_runs

    write_run = _fixture_module().write_run
    for seed in (0, 1):
        write_run(tmp_path, "sft", seed, [0, 0, 0], curve=[[0, 0.0], [6, 0.0]])
        write_run(tmp_path, "random", seed, [0, 3, 0])
    records, _ = load_runs(tmp_path)
    (group,) = group_runs(records)
    # Two sft seeds that both score zero everywhere are still two seeds (the unit of a trained method); two random
    # seeds that drew alike are one run.
    assert not is_deterministic(group.methods["sft"]) and is_deterministic(group.methods["random"])
