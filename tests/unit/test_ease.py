"""EASE (recommender/algorithms/ease.py): the closed form against an independent solve, unknown
users and items, the item-count guard, the kernel's block paths and fold-in. The kernel contract
(test_kernel_contract.py) checks its kernel against `estimate` like every other algorithm's."""

from __future__ import annotations

import numpy as np
import pytest
from surprise import PredictionImpossible

from recommender import foldin
from recommender.algorithms import EASE, PRODUCT_ALGORITHMS
from recommender.algorithms.ease import DEFAULT_MAX_ITEMS, gram, user_rows
from recommender.dataset import Ratings
from recommender.errors import ConfigError, TooManyItemsError
from recommender.kernels import kernel_name, load_kernel
from recommender.model import KIND_REFIT, ModelArrays
from recommender.sample_data import SyntheticSpec, synthetic_ratings
from recommender.scoring import fallback, recommend
from recommender.snapshot import ratings_from_rows
from recommender.training import FittedModel, algorithm_class, effective_params, fit, model_from_fit

SCALE = (1.0, 5.0)


def _rows(users: int, items: int, per_user: int, seed: int) -> list[tuple[str, str, float]]:
    spec = SyntheticSpec(users=users, items=items, ratings_per_user=per_user, seed=seed)
    return [(u, i, r) for u, i, r, _ in synthetic_ratings(spec)]


@pytest.fixture(scope="module")
def ratings() -> Ratings:
    return ratings_from_rows(_rows(40, 25, 7, 3))


def _published(fitted: FittedModel) -> ModelArrays:
    return ModelArrays.from_bytes(model_from_fit(fitted).to_bytes())


def _dense_x(fitted: FittedModel, implicit: bool) -> np.ndarray:
    trainset = fitted.trainset
    x = np.zeros((trainset.n_users, trainset.n_items))
    for u in range(trainset.n_users):
        for i, r in trainset.ur[u]:
            x[u, i] = 1.0 if implicit else r
    return x


@pytest.mark.parametrize("implicit", [True, False])
@pytest.mark.parametrize("reg", [0.5, 7.0])
def test_closed_form_is_the_constrained_least_squares_minimiser(
    ratings: Ratings, implicit: bool, reg: float
) -> None:
    """B minimises ||X - XB||^2 + reg ||B||^2 with diag(B) = 0. The problem splits by column: column
    j is a ridge regression of X[:, j] on the other columns, solved here independently by
    least squares on the stacked system [X_-j; sqrt(reg) I] b = [x_j; 0]."""
    fitted = fit(ratings, "EASE", {"reg": reg, "implicit": implicit}, SCALE)
    b = fitted.algorithm.weights
    x = _dense_x(fitted, implicit)
    n = x.shape[1]
    np.testing.assert_array_equal(np.diag(b), 0.0)
    for j in range(n):
        others = [k for k in range(n) if k != j]
        stacked = np.vstack([x[:, others], np.sqrt(reg) * np.eye(n - 1)])
        target = np.concatenate([x[:, j], np.zeros(n - 1)])
        solution = np.linalg.lstsq(stacked, target, rcond=None)[0]
        np.testing.assert_allclose(b[others, j], solution, rtol=1e-9, atol=1e-12)
    # KKT: the gradient (X^T X + reg I) B - X^T X vanishes off the diagonal (the constraint's
    # multipliers live on it)
    gradient = (x.T @ x + reg * np.eye(n)) @ b - x.T @ x
    off_diagonal = gradient - np.diag(np.diag(gradient))
    np.testing.assert_allclose(off_diagonal, 0.0, atol=1e-9 * np.abs(x.T @ x).max())


def test_gram_is_x_transpose_x(ratings: Ratings) -> None:
    fitted = fit(ratings, "EASE", {"implicit": False}, SCALE)
    x = _dense_x(fitted, implicit=False)
    indptr, items, values = user_rows(fitted.trainset, implicit=False)
    np.testing.assert_allclose(gram(indptr, items, values, x.shape[1]), x.T @ x, rtol=1e-12)


