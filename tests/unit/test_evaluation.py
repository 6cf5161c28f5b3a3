"""Offline evaluation: the hold-out split, the metrics on worked examples, and the cross-validation
protocol against Surprise's own `cross_validate` on a pandas-built dataset."""

from __future__ import annotations

import json
import math
from collections import defaultdict

import numpy as np
import pandas as pd
import pytest
from surprise import SVD, BaselineOnly, Dataset, KNNBaseline, Reader
from surprise.model_selection import KFold, cross_validate

from recommender.dataset import Ratings
from recommender.evaluation import (
    evaluate,
    holdout_split,
    popularity_top_n_metrics,
    ranking_metrics,
    rating_metrics,
    top_n_metrics,
    user_metrics,
)
from recommender.report import RatingsDataset, cross_validate_ratings
from recommender.sample_data import SyntheticSpec, synthetic_ratings
from recommender.snapshot import ratings_from_rows
from recommender.training import fit, model_from_fit

SCALE = (1.0, 5.0)
SMALL = SyntheticSpec(users=300, items=200, ratings_per_user=20, seed=5)


@pytest.fixture(scope="module")
def rows() -> list[tuple[str, str, float, float]]:
    return list(synthetic_ratings(SMALL))


@pytest.fixture(scope="module")
def ratings(rows: list[tuple[str, str, float, float]]) -> Ratings:
    return ratings_from_rows(rows)


def _without_time(ratings: Ratings) -> Ratings:
    return Ratings(ratings.user_ids, ratings.item_ids, ratings.users, ratings.items, ratings.ratings)


def _triples(r: Ratings) -> list[tuple[str, str, float, float | None]]:
    stamps = r.timestamps.tolist() if r.timestamps is not None else [None] * r.n_ratings
    return [
        (r.user_ids[u], r.item_ids[i], v, t)
        for u, i, v, t in zip(r.users.tolist(), r.items.tolist(), r.ratings.tolist(), stamps)
    ]


def _same(a: Ratings, b: Ratings) -> bool:
    return _triples(a) == _triples(b) and a.user_ids == b.user_ids and a.item_ids == b.item_ids


# --- the hold-out split -------------------------------------------------------------------------


def test_holdout_is_deterministic(ratings: Ratings) -> None:
    first, again = holdout_split(ratings, 0.2, seed=3), holdout_split(ratings, 0.2, seed=3)
    assert _same(first.train, again.train) and _same(first.test, again.test)
    # with timestamps the seed plays no part
    assert _same(first.test, holdout_split(ratings, 0.2, seed=4).test)

    untimed = _without_time(ratings)
    a, b = holdout_split(untimed, 0.2, seed=3), holdout_split(untimed, 0.2, seed=3)
    assert _same(a.train, b.train) and _same(a.test, b.test)
    other = holdout_split(untimed, 0.2, seed=4)
    assert not _same(a.test, other.test)
    assert a.test.timestamps is None


@pytest.mark.parametrize("timed", [True, False])
def test_split_partitions_the_rows_in_their_order(ratings: Ratings, timed: bool) -> None:
    data = ratings if timed else _without_time(ratings)
    split = holdout_split(data, 0.25, seed=1)
    assert split.train.n_ratings + split.test.n_ratings == data.n_ratings
    assert sorted(_triples(split.train) + _triples(split.test), key=str) == sorted(_triples(data), key=str)
    # each part is what the snapshot reader would build from its rows, in their original order
    for part in (split.train, split.test):
        rebuilt = ratings_from_rows([t if timed else t[:3] for t in _triples(part)])
        assert _same(part, rebuilt)
        assert part.users.dtype == np.int32 and part.items.dtype == np.int32


@pytest.mark.parametrize("timed", [True, False])
def test_every_test_user_and_item_is_in_train(ratings: Ratings, timed: bool) -> None:
    split = holdout_split(ratings if timed else _without_time(ratings), 0.3, seed=2)
    assert split.test.n_ratings > 0.2 * ratings.n_ratings
    assert set(split.test.user_ids) <= set(split.train.user_ids)
    assert set(split.test.item_ids) <= set(split.train.item_ids)


