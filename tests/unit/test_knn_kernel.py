"""The k-NN kernel against Surprise's `estimate`, bit for bit (equality, not closeness), beyond the
contract's cases: k = 0 and 1, min_k = 0 and min_k > k, chunks cut down to one candidate list and
one ranked row, users in any order, and a degenerate ZScore (every rating equal: sigma 0
everywhere, where Surprise's own fit returns NaN and the product's reads the z-score as 0)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from surprise import KNNWithZScore, PredictionImpossible

from recommender.dataset import Ratings
from recommender.kernels import load_kernel
from recommender.kernels.knn import KNNKernel
from recommender.model import ModelArrays
from recommender.snapshot import ratings_from_rows
from recommender.training import FittedModel, fit, model_from_fit, surprise_trainset

KNN = ("KNNBasic", "KNNWithMeans", "KNNWithZScore", "KNNBaseline")
SIMILARITIES = ("cosine", "msd", "pearson", "pearson_baseline")
K_MIN_K = ((1, 1), (2, 5), (4, 2), (40, 1), (0, 0), (6, 0))


def _rows() -> list[tuple[str, str, str]]:
    rng = np.random.default_rng(3)
    rows = []
    for u in range(30):
        for i in rng.choice(20, size=int(rng.integers(2, 12)), replace=False).tolist():
            rows.append((f"u{u}", f"i{i}", str(int(rng.integers(1, 6)))))
    rows += [("all", f"i{i}", str(1 + i % 5)) for i in range(20)]
    rows += [("single", "i3", "4")]
    # shuffled: the order of ir[i] is not the order of inner user ids
    return [rows[k] for k in rng.permutation(len(rows)).tolist()]


@pytest.fixture(scope="module")
def ratings() -> Ratings:
    return ratings_from_rows(_rows())


def _surprise(fitted: FittedModel, model: ModelArrays) -> np.ndarray:
    algo = fitted.algorithm
    out = np.empty((model.n_users, model.n_items))
    for u in range(model.n_users):
        for i in range(model.n_items):
            try:
                out[u, i] = algo.estimate(u, i)[0]
            except PredictionImpossible:
                out[u, i] = algo.default_prediction()
            except ZeroDivisionError:  # KNNBasic, min_k <= 0, no neighbour with sim > 0
                out[u, i] = algo.default_prediction()
    return out


def _kernel(fitted: FittedModel) -> tuple[ModelArrays, KNNKernel]:
    model = ModelArrays.from_bytes(model_from_fit(fitted).to_bytes())
    kernel = load_kernel(model)
    assert isinstance(kernel, KNNKernel)
    return model, kernel


@pytest.mark.parametrize("k_min_k", K_MIN_K, ids=[f"k{k}-min{m}" for k, m in K_MIN_K])
@pytest.mark.parametrize("user_based", (True, False), ids=("user", "item"))
@pytest.mark.parametrize("sim", SIMILARITIES)
@pytest.mark.parametrize("name", KNN)
def test_bit_for_bit(
    name: str, sim: str, user_based: bool, k_min_k: tuple[int, int], ratings: Ratings
) -> None:
    k, min_k = k_min_k
    params: dict[str, Any] = {"k": k, "min_k": min_k, "sim_options": {"name": sim, "user_based": user_based}}
    fitted = fit(ratings, name, params, (1.0, 5.0))
    model, kernel = _kernel(fitted)
    expected = _surprise(fitted, model)
    users = np.arange(model.n_users)
    np.testing.assert_array_equal(kernel.scores(users), expected)

    # users in any order, repeated, chunks down to a single candidate list, one row ranked at a time
    shuffled = np.random.default_rng(0).permutation(np.concatenate([users, users[:5]]))
    kernel.chunk_candidates = 1
    kernel.rank_bytes = 1
    kernel._all_ranks = None
    np.testing.assert_array_equal(kernel.scores(shuffled), expected[shuffled])
    kernel.chunk_candidates = 37
    np.testing.assert_array_equal(kernel.scores(shuffled[:9]), expected[shuffled[:9]])
    assert kernel.scores(users[:0]).shape == (0, model.n_items)


@pytest.mark.parametrize("user_based", (True, False), ids=("user", "item"))
def test_zscore_all_ratings_equal(user_based: bool) -> None:
    rows = [(f"u{u}", f"i{i}", "3") for u in range(6) for i in range(5) if (u + i) % 3]
    params = {"sim_options": {"name": "msd", "user_based": user_based}}
    fitted = fit(ratings_from_rows(rows), "KNNWithZScore", params, (1.0, 5.0))
    model, kernel = _kernel(fitted)
    plain = KNNWithZScore(**params, verbose=False).fit(surprise_trainset(ratings_from_rows(rows), (1.0, 5.0)))
    with np.errstate(invalid="ignore", divide="ignore"):
        assert np.isnan(_surprise(FittedModel(plain, plain.trainset, {}, (1.0, 5.0), 0.0), model)).any()
    expected = _surprise(fitted, model)
    assert np.all(expected == 3.0)  # training.fit's sigma rule: a z-score of 0, the mean
    np.testing.assert_array_equal(kernel.scores(np.arange(model.n_users)), expected)
