"""`bench report` on hand-made run folders (2 methods x 2 seeds): every file written, numbers and marks as
constructed, incomplete runs left out, and byte-identical output on a rebuild."""

import csv
from pathlib import Path

from typer.testing import CliRunner

from bench.evaluation.metrics import KS
from bench.runs.folders import atomic_write_json, atomic_write_jsonl
from bench.runs.specs import make_spec
from cli import app

runner = CliRunner()
N_EXAMPLES = 12


def _scores(hit: bool, parsed: int) -> dict[str, object]:
    value = 1.0 if hit else 0.0
    scores: dict[str, object] = {f"recall@{k}": value for k in KS}
    scores.update({f"ndcg@{k}": value / 2 for k in KS})
    scores.update(n_lines=parsed + 1, n_parsed=parsed, n_in_catalog=parsed, n_duplicates=0, n_seen=0,
                  hits=[int(hit)], missing=False)
    return scores


def _write_run(results: Path, algo: str, seed: int, hit_every: int, curve: list[tuple[int, float]] | None) -> Path:
    """A complete run: example i hits when i % hit_every == 0; 4 lines per example, 3 of them parsed."""
    spec = make_spec(algo, "tiny", "smoke", dataset="synthetic", seed=seed)
    folder = results / "runs" / spec.run_id
    examples = [{"id": f"ex{i:02d}", "prompt_id": f"p{i}", "text": "", "parsed": [], "groundtruth": [],
                 "scores": _scores(i % hit_every == 0, 3)} for i in range(N_EXAMPLES)]
    hit_share = sum(1 for i in range(N_EXAMPLES) if i % hit_every == 0) / N_EXAMPLES
    metrics = {**{f"recall@{k}": hit_share for k in KS}, **{f"ndcg@{k}": hit_share / 2 for k in KS},
               "in_catalog_rate": 1.0, "format_rate": 0.75, "duplicate_rate": 0.0, "n_examples": N_EXAMPLES,
               "n_missing": 0, "protocol": "standard"}
    atomic_write_json(folder / "spec.json", spec.to_json())
    atomic_write_jsonl(folder / "examples.jsonl", examples)
    atomic_write_json(folder / "summary.json", {"hit_rate_at_rank": [hit_share] + [0.0] * 19, "artifacts": {}})
    if curve:
        atomic_write_jsonl(folder / "curve.jsonl", [{"step": step, "wall_seconds": 10.0 * index, "ndcg@20": value,
                                                     "recall@20": 2 * value} for index, (step, value) in
                                                    enumerate(curve)])
    atomic_write_json(folder / "metrics.json", metrics)
    return folder


def _make_results(results: Path) -> None:
    _write_run(results, "popularity", 0, hit_every=6, curve=None)
    _write_run(results, "popularity", 1, hit_every=6, curve=None)
    # Seed 0 logged step 2 twice (a resumed run): the last point (0.3) counts.
    _write_run(results, "sft", 0, hit_every=1, curve=[(0, 0.1), (2, 0.9), (2, 0.3), (4, 0.5)])
    _write_run(results, "sft", 1, hit_every=1, curve=[(0, 0.1), (2, 0.5), (4, 0.6)])
    incomplete = make_spec("zero_shot", "tiny", "smoke", dataset="synthetic", seed=0)
    atomic_write_json(results / "runs" / incomplete.run_id / "spec.json", incomplete.to_json())


def _report(results: Path, out: Path) -> tuple[int, str]:
    result = runner.invoke(app, ["report", "--results-dir", str(results), "--out", str(out), "--html"])
    return result.exit_code, result.output


def test_report_from_hand_made_runs(tmp_path: Path) -> None:
    results, out = tmp_path / "results", tmp_path / "report"
    _make_results(results)
    code, output = _report(results, out)
    assert code == 0, output
    assert "incomplete" in output
    group = out / "synthetic-tiny-smoke-limit24"
    expected = {"main.md", "main.csv", "main.tex", "comparisons.csv", "steps_to_reach.md", "steps_to_reach.csv",
                "convergence.png", "hit_rate.png"}
    assert expected == {path.name for path in group.iterdir()}
    for png in ("convergence.png", "hit_rate.png"):
        assert (group / png).read_bytes().startswith(b"\x89PNG")

    rows = {row["method"]: row for row in csv.DictReader((group / "main.csv").open())}
    assert list(rows) == ["popularity", "sft"]
    popularity, sft = rows["popularity"], rows["sft"]
    assert float(popularity["recall@20"]) == round(2 / 12, 6) and float(sft["recall@20"]) == 1.0
    # sft hits every example in both seeds: a zero-width interval.
    assert sft["recall@20_ci_low"] == sft["recall@20_ci_high"] == "1.000000"
    assert float(popularity["recall@20_ci_low"]) < float(popularity["recall@20"]) < float(
        popularity["recall@20_ci_high"])
    assert float(sft["format_rate"]) == 0.75 and sft["format_rate_marks"] == ""
    # 10 of 12 examples differ (sft 1, popularity 0): exact p = 2 / 2^10; Holm over 8 tests -> 8 * 2/1024 < 0.05.
    assert sft["ndcg@20_marks"] == "†" and popularity["ndcg@20_marks"] == ""
    tests = list(csv.DictReader((group / "comparisons.csv").open()))
    assert len(tests) == 8
    assert float(tests[0]["p_value"]) == round(2 / 1024, 6) and float(tests[0]["p_holm"]) == round(16 / 1024, 6)

    markdown = (group / "main.md").read_text()
    assert "| sft | 2 | 1.0000 [1.0000, 1.0000]† |" in markdown
    assert r"\textsuperscript{\dag}" in (group / "main.tex").read_text()
    # Target 0.9 x best final (sft: mean of 0.5 and 0.6 = 0.55) = 0.495: seed 0 at step 4, seed 1 at step 2.
    (steps_row,) = list(csv.DictReader((group / "steps_to_reach.csv").open()))
    assert steps_row["method"] == "sft" and steps_row["seeds reaching"] == "2/2"
    assert steps_row["step reaching ndcg@20 >= 0.4950"] == "3.0" and steps_row["final ndcg@20"] == "0.5500"

    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "<table>" in page and "src=\"http" not in page
    index = (out / "report.md").read_text()
    assert "synthetic-tiny-smoke-limit24/convergence.png" in index and "Runs left out" in index


def test_report_is_deterministic_and_honours_an_explicit_target(tmp_path: Path) -> None:
    results = tmp_path / "results"
    _make_results(results)
    first, second = tmp_path / "first", tmp_path / "second"
    assert _report(results, first)[0] == 0 and _report(results, second)[0] == 0
    files = sorted(path.relative_to(first) for path in first.rglob("*") if path.is_file())
    assert files == sorted(path.relative_to(second) for path in second.rglob("*") if path.is_file())
    for relative in files:
        assert (first / relative).read_bytes() == (second / relative).read_bytes(), relative
    result = runner.invoke(app, ["report", "--results-dir", str(results), "--out", str(tmp_path / "third"),
                                 "--target-ndcg", "0.7"])
    assert result.exit_code == 0, result.output
    steps = (tmp_path / "third" / "synthetic-tiny-smoke-limit24" / "steps_to_reach.md").read_text()
    assert "not reached" in steps and "0/2" in steps


def test_report_without_runs_is_one_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["report", "--results-dir", str(tmp_path)])
    assert result.exit_code == 2 and "no runs to report" in result.output
    assert "Traceback" not in result.output
