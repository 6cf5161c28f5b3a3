"""The array-backed trainset against Surprise's own, built by `Dataset.load_from_df(...)
.build_full_trainset()`: every algorithm fitted on either gives the same model, bit for bit."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pandas as pd
import pytest
import surprise
from surprise import SVD, Dataset, Reader, Trainset

from recommender.dataset import Ratings
from recommender.snapshot import ratings_from_rows
from recommender.training import (
    ArrayTrainset,
    FittedModel,
    build_trainset,
    model_from_fit,
    seen_arrays,
    surprise_trainset,
)

SCALE = (1.0, 5.0)


def _rows(n: int, users: int, items: int, seed: int, sort: bool) -> list[tuple[str, str, float]]:
    """Ids as text, first appearances in no sorted order; sorted by user when `sort` (the rows of
    a snapshot with timestamps come that way)."""
    rng = np.random.default_rng(seed)
    user_names = [f"u{k}" for k in rng.permutation(users)]
    item_names = [f"i{k}" for k in rng.permutation(items)]
    u = rng.integers(users, size=n)
    i = np.minimum(rng.zipf(1.4, size=n) - 1, items - 1)
    if sort:
        u = np.sort(u)
    rows = [(user_names[a], item_names[b], float(rng.integers(2, 11)) / 2) for a, b in zip(u, i)]
    rows += [(name, item_names[k % items], 3.0) for k, name in enumerate(user_names)]
    rows += [(user_names[k % users], name, 4.0) for k, name in enumerate(item_names)]
    return rows


def _reference(rows: list[tuple[str, str, float]]) -> Trainset:
    frame = pd.DataFrame(rows, columns=["user", "item", "rating"])
    return Dataset.load_from_df(frame, Reader(rating_scale=SCALE)).build_full_trainset()


@pytest.fixture(scope="module", params=[False, True], ids=["rows-unsorted", "rows-by-user"])
def data(request: pytest.FixtureRequest) -> tuple[Ratings, Trainset]:
    rows = _rows(30_000, 400, 300, seed=7, sort=request.param)
    return ratings_from_rows(rows), _reference(rows)


def test_same_ratings_order_and_mean(data: tuple[Ratings, Trainset]) -> None:
    ratings, reference = data
    ours = build_trainset(ratings, SCALE)
    assert isinstance(ours, ArrayTrainset) and isinstance(ours, Trainset)
    assert list(ours.all_ratings()) == list(reference.all_ratings())
    assert [type(x) for x in next(iter(ours.all_ratings()))] == [int, int, float]
    assert ours.global_mean == reference.global_mean  # the same float64, not merely close
    assert type(ours.global_mean) is type(reference.global_mean)
    assert (ours.n_users, ours.n_items, ours.n_ratings) == (
        reference.n_users,
        reference.n_items,
        reference.n_ratings,
    )
    assert ours._raw2inner_id_users == reference._raw2inner_id_users
    assert ours._raw2inner_id_items == reference._raw2inner_id_items
    assert ours._ur is None and ours._ir is None  # nothing above needed the dicts


def test_ur_and_ir_built_on_demand_are_surprises(data: tuple[Ratings, Trainset]) -> None:
    ratings, reference = data
    ours = build_trainset(ratings, SCALE)
    assert dict(ours.ir) == dict(reference.ir) and list(ours.ir) == list(reference.ir)
    assert dict(ours.ur) == dict(reference.ur) and list(ours.ur) == list(reference.ur)
    assert type(ours.ur) is type(reference.ur)  # a defaultdict(list), as Surprise's
    assert ours.build_testset() == reference.build_testset()


@pytest.mark.parametrize(
    "value",
    [0, 5, 399, 400, -1, 3.0, 3.5, True, np.int64(7), np.float64(2.0), "3", "UKN__", None, float("nan")],
)
def test_knows_user_and_item_as_surprise(data: tuple[Ratings, Trainset], value: Any) -> None:
    ratings, reference = data
    ours = build_trainset(ratings, SCALE)
    assert ours.knows_user(value) == reference.knows_user(value)
    assert ours.knows_item(value) == reference.knows_item(value)
    ours.ur, ours.ir  # noqa: B018  # once built, the dicts answer
    assert ours.knows_user(value) == reference.knows_user(value)
    assert ours.knows_item(value) == reference.knows_item(value)


def test_svd_with_default_parameters_bit_identical(data: tuple[Ratings, Trainset]) -> None:
    ratings, reference = data
    a = SVD(random_state=0, n_epochs=5).fit(build_trainset(ratings, SCALE))
    b = SVD(random_state=0, n_epochs=5).fit(reference)
    for name in ("pu", "qi", "bu", "bi"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.predict("u1", "i2").est == b.predict("u1", "i2").est


ALGORITHMS: list[tuple[str, dict[str, Any]]] = [
    ("SVD", {"n_factors": 10, "biased": False, "random_state": 1}),
    ("SVDpp", {"n_factors": 5, "n_epochs": 3, "random_state": 0}),
    ("NMF", {"n_factors": 5, "n_epochs": 5, "random_state": 0}),
    ("BaselineOnly", {"bsl_options": {"method": "als"}, "verbose": False}),
    ("BaselineOnly", {"bsl_options": {"method": "sgd"}, "verbose": False}),
    ("KNNBasic", {"sim_options": {"user_based": True}, "verbose": False}),
    ("KNNWithMeans", {"sim_options": {"user_based": False, "name": "pearson"}, "verbose": False}),
    ("KNNWithZScore", {"sim_options": {"name": "msd"}, "verbose": False}),
    ("KNNBaseline", {"sim_options": {"name": "pearson_baseline"}, "verbose": False}),
    ("SlopeOne", {}),
    ("CoClustering", {"random_state": 0, "n_epochs": 5}),
    ("NormalPredictor", {}),
]


@pytest.mark.parametrize(
    ("name", "params"), ALGORITHMS, ids=[f"{n}-{k}" for k, (n, _) in enumerate(ALGORITHMS)]
)
def test_every_algorithm_fits_the_same_model(name: str, params: dict[str, Any]) -> None:
    rows = _rows(4_000, 80, 60, seed=3, sort=False)
    ours = build_trainset(ratings_from_rows(rows), SCALE)
    reference = _reference(rows)
    estimates = []
    for trainset in (ours, reference):
        np.random.seed(0)  # NormalPredictor's generator
        algo = getattr(surprise, name)(**params).fit(trainset)
        estimates.append(
            [algo.predict(u, i, clip=False).est for u in ("u1", "u5", "nobody") for i in ("i0", "i3", "none")]
            + [
                algo.estimate(u, i)
                for u in range(0, 80, 7)
                for i in range(0, 60, 5)
                if name != "NormalPredictor"
            ]
        )
    assert estimates[0] == estimates[1]


def test_model_from_fit_same_from_arrays_and_from_dicts(data: tuple[Ratings, Trainset]) -> None:
    ratings, _ = data
    ours = build_trainset(ratings, SCALE)
    plain = surprise_trainset(ratings, SCALE)
    for a, b in zip(seen_arrays(ours), seen_arrays(plain)):
        if isinstance(a, np.ndarray):
            assert isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
        else:
            assert a == b
    algo = SVD(random_state=0, n_factors=4, n_epochs=2).fit(ours)
    from_arrays = model_from_fit(FittedModel(algo, ours, {}, SCALE, 0.0))
    from_dicts = model_from_fit(FittedModel(algo, plain, {}, SCALE, 0.0))
    assert from_arrays.to_bytes() == from_dicts.to_bytes()


def test_pickles_and_copies(data: tuple[Ratings, Trainset]) -> None:
    ratings, reference = data
    ours = pickle.loads(pickle.dumps(build_trainset(ratings, SCALE)))
    assert list(ours.all_ratings()) == list(reference.all_ratings())
    assert dict(ours.ur) == dict(reference.ur)


def test_ids_without_ratings_are_refused() -> None:
    ratings = ratings_from_rows([("u", "i", 3.0)])
    with pytest.raises(ValueError, match="rating"):
        build_trainset(
            Ratings(["u", "ghost"], ratings.item_ids, ratings.users, ratings.items, ratings.ratings), SCALE
        )
