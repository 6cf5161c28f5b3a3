"""The similar-items contract, checked the same way for every algorithm (issue 17).

For every model the kernel contract fits (small synthetic data, fixed seed, integer stars so that
similarities tie), each item's published list equals a per-pair brute force read from the fitted
algorithm itself (Surprise's `qi` and `sim`, EASE's `weights`, ItemKNN's neighbours, or the
raters of each item for co-occurrence):
- the most similar first; equal similarity: more ratings first, then the lower inner id;
- only a positive similarity counts; an item is never similar to itself;
- an item with fewer ratings than `min_support` has no list and is in none;
- k-NN lists at most its own k neighbours;
- cutting the items into blocks of one changes nothing.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from recommender.dataset import Ratings
from recommender.errors import ModelIntegrityError
from recommender.model import ModelArrays
from recommender.sample_data import SyntheticSpec, synthetic_ratings
from recommender.similarity import (
    CO_OCCURRENCE,
    EASE_WEIGHTS,
    FACTOR_COSINE,
    ITEM_KNN,
    KNN_SIMILARITY,
    ItemSimilarity,
    Raters,
    measure_of,
)
from recommender.snapshot import ratings_from_rows
from recommender.training import FittedModel, fit, model_from_fit
from tests.unit.test_kernel_contract import CASES, SCALE, case_id

TOP_N = 6


@pytest.fixture(scope="module")
def ratings() -> Ratings:
    rows = [
        (u, i, r)
        for u, i, r, _ in synthetic_ratings(SyntheticSpec(users=45, items=30, ratings_per_user=8, seed=11))
    ]
    rows += [("one-rating", "item-00031", 4.0)]  # an item with one rating
    rows += [("u-twice", "item-00007", 4.0), ("u-twice", "item-00008", 2.0)]
    return ratings_from_rows(rows)


def pair_similarity(fitted: FittedModel, model: ModelArrays) -> np.ndarray:
    """Every (i, j) similarity, one pair at a time, from the fitted algorithm's own attributes."""
    algo: Any = fitted.algorithm
    n = model.n_items
    measure = measure_of(model)
    out = np.zeros((n, n))
    if measure == ITEM_KNN:
        for i in range(n):
            for position in range(algo.sim_indptr[i], algo.sim_indptr[i + 1]):
                out[i, algo.sim_indices[position]] = algo.sim_data[position]
        return out
    raters: list[set[int]] = [set() for _ in range(n)]
    for u in range(model.n_users):
        for i in model.seen(u).tolist():
            raters[i].add(u)
    for i in range(n):
        for j in range(n):
            out[i, j] = one_pair(measure, algo, raters, i, j)
    return out


def one_pair(measure: str, algo: Any, raters: list[set[int]], i: int, j: int) -> float:
    if measure == FACTOR_COSINE:
        a, b = np.linalg.norm(algo.qi[i]), np.linalg.norm(algo.qi[j])
        return 0.0 if a == 0 or b == 0 else float(algo.qi[i] @ algo.qi[j]) / float(a * b)
    if measure == EASE_WEIGHTS:
        return float(algo.weights[i, j])
    if measure == KNN_SIMILARITY:
        return float(algo.sim[i, j])
    size = len(raters[i]) * len(raters[j])
    return len(raters[i] & raters[j]) / math.sqrt(size) if size else 0.0


def brute_force(model: ModelArrays, similarity: np.ndarray, item: int, n: int, min_support: int) -> list[int]:
    counts = model.item_counts
    if counts[item] < min_support:
        return []
    others = [
        j for j in range(model.n_items) if j != item and counts[j] >= min_support and similarity[item, j] > 0
    ]
    return sorted(others, key=lambda j: (-similarity[item, j], -counts[j], j))[:n]


CONTRACT_CASES = [c for c in CASES if not (c[0].startswith("KNN") and c[1]["k"] == 40 and c[1]["min_k"] == 1)]


