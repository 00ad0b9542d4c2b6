"""The report's lead says where the language-model methods stand against the strongest method without a language
model (bench/report/build.py `against_model_free`), on hand-made run folders whose NDCG@20 is known: each example's
one hit at rank 1 scores 1, so n hits of 10 examples give n / 10."""

from pathlib import Path

from test_report_criteria import OPTIONS, hits, run  # tests/unit is on sys.path

from bench.report.analysis import AnalysisOptions, analyse
from bench.report.build import against_model_free
from bench.report.data import group_runs, load_runs


def standing(results: Path, options: AnalysisOptions = OPTIONS) -> str | None:
    records, _ = load_runs(results)
    (group,) = group_runs(records)
    return against_model_free(analyse(group, options))


def test_a_model_below_ease_is_said_first_with_its_difference_when_compared(tmp_path: Path) -> None:
    run(tmp_path, "sft", 0, hits(2))  # 0.2
    run(tmp_path, "sft", 1, hits(1))  # 0.1: sft's mean 0.15
    run(tmp_path, "zero_shot", 0, hits(0))  # 0.0: a language-model method, but not the best one
    run(tmp_path, "ease", 0, hits(3))  # 0.3: the strongest without a language model
    run(tmp_path, "popularity", 0, hits(1))  # 0.1
    found = standing(tmp_path)
    assert found is not None
    assert found.startswith("Every language-model method stays below the strongest method without one by its mean "
                            "ndcg@20: the best, sft, 0.1500 [")
    assert "against ease, 0.3000 [" in found
    # Default comparisons are against popularity and rank_grpo: sft vs ease is not among them.
    assert found.endswith("(their difference is not among this table's comparisons: --reference or --baseline "
                          "adds it).")
    # With ease as the baseline the pair is tested: 0.15 - 0.30 = -0.15, two seeds against one run cannot reach 0.05.
    compared = standing(tmp_path, AnalysisOptions(baseline="ease", n_bootstrap=200, n_permutations=200))
    assert compared is not None
    assert "(Δ ▼ -0.1500 [" in compared and compared.endswith(", not significant after Holm).")


def test_a_model_above_popularity_is_said_to_be_at_or_above(tmp_path: Path) -> None:
    run(tmp_path, "sft", 0, hits(5))  # 0.5
    run(tmp_path, "popularity", 0, hits(2))  # 0.2
    run(tmp_path, "random", 0, hits(0))
    found = standing(tmp_path, AnalysisOptions(baseline="popularity", reference="sft", n_bootstrap=200,
                                               n_permutations=200))
    assert found is not None
    assert found.startswith("The best language-model method, sft, 0.5000 [")
    assert "is at or above the strongest method without one, popularity, 0.2000 [" in found
    assert "(Δ ▲ +0.3000 [" in found


def test_no_sentence_without_both_kinds_of_method(tmp_path: Path) -> None:
    run(tmp_path, "sft", 0, hits(2))
    run(tmp_path, "zero_shot", 0, hits(1))
    assert standing(tmp_path) is None
