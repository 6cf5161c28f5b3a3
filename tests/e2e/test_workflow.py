"""The real ASL file, executed on moto's Step Functions engine with every step in the Lambda
sandbox, from a PostgreSQL table to `latest.json`, checked against Surprise itself."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import math
import shutil
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pandas as pd
import psycopg2
import pytest
from surprise import Dataset, Reader

from recommender import training
from recommender.client import Recommendations
from recommender.config import SourceTable
from recommender.local import LocalEngine
from recommender.manifest import load_schema
from recommender.model import ModelArrays, UserPart
from recommender.sample_data import SyntheticSpec, load_ratings, synthetic_ratings
from recommender.sharding import decode_shard
from tests.conftest import Databases

pytestmark = pytest.mark.e2e

EVENTS = Path(__file__).resolve().parents[2] / "events"
PREFIX = "recommender"
ODD_USER = 'o\'dd, "user"\nwith ünïcode'
SPEC = SyntheticSpec(users=240, items=120, ratings_per_user=20, seed=3)


@pytest.fixture(scope="module")
def ratings_db(databases: Databases) -> str:
    """A database holding synthetic ratings plus a user whose id needs quoting everywhere."""
    url = databases.create()
    rows = list(synthetic_ratings(SPEC))
    rows += [(ODD_USER, f"item-{k:05d}", float(1 + k % 5), 1.7e9 + k) for k in range(1, 12)]
    with closing(psycopg2.connect(url)) as conn:
        load_ratings(conn, rows, SourceTable(timestamp_column="rated_at"))
    return url


@pytest.fixture(scope="module")
def algorithm_layer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A layer holding a user's own algorithm module, as a deployment would add one."""
    layer = tmp_path_factory.mktemp("algorithm-layer")
    package = layer / "python" / "tests" / "unit"
    package.mkdir(parents=True)
    (layer / "python" / "tests" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    shutil.copy(Path(__file__).resolve().parents[1] / "unit" / "custom_algorithms.py", package)
    return layer


@pytest.fixture(scope="module")
def engine(ratings_db: str, algorithm_layer: Path) -> Iterator[LocalEngine]:
    with LocalEngine(ratings_db, prefix=PREFIX, layers=[algorithm_layer]) as running:
        assert running.sandboxed
        yield running


def run_input(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = json.loads((EVENTS / "state_machine_input.json").read_text())
    base.update(users_per_shard=70, max_concurrency=3)
    base.update(overrides)
    return base


def read_json(engine: LocalEngine, key: str) -> Any:
    return json.loads(engine.s3.get_object(Bucket=engine.bucket, Key=f"{PREFIX}/{key}")["Body"].read())


def published_lists(engine: LocalEngine, manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    lists: dict[str, dict[str, Any]] = {}
    for shard in manifest["shards"]:
        data = engine.s3.get_object(Bucket=engine.bucket, Key=f"{PREFIX}/{shard['key']}")["Body"].read()
        records = list(decode_shard(data))
        assert len(records) == shard["users"]
        for record in records:
            jsonschema.validate(record, load_schema("shard-record"))
        for record in records:
            assert record["user"] not in lists, "a user appears in two shards"
            lists[record["user"]] = record
    return lists


def published_similar(engine: LocalEngine, manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every item's published similar items, each record checked against its schema."""
    similar: dict[str, dict[str, Any]] = {}
    for shard in manifest["similar"]["shards"]:
        data = engine.s3.get_object(Bucket=engine.bucket, Key=f"{PREFIX}/{shard['key']}")["Body"].read()
        assert hashlib.sha256(data).hexdigest() == shard["sha256"]
        records = list(decode_shard(data))
        assert len(records) == shard["items"]
        for record in records:
            jsonschema.validate(record, load_schema("similar-record"))
            assert record["item"] not in similar, "an item appears in two item shards"
            similar[record["item"]] = record
    return similar


def similarity_reference(algo: Any, trainset: Any, measure: str) -> Callable[[int, int], float]:
    """The similarity of inner items (i, j) as the issue defines it, from Surprise's own objects."""
    if measure == "factor-cosine":
        return lambda i, j: (
            float(algo.qi[i] @ algo.qi[j]) / float(np.linalg.norm(algo.qi[i]) * np.linalg.norm(algo.qi[j]))
        )
    if measure == "knn-item-similarity":
        return lambda i, j: float(algo.sim[i, j])
    assert measure == "co-occurrence-cosine"
    raters = [{u for u, _ in trainset.ir[i]} for i in trainset.all_items()]
    return lambda i, j: len(raters[i] & raters[j]) / math.sqrt(len(raters[i]) * len(raters[j]))


def assert_similar_items_are_the_definition(
    engine: LocalEngine, manifest: dict[str, Any], algo: Any, trainset: Any, limit: int
) -> int:
    """Every item has a record; a sample of items' lists equal the per-pair brute force; no item
    below the minimum support has a list or is in one. Returns how many are below it."""
    section = manifest["similar"]
    similar = published_similar(engine, manifest)
    assert set(similar) == {trainset.to_raw_iid(i) for i in trainset.all_items()}
    assert section["items"] == trainset.n_items
    pair = similarity_reference(algo, trainset, section["measure"])
    support = {i: len(trainset.ir[i]) for i in trainset.all_items()}
    enough = [i for i in trainset.all_items() if support[i] >= section["min_support"]]
    for inner in enough[::15]:
        value = {j: pair(inner, j) for j in enough if j != inner}
        ranked = sorted((j for j in value if value[j] > 0), key=lambda j: (-value[j], -support[j], j))
        record = similar[trainset.to_raw_iid(inner)]
        got = [trainset.to_inner_iid(item) for item in record["items"]]
        want = ranked[:limit]
        assert len(got) == len(want)
        for a, b in zip(got, want):
            assert a == b or abs(value[a] - value[b]) < 1e-9, (got, want)
        assert record["scores"] == pytest.approx([value[j] for j in got], rel=1e-5)
    thin = {trainset.to_raw_iid(i) for i in trainset.all_items() if support[i] < section["min_support"]}
    assert all(similar[item]["items"] == [] for item in thin)
    assert not thin & {item for record in similar.values() for item in record["items"]}
    return len(thin)


def surprise_reference(engine: LocalEngine, manifest: dict[str, Any]) -> Any:
    """Surprise alone, from the published snapshot, seed and parameters: no code of ours."""
    body = engine.s3.get_object(Bucket=engine.bucket, Key=f"{PREFIX}/{manifest['dataset']['key']}")[
        "Body"
    ].read()
    frame = pd.read_csv(
        io.BytesIO(gzip.decompress(body)), dtype={"user": str, "item": str}, keep_default_na=False
    )
    data = Dataset.load_from_df(
        frame[["user", "item", "rating"]], Reader(rating_scale=tuple(manifest["model"]["rating_scale"]))
    )
    trainset = data.build_full_trainset()
    algo = training.algorithm_class(manifest["model"]["algorithm"])(**manifest["model"]["params"])
    algo.fit(trainset)
    return algo, trainset


def expected_top_n(
    algo: Any, trainset: Any, user: str, n: int
) -> tuple[list[str], dict[str, float], dict[str, float]]:
    """Brute force: predict every unseen item; rank by unclipped estimate, then the tie rule."""
    known = user in trainset._raw2inner_id_users
    seen = {trainset.to_raw_iid(i) for i, _ in trainset.ur[trainset.to_inner_uid(user)]} if known else set()
    clipped, unclipped, key = {}, {}, {}
    for inner in trainset.all_items():
        item = trainset.to_raw_iid(inner)
        if item in seen:
            continue
        clipped[item] = algo.predict(user, item).est
        unclipped[item] = algo.predict(user, item, clip=False).est
        key[item] = (-unclipped[item], -len(trainset.ir[inner]), inner)
    return sorted(key, key=key.__getitem__)[:n], clipped, unclipped


def assert_same_ranking(got: list[str], expected: list[str], unclipped: dict[str, float]) -> None:
    """Equal lists, except that items whose estimates differ by float noise may swap."""
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert a == b or abs(unclipped[a] - unclipped[b]) < 1e-9, (got, expected)


def read_bytes(engine: LocalEngine, key: str) -> bytes:
    data: bytes = engine.s3.get_object(Bucket=engine.bucket, Key=key)["Body"].read()
    return data


def assert_model_split_by_shard(engine: LocalEngine, manifest: dict[str, Any]) -> None:
    """model.npz holds the item side only; each shard's users are in their own part, so a
    predictor never reads another shard's users."""
    model_key = f"{PREFIX}/{manifest['model']['key']}"
    item_side = ModelArrays.from_bytes(read_bytes(engine, model_key))
    assert item_side.users_in_parts and item_side.n_users == 0 and "pu" not in item_side.arrays
    assert item_side.n_items == manifest["model"]["items"]
    parts_prefix = model_key.rsplit("/", 1)[0] + "/users/"
    listed = engine.s3.list_objects_v2(Bucket=engine.bucket, Prefix=parts_prefix)["Contents"]
    assert len(listed) == len(manifest["shards"])
    for shard, entry in zip(manifest["shards"], sorted(listed, key=lambda e: e["Key"])):
        part = UserPart.from_bytes(read_bytes(engine, entry["Key"]))
        assert len(part.user_ids) == shard["users"] == part.arrays["pu"].shape[0]
        assert (part.user_ids[0], part.user_ids[-1]) == (shard["first_user"], shard["last_user"])


def test_published_recommendations_equal_surprise(engine: LocalEngine, tmp_path: Path) -> None:
    # a minimum support some items miss: they must have no list and be in none
    result = engine.run(run_input(algorithm="SVD", similar_min_support=30), name="e2e-svd")
    assert result.status == "SUCCEEDED", (result.error, result.cause)

    latest = read_json(engine, "latest.json")
    jsonschema.validate(latest, load_schema("latest"))
    assert latest["run_id"] == "e2e-svd"
    manifest = read_json(engine, latest["manifest"])
    jsonschema.validate(manifest, load_schema("manifest"))
    assert len(manifest["shards"]) == 4  # 241 users, 70 per shard
    assert_model_split_by_shard(engine, manifest)

    lists = published_lists(engine, manifest)
    algo, trainset = surprise_reference(engine, manifest)
    assert set(lists) == set(trainset._raw2inner_id_users)
    top_n = manifest["top_n"]
    sample = [ODD_USER, *list(lists)[::25]]
    for user in sample:
        expected, clipped, unclipped = expected_top_n(algo, trainset, user, top_n)
        got = lists[user]["items"]
        assert_same_ranking(got, expected, unclipped)
        # The published scores are Surprise's predict(): clipped estimates, best first.
        assert lists[user]["scores"] == pytest.approx([clipped[i] for i in got], abs=1e-6)
        # And no unseen item left out predicts higher than one published.
        left_out = max((clipped[i] for i in clipped if i not in got), default=-np.inf)
        assert min(clipped[i] for i in got) >= left_out - 1e-9

    unknown, clipped, unclipped = expected_top_n(algo, trainset, "someone-new", top_n)
    assert_same_ranking(manifest["fallback"]["items"], unknown, unclipped)
    assert manifest["similar"]["measure"] == "factor-cosine"
    assert assert_similar_items_are_the_definition(engine, manifest, algo, trainset, top_n) > 0

    engine.export(tmp_path)
    recs = Recommendations.open(tmp_path)
    answer = recs.for_user(ODD_USER)
    assert answer.personal and answer.items == lists[ODD_USER]["items"]
    stranger = recs.for_user("someone-new", n=3)
    assert not stranger.personal and stranger.items == manifest["fallback"]["items"][:3]


@pytest.mark.parametrize(
    ("algorithm", "params", "kind"),
    [
        ("KNNWithMeans", {"k": 10, "sim_options": {"name": "pearson", "user_based": False}}, "KNNWithMeans"),
        ("tests.unit.custom_algorithms:ItemMean", {}, "refit"),  # a user's own AlgoBase: per pair
    ],
)
def test_other_algorithms_equal_surprise(
    engine: LocalEngine, algorithm: str, params: dict[str, Any], kind: str
) -> None:
    name = "e2e-" + kind.lower()
    result = engine.run(run_input(algorithm=algorithm, params=params, top_n=5), name=name)
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    manifest = read_json(engine, read_json(engine, "latest.json")["manifest"])
    assert manifest["run_id"] == name and manifest["model"]["kind"] == kind
    lists = published_lists(engine, manifest)
    algo, trainset = surprise_reference(engine, manifest)
    for user in list(lists)[::40]:
        expected, _, unclipped = expected_top_n(algo, trainset, user, 5)
        assert_same_ranking(lists[user]["items"], expected, unclipped)
    # item-based k-NN: its own similarity and k; a model without an item-item notion: co-occurrence
    assert manifest["similar"]["measure"] == (
        "knn-item-similarity" if kind != "refit" else "co-occurrence-cosine"
    )
    assert_similar_items_are_the_definition(engine, manifest, algo, trainset, min(5, params.get("k", 5)))


def test_auto_chooses_in_the_lambda_sandbox_and_publishes_the_winner(engine: LocalEngine) -> None:
    """auto measures ItemKNN and ALS (implicit, from the Train layer alone), SVD and EASE inside
    Train's sandbox; the predictors serve the winner from arrays, without implicit or scipy."""
    result = engine.run(run_input(algorithm="auto", top_n=5), name="e2e-auto")
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    manifest = read_json(engine, read_json(engine, "latest.json")["manifest"])
    model = manifest["model"]
    candidates = model["choice"]["candidates"]
    assert [c["algorithm"] for c in candidates] == ["ItemKNN", "ALS", "SVD", "EASE"]
    measured = [c for c in candidates if "ndcg" in c]
    assert model["algorithm"] == max(measured, key=lambda c: c["ndcg"])["algorithm"]
    assert model["kind"] == model["algorithm"]
    assert manifest["quality"]["model"][f"ndcg@{manifest['config']['top_n']}"] == max(
        c["ndcg"] for c in measured
    )
    assert len(published_lists(engine, manifest)) == manifest["users"]


def test_a_failing_shard_fails_the_run_and_keeps_latest(engine: LocalEngine) -> None:
    first = engine.run(run_input(), name="e2e-before-failure")
    assert first.status == "SUCCEEDED"
    latest_before = engine.s3.get_object(Bucket=engine.bucket, Key=f"{PREFIX}/latest.json")["Body"].read()

    engine.inject(
        "recommender-predict",
        "RuntimeError",
        "injected predictor failure",
        times=100,
        when=lambda event: event["shard"]["index"] == 1,
    )
    try:
        failed = engine.run(run_input(), name="e2e-broken-shard")
    finally:
        engine.clear_faults()

    assert failed.status == "FAILED"
    # moto drops a failed Map iteration silently; Merge's verification is what stops the run.
    assert failed.error in ("IncompleteRunError", "States.ExceedToleratedFailureThreshold")
    assert "shard 1" in (failed.cause or "")
    latest_after = engine.s3.get_object(Bucket=engine.bucket, Key=f"{PREFIX}/latest.json")["Body"].read()
    assert latest_after == latest_before
    keys = {
        o["Key"]
        for o in engine.s3.list_objects_v2(Bucket=engine.bucket, Prefix=f"{PREFIX}/runs/e2e-broken-shard/")[
            "Contents"
        ]
    }
    assert f"{PREFIX}/runs/e2e-broken-shard/failure.json" in keys
    assert f"{PREFIX}/runs/e2e-broken-shard/manifest.json" not in keys


def test_bad_input_fails_in_the_first_step(engine: LocalEngine) -> None:
    result = engine.run({"algorithm": "SVD", "top_n": 0}, name="e2e-bad-input")
    assert result.status == "FAILED"
    assert result.error == "ConfigError"
    assert "top_n" in (result.cause or "")
    failure = read_json(engine, "runs/e2e-bad-input/failure.json")
    assert failure["error"] == "ConfigError"
    listed = engine.s3.list_objects_v2(Bucket=engine.bucket, Prefix=f"{PREFIX}/runs/e2e-bad-input/dataset/")
    assert listed.get("KeyCount", 0) == 0
