"""Faults injected into the real ASL run locally, every step in the Lambda sandbox: what is
retried, what fails, what is resumed, and that a failed run never moves latest.json."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import psycopg2
import pytest

from recommender.config import SourceTable
from recommender.local import LocalEngine
from recommender.sample_data import SyntheticSpec, load_ratings, synthetic_ratings
from recommender.sharding import decode_shard
from tests.conftest import Databases

pytestmark = pytest.mark.e2e

PREFIX = "recommender"
RUN_INPUT = {"users_per_shard": 40, "max_concurrency": 2, "top_n": 5}


@pytest.fixture(scope="module")
def ratings_db(databases: Databases) -> str:
    url = databases.create()
    with closing(psycopg2.connect(url)) as conn:
        load_ratings(
            conn,
            synthetic_ratings(SyntheticSpec(users=120, items=50, ratings_per_user=8, seed=4)),
            SourceTable(),
        )
    return url


@pytest.fixture(scope="module")
def engine(ratings_db: str) -> Iterator[LocalEngine]:
    with LocalEngine(ratings_db, prefix=PREFIX) as running:
        yield running


def get(engine: LocalEngine, key: str) -> bytes:
    body: bytes = engine.s3.get_object(Bucket=engine.bucket, Key=f"{PREFIX}/{key}")["Body"].read()
    return body


def keys(engine: LocalEngine, run_id: str) -> set[str]:
    listed = engine.s3.list_objects_v2(Bucket=engine.bucket, Prefix=f"{PREFIX}/runs/{run_id}/")
    return {o["Key"].removeprefix(f"{PREFIX}/runs/{run_id}/") for o in listed.get("Contents", [])}


def users_published(engine: LocalEngine) -> int:
    manifest = json.loads(get(engine, json.loads(get(engine, "latest.json"))["manifest"]))
    return sum(len(list(decode_shard(get(engine, s["key"])))) for s in manifest["shards"])


def etags(engine: LocalEngine, run_id: str) -> dict[str, tuple[str, Any]]:
    """ETag and last-modified time of every object of the run's shards."""
    listed = engine.s3.list_objects_v2(
        Bucket=engine.bucket, Prefix=f"{PREFIX}/runs/{run_id}/recommendations/"
    )
    return {o["Key"].rsplit("/", 1)[1]: (o["ETag"], o["LastModified"]) for o in listed.get("Contents", [])}


def test_a_transient_predictor_failure_is_retried(engine: LocalEngine) -> None:
    fault = engine.inject(
        "recommender-predict",
        "ConnectionResetError",
        "injected: the connection was reset once",
        when=lambda event: event["shard"]["index"] == 1,
    )
    result = engine.run(RUN_INPUT, name="fault-transient")
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    assert [event["shard"]["index"] for event in fault.seen] == [1]
    assert users_published(engine) == 120


def test_a_failing_shard_fails_the_run_and_a_resume_reuses_finished_work(engine: LocalEngine) -> None:
    first = engine.run(RUN_INPUT, name="fault-before")
    assert first.status == "SUCCEEDED"
    latest_before = get(engine, "latest.json")
    engine.inject(
        "recommender-predict",
        "RuntimeError",
        "injected: shard 2 always fails",
        times=100,
        when=lambda event: event["shard"]["index"] == 2,
    )
    try:
        failed = engine.run(RUN_INPUT, name="fault-broken")
    finally:
        engine.clear_faults()
    assert failed.status == "FAILED"
    assert get(engine, "latest.json") == latest_before
    assert "manifest.json" not in keys(engine, "fault-broken")
    finished = etags(engine, "fault-broken")
    assert sorted(finished) == ["shard-00000.jsonl.gz", "shard-00001.jsonl.gz"]

    calls_before = len([i for i in engine.invocations if i.function == "recommender-predict"])
    resumed = engine.run({**RUN_INPUT, "run_id": "fault-broken"}, name="fault-resume")
    assert resumed.status == "SUCCEEDED", (resumed.error, resumed.cause)
    assert resumed.output is not None
    assert resumed.output["extract"]["reused"] and resumed.output["train"]["reused"]
    # Every shard was asked for; the two finished ones were left as they were, only shard 2 written.
    assert len([i for i in engine.invocations if i.function == "recommender-predict"]) == calls_before + 3
    after = etags(engine, "fault-broken")
    assert {k: after[k] for k in finished} == finished
    assert "shard-00002.jsonl.gz" in after
    assert json.loads(get(engine, "latest.json"))["run_id"] == "fault-broken"
    assert users_published(engine) == 120
