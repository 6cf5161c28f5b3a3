"""The similar items measured on the holdout (`evaluation.similar_items_metrics`): the figures
against a per-user brute force computed from the ratings and the model's parameters, a user whose
recent items have no list, the popularity figures beside them, and the manifest that carries them."""

from __future__ import annotations

import copy
import math
import random
from collections import Counter, defaultdict
from typing import Any

import numpy as np
import pytest
from jsonschema import Draft202012Validator

from recommender.cli import similar_quality_line
from recommender.config import Settings
from recommender.dataset import Ratings
from recommender.evaluation import (
    Split,
    evaluate,
    holdout_split,
    popularity_top_n_metrics,
    recent_items,
    similar_item_lists,
)
from recommender.manifest import load_schema
from recommender.model import ModelArrays
from recommender.sample_data import SyntheticSpec, synthetic_ratings
from recommender.snapshot import ratings_from_rows
from recommender.training import fit, model_from_fit
from recommender.validation import problems
from tests.conftest import mocked_s3
from tests.publishing import grid_rows, publish

SCALE = (1.0, 5.0)
K = 5
SPEC = SyntheticSpec(users=120, items=80, ratings_per_user=15, seed=11)
SETTINGS = Settings(bucket="similar-quality", prefix="recs")


@pytest.fixture(scope="module")
def timed() -> Ratings:
    """Synthetic ratings in shuffled rows, so that the snapshot order is not the time order."""
    rows = list(synthetic_ratings(SPEC))
    random.Random(3).shuffle(rows)
    return ratings_from_rows(rows)


def _untimed(ratings: Ratings) -> Ratings:
    return Ratings(ratings.user_ids, ratings.item_ids, ratings.users, ratings.items, ratings.ratings)


# --- the brute force: one user at a time, from the ratings and the model's own parameters --------


def _similarity(model: ModelArrays, train: Ratings, measure: str) -> Any:
    """sim(i, j) of raw item ids, computed pair by pair from what the measure is defined on."""
    position = {raw: inner for inner, raw in enumerate(model.item_ids)}
    if measure == "factor-cosine":
        qi = np.asarray(model.arrays["qi"], dtype=np.float64)

        def cosine(i: str, j: str) -> float:
            a, b = qi[position[i]], qi[position[j]]
            norms = math.sqrt(float(a @ a)) * math.sqrt(float(b @ b))
            return float(a @ b) / norms if norms else 0.0

        return cosine
    assert measure == "co-occurrence-cosine"
    raters: dict[str, set[str]] = defaultdict(set)
    for u, i in zip(train.users.tolist(), train.items.tolist()):
        raters[train.item_ids[i]].add(train.user_ids[u])

    def co_occurrence(i: str, j: str) -> float:
        return len(raters[i] & raters[j]) / math.sqrt(len(raters[i]) * len(raters[j]))

    return co_occurrence


def _brute_force(
    model: ModelArrays, train: Ratings, users: list[str], k: int, min_support: int, measure: str
) -> dict[str, list[str]]:
    counts = Counter(train.item_ids[i] for i in train.items.tolist())
    first_seen = {raw: inner for inner, raw in enumerate(train.item_ids)}

    def tie(item: str) -> tuple[int, int]:  # more ratings first, then earlier first appearance
        return (-counts[item], first_seen[item])

    sim = _similarity(model, train, measure)
    stamps = train.timestamps.tolist() if train.timestamps is not None else [0.0] * train.n_ratings
    lists: dict[str, list[str]] = {}
    for user in users:
        rated = [
            (stamps[row] if not math.isnan(stamps[row]) else -math.inf, row, train.item_ids[i])
            for row, (u, i) in enumerate(zip(train.users.tolist(), train.items.tolist()))
            if train.user_ids[u] == user
        ]
        recent: list[str] = []
        for _, _, item in sorted(rated, reverse=True):
            if item not in recent and len(recent) < 3:
                recent.append(item)
        best: dict[str, float] = {}
        for item in recent:
            if counts[item] < min_support:
                continue
            others = [(sim(item, j), j) for j in train.item_ids if j != item and counts[j] >= min_support]
            top = sorted((c for c in others if c[0] > 0), key=lambda c: (-c[0], tie(c[1])))[:k]
            for score, j in top:
                best[j] = max(best.get(j, -math.inf), score)
        seen = {item for _, _, item in rated}
        unseen = [(score, j) for j, score in best.items() if j not in seen]
        lists[user] = [j for _, j in sorted(unseen, key=lambda c: (-c[0], tie(c[1])))[:k]]
    return lists


