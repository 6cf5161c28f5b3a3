"""ALS and ItemKNN (recommender/algorithms/implicit_als.py, implicit_knn.py): the product's kernels
give, for every user, the lists that implicit's own `recommend` gives; parameters and ratings are
checked. The kernel contract (test_kernel_contract.py) checks their kernels against `estimate`
like every other algorithm's.

Ties: the product ranks equal scores by more ratings, then by the lower inner id (selection.py);
implicit leaves their order to its heap. So at a given rank the items may differ only where their
scores are equal, within float32's precision for ALS (implicit scores its float32 factors, the
product their float64 copy): the scores must agree at every rank, and an item may differ only from
one whose score is the same.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from recommender import confidence as conf
from recommender import foldin
from recommender.algorithms import ALS, PRODUCT_ALGORITHMS, ItemKNN
from recommender.dataset import Ratings
from recommender.errors import ConfigError, DatasetError
from recommender.kernels import load_kernel
from recommender.model import ModelArrays
from recommender.ratings import trainset_rows
from recommender.sample_data import SyntheticSpec, synthetic_ratings
from recommender.scoring import fallback
from recommender.snapshot import ratings_from_rows
from recommender.training import FittedModel, effective_params, fit, model_from_fit

SCALE = (1.0, 5.0)
TOP_N = 8


@pytest.fixture(scope="module")
def ratings() -> Ratings:
    spec = SyntheticSpec(users=120, items=60, ratings_per_user=12, seed=5)
    rows = [(u, i, r) for u, i, r, _ in synthetic_ratings(spec)]
    rows += [("one-rating", "item-00007", 4.0)]
    return ratings_from_rows(rows)


def _published(fitted: FittedModel) -> ModelArrays:
    return ModelArrays.from_bytes(model_from_fit(fitted).to_bytes())


def _library_lists(fitted: FittedModel, model: ModelArrays) -> list[tuple[np.ndarray, np.ndarray]]:
    """implicit's own `recommend` for every user, on the matrix the model was fitted on: (items,
    scores) per user. implicit filters the items of that matrix; a rating left out of it by
    min_rating is still seen for the product, so such items are dropped from a longer list."""
    algo = fitted.algorithm
    indptr, items, values = trainset_rows(fitted.trainset)
    x = conf.values(values, algo.confidence, algo.min_rating)
    dtype = np.float32 if isinstance(algo, ALS) else np.float64
    matrix = conf.user_item_matrix(indptr, items, x, model.n_items, dtype)
    users = np.arange(model.n_users)
    longest = int(np.diff(indptr).max())
    ids, scores = algo.model.recommend(users, matrix, N=TOP_N + longest, filter_already_liked_items=True)
    lists = []
    for user in users.tolist():
        keep = np.isfinite(scores[user]) & (ids[user] >= 0) & ~np.isin(ids[user], model.seen(user))
        lists.append((ids[user][keep][:TOP_N], np.asarray(scores[user][keep][:TOP_N], dtype=np.float64)))
    return lists


def _assert_same_lists(fitted: FittedModel, tolerance: float) -> None:
    model = _published(fitted)
    kernel = load_kernel(model)
    users = np.arange(model.n_users)
    picked, values = kernel.top_n(users, TOP_N, model.tie_rank())
    library = _library_lists(fitted, model)
    exact = kernel.scores(users)
    for user in users.tolist():
        theirs, their_scores = library[user]
        ours, our_scores = picked[user][: len(theirs)], values[user][: len(theirs)]
        scale = tolerance * max(1.0, float(np.abs(exact[user]).max()))
        np.testing.assert_allclose(our_scores, their_scores, rtol=0, atol=scale)
        for a, b in zip(ours.tolist(), theirs.tolist()):
            assert a == b or abs(exact[user, a] - exact[user, b]) <= scale, (user, ours, theirs)
        # implicit's neighbours list only items with a score; the product goes on, with zeros
        assert (np.abs(values[user][len(theirs) :]) <= scale).all()


@pytest.mark.parametrize(
    "params",
    [
        {"factors": 8},
        {"factors": 5, "regularization": 0.5, "alpha": 10.0, "iterations": 4},
        {"factors": 6, "confidence": "rating", "min_rating": 3.0},
    ],
)
def test_als_lists_equal_implicits_recommend(ratings: Ratings, params: dict[str, Any]) -> None:
    _assert_same_lists(fit(ratings, "ALS", params, SCALE), tolerance=1e-5)


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"K": 4},
        {"weighting": "tfidf", "K": 10},
        {"weighting": "cosine", "K": 20, "confidence": "rating"},
        {"weighting": "bm25", "K1": 3.0, "B": 0.2, "confidence": "rating"},
    ],
)
def test_item_knn_lists_equal_implicits_recommend(ratings: Ratings, params: dict[str, Any]) -> None:
    _assert_same_lists(fit(ratings, "ItemKNN", params, SCALE), tolerance=1e-9)


def test_item_knn_kernel_bounds_its_expansion(ratings: Ratings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cut into chunks of a few expanded entries, the kernel adds up the same scores."""
    from recommender.kernels import SCORE_BLOCK_BYTES, item_knn

    model = _published(fit(ratings, "ItemKNN", {"K": 7}, SCALE))
    users = np.arange(model.n_users)
    whole = load_kernel(model).scores(users)
    monkeypatch.setattr(item_knn, "BYTES_PER_ENTRY", SCORE_BLOCK_BYTES // 5)
    np.testing.assert_allclose(load_kernel(model).scores(users), whole, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["ALS", "ItemKNN"])
def test_refit_is_reproducible_and_new_users_get_the_most_rated(ratings: Ratings, name: str) -> None:
    first, second = (_published(fit(ratings, name, {}, SCALE)) for _ in range(2))
    for key, array in first.arrays.items():
        np.testing.assert_array_equal(array, second.arrays[key], err_msg=key)
    assert (first.unknown_user_scores == 0.0).all()
    assert fallback(first, TOP_N).items.tolist() == np.argsort(first.tie_rank())[:TOP_N].tolist()


def test_registered_with_training() -> None:
    assert PRODUCT_ALGORITHMS["ALS"] is ALS and PRODUCT_ALGORITHMS["ItemKNN"] is ItemKNN
    assert effective_params("ALS", {})["random_state"] == 0
    assert "random_state" not in effective_params("ItemKNN", {})


@pytest.mark.parametrize(
    ("name", "params", "field"),
    [
        ("ALS", {"factors": 0}, "params.factors"),
        ("ALS", {"alpha": 0}, "params.alpha"),
        ("ALS", {"confidence": "stars"}, "params.confidence"),
        ("ALS", {"min_rating": "high"}, "params.min_rating"),
        ("ALS", {"num_threads": -1}, "params.num_threads"),
        ("ItemKNN", {"weighting": "bm15"}, "params.weighting"),
        ("ItemKNN", {"K": 0}, "params.K"),
        ("ItemKNN", {"B": 1.5}, "params.B"),
        ("ItemKNN", {"K1": float("nan")}, "params.K1"),
        ("ItemKNN", {"factors": 3}, "factors"),
    ],
)
def test_wrong_parameters_are_refused_naming_the_field(
    ratings: Ratings, name: str, params: dict[str, Any], field: str
) -> None:
    with pytest.raises(ConfigError, match=field):
        fit(ratings, name, params, SCALE)


@pytest.mark.parametrize("name", ["ALS", "ItemKNN"])
def test_rating_confidence_refuses_ratings_that_are_not_positive(name: str) -> None:
    rows = [("a", "x", 0.0), ("a", "y", 2.0), ("b", "x", 1.0), ("b", "z", -1.0)]
    with pytest.raises(DatasetError, match="min_rating"):
        fit(ratings_from_rows(rows), name, {"confidence": "rating"}, (-1.0, 5.0))
    fitted = fit(ratings_from_rows(rows), name, {"confidence": "rating", "min_rating": 0.5}, (-1.0, 5.0))
    assert fitted.algorithm.min_rating == 0.5


def test_confidence_values() -> None:
    stars = np.array([1.0, 3.0, 4.5, 5.0])
    assert conf.values(stars, "binary", None).tolist() == [1.0, 1.0, 1.0, 1.0]
    assert conf.values(stars, "binary", 3.0).tolist() == [0.0, 1.0, 1.0, 1.0]
    assert conf.values(stars, "rating", 4.0).tolist() == [0.0, 0.0, 4.5, 5.0]
    matrix = conf.user_item_matrix(np.array([0, 3]), np.array([1, 1, 0]), np.array([1.0, 2.0, 0.0]), 2)
    assert matrix.toarray().tolist() == [[0.0, 3.0]]  # a repeated pair adds; a 0.0 is left out


@pytest.mark.parametrize(
    "params", [{"factors": 6}, {"factors": 4, "alpha": 5.0, "confidence": "rating", "min_rating": 2.0}]
)
def test_als_fold_in_is_implicits_recalculate_user(ratings: Ratings, params: dict[str, Any]) -> None:
    fitted = fit(ratings, "ALS", params, SCALE)
    model = _published(fitted)
    algo = fitted.algorithm
    indptr, items, values = trainset_rows(fitted.trainset)
    x = conf.values(values, algo.confidence, algo.min_rating)
    matrix = conf.user_item_matrix(indptr, items, x, model.n_items)
    for user in range(0, model.n_users, 7):
        rated = slice(int(indptr[user]), int(indptr[user + 1]))
        mine = foldin.als_user_factors(model, items[rated], values[rated])
        theirs = np.asarray(algo.model.recalculate_user(user, matrix[user]), dtype=np.float64)
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-4 * max(1.0, float(np.abs(theirs).max())))
        scores = foldin.estimates(model, {}, items[rated], values[rated])
        np.testing.assert_allclose(scores, model.arrays["qi"] @ mine, rtol=1e-12)


@pytest.mark.parametrize(
    "params", [{"K": 6}, {"weighting": "cosine", "confidence": "rating", "min_rating": 3.0}]
)
def test_item_knn_fold_in_is_exact(ratings: Ratings, params: dict[str, Any]) -> None:
    """Folding in a training user's own ratings gives the model's scores and list for that user."""
    fitted = fit(ratings, "ItemKNN", params, SCALE)
    model = _published(fitted)
    kernel = load_kernel(model)
    indptr, items, values = trainset_rows(fitted.trainset)
    for user in range(0, model.n_users, 5):
        rated = slice(int(indptr[user]), int(indptr[user + 1]))
        scores = foldin.estimates(model, {}, items[rated], values[rated])
        np.testing.assert_allclose(scores, kernel.scores(np.array([user]))[0], rtol=1e-12, atol=1e-12)
        given = {model.item_ids[i]: v for i, v in zip(items[rated].tolist(), values[rated].tolist())}
        listed, _ = foldin.recommend_for_ratings(model, {}, given, TOP_N)
        picked, _ = kernel.top_n(np.array([user]), TOP_N, model.tie_rank())
        assert listed == [model.item_ids[i] for i in picked[0].tolist()]