@pytest.mark.parametrize("implicit", [True, False])
def test_estimate_is_the_user_row_times_the_weights(ratings: Ratings, implicit: bool) -> None:
    fitted = fit(ratings, "EASE", {"reg": 3.0, "implicit": implicit}, SCALE)
    expected = _dense_x(fitted, implicit) @ fitted.algorithm.weights
    got = np.array(
        [
            [fitted.algorithm.estimate(u, i) for i in range(fitted.trainset.n_items)]
            for u in range(fitted.trainset.n_users)
        ]
    )
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_unknown_users_and_items_score_zero_and_fall_back_to_popularity(ratings: Ratings) -> None:
    fitted = fit(ratings, "EASE", {"reg": 3.0}, SCALE)
    algo = fitted.algorithm
    user, item = ratings.user_ids[0], ratings.item_ids[0]
    with pytest.raises(PredictionImpossible):
        algo.estimate("UKN__someone", 0)
    with pytest.raises(PredictionImpossible):
        algo.estimate(0, "UKN__something")
    assert algo.default_prediction() == 0.0  # the score of an empty row or column, not the mean
    for uid, iid in ((user, "no-such-item"), ("no-such-user", item)):
        prediction = algo.predict(uid, iid)
        assert prediction.details["was_impossible"]
        assert prediction.est == SCALE[0]  # 0.0 clipped: a score, not a rating
    model = _published(fitted)
    np.testing.assert_array_equal(model.unknown_user_scores, 0.0)
    # every item ties at 0.0, so the fallback is the tie rule: most ratings first, then first seen
    popularity = sorted(range(model.n_items), key=lambda i: (-model.item_counts[i], i))
    assert fallback(model, 10).items.tolist() == popularity[:10]


def test_item_count_guard_refuses_before_fitting(ratings: Ratings) -> None:
    n_items = len(ratings.item_ids)
    with pytest.raises(TooManyItemsError, match=rf"{n_items} items exceed max_items=10\b.*max_items"):
        fit(ratings, "EASE", {"max_items": 10}, SCALE)
    algo = EASE(max_items=n_items - 1)
    with pytest.raises(TooManyItemsError, match="GB"):
        algo.fit(fit(ratings, "BaselineOnly", {}, SCALE).trainset)
    assert not hasattr(algo, "weights") and not hasattr(algo, "trainset")
    assert fit(ratings, "EASE", {"max_items": n_items}, SCALE).algorithm.weights.shape == (n_items, n_items)
    assert EASE().max_items == DEFAULT_MAX_ITEMS == 15_000


@pytest.mark.parametrize(
    "params",
    [{"reg": 0}, {"reg": -1.0}, {"reg": float("nan")}, {"reg": "big"}, {"reg": True}, {"implicit": "yes"},
     {"max_items": 0}, {"max_items": 2.5}, {"n_factors": 3}],
)  # fmt: skip
def test_bad_parameters_are_configuration_errors(ratings: Ratings, params: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="EASE"):
        fit(ratings, "EASE", params, SCALE)


def test_named_like_surprise_algorithms_with_a_kernel() -> None:
    assert algorithm_class("EASE") is EASE is PRODUCT_ALGORITHMS["EASE"]
    assert effective_params("EASE", {"reg": 50}) == {"reg": 50}  # no random_state, no verbose
    assert kernel_name(EASE()) == "EASE"

    class Changed(EASE):
        pass

    Changed.__name__ = "EASE"
    assert kernel_name(Changed()) is None  # a subclass may change estimate: refit, per pair
    with pytest.raises(ConfigError, match="EASE"):
        algorithm_class("Ease")


def test_a_subclass_is_published_for_refit(ratings: Ratings) -> None:
    fitted = fit(ratings, "tests.unit.test_ease:ShiftedEASE", {}, SCALE)
    assert model_from_fit(fitted).kind == KIND_REFIT


