"""A model or a score that is not finite fails the run with an error naming the cause, and a run
whose users with unseen items got empty lists is never published (the issue's outlier case:
900 ratings of 1 to 5 and one of 500, where SVD's SGD diverges to NaN)."""

from __future__ import annotations

import gzip
import json
import math
import random
from collections.abc import Iterator
from typing import Any, cast

import numpy as np
import pytest

from recommender.config import RunConfig, Settings
from recommender.contracts import TrainSummary
from recommender.errors import EmptyListsError, NonFiniteModelError, NonFiniteScoreError
from recommender.kernels import Kernel, load_kernel
from recommender.model import ModelArrays, utf8_order
from recommender.scoring import fallback, recommend
from recommender.sharding import decode_shard, published_scores
from recommender.snapshot import ratings_from_rows
from recommender.steps import merge
from recommender.storage import RunPaths, get_json, latest_key, listed_keys, sha256_hex
from recommender.training import fit, model_from_fit
from tests.conftest import mocked_s3
from tests.publishing import publish, write_snapshot

BUCKET = "non-finite"
SETTINGS = Settings(bucket=BUCKET, prefix="p")


@pytest.fixture
def s3() -> Iterator[Any]:
    with mocked_s3(BUCKET) as client:
        yield client


def stars(n: int = 900, seed: int = 0) -> list[tuple[str, str, float]]:
    """n ratings of 1 to 5 by 60 users of 40 items, no pair twice."""
    rng = random.Random(seed)
    pairs = rng.sample([(u, i) for u in range(60) for i in range(40)], n)
    return [(f"u{u}", f"i{i}", float(rng.randint(1, 5))) for u, i in pairs]


def strict(data: bytes) -> Any:
    def refuse(word: str) -> Any:
        raise ValueError(word)

    return json.loads(data, parse_constant=refuse)


def every_object_is_strict_json(s3: Any) -> None:
    for key in listed_keys(s3, BUCKET, "p/"):
        body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        if key.endswith(".json"):
            strict(body)
        elif key.endswith(".jsonl.gz"):
            for line in gzip.decompress(body).split(b"\n"):
                if line:
                    strict(line)


@pytest.mark.parametrize("evaluate", [False, True], ids=["evaluate-false", "evaluate-true"])
@pytest.mark.parametrize("outlier", [500.0, 1e6, 1e308])
def test_one_outlier_rating_fails_train_and_names_the_remedies(
    s3: Any, outlier: float, evaluate: bool
) -> None:
    publish(s3, SETTINGS, "good", stars(), {"evaluate": False})
    before = s3.get_object(Bucket=BUCKET, Key=latest_key("p"))["Body"].read()
    rows = [*stars(), ("u0", "i-outlier", outlier)]
    with pytest.raises(NonFiniteModelError) as failed:
        publish(s3, SETTINGS, "bad", rows, {"algorithm": "SVD", "evaluate": evaluate})
    message = str(failed.value)
    assert "SVD" in message and "not finite" in message
    assert f"ratings range from 1 to {outlier:g}" in message
    assert "rating_scale" in message and "outside_rating_scale" in message and "lr_all" in message
    written = {key.removeprefix("p/runs/bad/") for key in listed_keys(s3, BUCKET, "p/runs/bad/")}
    assert written == {"dataset/ratings.csv.gz"}  # no model, no plan, no shard
    assert s3.get_object(Bucket=BUCKET, Key=latest_key("p"))["Body"].read() == before
    every_object_is_strict_json(s3)


