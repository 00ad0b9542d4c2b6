"""The evaluator under both protocols, against hand-computed numbers, and against an independent pairwise loop."""

import random

import pytest

from bench.data.catalog import Catalog
from bench.data.records import Example
from bench.errors import DataError, UnknownNameError
from bench.evaluation.evaluator import evaluate, match_hits, rank_hits, score_text
from benchmarks.eval_speed import pairwise_evaluate

# 1 seen; 2 case differs, year off by 2; 3 miss; 4 out of catalog; 5 year off by 3; 6 exact (GT Heat already
# matched under standard); 7 duplicate; 8 chatter.
TEXT = "Alien (1979)\nheat (1997)\nCars (2006)\nNowhere (2001)\nUp (2012)\nHeat (1995)\nCars (2006)\nchatter"
IDEAL_2 = 1 + 0.6309297535714575  # 1/log2(2) + 1/log2(3)


def test_standard_protocol_hand_computed(small_catalog: Catalog, heat_up_example: Example) -> None:
    scores = score_text(TEXT, heat_up_example, small_catalog, "standard")
    # kept: heat(1997) HIT, Cars, Up(2012) miss (3 years off), Heat(1995) miss (its GT is used), Cars
    assert scores.hits == (True, False, False, False, False)
    assert scores.recall == {5: 0.5, 10: 0.5, 15: 0.5, 20: 0.5}
    assert scores.ndcg[5] == pytest.approx(1.0 / IDEAL_2)
    assert (scores.n_lines, scores.n_parsed, scores.n_in_catalog, scores.n_duplicates, scores.n_seen) == (8, 7, 6, 1, 1)


def test_reference_protocol_hand_computed(small_catalog: Catalog, heat_up_example: Example) -> None:
    scores = score_text(TEXT, heat_up_example, small_catalog, "reference")
    # case-sensitive: "heat (1997)" is not in the catalog; kept: Cars, Up(2012), Heat(1995) HIT, Cars
    assert scores.hits == (False, False, True, False)
    assert scores.recall[20] == 0.5
    # DCG = 1/log2(4) = 0.5; ideal over min(|gt| = 2, filtered length 4) = 2 ranks
    assert scores.ndcg[5] == pytest.approx(0.5 / IDEAL_2)
    assert scores.n_in_catalog == 5


def test_reference_ndcg_quirk_inflates_short_lists(small_catalog: Catalog, heat_up_example: Example) -> None:
    text = "Heat (1995)"
    assert score_text(text, heat_up_example, small_catalog, "reference").ndcg[20] == pytest.approx(1.0)
    assert score_text(text, heat_up_example, small_catalog, "standard").ndcg[20] == pytest.approx(1.0 / IDEAL_2)


def test_year_tolerance_is_two(small_catalog: Catalog) -> None:
    gt = [("Heat", 1995)]
    assert match_hits([("Heat", 1997)], gt) == [True]
    assert match_hits([("Heat", 1998)], gt) == [False]
    assert match_hits([("Heat", 1993)], gt) == [True]


def test_each_ground_truth_and_recommendation_matches_once() -> None:
    assert match_hits([("Heat", 1995), ("Heat", 1995)], [("Heat", 1995)]) == [True, False]
    assert match_hits([("Heat", 1995)], [("Heat", 1995), ("Heat", 1996)]) == [True]
    assert match_hits([None, ("Up", 2009)], [("Up", 2009)]) == [False, True]


def test_empty_output_scores_zero(small_catalog: Catalog, heat_up_example: Example) -> None:
    for protocol in ("standard", "reference"):
        scores = score_text("", heat_up_example, small_catalog, protocol)
        assert scores.recall[20] == 0.0 and scores.ndcg[20] == 0.0 and scores.n_lines == 0


def test_rank_hits_keep_positions(small_catalog: Catalog, heat_up_example: Example) -> None:
    hits = rank_hits(TEXT, heat_up_example, small_catalog, n_items=20)
    assert hits == [0.0, 1.0] + [0.0] * 18
    assert rank_hits("\n\nUp (2009)\n", heat_up_example, small_catalog, n_items=3) == [1.0, 0.0, 0.0]


def test_evaluate_aggregates_and_counts_missing(small_catalog: Catalog, heat_up_example: Example) -> None:
    other = Example("e2", ({"role": "user", "content": "different"},), (("Cars", 2006),), ())
    result = evaluate([heat_up_example, other], {"e1": TEXT}, small_catalog, "standard")
    assert result.metrics["n_examples"] == 2 and result.metrics["n_missing"] == 1
    assert result.metrics["recall@20"] == pytest.approx(0.25)
    assert result.metrics["format_rate"] == pytest.approx(7 / 8)
    assert result.metrics["in_catalog_rate"] == pytest.approx(6 / 7)
    assert result.metrics["duplicate_rate"] == pytest.approx(1 / 7)
    assert result.hit_rate_at_rank[0] == pytest.approx(0.5)


def test_samples_sharing_a_prompt_share_one_generation(small_catalog: Catalog, heat_up_example: Example) -> None:
    twin = Example("e1b", heat_up_example.prompt, (("Cars", 2006),), ())
    result = evaluate([heat_up_example, twin], {"e1": "Cars (2006)"}, small_catalog)
    assert result.metrics["n_missing"] == 0
    assert [s.recall[5] for s in result.examples] == [0.0, 1.0]


def test_unknown_prediction_ids_and_protocols_are_errors(small_catalog: Catalog, heat_up_example: Example) -> None:
    with pytest.raises(DataError, match="'zzz'"):
        evaluate([heat_up_example], {"zzz": ""}, small_catalog)
    with pytest.raises(UnknownNameError, match="Did you mean 'standard'"):
        evaluate([heat_up_example], {}, small_catalog, "standrd")


@pytest.mark.parametrize("protocol", ["standard", "reference"])
def test_matches_an_independent_pairwise_implementation(small_catalog: Catalog, protocol: str) -> None:
    rng = random.Random(7)
    names = ["Heat", "heat", "HEAT", "Up", "Alien", "Cars", "Big", "Nowhere"]
    examples, predictions = [], {}
    for index in range(300):
        gt = tuple((rng.choice(["Heat", "Up", "Cars", "Big"]), rng.choice([1988, 1995, 1997, 2006, 2009, 2012]))
                   for _ in range(rng.randint(1, 3)))
        example = Example(f"x{index}", ({"role": "user", "content": str(index)},), gt,
                          tuple(rng.sample(["Alien", "Big", "up"], rng.randint(0, 2))))
        lines = [f"{rng.choice(names)} ({rng.choice([1979, 1988, 1995, 1997, 2006, 2009, 2012])})"
                 for _ in range(rng.randint(0, 25))]
        examples.append(example)
        predictions[example.id] = "\n".join(lines)
    fast = evaluate(examples, predictions, small_catalog, protocol).metrics
    slow = pairwise_evaluate(examples, predictions, small_catalog, protocol)
    for key, value in slow.items():
        assert fast[key] == pytest.approx(value, abs=1e-12), key