class ShiftedEASE(EASE):
    def estimate(self, u: object, i: object) -> float:
        return super().estimate(u, i) + 1.0


@pytest.mark.parametrize("implicit", [True, False])
def test_kernel_block_paths_agree_with_the_dense_product(
    monkeypatch: pytest.MonkeyPatch, implicit: bool
) -> None:
    """A sparse catalogue, so blocks take the gathered path (the union of a block's items is under
    half the catalogue), in chunks of B's rows; one whole block takes the dense path."""
    import recommender.kernels.ease as kernel_module

    sparse = ratings_from_rows(_rows(60, 400, 5, 8))
    fitted = fit(sparse, "EASE", {"reg": 1.5, "implicit": implicit}, SCALE)
    model = _published(fitted)
    kernel = load_kernel(model)
    expected = _dense_x(fitted, implicit) @ fitted.algorithm.weights
    users = np.arange(model.n_users)
    monkeypatch.setattr(kernel_module, "SCORE_BLOCK_BYTES", 8 * model.n_items * 7)  # 7 rows a chunk
    for block in np.array_split(users, 12):
        union = np.unique(np.concatenate([model.seen(u) for u in block]))
        assert len(union) > 7 and 2 * len(union) < model.n_items  # gathered, in several chunks
        np.testing.assert_allclose(kernel.scores(block), expected[block], rtol=1e-9, atol=1e-9)

    dense = fit(ratings_from_rows(_rows(60, 30, 12, 8)), "EASE", {"reg": 1.5, "implicit": implicit}, SCALE)
    dense_model = _published(dense)
    everyone = np.arange(dense_model.n_users)
    assert 2 * len(np.unique(dense_model.seen_indices)) > dense_model.n_items  # B whole
    np.testing.assert_allclose(
        load_kernel(dense_model).scores(everyone),
        _dense_x(dense, implicit) @ dense.algorithm.weights,
        rtol=1e-9,
        atol=1e-9,
    )


@pytest.mark.parametrize("implicit", [True, False])
def test_foldin_of_a_training_user_is_the_models_estimate_exactly(ratings: Ratings, implicit: bool) -> None:
    fitted = fit(ratings, "EASE", {"reg": 3.0, "implicit": implicit}, SCALE)
    model = _published(fitted)
    assert "EASE" in foldin.SUPPORTED
    kernel = load_kernel(model)
    lists = {top.user: top for top in recommend(model, np.arange(model.n_users), 8, kernel)}
    for user in range(model.n_users):
        pairs = fitted.trainset.ur[user]
        items = np.array([i for i, _ in pairs], dtype=np.int64)
        values = np.array([r for _, r in pairs])
        folded = foldin.estimates(model, fitted.params, items, values)
        own = [fitted.algorithm.estimate(user, i) for i in range(model.n_items)]
        assert folded.tolist() == own  # bit for bit: the same products, added in the same order
        given = {model.item_ids[i]: r for i, r in pairs}
        got, scores = foldin.recommend_for_ratings(model, fitted.params, given, 8)
        assert got == [model.item_ids[i] for i in lists[user].items.tolist()]
        np.testing.assert_allclose(scores, lists[user].scores)


def test_foldin_ignores_unknown_items_and_falls_back(ratings: Ratings) -> None:
    fitted = fit(ratings, "EASE", {"reg": 3.0}, SCALE)
    model = _published(fitted)
    first, second = model.item_ids[:2]
    with_unknown, _ = foldin.recommend_for_ratings(model, {}, {first: 4.0, "nope": 5.0}, 5)
    alone, _ = foldin.recommend_for_ratings(model, {}, {first: 4.0}, 5)
    assert with_unknown == alone and first not in alone
    nothing_known, _ = foldin.recommend_for_ratings(model, {}, {"nope": 5.0}, 5, exclude=[second])
    popular = [model.item_ids[i] for i in fallback(model, 6).items.tolist() if model.item_ids[i] != second]
    assert nothing_known == popular[:5]