@pytest.mark.parametrize("evaluate", [False, True], ids=["evaluate-false", "evaluate-true"])
@pytest.mark.parametrize("outlier", [500.0, 1e308])
def test_the_default_publishes_finite_full_lists_despite_the_outlier(
    s3: Any, outlier: float, evaluate: bool
) -> None:
    """The default (auto) measures SVD too, which diverges here: the run records why and
    publishes a ranking model's lists, every number finite."""
    manifest = publish(
        s3, SETTINGS, "outlier", [*stars(), ("u0", "i-outlier", outlier)], {"evaluate": evaluate}
    )
    assert manifest["model"]["algorithm"] in ("ItemKNN", "ALS", "EASE")
    if evaluate:
        svd = next(c for c in manifest["model"]["choice"]["candidates"] if c["algorithm"] == "SVD")
        assert svd["error"].startswith("NonFiniteModelError")
    for shard in manifest["shards"]:
        for record in decode_shard(s3.get_object(Bucket=BUCKET, Key=f"p/{shard['key']}")["Body"].read()):
            assert len(record["items"]) == 10
    every_object_is_strict_json(s3)


def test_the_same_data_without_the_outlier_publishes_full_lists(s3: Any) -> None:
    manifest = publish(s3, SETTINGS, "good", stars(), {"evaluate": False})
    for shard in manifest["shards"]:
        for record in decode_shard(s3.get_object(Bucket=BUCKET, Key=f"p/{shard['key']}")["Body"].read()):
            assert len(record["items"]) == 10
    assert all(math.isfinite(s) for s in manifest["fallback"]["scores"])


def test_the_model_check_names_each_non_finite_array() -> None:
    fitted = fit(ratings_from_rows([*stars(), ("u0", "i-outlier", 500.0)]), "SVD", {}, None)
    with pytest.raises(NonFiniteModelError, match=r"pu: \d[\d,]* of 6,000 values.*qi: "):
        model_from_fit(fitted)


# --- predictors: scores ---------------------------------------------------------------------


def factor_model(scale: float, users: int = 6, items: int = 9, factors: int = 3) -> ModelArrays:
    """An SVD-shaped model with finite parameters of the given size; user u rated item u."""
    rng = np.random.default_rng(0)
    ids = [f"u{u}" for u in range(users)]
    return ModelArrays(
        kind="SVD",
        user_ids=ids,
        item_ids=[f"i{i}" for i in range(items)],
        seen_indptr=np.arange(users + 1, dtype=np.int64),
        seen_indices=np.arange(users, dtype=np.int32),
        item_counts=np.ones(items, dtype=np.int64),
        global_mean=3.0,
        rating_scale=(1.0, 5.0),
        unknown_user_scores=np.full(items, 3.0),
        user_order=utf8_order(ids),
        arrays={
            "pu": rng.normal(size=(users, factors)) * scale,
            "qi": rng.normal(size=(items, factors)) * scale,
            "bu": np.zeros(users),
            "bi": np.zeros(items),
        },
    )


def brute_force(model: ModelArrays, n: int) -> list[list[int]]:
    """Top-n unseen items by the float64 estimate under the tie rule, one user at a time."""
    scores = load_kernel(model).scores(np.arange(model.n_users))
    rank = model.tie_rank()
    lists = []
    for u in range(model.n_users):
        unseen = [i for i in range(model.n_items) if i not in set(model.seen(u).tolist())]
        lists.append(sorted(unseen, key=lambda i: (-scores[u, i], rank[i]))[:n])
    return lists


@pytest.mark.parametrize("scale", [1.0, 1e20, 1e150])
def test_factor_scores_beyond_float32_are_ranked_exactly(scale: float) -> None:
    """The float32 prefilter overflows past 3.4e38: such a block is ranked in float64."""
    model = factor_model(scale)
    got = [top.items.tolist() for top in recommend(model, np.arange(model.n_users), 3)]
    assert got == brute_force(model, 3)


def test_factor_scores_beyond_float64_fail_the_shard() -> None:
    with pytest.raises(NonFiniteScoreError, match=r"user 'u\d'.*finite number"):
        list(recommend(factor_model(1e200), np.arange(6), 3))