@pytest.mark.parametrize(
    "spec", [SMALL, SyntheticSpec(users=200, items=3000, ratings_per_user=8, seed=1)], ids=["dense", "sparse"]
)
def test_latest_ratings_are_held_out(spec: SyntheticSpec) -> None:
    """Checked against an independent spelling of the rule: per user, the latest
    floor(0.2 n + 0.5) ratings (at least 1, leaving 1), minus those whose item nobody else
    rated in train, which go back."""
    ratings = ratings_from_rows(synthetic_ratings(spec))
    split = holdout_split(ratings, 0.2)
    per_user: defaultdict[str, list[tuple[float, int, str]]] = defaultdict(list)
    assert ratings.timestamps is not None
    for row, (u, i, t) in enumerate(zip(ratings.users, ratings.items, ratings.timestamps)):
        per_user[ratings.user_ids[u]].append((float(t), row, ratings.item_ids[i]))
    intended: set[tuple[str, str]] = set()
    for user, entries in per_user.items():
        entries.sort()
        n = len(entries)
        held = 0 if n < 2 else min(max(1, math.floor(0.2 * n + 0.5)), n - 1)
        intended |= {(user, item) for _, _, item in entries[n - held :]}
    everything = {(u, i) for u, i, _, _ in _triples(ratings)}
    kept_items = {i for _, i in everything - intended}
    expected = {(u, i) for u, i in intended if i in kept_items}
    assert {(u, i) for u, i, _, _ in _triples(split.test)} == expected
    if spec is not SMALL:
        assert len(expected) < len(intended)  # on sparse data, some held-out ratings go back
    # and in every user's training ratings, nothing is later than a held-out one of theirs,
    # except ratings moved back
    moved = intended - expected
    latest_train: dict[str, float] = {}
    for u, i, _, t in _triples(split.train):
        if (u, i) not in moved:
            latest_train[u] = max(latest_train.get(u, -math.inf), t or 0.0)
    for u, _, _, t in _triples(split.test):
        assert t is not None and t >= latest_train[u]


def test_hand_made_split() -> None:
    rows = [
        ("a", "x", 4.0, 30.0),
        ("a", "y", 3.0, 10.0),
        ("b", "x", 5.0, 5.0),
        ("a", "z", 2.0, 20.0),
        ("b", "y", 1.0, 50.0),
        ("c", "x", 2.0, 99.0),  # a single rating stays in train
        ("a", "w", 5.0, 40.0),  # latest of a, but nobody else rated w: back to train
        ("b", "z", 3.0, float("nan")),  # a missing timestamp counts as oldest
    ]
    split = holdout_split(ratings_from_rows(rows), fraction=0.5)
    # a: 4 ratings, 2 held out: w (40, moved back) and x (30); b: 3 ratings, round(1.5) = 2: y, x
    assert [t[:2] for t in _triples(split.test)] == [("a", "x"), ("b", "x"), ("b", "y")]
    assert [t[:2] for t in _triples(split.train)] == [
        ("a", "y"),
        ("a", "z"),
        ("c", "x"),
        ("a", "w"),
        ("b", "z"),
    ]
    assert split.train.user_ids == ["a", "c", "b"]


def test_users_with_one_rating_stay_in_train() -> None:
    rows = [("u1", "i1", 3.0), ("u2", "i1", 4.0), ("u2", "i2", 2.0), ("u3", "i2", 5.0)]
    split = holdout_split(ratings_from_rows(rows), 0.2, seed=0)
    assert split.test.user_ids in ([], ["u2"])
    assert {"u1", "u3"} <= set(split.train.user_ids)
    with pytest.raises(ValueError, match="fraction"):
        holdout_split(ratings_from_rows(rows), 1.0)


# --- ranking metrics on worked examples ---------------------------------------------------------


def test_perfect_ranking() -> None:
    m = user_metrics(["a", "b", "c", "x", "y"], {"a", "b", "c"}, k=5)
    assert m == {"precision": 0.6, "recall": 1.0, "ndcg": 1.0, "map": 1.0, "hit_rate": 1.0}
    assert user_metrics(["a", "b"], {"a", "b", "c", "d"}, k=2)["ndcg"] == 1.0  # ideal over min(k, |R|)