def _figures(lists: dict[str, list[str]], test: Ratings, k: int) -> tuple[float, float, float]:
    """(hit rate, nDCG, share with a list) over the test users, binary relevance."""
    relevant: dict[str, set[str]] = defaultdict(set)
    for u, i in zip(test.users.tolist(), test.items.tolist()):
        relevant[test.user_ids[u]].add(test.item_ids[i])
    hits = ndcg = with_list = 0.0
    for user, items in relevant.items():
        ranked = lists[user][:k]
        gains = [1.0 / math.log2(rank + 2) for rank, item in enumerate(ranked) if item in items]
        ideal = sum(1.0 / math.log2(rank + 2) for rank in range(min(k, len(items))))
        hits += 1.0 if gains else 0.0
        ndcg += sum(gains) / ideal
        with_list += 1.0 if ranked else 0.0
    return hits / len(relevant), ndcg / len(relevant), with_list / len(relevant)


def _model(split: Split, algorithm: str) -> ModelArrays:
    params = {"n_factors": 10} if algorithm == "SVD" else {}
    return model_from_fit(fit(split.train, algorithm, params, SCALE))


# --- the tests -------------------------------------------------------------------------------------


@pytest.mark.parametrize("with_time", [True, False])
@pytest.mark.parametrize(
    ("algorithm", "measure"), [("SVD", "factor-cosine"), ("BaselineOnly", "co-occurrence-cosine")]
)
def test_the_figures_are_the_brute_forces(
    timed: Ratings, with_time: bool, algorithm: str, measure: str
) -> None:
    ratings = timed if with_time else _untimed(timed)
    split = holdout_split(ratings, 0.2, seed=1)
    model = _model(split, algorithm)
    users = list(dict.fromkeys(split.test.user_ids))
    expected = _brute_force(model, split.train, users, K, 4, measure)
    assert similar_item_lists(model, split.train, users, K, 4) == expected

    params = {"n_factors": 10} if algorithm == "SVD" else {}
    report = evaluate(ratings, algorithm, params, SCALE, k=K, split=split, similar_min_support=4)
    similar = report["similar_items"]
    hit_rate, ndcg, with_list = _figures(expected, split.test, K)
    assert similar["model"] == {"hit_rate": pytest.approx(hit_rate), "ndcg": pytest.approx(ndcg)}
    assert similar["with_list"] == pytest.approx(with_list)
    assert (similar["k"], similar["recent_items"], similar["min_support"]) == (K, 3, 4)
    assert (similar["measure"], similar["users"]) == (measure, len(users))
    assert 0.0 < hit_rate < 1.0 and with_list > 0.9  # the figures are not trivially 0 or 1


def test_without_timestamps_the_latest_rows_are_the_recent_items(timed: Ratings) -> None:
    rows = [("u", "a", 3.0, 30.0), ("u", "b", 3.0, 10.0), ("u", "c", 3.0, float("nan"))]
    rows += [("u", "d", 3.0, 20.0), ("u", "a", 4.0, 5.0), ("v", "b", 2.0, 1.0)]
    ratings = ratings_from_rows(rows)
    # by time: a (30, its newest rating), d (20), b (10); c has no time: the oldest
    assert recent_items(ratings) == {"u": ["a", "d", "b"], "v": ["b"]}
    # without: the last rows first, an item rated twice counting once, at its latest row
    assert recent_items(_untimed(ratings)) == {"u": ["a", "d", "c"], "v": ["b"]}
    assert recent_items(_untimed(ratings), 1) == {"u": ["a"], "v": ["b"]}
    # the synthetic rows are shuffled: snapshot order and time order pick different items
    assert recent_items(timed) != recent_items(_untimed(timed))