class Given(Kernel):
    """A kernel whose scores are given: to put one NaN where ranking does not look."""

    def __init__(self, model: ModelArrays, matrix: np.ndarray) -> None:
        super().__init__(model)
        self.matrix = matrix

    def scores(self, users: np.ndarray) -> np.ndarray:
        rows: np.ndarray = self.matrix[users].copy()
        return rows


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_score_of_any_unseen_item_fails_the_shard(bad: float) -> None:
    model = factor_model(1.0)
    matrix = np.tile(np.linspace(5.0, 1.0, model.n_items), (model.n_users, 1))
    matrix[3, 8] = bad  # user 3's worst item: never in a top 3, yet not a number
    with pytest.raises(NonFiniteScoreError, match=r"user 'u3'.* 1 of 8 unseen items .*item 'i8'"):
        list(recommend(model, np.arange(model.n_users), 3, Given(model, matrix)))


def test_a_non_finite_score_of_a_seen_item_is_no_concern() -> None:
    model = factor_model(1.0)
    matrix = np.tile(np.linspace(5.0, 1.0, model.n_items), (model.n_users, 1))
    matrix[3, 3] = math.nan  # user 3 rated item 3: never recommended, never scored
    lists = [
        top.items.tolist() for top in recommend(model, np.arange(model.n_users), 3, Given(model, matrix))
    ]
    assert lists[3] == [0, 1, 2]


class Dropping(Kernel):
    """A kernel with its own top_n that loses items, as the float32 prefilter did on overflow."""

    def top_n(self, users: np.ndarray, n: int, tie_rank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        values = np.full((len(users), n), -np.inf)
        values[:, 0] = 4.0
        return np.zeros((len(users), n), dtype=np.int64) + 8, values


def test_a_list_shorter_than_the_unseen_items_fails_the_shard_whatever_the_kernel() -> None:
    model = factor_model(1.0)
    with pytest.raises(NonFiniteScoreError, match=r"ranked 1 items for user 'u0', who has 3 or more unseen"):
        list(recommend(model, np.arange(model.n_users), 3, Dropping(model)))


def test_the_fallback_refuses_non_finite_scores() -> None:
    model = factor_model(1.0)
    model.unknown_user_scores[4] = math.nan
    with pytest.raises(NonFiniteScoreError, match="the fallback list"):
        fallback(model, 3)


# --- merge: empty lists --------------------------------------------------------------------


def trained(rows: list[tuple[str, str, float]]) -> TrainSummary:
    return cast(TrainSummary, {"ratings": len(rows), "seconds": 0.0})  # what Merge reads of it


def test_merge_refuses_empty_lists_for_users_with_unseen_items(s3: Any) -> None:
    rows = stars()
    publish(s3, SETTINGS, "good", rows, {"evaluate": False})
    before = s3.get_object(Bucket=BUCKET, Key=latest_key("p"))["Body"].read()
    run_input = {"evaluate": False, "users_per_shard": 20}
    publish(s3, SETTINGS, "emptied", rows, run_input)
    s3.put_object(Bucket=BUCKET, Key=latest_key("p"), Body=before)
    s3.delete_object(Bucket=BUCKET, Key=RunPaths("p", "emptied").manifest)  # as before its Merge ran
    # shard 1 as a predictor whose scores all came out NaN wrote it: every list empty
    key = RunPaths("p", "emptied").shard_object(1)
    response = s3.get_object(Bucket=BUCKET, Key=key)
    records = list(decode_shard(response["Body"].read()))
    lines = [
        json.dumps({"user": r["user"], "items": [], "scores": []}, separators=(",", ":")) for r in records
    ]
    data = gzip.compress(("\n".join(lines) + "\n").encode())
    metadata = {**response["Metadata"], "sha256": sha256_hex(data)}
    s3.put_object(Bucket=BUCKET, Key=key, Body=data, Metadata=metadata)
    config = RunConfig.from_input(run_input).to_dict()
    extract = write_snapshot(s3, SETTINGS, "emptied", rows)
    with pytest.raises(EmptyListsError, match=r"shard 1: 20 users .* empty list.*unseen items"):
        merge.run(s3, SETTINGS, "emptied", config, extract, trained(rows))
    assert s3.get_object(Bucket=BUCKET, Key=latest_key("p"))["Body"].read() == before
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=RunPaths("p", "emptied").manifest)
    assert listed["KeyCount"] == 0  # no manifest: the run is not published