def test_worked_example() -> None:
    # k = 5, hits at ranks 1 and 3, four relevant items:
    #   precision = 2/5, recall = 2/4,
    #   AP = (1/1 + 2/3) / min(5, 4) = 5/12,
    #   nDCG = (1/log2(2) + 1/log2(4)) / (1/log2(2) + 1/log2(3) + 1/log2(4) + 1/log2(5))
    m = user_metrics(["a", "x", "b", "y", "z"], {"a", "b", "c", "d"}, k=5)
    assert m["precision"] == pytest.approx(0.4)
    assert m["recall"] == pytest.approx(0.5)
    assert m["map"] == pytest.approx(5 / 12)
    assert m["ndcg"] == pytest.approx(1.5 / (1 + 1 / math.log2(3) + 0.5 + 1 / math.log2(5)))
    assert m["ndcg"] == pytest.approx(0.585570, abs=1e-6)
    assert m["hit_rate"] == 1.0
    # only the first k of a longer list count
    assert user_metrics(["x", "y", "a"], {"a"}, k=2)["hit_rate"] == 0.0

    # two users; the second gets nothing right: means halve, coverage = 7 distinct items of 20
    both = ranking_metrics(
        [(["a", "x", "b", "y", "z"], {"a", "b", "c", "d"}), (["x", "y", "z", "w", "v"], {"q"})], 5, 20
    )
    assert both == pytest.approx(
        {
            "precision@5": 0.2,
            "recall@5": 0.25,
            "ndcg@5": m["ndcg"] / 2,
            "map@5": 5 / 24,
            "hit_rate@5": 0.5,
            "coverage@5": 0.35,
        }
    )


def test_a_short_list_is_still_divided_by_k() -> None:
    assert user_metrics(["a"], {"a"}, k=4) == pytest.approx(
        {"precision": 0.25, "recall": 1.0, "ndcg": 1.0, "map": 1.0, "hit_rate": 1.0}
    )


def test_popularity_baseline_by_hand() -> None:
    # counts in train: A 3, B 2, C 2 (B appears first), D 1
    rated = [("u1", "A"), ("u2", "B"), ("u3", "A"), ("u2", "C"), ("u3", "C"), ("u3", "B"), ("u2", "A")]
    train = ratings_from_rows([(u, i, 3.0) for u, i in [*rated, ("u1", "D")]])
    test = ratings_from_rows([("u1", "C", 4.0), ("u3", "D", 1.0), ("u3", "E", 5.0)])
    # u1 saw A and D: top-2 = B, C -> one hit at rank 2 of one relevant item
    # u3 saw A, B and C: top-2 = D -> a hit at rank 1 of two relevant items (E is unknown)
    metrics = popularity_top_n_metrics(train, test, k=2)
    assert metrics == pytest.approx(
        {
            "precision@2": (1 / 2 + 1 / 2) / 2,
            "recall@2": (1 + 1 / 2) / 2,
            "ndcg@2": (1 / math.log2(3) + 1 / (1 + 1 / math.log2(3))) / 2,
            "map@2": (1 / 2 + 1 / 2) / 2,
            "hit_rate@2": 1.0,
            "coverage@2": 3 / 4,
        }
    )


# --- metrics of a fitted model ------------------------------------------------------------------


def test_top_n_metrics_rank_unseen_items_as_surprise_estimates(ratings: Ratings) -> None:
    """The lists behind top_n_metrics are Surprise's own estimates of every item the user did not
    rate in TRAIN, best first (ties: more ratings, then first appearance)."""
    split = holdout_split(ratings, 0.2)
    fitted = fit(split.train, "BaselineOnly", {}, SCALE)
    model = model_from_fit(fitted)
    algo, trainset = fitted.algorithm, fitted.trainset
    counts = [len(trainset.ir[i]) for i in range(trainset.n_items)]
    relevant: defaultdict[str, set[str]] = defaultdict(set)
    for u, i, _, _ in _triples(split.test):
        relevant[u].add(i)
    lists = []
    for user, items in relevant.items():
        inner = trainset.to_inner_uid(user)
        seen = {i for i, _ in trainset.ur[inner]}
        unseen = [i for i in range(trainset.n_items) if i not in seen]
        best = sorted(unseen, key=lambda i: (-algo.estimate(inner, i), -counts[i], i))[:10]
        lists.append(([trainset.to_raw_iid(i) for i in best], items))
    expected = ranking_metrics(lists, 10, trainset.n_items)
    assert top_n_metrics(model, split.test, k=10) == pytest.approx(expected, abs=1e-12)
    assert set(expected) == {
        f"{m}@10" for m in ("precision", "recall", "ndcg", "map", "hit_rate", "coverage")
    }


def test_rating_metrics_are_surprise_accuracy(ratings: Ratings) -> None:
    from surprise import accuracy

    split = holdout_split(ratings, 0.2)
    algo = fit(split.train, "SVD", {"n_factors": 10}, SCALE).algorithm
    predictions = algo.test([(u, i, r) for u, i, r, _ in _triples(split.test)])
    assert rating_metrics(algo, split.test) == {
        "rmse": accuracy.rmse(predictions, verbose=False),
        "mae": accuracy.mae(predictions, verbose=False),
    }


