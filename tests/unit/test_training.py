"""The trainset is Surprise's own, so anyone can reproduce a published model with Surprise alone."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from surprise import SVD, Dataset, KNNBasic, Reader, Trainset

from recommender.errors import ConfigError, DatasetError
from recommender.snapshot import ratings_from_rows
from recommender.training import (
    ALGORITHM_NAMES,
    algorithm_class,
    build_trainset,
    effective_params,
    fit,
    make_algorithm,
    rating_scale_of,
)

SCALE = (1.0, 5.0)


def _rows() -> list[tuple[str, str, float]]:
    """String ids, repeated and interleaved, first appearances not in sorted order, one duplicate."""
    rng = np.random.default_rng(11)
    users = ["zoe", "42", "ann", "Ünïcode", "b,c", "07", "7", "x\ny", "😀"]
    items = ["i9", "i10", "i1", "Ω", "a b", "i2", '"q"', "i3"]
    rows: list[tuple[str, str, float]] = []
    for _ in range(140):
        u = users[int(rng.integers(len(users)))]
        i = items[int(rng.integers(len(items)))]
        rows.append((u, i, float(rng.integers(2, 11)) / 2.0))
    rows.append(rows[3])  # a repeated (user, item) pair, kept twice by Surprise as by us
    # make sure every user and item appears at least once
    rows += [(u, items[k % len(items)], 3.0) for k, u in enumerate(users)]
    rows += [(users[k % len(users)], i, 4.0) for k, i in enumerate(items)]
    return rows


def _surprise_trainset(rows: list[tuple[str, str, float]], scale: tuple[float, float]) -> Trainset:
    frame = pd.DataFrame(rows, columns=["user", "item", "rating"])
    return Dataset.load_from_df(frame, Reader(rating_scale=scale)).build_full_trainset()


def test_trainset_identical_to_surprise() -> None:
    rows = _rows()
    ours = build_trainset(ratings_from_rows(rows), SCALE)
    ref = _surprise_trainset(rows, SCALE)

    assert (ours.n_users, ours.n_items, ours.n_ratings) == (ref.n_users, ref.n_items, ref.n_ratings)
    assert ours.n_ratings == len(rows)
    assert ours._raw2inner_id_users == ref._raw2inner_id_users
    assert ours._raw2inner_id_items == ref._raw2inner_id_items
    assert list(ours._raw2inner_id_users) == list(ref._raw2inner_id_users)
    assert list(ours._raw2inner_id_items) == list(ref._raw2inner_id_items)
    assert list(ours.ur) == list(ref.ur)
    assert list(ours.ir) == list(ref.ir)
    for u in ref.ur:
        assert ours.ur[u] == ref.ur[u]
    for i in ref.ir:
        assert ours.ir[i] == ref.ir[i]
    assert ours.rating_scale == ref.rating_scale
    assert ours.global_mean == ref.global_mean
    assert list(ours.all_ratings()) == list(ref.all_ratings())
    # inner ids follow first appearance, not sorted order
    assert ours.to_raw_uid(0) == rows[0][0]
    assert ours.to_raw_iid(0) == rows[0][1]


@pytest.mark.parametrize("params", [{"n_factors": 8, "n_epochs": 15}, {"n_factors": 5, "biased": False}])
def test_svd_fit_reproducible_with_surprise_alone(params: dict[str, object]) -> None:
    rows = _rows()
    ours = build_trainset(ratings_from_rows(rows), SCALE)
    ref = _surprise_trainset(rows, SCALE)
    a = SVD(random_state=3, **params).fit(ours)
    b = SVD(random_state=3, **params).fit(ref)
    for name in ("pu", "qi", "bu", "bi"):
        assert np.array_equal(np.asarray(getattr(a, name)), np.asarray(getattr(b, name))), name
    # a different seed gives a different model: the comparison above can fail
    c = SVD(random_state=4, **params).fit(ours)
    assert not np.array_equal(np.asarray(a.pu), np.asarray(c.pu))


def test_fit_matches_surprise_with_published_params() -> None:
    """fit() builds the algorithm with effective_params; Surprise with those params gives the same."""
    rows = _rows()
    fitted = fit(ratings_from_rows(rows), "SVD", {"n_factors": 6, "n_epochs": 10}, None)
    assert fitted.params == {"n_factors": 6, "n_epochs": 10, "random_state": 0, "verbose": False}
    assert fitted.rating_scale == (1.0, 5.0)
    ref = SVD(**fitted.params).fit(_surprise_trainset(rows, fitted.rating_scale))
    for name in ("pu", "qi", "bu", "bi"):
        assert np.array_equal(getattr(fitted.algorithm, name), getattr(ref, name)), name


def test_effective_params_adds_seed_and_quiet() -> None:
    assert effective_params("SVD", {}) == {"random_state": 0, "verbose": False}
    assert effective_params("SVD", {"random_state": 9, "verbose": True, "n_factors": 3}) == {
        "random_state": 9,
        "verbose": True,
        "n_factors": 3,
    }
    # no random_state parameter: none is added
    assert effective_params("BaselineOnly", {}) == {"verbose": False}
    assert effective_params("KNNBasic", {"k": 5}) == {"k": 5, "verbose": False}
    # neither parameter: nothing added
    assert effective_params("SlopeOne", {}) == {}
    assert effective_params("NormalPredictor", {}) == {}


def test_effective_params_does_not_modify_input() -> None:
    params = {"n_factors": 3}
    effective_params("SVD", params)
    assert params == {"n_factors": 3}


def test_unknown_param_is_named() -> None:
    with pytest.raises(ConfigError) as caught:
        effective_params("KNNBasic", {"foo": 1, "k": 3})
    message = str(caught.value)
    assert "foo" in message and "KNNBasic" in message
    assert "'k'" not in message.split("(")[0]  # only the unknown one is reported as unknown


def test_unknown_params_for_svd() -> None:
    with pytest.raises(ConfigError, match="n_factor"):
        effective_params("SVD", {"n_factor": 3})
    with pytest.raises(ConfigError, match="random_state"):
        effective_params("SlopeOne", {"random_state": 1})


def test_knn_accepts_baseline_options_for_pearson_baseline() -> None:
    """Surprise passes bsl_options to KNNBasic through **kwargs (for the pearson_baseline
    similarity); the documented usage must not be rejected as an unknown parameter."""
    params = {"bsl_options": {"method": "als", "n_epochs": 3}, "sim_options": {"name": "pearson_baseline"}}
    assert effective_params("KNNBasic", params)["bsl_options"] == {"method": "als", "n_epochs": 3}
    algo = make_algorithm("KNNWithMeans", params)
    assert algo.bsl_options == {"method": "als", "n_epochs": 3}


def test_make_algorithm() -> None:
    algo = make_algorithm("KNNBasic", {"k": 7})
    assert isinstance(algo, KNNBasic)
    assert algo.k == 7
    assert algo.verbose is False
    svd = make_algorithm("SVD", {})
    assert isinstance(svd, SVD)
    assert svd.random_state == 0


@pytest.mark.parametrize("name", ALGORITHM_NAMES)
def test_every_listed_algorithm_exists(name: str) -> None:
    assert algorithm_class(name).__name__ == name


@pytest.mark.parametrize("name", ["svd", "SVDPP", "Trainset", "Dataset", "", "KNN"])
def test_unknown_algorithm(name: str) -> None:
    with pytest.raises(ConfigError, match="algorithm") as caught:
        algorithm_class(name)
    assert repr(name) in str(caught.value)
    with pytest.raises(ConfigError):
        effective_params(name, {})


def test_rating_scale_inferred() -> None:
    ratings = ratings_from_rows([("u", "a", "2"), ("v", "b", "4.5"), ("u", "b", "3")])
    assert rating_scale_of(ratings, None) == (2.0, 4.5)


def test_rating_scale_inferred_from_one_value() -> None:
    ratings = ratings_from_rows([("u", "a", "3"), ("v", "b", "3")])
    low, high = rating_scale_of(ratings, None)
    assert low == 3.0 and high > low


def test_rating_scale_configured() -> None:
    ratings = ratings_from_rows([("u", "a", "2"), ("v", "b", "4")])
    assert rating_scale_of(ratings, (1.0, 5.0)) == (1.0, 5.0)
    assert rating_scale_of(ratings, (2.0, 4.0)) == (2.0, 4.0)


@pytest.mark.parametrize("scale", [(3.0, 5.0), (1.0, 3.5), (2.5, 3.0)])
def test_rating_scale_contradicting_data(scale: tuple[float, float]) -> None:
    ratings = ratings_from_rows([("u", "a", "2"), ("v", "b", "4")])
    with pytest.raises(DatasetError, match="rating_scale"):
        rating_scale_of(ratings, scale)


def test_rating_scale_without_ratings() -> None:
    with pytest.raises(DatasetError):
        rating_scale_of(ratings_from_rows([]), None)