def test_a_user_who_rated_everything_still_gets_an_empty_list(s3: Any) -> None:
    """Planned: the plan counts such users, and Merge expects exactly that many empty lists."""
    rows = [*stars(200), *(("all", f"i{i}", 3.0) for i in range(40))]
    manifest = publish(s3, SETTINGS, "full", rows, {"evaluate": False, "users_per_shard": 7})
    plan = get_json(s3, BUCKET, RunPaths("p", "full").shard_plan)
    assert sum(shard["users_without_unseen"] for shard in plan) == 1
    lists = {
        r["user"]: r["items"]
        for s in manifest["shards"]
        for r in decode_shard(s3.get_object(Bucket=BUCKET, Key=f"p/{s['key']}")["Body"].read())
    }
    assert lists.pop("all") == [] and all(lists.values())


# --- published scores: within the scale ------------------------------------------------------


@pytest.mark.parametrize(
    "low",
    [1e-300, 5e-324, 1e-7, 0.1234567],
    ids=["1e-300", "subnormal", "1e-7", "seven-digits"],
)
def test_published_scores_stay_within_the_scale(s3: Any, low: float) -> None:
    """Ratings near 1e-300 published 0.0, below the scale: scores were rounded to 6 decimals
    after clipping. They keep 6 significant digits of the scale's span, within the scale."""
    rng = random.Random(1)
    rows = [
        (f"u{u}", f"i{i}", low * rng.choice([1, 2, 3, 4, 5]))
        for u in range(40)
        for i in range(15)
        if (u + i) % 4
    ]
    manifest = publish(s3, SETTINGS, "tiny", rows, {"algorithm": "BaselineOnly", "evaluate": False})
    scale_low, scale_high = manifest["model"]["rating_scale"]
    assert (scale_low, scale_high) == (min(r for *_, r in rows), max(r for *_, r in rows))
    scores = list(manifest["fallback"]["scores"])
    distinct = set()
    for record in published_lists_of(s3, manifest):
        scores += record["scores"]
        distinct.update(record["scores"])
    assert scores and all(math.isfinite(s) and scale_low <= s <= scale_high for s in scores)
    if low > 1e-307:  # subnormal ratings have too few bits for a model to tell them apart
        assert len(distinct) > 10  # still ordered values, not all collapsed onto a bound


def test_rounding_never_leaves_the_scale() -> None:
    scale = (0.1234567, 0.6172835)
    got = published_scores(np.array([0.61728354, 0.40000049, 0.1234567]), scale)
    assert got == [0.6172835, 0.4000005, 0.1234567]  # a span under 1: 7 decimals, within the scale
    tiny = published_scores(np.array([3.0000004e-300, 1e-300]), (1e-300, 5e-300))
    assert tiny == [3.0e-300, 1e-300]
    assert published_scores(np.array([4.1234567, 1.0]), (1.0, 5.0)) == [4.123457, 1.0]  # as before
    # a bound with more decimals than a score keeps: rounding would leave the scale
    assert published_scores(np.array([4.9999995, 1.0000004]), (1.0000004, 4.9999995)) == [
        4.9999995,
        1.0000004,
    ]


def published_lists_of(s3: Any, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        record
        for shard in manifest["shards"]
        for record in decode_shard(s3.get_object(Bucket=BUCKET, Key=f"p/{shard['key']}")["Body"].read())
    ]


def test_a_scale_of_one_value_publishes_its_scores() -> None:
    """A table of one rating (found by the property test): the scale spans nothing."""
    assert published_scores(np.array([9007199254740992.0]), (9007199254740992.0, 9007199254740992.0)) == [
        9007199254740992.0
    ]
    assert published_scores(np.array([]), (3.0, 3.0)) == []
