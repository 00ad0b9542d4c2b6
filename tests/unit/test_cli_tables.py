"""Tables the CLI prints keep every method name and column header whole in an 80-column terminal (issue 29: the
`bench run` comparison printed `rank_grp…` and `format_r…`)."""

import pytest

from bench.commands.output import print_comparison, print_table
from bench.runs.compare import COLUMNS, LEGEND, Comparison

NAMES = ("rank_grpo+log_decay", "rank_grpo+log_decay+null", "rank_grpo+null", "sft start", "grpo", "popularity",
         "random")
METRICS = {"ndcg@20": 0.399, "recall@20": 0.5125, "ndcg@5": 0.3317, "format_rate": 1.0, "in_catalog_rate": 0.9986,
           "duplicate_rate": 0.0333}


@pytest.fixture
def terminal_80(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich takes the terminal width from $COLUMNS."""
    monkeypatch.setenv("COLUMNS", "80")


def test_comparison_keeps_names_and_headers_whole(terminal_80: None, capsys: pytest.CaptureFixture[str]) -> None:
    print_comparison("rank_grpo+log_decay (first row) beside its neighbours, seed 0",
                     Comparison(tuple((name, METRICS) for name in NAMES), ()))
    out = capsys.readouterr().out
    assert "…" not in out
    assert max(len(line) for line in out.splitlines()) <= 80
    for word in (*NAMES, "method", *COLUMNS.values(), *COLUMNS, "0.3990", "0.0333"):
        assert word in out, f"{word!r} is not whole in:\n{out}"
    assert LEGEND in " ".join(out.split())  # the caption (the legend) may wrap, between words


def test_run_metrics_table_keeps_every_metric_name(terminal_80: None, capsys: pytest.CaptureFixture[str]) -> None:
    print_table("rank_grpo+log_decay / tiny / synthetic:testbed / test (standard)",
                [(name, f"{value:.4f}") for name, value in METRICS.items()])
    out = capsys.readouterr().out
    for word in ("metric", "value", *METRICS, "rank_grpo+log_decay"):
        assert word in out, f"{word!r} is not whole in:\n{out}"


def test_a_name_too_long_for_the_width_folds_instead_of_being_cut(terminal_80: None,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    name = "rank_grpo+log_decay+mu2+eps0.1-0.2+dapo+null"
    print_comparison("a long variant", Comparison(((name, METRICS),), ()))
    out = capsys.readouterr().out
    assert "…" not in out
    assert name in "".join(line.split()[0] for line in out.splitlines()[3:6])
    assert "0.3990" in out