def test_evaluate_report(ratings: Ratings) -> None:
    report = evaluate(ratings, "SVD", {"n_factors": 20}, SCALE, k=5, fraction=0.2, seed=0)
    assert json.loads(json.dumps(report)) == report
    split = holdout_split(ratings, 0.2)
    assert report["split"] == {
        "train_ratings": split.train.n_ratings,
        "test_ratings": split.test.n_ratings,
        "test_users": len(split.test.user_ids),
        "method": "latest-by-timestamp",
        "fraction": 0.2,
        "seed": 0,
    }
    names = ["precision@5", "recall@5", "ndcg@5", "map@5", "hit_rate@5", "coverage@5"]
    assert list(report["model"]) == ["rmse", "mae", *names, "seconds"]
    assert list(report["popularity"]) == names
    assert all(isinstance(v, float) for v in report["model"].values())
    assert 0.6 < report["model"]["rmse"] < 1.2
    assert report["popularity"] == popularity_top_n_metrics(split.train, split.test, k=5)
    assert report["params"] == {"n_factors": 20, "random_state": 0, "verbose": False}

    untimed = evaluate(_without_time(ratings), "BaselineOnly", {}, None, k=3, seed=7)
    assert untimed["split"]["method"] == "random" and untimed["split"]["seed"] == 7
    assert "ndcg@3" in untimed["model"]
    with pytest.raises(ValueError, match="held out"):
        evaluate(ratings_from_rows([("u", "i", 3.0), ("v", "i", 4.0)]), "SVD", {}, None)


# --- Surprise's cross-validation protocol -------------------------------------------------------


def _pandas_dataset(rows: list[tuple[str, str, float, float]]) -> Dataset:
    frame = pd.DataFrame([r[:3] for r in rows], columns=["user", "item", "rating"])
    return Dataset.load_from_df(frame, Reader(rating_scale=SCALE))


def test_dataset_without_pandas_is_load_from_df(rows: list[tuple[str, str, float, float]]) -> None:
    ours = RatingsDataset(ratings_from_rows(rows), SCALE)
    reference = _pandas_dataset(rows)
    assert ours.raw_ratings == reference.raw_ratings
    assert ours.reader.rating_scale == reference.reader.rating_scale
    a, b = ours.build_full_trainset(), reference.build_full_trainset()
    assert a._raw2inner_id_users == b._raw2inner_id_users and dict(a.ur) == dict(b.ur)


def test_cross_validation_is_surprises(rows: list[tuple[str, str, float, float]]) -> None:
    results = cross_validate_ratings(
        ratings_from_rows(rows), ["SVD", "BaselineOnly", "KNNBaseline"], folds=5, seed=0, rating_scale=SCALE
    )
    data = _pandas_dataset(rows)
    references = [SVD(random_state=0), BaselineOnly(verbose=False), KNNBaseline(verbose=False)]
    for result, algo in zip(results, references):
        out = cross_validate(algo, data, measures=["rmse", "mae"], cv=KFold(5, random_state=0))
        assert result["algorithm"] == type(algo).__name__
        assert result["rmse"] == pytest.approx(float(np.mean(out["test_rmse"])), abs=1e-12, rel=0)
        assert result["mae"] == pytest.approx(float(np.mean(out["test_mae"])), abs=1e-12, rel=0)
        assert result["fit_seconds"] >= 0 and result["test_seconds"] > 0 and result["folds"] == 5
    assert json.loads(json.dumps(results)) == results
    assert 0.6 < results[0]["rmse"] < 1.0


def test_rating_metrics_of_errors_whose_squares_overflow_are_finite() -> None:
    """A ranking model scores near 0 against ratings near 1e300: (rating - score)**2 overflows
    float64, so Surprise's accuracy raises; the figures come from errors scaled into range."""

    class Zero:
        def predict(self, uid: str, iid: str, r_ui: float) -> tuple[str, str, float, float, dict[str, str]]:
            return uid, iid, r_ui, 0.0, {}

    values = np.array([1e300, 3e300, 4e300, 1.7e308])
    test = Ratings(
        user_ids=["u"],
        item_ids=["a", "b", "c", "d"],
        users=np.zeros(4, dtype=np.int64),
        items=np.arange(4),
        ratings=values,
    )
    got = rating_metrics(Zero(), test)
    assert got["mae"] == pytest.approx(float(np.mean(values)), rel=1e-12)
    assert got["rmse"] == pytest.approx(1.7e308 * math.sqrt(np.mean((values / 1.7e308) ** 2)), rel=1e-12)
