"""Popularity and EASE baselines: hand-computed closed forms and counts, exclusions, fallbacks, and EASE beating
popularity on the synthetic task through the shared evaluator."""

import numpy as np
import pytest

from baselines.collaborative import ItemResolver, as_predictions, dialogue_rows
from baselines.ease import DEFAULT_LAMBDAS, NO_VALIDATION_LAMBDA, EASERecommender, ease_weights, interaction_matrix
from baselines.popularity import PopularityRecommender
from bench.data.catalog import catalog_from_entries, normalize_title
from bench.data.dataset import Dataset
from bench.data.prompts import recommendation_prompt
from bench.data.records import ContextItem, Example
from bench.data.synthetic import synthetic_dataset
from bench.errors import DataError
from bench.evaluation.evaluator import evaluate

A, B, C, D = ("Alpha", 1990), ("Beta", 1991), ("Gamma", 1992), ("Delta", 1993)
FILLERS = [(f"Filler {i:02d}", 2000) for i in range(1, 21)]
# Catalog mention counts: D > C > B > A among the named items, fillers in decreasing order after them.
CATALOG = catalog_from_entries([(A[0], A[1], 1), (B[0], B[1], 2), (C[0], C[1], 5), (D[0], D[1], 9)]
                               + [(title, year, 30 - i) for i, (title, year) in enumerate(FILLERS)], "toy")


def _example(example_id: str, dialog_id: str, context: list[ContextItem], groundtruth: list[tuple[str, int]],
             seen: list[str] | None = None) -> Example:
    seen_titles = [c.title for c in context] if seen is None else seen
    return Example(id=example_id, prompt=tuple(recommendation_prompt("User: something like that?")),
                   groundtruth=tuple(groundtruth), seen_titles=tuple(seen_titles), dialog_id=dialog_id,
                   context_items=tuple(context))


def _liked(item: tuple[str, int], liked: bool | None = True) -> ContextItem:
    return ContextItem(item[0], item[1], liked)


def _dataset(train: list[Example], validation: list[Example] | None = None) -> Dataset:
    splits = {"train": tuple(train)}
    if validation is not None:
        splits["validation"] = tuple(validation)
    return Dataset("toy", splits, CATALOG)


# Three training dialogues whose item sets are {A, B}, {B, C}, {A, B, C}: the toy matrix below.
TOY_TRAIN = [
    _example("t1", "d1", [_liked(A)], [B]),
    _example("t2", "d2", [_liked(B)], [C]),
    _example("t3", "d3", [_liked(A)], [B]),
    _example("t4", "d3", [_liked(A), _liked(B)], [C]),
]


def test_ease_closed_form_on_a_three_item_toy():
    # X rows {0,1}, {1,2}, {0,1,2} -> G = X^T X = [[2,2,1],[2,3,2],[1,2,2]]; lambda = 1:
    # A = G + I = [[3,2,1],[2,4,2],[1,2,3]], det A = 3*8 - 2*4 + 1*0 = 16,
    # P = adj(A)/16 = [[8,-4,0],[-4,8,-4],[0,-4,8]]/16 = [[.5,-.25,0],[-.25,.5,-.25],[0,-.25,.5]],
    # B_ij = -P_ij / P_jj = 2 * 0.25 = 0.5 where P_ij = -0.25, else 0; diagonal 0.
    gram = np.array([[2.0, 2.0, 1.0], [2.0, 3.0, 2.0], [1.0, 2.0, 2.0]])
    expected = np.array([[0.0, 0.5, 0.0], [0.5, 0.0, 0.5], [0.0, 0.5, 0.0]])
    np.testing.assert_allclose(ease_weights(gram, 1.0), expected, atol=1e-12)


def test_ease_divides_each_column_by_its_own_diagonal():
    # X rows {0,1}, {0} -> G = [[2,1],[1,1]]; lambda = 1: A = [[3,1],[1,2]], det 5, P = [[2,-1],[-1,3]]/5.
    # B_01 = -P_01/P_11 = (1/5)/(3/5) = 1/3 (item 0 -> item 1); B_10 = -P_10/P_00 = (1/5)/(2/5) = 1/2.
    gram = np.array([[2.0, 1.0], [1.0, 1.0]])
    np.testing.assert_allclose(ease_weights(gram, 1.0), [[0.0, 1 / 3], [0.5, 0.0]], atol=1e-12)


def test_ease_rejects_non_positive_lambda():
    with pytest.raises(ValueError):
        ease_weights(np.eye(2), 0.0)


def test_dialogue_rows_group_samples_by_dialogue_and_build_the_toy_gram():
    rows = dialogue_rows(TOY_TRAIN, ItemResolver(CATALOG))
    assert rows == [[A, B], [B, C], [A, B, C]]
    matrix = interaction_matrix(rows, {A: 0, B: 1, C: 2})
    np.testing.assert_array_equal((matrix.T @ matrix).toarray(), [[2, 2, 1], [2, 3, 2], [1, 2, 2]])


def test_samples_without_dialog_id_are_their_own_dialogue():
    examples = [_example("x1", "", [_liked(A)], [B]), _example("x2", "", [_liked(C)], [D])]
    assert dialogue_rows(examples, ItemResolver(CATALOG)) == [[A, B], [C, D]]


