"""Ratings that are all equal (like/click data): every algorithm publishes ranked lists or fails
before fitting with an error that says why.

- KNNWithZScore: every rating equals its user's mean, so every sigma is 0 and Surprise's
  z-score (r - mu) / sigma is 0/0 = NaN, which made every estimate NaN and every list empty. The
  product reads that z-score as 0 (the rating is at its mean), so the estimate is the mean.
- pearson_baseline: no rating deviates from its baseline, so every similarity is 0/0, on which
  Surprise's Cython fails with a bare "float division". The run fails before fitting, naming
  the similarity and what to use instead.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import surprise

from recommender.config import Settings
from recommender.errors import SimilarityError
from recommender.kernels import load_kernel
from recommender.sharding import decode_shard
from recommender.snapshot import ratings_from_rows
from recommender.steps import train
from recommender.storage import listed_keys
from recommender.training import estimate_or_default, fit, model_from_fit, surprise_trainset
from tests.conftest import mocked_s3
from tests.publishing import publish

BUCKET = "equal-ratings"
SETTINGS = Settings(bucket=BUCKET, prefix="p")
SIMILARITIES = ("cosine", "msd", "pearson")


@pytest.fixture
def s3() -> Iterator[Any]:
    with mocked_s3(BUCKET) as client:
        yield client


def likes(value: float = 1.0, users: int = 30, items: int = 20) -> list[tuple[str, str, float]]:
    """Every user liked some items, each rating `value`; popularity varies by item."""
    return [
        (f"u{u}", f"i{i}", value)
        for u in range(users)
        for i in range(items)
        if (u * i + u) % (i % 4 + 2) == 0
    ]


def published_lists(s3: Any, manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        record["user"]: record
        for shard in manifest["shards"]
        for record in decode_shard(s3.get_object(Bucket=BUCKET, Key=f"p/{shard['key']}")["Body"].read())
    }


@pytest.mark.parametrize("user_based", [True, False], ids=["user", "item"])
@pytest.mark.parametrize("similarity", SIMILARITIES)
@pytest.mark.parametrize("value", [1.0, 4.0, 0.5])
def test_knn_with_zscore_on_equal_ratings_publishes_ranked_lists(
    s3: Any, similarity: str, user_based: bool, value: float
) -> None:
    rows = likes(value)
    params = {"sim_options": {"name": similarity, "user_based": user_based}}
    manifest = publish(s3, SETTINGS, "likes", rows, {"algorithm": "KNNWithZScore", "params": params})
    seen: dict[str, set[str]] = {}
    for user, item, _ in rows:
        seen.setdefault(user, set()).add(item)
    counts: dict[str, int] = {}
    for _, item, _ in rows:
        counts[item] = counts.get(item, 0) + 1
    first = {item: k for k, (_, item, _) in reversed(list(enumerate(rows)))}
    popularity = sorted(counts, key=lambda item: (-counts[item], first[item]))
    for user, record in published_lists(s3, manifest).items():
        # every estimate is the user's (or item's) mean, the one value: the tie rule orders them
        assert record["items"] == [item for item in popularity if item not in seen[user]][:10]
        assert record["scores"] == [value] * len(record["items"])
    assert manifest["fallback"]["scores"] == [value] * 10


@pytest.mark.parametrize("user_based", [True, False], ids=["user", "item"])
def test_the_zscore_kernel_equals_surprise_with_the_sigma_rule(user_based: bool) -> None:
    """Surprise's own fit gives NaN; the product's (sigma 0 read as a z-score of 0) gives the
    mean, and the kernel equals Surprise's estimate of that fitted object, bit for bit."""
    ratings = ratings_from_rows(likes(3.0))
    params = {"sim_options": {"name": "msd", "user_based": user_based}, "verbose": False}
    plain = surprise.KNNWithZScore(**params).fit(surprise_trainset(ratings, (1.0, 5.0)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert np.isnan(plain.estimate(0, 1)[0])
    fitted = fit(ratings, "KNNWithZScore", params, (1.0, 5.0))
    assert fitted.algorithm.overall_sigma == 0.0 and np.all(fitted.algorithm.sigmas == 1.0)
    model = model_from_fit(fitted)
    expected = np.array(
        [
            [estimate_or_default(fitted.algorithm, u, i) for i in range(model.n_items)]
            for u in range(model.n_users)
        ]
    )
    assert np.all(expected == 3.0)
    np.testing.assert_array_equal(load_kernel(model).scores(np.arange(model.n_users)), expected)


def test_the_sigma_rule_leaves_other_data_alone() -> None:
    rows = [(f"u{u}", f"i{i}", float(1 + (u + 2 * i) % 5)) for u in range(8) for i in range(6) if (u + i) % 3]
    rows += [("flat", "i0", 2.0), ("flat", "i1", 2.0)]  # one user's sigma is 0: the overall one is used
    ratings = ratings_from_rows(rows)
    params = {"sim_options": {"name": "msd"}, "verbose": False}
    plain = surprise.KNNWithZScore(**params).fit(surprise_trainset(ratings, (1.0, 5.0)))
    ours = fit(ratings, "KNNWithZScore", params, (1.0, 5.0)).algorithm
    np.testing.assert_array_equal(ours.sigmas, plain.sigmas)


@pytest.mark.parametrize("algorithm", ["KNNBaseline", "KNNBasic", "KNNWithMeans", "KNNWithZScore"])
@pytest.mark.parametrize("evaluate", [True, False])
def test_pearson_baseline_on_equal_ratings_fails_before_fitting(
    s3: Any, monkeypatch: pytest.MonkeyPatch, algorithm: str, evaluate: bool
) -> None:
    def never(*args: Any) -> Any:
        raise AssertionError("fitted although the similarity cannot be computed")

    monkeypatch.setattr(surprise.AlgoBase, "compute_similarities", never)
    params = {"sim_options": {"name": "pearson_baseline", "user_based": False}}
    run_input = {"algorithm": algorithm, "params": params, "evaluate": evaluate}
    with pytest.raises(SimilarityError) as failed:
        publish(s3, SETTINGS, "likes", likes(1.0), run_input)
    message = str(failed.value)
    assert f"{algorithm} with sim_options name 'pearson_baseline'" in message
    assert "every one of the" in message and "ratings is 1" in message
    assert "'msd'" in message and "EASE" in message
    assert listed_keys(s3, BUCKET, "p/runs/likes/model/") == set()


def test_cosine_on_ratings_of_zero_fails_before_fitting(s3: Any) -> None:
    params = {"sim_options": {"name": "cosine"}}
    with pytest.raises(SimilarityError, match=r"every one of the \d+ ratings is 0.*'msd'"):
        publish(s3, SETTINGS, "zeros", likes(0.0), {"algorithm": "KNNBasic", "params": params})


def test_a_division_by_zero_in_a_similarity_is_named() -> None:
    """Not only on equal ratings: user a rated both items 0, so cosine(a, b) is 0/0."""
    rows = [("a", "i1", 0.0), ("a", "i2", 0.0), ("b", "i1", 1.0), ("b", "i2", 1.0), ("c", "i3", 2.0)]
    params = {"sim_options": {"name": "cosine", "user_based": True}}
    with pytest.raises(SimilarityError, match=r"KNNBasic's cosine similarity divided 0 by 0.*'msd'"):
        fit(ratings_from_rows(rows), "KNNBasic", params, (0.0, 2.0))


def test_the_train_step_refuses_before_reading_more_than_the_snapshot(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check runs on the ratings Train has just read: no evaluation, no fit."""
    calls: list[str] = []
    monkeypatch.setattr(train, "evaluate", lambda *a, **k: calls.append("evaluate"))
    params = {"sim_options": {"name": "pearson_baseline"}}
    with pytest.raises(SimilarityError):
        publish(s3, SETTINGS, "likes", likes(5.0), {"algorithm": "KNNBaseline", "params": params})
    assert calls == []
