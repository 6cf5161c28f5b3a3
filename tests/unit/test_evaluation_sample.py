"""Evaluation on large data: a seeded sample of users (all their ratings) instead of every user,
so that Train's quality measurement costs about the same whatever the size of the data."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import pytest

from recommender.dataset import Ratings
from recommender.evaluation import (
    EVALUATION_MAX_RATINGS,
    evaluate,
    evaluation_split,
    holdout_split,
    subset,
    user_sample,
)
from recommender.sample_data import SyntheticSpec, synthetic_ratings
from recommender.snapshot import ratings_from_rows

SPEC = SyntheticSpec(users=300, items=200, ratings_per_user=20, seed=5)
BUDGET = 1_500


@pytest.fixture(scope="module")
def rows() -> list[tuple[str, str, float, float]]:
    return list(synthetic_ratings(SPEC))


@pytest.fixture(scope="module")
def ratings(rows: list[tuple[str, str, float, float]]) -> Ratings:
    return ratings_from_rows(rows)


def _triples(r: Ratings) -> list[tuple[str, str, float]]:
    return [
        (r.user_ids[u], r.item_ids[i], v)
        for u, i, v in zip(r.users.tolist(), r.items.tolist(), r.ratings.tolist())
    ]


def _without_seconds(report: dict[str, Any]) -> dict[str, Any]:
    return {**report, "model": {k: v for k, v in report["model"].items() if k != "seconds"}}


def test_small_data_is_not_sampled(ratings: Ratings) -> None:
    assert ratings.n_ratings < EVALUATION_MAX_RATINGS
    split = evaluation_split(ratings, 0.2, 0)
    reference = holdout_split(ratings, 0.2, 0)
    assert split.sample is None
    assert _triples(split.train) == _triples(reference.train) and _triples(split.test) == _triples(
        reference.test
    )
    report = evaluate(ratings, "BaselineOnly", {}, None, k=5)
    assert report["sample"] == {"sampled": False, "users": 300, "ratings": ratings.n_ratings}
    assert "sample_max_ratings" not in report["split"]
    # the budget exactly reached is still "all of it"
    assert evaluation_split(ratings, 0.2, 0, max_ratings=ratings.n_ratings).sample is None


def test_sample_is_the_longest_prefix_of_the_hash_order(ratings: Ratings) -> None:
    chosen = user_sample(ratings, BUDGET, seed=0)
    key = (0).to_bytes(8, "little", signed=True)
    order = sorted(
        range(len(ratings.user_ids)),
        key=lambda u: hashlib.blake2b(ratings.user_ids[u].encode(), digest_size=8, key=key).digest(),
    )
    counts = np.bincount(ratings.users)
    taken = int(chosen.sum())
    assert set(np.flatnonzero(chosen).tolist()) == set(order[:taken])
    assert counts[order[:taken]].sum() <= BUDGET < counts[order[: taken + 1]].sum()
    # a bigger budget keeps every user of a smaller one; another seed picks other users
    assert (user_sample(ratings, 3 * BUDGET, seed=0) >= chosen).all()
    assert (user_sample(ratings, BUDGET, seed=1) != chosen).any()
    # at least one user, even when the first has more ratings than the budget
    assert user_sample(ratings, 1, seed=0).sum() == 1


def test_sample_depends_on_ids_not_on_row_order(rows: list[tuple[str, str, float, float]]) -> None:
    shuffled = [rows[k] for k in np.random.default_rng(9).permutation(len(rows))]
    a, b = ratings_from_rows(rows), ratings_from_rows(shuffled)
    picked_a = {a.user_ids[u] for u in np.flatnonzero(user_sample(a, BUDGET))}
    picked_b = {b.user_ids[u] for u in np.flatnonzero(user_sample(b, BUDGET))}
    assert picked_a == picked_b


def test_sampled_split_is_the_holdout_of_the_sampled_users(ratings: Ratings) -> None:
    split = evaluation_split(ratings, 0.2, 0, max_ratings=BUDGET)
    chosen = user_sample(ratings, BUDGET, 0)
    sample = subset(ratings, chosen[ratings.users])
    reference = holdout_split(sample, 0.2, 0)
    assert _triples(split.train) == _triples(reference.train)
    assert _triples(split.test) == _triples(reference.test)
    # every sampled user keeps all their ratings, in train or test
    by_user = {u: 0 for u in sample.user_ids}
    for u, _, _ in _triples(split.train) + _triples(split.test):
        by_user[u] += 1
    everything = np.bincount(ratings.users)
    assert all(by_user[u] == everything[ratings.user_ids.index(u)] for u in by_user)
    assert split.sample == {
        "sampled": True,
        "users": int(chosen.sum()),
        "ratings": sample.n_ratings,
        "of_users": 300,
        "of_ratings": ratings.n_ratings,
        "max_ratings": BUDGET,
        "seed": 0,
        "rule": split.sample["rule"] if split.sample else None,
    }
    assert sample.n_ratings <= BUDGET


def test_sampled_report(ratings: Ratings) -> None:
    report = evaluate(ratings, "SVD", {"n_factors": 10}, None, k=5, max_ratings=BUDGET)
    assert json.loads(json.dumps(report)) == report
    assert report["sample"]["sampled"] is True and report["sample"]["of_ratings"] == ratings.n_ratings
    assert report["split"]["sample_max_ratings"] == BUDGET
    split = evaluation_split(ratings, 0.2, 0, max_ratings=BUDGET)
    assert report["split"]["train_ratings"] == split.train.n_ratings
    assert report["split"]["test_users"] == len(split.test.user_ids) < 300
    assert set(report["model"]) >= {"rmse", "ndcg@5", "coverage@5"}
    # a split computed beforehand (as Train does) gives the same report
    again = evaluate(ratings, "SVD", {"n_factors": 10}, None, k=5, split=split)
    assert _without_seconds(again) == _without_seconds(report)
    # the rating scale is the whole data's, not the sample's
    assert report["rating_scale"] == [float(ratings.ratings.min()), float(ratings.ratings.max())]
