"""EASE item-item baseline: Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019.

Why: a strong, cheap collaborative-filtering floor for every LLM method, and the item-item model behind CRAG's
collaborative retrieval (DESIGN.md, CRAG). Each training dialogue is one row of a binary matrix X over the items it
mentions (context items and ground truth). EASE's closed form gives the item-item weights

    P = (X^T X + lambda I)^-1,   B = -P / diag(P) (column j divided by P_jj),   diag(B) = 0,

and a user who mentioned items q scores item j as sum over i in q of B[i, j]. Only items seen in training get a
column, which keeps the matrix at a few thousand items. lambda is chosen on the validation split by the shared
evaluator's NDCG@20.
"""

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from itertools import chain

import numpy as np
import scipy.linalg
import scipy.sparse

from baselines.collaborative import (
    ItemResolver,
    as_predictions,
    context_query,
    dialogue_rows,
    popularity_ranking,
    query_items,
    top_unseen,
)
from bench.data.dataset import Dataset
from bench.data.prompts import N_RECOMMENDATIONS
from bench.data.records import ContextItem, Example, Item
from bench.errors import DataError
from bench.evaluation.evaluator import evaluate
from bench.runs.context import MethodOutput, RunContext

DEFAULT_LAMBDAS: tuple[float, ...] = (10.0, 50.0, 100.0, 250.0, 500.0, 1000.0)
NO_VALIDATION_LAMBDA = 500.0
"""Used when the dataset has no validation examples to choose lambda on (the value Steck uses for ML-20M)."""
SELECTION_METRIC = "ndcg@20"


def ease_weights(gram: np.ndarray, lam: float) -> np.ndarray:
    """EASE's closed form from the Gram matrix G = X^T X (n_items x n_items): B with zero diagonal, float64.

    B[i, j] = -P[i, j] / P[j, j] for P = (G + lam I)^-1; G + lam I is symmetric positive definite for lam > 0.
    """
    if lam <= 0:
        raise ValueError(f"EASE needs lambda > 0, got {lam}")
    regularised = np.asarray(gram, dtype=np.float64) + lam * np.eye(gram.shape[0])
    weights = scipy.linalg.inv(regularised, overwrite_a=True, assume_a="pos")
    weights /= -np.diag(weights).copy()[np.newaxis, :]
    np.fill_diagonal(weights, 0.0)
    return weights


def interaction_matrix(rows: Sequence[Sequence[Item]], index: dict[Item, int]) -> scipy.sparse.csr_matrix:
    """Binary X (n_rows x len(index)): X[r, index[item]] = 1 for each item of row r that the index knows."""
    row_ids: list[int] = []
    column_ids: list[int] = []
    for row_id, row in enumerate(rows):
        for item in dict.fromkeys(row):
            if item in index:
                row_ids.append(row_id)
                column_ids.append(index[item])
    data = np.ones(len(row_ids), dtype=np.float64)
    return scipy.sparse.csr_matrix((data, (row_ids, column_ids)), shape=(len(rows), len(index)))


@dataclass(frozen=True, eq=False)
class EASERecommender:
    """A fitted EASE model; build with `fit`.

    `items` are the weight matrix's rows and columns (training items, catalog order); `popularity` ranks the whole
    catalog and fills lists past the items EASE scores above zero; `grid_scores` holds (lambda, validation NDCG@20)
    for every lambda tried and `fit_seconds` the wall time of the whole fit, grid search included.
    """

    items: tuple[Item, ...]
    weights: np.ndarray
    popularity: tuple[Item, ...]
    resolver: ItemResolver
    lam: float
    grid_scores: tuple[tuple[float, float], ...] = ()
    fit_seconds: float = 0.0

    @cached_property
    def _index(self) -> dict[Item, int]:
        return {item: column for column, item in enumerate(self.items)}

    @classmethod
    def fit(cls, dataset: Dataset, lambdas: Sequence[float] = DEFAULT_LAMBDAS,
            protocol: str = "standard") -> "EASERecommender":
        """Fit on the training dialogues and pick lambda by validation NDCG@20 (first of ties, in grid order);
        without validation examples (or lambdas) lambda is NO_VALIDATION_LAMBDA.

        Deterministic. Raises DataError when the dataset has no training items.
        """
        start = time.perf_counter()
        resolver = ItemResolver(dataset.catalog)
        rows = dialogue_rows(dataset.splits.get("train", ()), resolver)
        in_training = set(chain.from_iterable(rows))
        if not in_training:
            raise DataError(f"{dataset.source or dataset.name}: EASE needs a train split mentioning catalog items")
        items = tuple(item for item in dataset.catalog.items if item in in_training)
        matrix = interaction_matrix(rows, {item: column for column, item in enumerate(items)})
        gram = (matrix.T @ matrix).toarray()
        popularity, _ = popularity_ranking(dataset, resolver)

        def build(lam: float) -> EASERecommender:
            return cls(items, ease_weights(gram, lam).astype(np.float32), popularity, resolver, lam)

        validation = dataset.splits.get("validation", ())
        grid: tuple[tuple[float, float], ...] = ()
        if validation:
            grid = tuple((lam, _validation_score(build(lam), validation, dataset, protocol)) for lam in lambdas)
        lam = max(grid, key=lambda entry: entry[1])[0] if grid else NO_VALIDATION_LAMBDA
        return replace(build(lam), grid_scores=grid, fit_seconds=time.perf_counter() - start)

    def _scored(self, query: Sequence[Item]) -> list[tuple[Item, float]]:
        """Items with a positive summed score for the query items, best first (catalog order on ties)."""
        columns = [self._index[item] for item in query if item in self._index]
        if not columns:
            return []
        scores = self.weights[columns].sum(axis=0, dtype=np.float64)
        positive = np.flatnonzero(scores > 0)
        order = positive[np.argsort(-scores[positive], kind="stable")]
        return [(self.items[column], float(scores[column])) for column in order]

    def recommend(self, example: Example, n: int = N_RECOMMENDATIONS) -> list[Item]:
        """`n` catalog items: EASE's positive scores for the example's liked (or unlabelled) mentions, then
        popularity; seen titles excluded. A context that maps to no training item gets the popularity list."""
        scored = (item for item, _ in self._scored(query_items(example, self.resolver)))
        return top_unseen(chain(scored, self.popularity), example.seen_titles, n)

    def retrieve(self, context_items: Sequence[ContextItem], k: int) -> list[tuple[Item, float]]:
        """CRAG's collaborative retrieval: up to `k` (item, score) pairs with positive EASE score for the liked (or
        unlabelled) context items, best first; no context title is returned."""
        scored = self._scored(context_query(context_items, self.resolver))
        kept = set(top_unseen((item for item, _ in scored), [c.title for c in context_items], k))
        return [(item, score) for item, score in scored if item in kept]


def _validation_score(model: EASERecommender, validation: Sequence[Example], dataset: Dataset,
                      protocol: str) -> float:
    result = evaluate(validation, as_predictions(model.recommend, validation), dataset.catalog, protocol)
    return float(result.metrics[SELECTION_METRIC])


def predict(ctx: RunContext) -> MethodOutput:
    """`bench run --algo ease`: fit (lambda chosen on validation), recommend for every evaluation example."""
    model = EASERecommender.fit(ctx.dataset, protocol=ctx.spec.protocol)
    artifacts = {"lambda": model.lam, "grid_scores": [list(entry) for entry in model.grid_scores],
                 "fit_seconds": model.fit_seconds, "n_items": len(model.items)}
    return MethodOutput(as_predictions(model.recommend, ctx.eval_examples()), artifacts)