def test_a_user_whose_recent_items_have_no_list_gets_none(timed: Ratings) -> None:
    split = holdout_split(timed, 0.2, seed=1)
    user = split.test.user_ids[0]
    latest = float(np.nanmax(split.train.timestamps)) if split.train.timestamps is not None else 0.0
    rare = [(user, f"rare-{n}", 4.0, latest + 1 + n) for n in range(3)]  # one rating each: below support
    rows = [
        (split.train.user_ids[u], split.train.item_ids[i], r, t)
        for u, i, r, t in zip(
            split.train.users.tolist(),
            split.train.items.tolist(),
            split.train.ratings.tolist(),
            (split.train.timestamps if split.train.timestamps is not None else np.zeros(0)).tolist(),
        )
    ]
    train = ratings_from_rows(rows + rare)
    changed = Split(train=train, test=split.test)
    model = _model(changed, "SVD")
    users = list(dict.fromkeys(split.test.user_ids))
    lists = similar_item_lists(model, train, users, K, 4)
    assert lists[user] == [] and all(lists[u] for u in users if u != user)
    assert lists == _brute_force(model, train, users, K, 4, "factor-cosine")

    report = evaluate(timed, "SVD", {"n_factors": 10}, SCALE, k=K, split=changed, similar_min_support=4)
    similar = report["similar_items"]
    assert similar["with_list"] == pytest.approx((len(users) - 1) / len(users))
    hit_rate, ndcg, _ = _figures(lists, split.test, K)  # the user counts, as a miss
    assert similar["model"] == {"hit_rate": pytest.approx(hit_rate), "ndcg": pytest.approx(ndcg)}
    # a min_support above every item's count: nobody gets a list
    nobody = evaluate(timed, "SVD", {"n_factors": 10}, SCALE, k=K, split=changed, similar_min_support=10**6)
    assert nobody["similar_items"]["with_list"] == 0.0
    assert nobody["similar_items"]["model"] == {"hit_rate": 0.0, "ndcg": 0.0}


def test_the_popularity_figures_are_popularity_top_n_metrics(timed: Ratings) -> None:
    split = holdout_split(timed, 0.2, seed=1)
    report = evaluate(timed, "BaselineOnly", {}, SCALE, k=K, split=split)
    popular = popularity_top_n_metrics(split.train, split.test, K)
    assert report["similar_items"]["popularity"] == {
        "hit_rate": popular["hit_rate@5"],
        "ndcg": popular["ndcg@5"],
    }
    assert report["similar_items"]["min_support"] == 5  # the config's default


def test_the_published_manifest_carries_them_and_validates() -> None:
    with mocked_s3(SETTINGS.bucket) as s3:
        manifest = publish(s3, SETTINGS, "measured", grid_rows(), {"similar_min_support": 3, "top_n": 4})
    similar = manifest["quality"]["similar_items"]
    assert (similar["k"], similar["min_support"], similar["recent_items"]) == (4, 3, 3)
    assert similar["measure"] == manifest["similar"]["measure"]
    schema = load_schema("manifest")
    validator = Draft202012Validator(schema)
    assert [error.message for error in validator.iter_errors(manifest)] == []
    assert problems(manifest, schema, closed=True) == []  # the client's own check agrees
    for path, value in [(("similar_items", "extra"), 1), (("similar_items", "model", "auc"), 0.5)]:
        broken = copy.deepcopy(manifest)
        target = broken["quality"]
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value
        assert list(validator.iter_errors(broken)), path
        assert problems(broken, schema, closed=True), path
    broken = copy.deepcopy(manifest)
    del broken["quality"]["similar_items"]["popularity"]
    assert list(validator.iter_errors(broken))


def test_the_run_summary_prints_them_beside_popularity() -> None:
    similar = {
        "k": 10,
        "recent_items": 3,
        "min_support": 5,
        "measure": "ease-weights",
        "users": 200,
        "with_list": 0.75,
        "model": {"hit_rate": 0.4321, "ndcg": 0.1234},
        "popularity": {"hit_rate": 0.25, "ndcg": 0.0875},
    }
    line = similar_quality_line({"quality": {"similar_items": similar}})
    assert line is not None
    assert "3 latest items (ease-weights)" in line
    assert "hit rate@10 0.432 (popularity 0.250), NDCG@10 0.123 (popularity 0.087)" in line
    assert line.endswith(", 75% of users with a list")
    # not measured, or published before the figures existed: no line
    assert similar_quality_line({"quality": None}) is None
    assert similar_quality_line({"quality": {"k": 10}}) is None