def test_popularity_counts_training_dialogues_mentioning_each_item():
    train = [
        _example("p1", "d1", [_liked(A)], [B]),
        _example("p2", "d1", [_liked(A), _liked(B)], [C]),  # same dialogue: A and B count once for d1
        _example("p3", "d2", [_liked(B)], [D]),
    ]
    model = PopularityRecommender.fit(_dataset(train))
    assert model.counts == {A: 1, B: 2, C: 1, D: 1}
    # B first (2 dialogues); A, C, D tie at 1 and fall back to catalog mentions (D 9 > C 5 > A 1); then fillers.
    assert model.ranking[:6] == (B, D, C, A, FILLERS[0], FILLERS[1])
    example = _example("q", "q", [_liked(D)], [A])
    assert model.recommend(example) == [B, C, A] + FILLERS[:17]


def test_popularity_without_train_split_uses_catalog_mentions():
    model = PopularityRecommender.fit(Dataset("toy", {"test": ()}, CATALOG))
    assert model.ranking[:5] == tuple(FILLERS[:5])
    assert model.ranking[-4:] == (D, C, B, A)


def test_ease_fit_recovers_the_toy_weights_and_recommends_by_them():
    validation = [_example("v1", "v1", [_liked(A)], [B])]
    model = EASERecommender.fit(_dataset(TOY_TRAIN, validation), lambdas=(1.0,))
    assert model.items == (A, B, C)
    assert model.lam == 1.0 and [lam for lam, _ in model.grid_scores] == [1.0]
    np.testing.assert_allclose(model.weights, [[0, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0]], atol=1e-6)
    # Liked A scores only B above zero (0.5); popularity fills the rest: training counts B 3, A 2, C 2 (tie broken
    # by catalog mentions, C before A), then never-mentioned items by catalog mentions (fillers 30..11, then D 9).
    assert model.recommend(_example("e", "e", [_liked(A)], [C])) == [B, C] + FILLERS[:18]


def test_ease_retrieve_scores_liked_and_unlabelled_context_only():
    model = EASERecommender.fit(_dataset(TOY_TRAIN, [_example("v1", "v1", [_liked(A)], [B])]), lambdas=(1.0,))
    assert model.retrieve([_liked(B)], k=5) == [(A, pytest.approx(0.5)), (C, pytest.approx(0.5))]
    assert model.retrieve([_liked(B)], k=1) == [(A, pytest.approx(0.5))]
    # Unlabelled A and C both count (B = 0.5 + 0.5); a disliked A does not (B = 0.5 from C alone).
    assert model.retrieve([_liked(A, None), _liked(C, None)], k=5) == [(B, pytest.approx(1.0))]
    assert model.retrieve([_liked(A, False), _liked(C)], k=5) == [(B, pytest.approx(0.5))]


def test_ease_maps_seen_titles_when_there_is_no_context():
    model = EASERecommender.fit(_dataset(TOY_TRAIN, [_example("v1", "v1", [_liked(A)], [B])]), lambdas=(1.0,))
    titles_only = _example("s", "s", [], [D], seen=["  ALPHA "])
    assert model.recommend(titles_only)[:2] == [B, C]


def test_unknown_context_still_gets_a_full_popularity_list():
    dataset = _dataset(TOY_TRAIN, [_example("v1", "v1", [_liked(A)], [B])])
    popularity = PopularityRecommender.fit(dataset)
    ease = EASERecommender.fit(dataset, lambdas=(1.0,))
    stranger = _example("u", "u", [_liked(("Not In Catalog", 2001))], [A])
    assert ease.recommend(stranger) == popularity.recommend(stranger) == list(popularity.ranking[:20])


def test_ease_without_validation_uses_the_fallback_lambda_and_needs_training_items():
    model = EASERecommender.fit(_dataset(TOY_TRAIN))
    assert model.lam == NO_VALIDATION_LAMBDA and model.grid_scores == ()
    with pytest.raises(DataError):
        EASERecommender.fit(Dataset("toy", {"test": ()}, CATALOG))


@pytest.fixture(scope="module")
def smoke():
    return synthetic_dataset("smoke")


@pytest.fixture(scope="module")
def fitted(smoke):
    return PopularityRecommender.fit(smoke), EASERecommender.fit(smoke)


def test_lists_are_full_distinct_in_catalog_and_never_seen(smoke, fitted):
    for model in fitted:
        for example in smoke.split("test"):
            items = model.recommend(example)
            seen = {normalize_title(title) for title in example.seen_titles}
            assert len(items) == len(set(items)) == 20
            assert set(items) <= smoke.catalog.exact_index
            assert not seen & {normalize_title(title) for title, _ in items}


def test_fit_is_deterministic_and_records_the_grid(smoke, fitted):
    _, ease = fitted
    again = EASERecommender.fit(smoke)
    np.testing.assert_array_equal(again.weights, ease.weights)
    assert again.grid_scores == ease.grid_scores
    assert [lam for lam, _ in ease.grid_scores] == list(DEFAULT_LAMBDAS)
    assert ease.lam == max(ease.grid_scores, key=lambda entry: entry[1])[0]
    assert PopularityRecommender.fit(smoke) == fitted[0]


def test_ease_clearly_beats_popularity_on_synthetic_smoke(smoke, fitted):
    # Measured (seed 0, test split, standard protocol): popularity NDCG@20 0.159, EASE 0.839.
    test = smoke.split("test")
    popularity, ease = (evaluate(test, as_predictions(model.recommend, test), smoke.catalog).metrics["ndcg@20"]
                        for model in fitted)
    assert popularity < 0.3
    assert ease > 0.7
    assert ease - popularity > 0.5