@pytest.mark.parametrize("min_support", [1, 9])
@pytest.mark.parametrize("case", CONTRACT_CASES, ids=[case_id(c) for c in CONTRACT_CASES])
def test_similar_items_equal_the_brute_force(
    case: tuple[str, dict[str, Any]], min_support: int, ratings: Ratings
) -> None:
    name, params = case
    fitted = fit(ratings, name, params, SCALE)
    model = ModelArrays.from_bytes(model_from_fit(fitted).to_bytes())
    raters = Raters.from_seen(model.seen_indptr, model.seen_indices, model.n_items)
    similarity = ItemSimilarity(model, min_support, raters)
    expected = pair_similarity(fitted, model)
    items = np.arange(model.n_items)
    lists = {item: (top.tolist(), values.tolist()) for item, top, values in similarity.lists(items, TOP_N)}
    similarity.block_rows = lambda: 1  # type: ignore[method-assign]
    one_by_one = {item: top.tolist() for item, top, _ in similarity.lists(items, TOP_N)}
    limit = min(TOP_N, params["k"]) if similarity.measure == KNN_SIMILARITY else TOP_N
    assert sorted(lists) == items.tolist()
    for item, (got, values) in lists.items():
        want = brute_force(model, expected, item, limit, min_support)
        assert len(got) == len(want), (item, got, want)
        for a, b in zip(got, want):  # equal, or tied within rounding
            assert a == b or abs(expected[item, a] - expected[item, b]) < 1e-9, (item, got, want)
        np.testing.assert_allclose(values, [expected[item, j] for j in got], rtol=1e-9, atol=1e-12)
        assert item not in got
        assert one_by_one[item] == got
    thin = [i for i in range(model.n_items) if model.item_counts[i] < min_support]
    assert all(lists[i][0] == [] for i in thin)
    assert not {j for got, _ in lists.values() for j in got} & set(thin)
    if min_support == 1:  # the data has structure: most items have a list
        assert sum(1 for got, _ in lists.values() if got) > model.n_items // 2


def test_every_family_has_its_measure(ratings: Ratings) -> None:
    """Each model family gets the measure the issue names: its own item-item notion if it has one."""
    expected = {
        ("SVD", False): FACTOR_COSINE,
        ("SVDpp", False): FACTOR_COSINE,
        ("NMF", False): FACTOR_COSINE,
        ("ALS", False): FACTOR_COSINE,
        ("EASE", False): EASE_WEIGHTS,
        ("ItemKNN", False): ITEM_KNN,
        ("KNNBasic", False): KNN_SIMILARITY,
        ("KNNBasic", True): CO_OCCURRENCE,
        ("KNNBaseline", False): KNN_SIMILARITY,
        ("BaselineOnly", False): CO_OCCURRENCE,
        ("SlopeOne", False): CO_OCCURRENCE,
        ("CoClustering", False): CO_OCCURRENCE,
        ("NormalPredictor", False): CO_OCCURRENCE,
    }
    for (name, user_based), measure in expected.items():
        params: dict[str, Any] = {"sim_options": {"user_based": user_based}} if name.startswith("KNN") else {}
        model = model_from_fit(fit(ratings, name, params, SCALE))
        assert measure_of(model) == measure, name


def test_co_occurrence_counts_a_repeated_rating_once() -> None:
    """A snapshot may hold a (user, item) pair twice: the raters are sets."""
    indptr = np.array([0, 3, 4])
    indices = np.array([0, 0, 1, 1])  # user 0 rated item 0 twice
    raters = Raters.from_seen(indptr, indices, 2)
    assert raters.user_items.tolist() == [0, 1, 1]
    assert raters.item_indptr.tolist() == [0, 1, 3]
    assert raters.item_users.tolist() == [0, 0, 1]
    again = Raters.from_bytes(raters.to_bytes(), 2)
    assert again.item_users.tolist() == raters.item_users.tolist()


def test_raters_naming_an_item_outside_the_model_are_refused() -> None:
    """A raters.npz from another run (more items) would index past the model's catalogue."""
    data = Raters.from_seen(np.array([0, 2]), np.array([0, 5]), 6).to_bytes()
    assert Raters.from_bytes(data, 6).item_indptr[-1] == 2
    with pytest.raises(ModelIntegrityError, match="outside the model's 5"):
        Raters.from_bytes(data, 5)
