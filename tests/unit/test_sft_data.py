"""Remap-Reflect-Adjust: the rating parser, the popularity correction and Adjust on hand-made items, and
`bench sft-data` end to end on a small JSONL dataset with the offline ease teacher."""

import json
import math
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from baselines.reflect_adjust import NEUTRAL_RATING, PopularityBias, adjust, ordered_by_rating, parse_ratings
from baselines.sft_data import default_demonstrations
from bench.data.catalog import normalize_title
from bench.data.datasets import load_dataset
from bench.data.synthetic import SYNTHETIC_SIZES, write_synthetic
from bench.evaluation.evaluator import evaluate
from bench.evaluation.parsing import parse_recommendations
from cli import app

MOVIES = [(f"Movie {index}", 2000 + index) for index in range(30)]
A, B, C, D = MOVIES[:4]


def test_ratings_are_read_robustly_and_unrated_items_count_as_neutral() -> None:
    candidates = [("The Matrix", 1999), ("Alien", 1979), ("Heat", 1995), ("Up", 2009)]
    text = ("Here are my ratings:\n1. The Matrix (1999) - 8/10\n**Alien (1979)**: 3\nheat (1996) score: 9.5\n"
            "Heat (1995): 2\nUnknown Film (2000): 7\nUp (2009): 11")
    ratings = parse_ratings(text, candidates)
    assert ratings == {("The Matrix", 1999): 8.0, ("Alien", 1979): 3.0, ("Heat", 1995): 9.5}
    assert ordered_by_rating(candidates, ratings) == [("Heat", 1995), ("The Matrix", 1999), ("Up", 2009),
                                                      ("Alien", 1979)]
    assert parse_ratings("\n\n(((", candidates) == {} and NEUTRAL_RATING == 5.0


def test_popularity_bias_follows_the_documented_formula() -> None:
    bias = PopularityBias.estimate([[A, C], [A, A], [A]], [[C, D], [D], [A, C]], n_catalog=10, strength=0.5)
    assert bias.recommended == Counter({A: 3, C: 1}) and bias.groundtruth == Counter({C: 2, D: 2, A: 1})
    ratio_a = ((3 + 1) / (4 + 10)) / ((1 + 1) / (5 + 10))
    assert bias.ratio(A) == pytest.approx(ratio_a)
    assert bias.weight(A) == pytest.approx(ratio_a ** -0.5)
    assert bias.ratio(C) < 1 and bias.weight(C) == 1.0 and bias.weight(D) == 1.0


def test_adjust_drops_seen_and_duplicates_reorders_by_corrected_relevance_and_fills_to_20() -> None:
    bias = PopularityBias(Counter({A: 9, C: 1}), Counter({C: 4, D: 5, A: 1}), n_catalog=10, strength=0.5)
    assert bias.ratio(A) == pytest.approx((10 / 20) / (2 / 20))
    candidates = [A, B, A, C, D]
    relevance = {A: 8.0, C: 8.0, D: 6.0}
    fill = [B, C, *MOVIES[4:]]
    result = adjust(candidates, relevance, bias, seen_titles=["movie 1"], fill=fill)
    assert result.items[:3] == (C, D, A)
    assert 8.0 * bias.weight(A) == pytest.approx(8.0 / math.sqrt(5))
    assert (result.dropped_seen, result.dropped_duplicate, result.dropped_overflow) == (1, 1, 0)
    assert len(result.items) == 20 and len(set(result.items)) == 20 and result.filled == 17
    assert B not in result.items and set(result.items) <= set(MOVIES)
    assert result.items[3:] == tuple(MOVIES[4:21])

    uncorrected = adjust(candidates, relevance, PopularityBias(bias.recommended, bias.groundtruth, 10, 0.0),
                         ["Movie 1"], fill)
    assert uncorrected.items[:3] == (A, C, D)
    short = adjust(candidates, relevance, bias, ["Movie 1"], fill, n=2)
    assert short.items == (C, D) and short.dropped_overflow == 1 and short.filled == 0


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("small") / "data"
    write_synthetic(directory, SYNTHETIC_SIZES["smoke"])
    return directory


def test_sft_data_end_to_end_with_the_offline_ease_teacher(small_dataset: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "demos"
    runner = CliRunner()
    result = runner.invoke(app, ["sft-data", "--dataset", str(small_dataset), "--out", str(out), "--limit", "60"])
    assert result.exit_code == 0, result.output
    assert "catalog compliance: 1.0000" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == ["catalog.csv", "report.json", "test.jsonl", "train.jsonl",
                                                     "validation.jsonl"]
    for name in ("validation.jsonl", "test.jsonl"):
        assert (out / name).read_bytes() == (small_dataset / name).read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".demos")]

    report = json.loads((out / "report.json").read_text())
    built = load_dataset(str(out))
    source = load_dataset(str(small_dataset))
    train = built.split("train")
    assert len(train) == report["n_examples"] == 60 and built.catalog.items == source.catalog.items
    remap = report["remap"]
    assert sum(remap["counts"].values()) == remap["teacher_items"] == 60 * 20
    assert remap["hit_rate"] == pytest.approx(1 - remap["counts"]["miss"] / remap["teacher_items"])
    assert report["dropped"]["unmapped"] == remap["counts"]["miss"]
    assert report["catalog_compliance"] == 1.0 and report["demonstration_items"] == 60 * 20
    for example in train:
        items = parse_recommendations(example.completion)
        seen = {normalize_title(title) for title in example.seen_titles}
        assert len(items) == 20 == len(set(items))
        assert all(item in built.catalog.exact_index and normalize_title(item[0]) not in seen for item in items)
    metrics = evaluate(train, {example.id: example.completion or "" for example in train}, built.catalog).metrics
    demonstrations = report["train_metrics"]["demonstrations"]
    assert demonstrations["recall@20"] == pytest.approx(metrics["recall@20"]) and demonstrations["recall@20"] > 0
    assert demonstrations["ndcg@20"] == pytest.approx(metrics["ndcg@20"])

    again = runner.invoke(app, ["sft-data", "--dataset", str(small_dataset), "--out", str(out)])
    assert again.exit_code == 2 and "already exists" in again.stderr
    forced = runner.invoke(app, ["sft-data", "--dataset", str(small_dataset), "--out", str(out), "--force",
                                 "--teacher", "popularity", "--limit", "10"])
    assert forced.exit_code == 0, forced.output
    assert json.loads((out / "report.json").read_text())["n_examples"] == 10


def test_default_demonstrations_are_built_once_then_reused(small_dataset: Path, tmp_path: Path) -> None:
    dataset = load_dataset(str(small_dataset))
    messages: list[str] = []
    first = default_demonstrations(dataset, tmp_path, messages.append)
    assert any(message.startswith("building") for message in messages)
    messages.clear()
    second = default_demonstrations(dataset, tmp_path, messages.append)
    assert messages == [] and second == first and len(first) == len(dataset.split("train"))
    (built,) = (tmp_path / "sft-data").iterdir()
    assert json.loads((built / "report.json").read_text())["config"]["teacher"] == "ease"
