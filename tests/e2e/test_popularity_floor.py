"""The real ASL on the local engine, on ratings where the most-popular list wins: a default (SVD)
run publishes with the manifest's `quality.below_popularity`, and a run with
`quality_gate_below_popularity: "hold"` is held, `latest.json` staying on the run before."""

from __future__ import annotations

import json
from contextlib import closing
from typing import Any

import jsonschema
import numpy as np
import psycopg2
import pytest

from recommender.config import SourceTable
from recommender.local import LocalEngine
from recommender.manifest import load_schema
from recommender.sample_data import Row, load_ratings
from tests.conftest import Databases

pytestmark = pytest.mark.e2e

PREFIX = "recommender"
RUN_INPUT = {"users_per_shard": 100, "max_concurrency": 2, "source": {"timestamp_column": "rated_at"}}


def popularity_only(users: int = 150, items: int = 60, per_user: int = 12, seed: int = 3) -> list[Row]:
    """Tastes play no part: every user rates items drawn by a steep popularity, with random stars
    at random times. The held-out items are then the popular ones, which SVD's estimates (of
    random stars) do not rank first: popularity's NDCG@10 is several times SVD's here."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, items + 1) ** 1.2
    weights /= weights.sum()
    rows: list[Row] = []
    for user in range(users):
        for item in rng.choice(items, size=per_user, replace=False, p=weights):
            rows.append(
                (f"u{user}", f"i{item}", float(rng.integers(1, 6)), 1.7e9 + float(rng.integers(0, 10**7)))
            )
    return rows


@pytest.fixture(scope="module")
def ratings_db(databases: Databases) -> str:
    url = databases.create()
    with closing(psycopg2.connect(url)) as conn:
        load_ratings(conn, popularity_only(), SourceTable(timestamp_column="rated_at"))
    return url


def read_json(engine: LocalEngine, key: str) -> Any:
    return json.loads(engine.s3.get_object(Bucket=engine.bucket, Key=key)["Body"].read())


def test_a_run_below_popularity_is_flagged_and_hold_keeps_the_run_before(ratings_db: str) -> None:
    schema = load_schema("manifest")
    with LocalEngine(ratings_db, prefix=PREFIX, sandbox=False) as engine:
        first = engine.run(RUN_INPUT, name="first")
        assert first.status == "SUCCEEDED", (first.error, first.cause)
        assert first.output is not None
        merged = first.output["published"]
        assert merged["published"] and merged["status"] == "published"
        assert merged["below_popularity"] is True and merged["popularity_ratio"] < 1
        manifest = read_json(engine, merged["manifest_key"])
        jsonschema.validate(manifest, schema)
        # the default measured every candidate; on data that holds nothing beyond popularity, none
        # beats it, and the best of them is published with the warning
        measured = [c for c in manifest["model"]["choice"]["candidates"] if "ndcg" in c]
        assert {c["algorithm"] for c in measured} == {"ItemKNN", "ALS", "SVD", "EASE"}
        assert manifest["model"]["algorithm"] == max(measured, key=lambda c: c["ndcg"])["algorithm"]
        assert manifest["quality"]["below_popularity"] is True
        floor = manifest["quality"]["against_popularity"]
        assert floor["model"] < floor["popularity"] and floor["metric"] == "ndcg@10"
        assert manifest["gate"]["on_below_popularity"] == "warn"
        assert read_json(engine, f"{PREFIX}/latest.json")["run_id"] == "first"

        second = engine.run({**RUN_INPUT, "quality_gate_below_popularity": "hold"}, name="second")
        assert second.status == "SUCCEEDED", (second.error, second.cause)
        assert second.output is not None
        held = second.output["published"]
        assert not held["published"] and held["status"] == "held" and held["gate"] == "held"
        assert held["latest_run_id"] == "first"
        manifest = read_json(engine, held["manifest_key"])
        jsonschema.validate(manifest, schema)
        assert manifest["status"] == "held" and manifest["quality"]["below_popularity"] is True
        assert "below the popularity baseline" in manifest["gate"]["reason"]
        assert read_json(engine, f"{PREFIX}/latest.json")["run_id"] == "first"
        # the held run's objects stay, for a look at what it would have published
        listed = engine.s3.list_objects_v2(
            Bucket=engine.bucket, Prefix=f"{PREFIX}/runs/second/recommendations/"
        )
        assert listed["KeyCount"] == 2
