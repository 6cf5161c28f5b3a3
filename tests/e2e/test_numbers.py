"""The issue's numbers through the real ASL, every step in the Lambda sandbox, from PostgreSQL:
an outlier rating fails the run (failure.json says why, latest.json stays), `rating_scale` is the
remedy, equal ratings publish ranked lists or fail before fitting, a numeric no float8 holds is
an invalid row, and every object in the bucket is strict JSON, read by Node's JSON.parse."""

from __future__ import annotations

import gzip
import json
import random
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from recommender.local import LocalEngine
from recommender.sharding import decode_shard
from tests.conftest import Databases

pytestmark = pytest.mark.e2e

PREFIX = "recommender"
BASE = {"evaluate": False, "top_n": 5, "users_per_shard": 25}


def insert(url: str, table: str, column_type: str, rows: list[tuple[str, str, Any]]) -> None:
    with closing(psycopg2.connect(url)) as conn, conn.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {table} (user_id text, item_id text, rating {column_type})")
        cursor.executemany(f"INSERT INTO {table} VALUES (%s, %s, %s::{column_type})", rows)
        conn.commit()


@pytest.fixture(scope="module")
def engine(databases: Databases) -> Iterator[LocalEngine]:
    url = databases.create()
    rng = random.Random(0)
    pairs = rng.sample([(u, i) for u in range(60) for i in range(40)], 900)
    stars = [(f"u{u}", f"i{i}", str(rng.randint(1, 5))) for u, i in pairs]
    insert(url, "stars", "real", [*stars, ("u0", "outlier", "500")])
    insert(url, "likes", "real", [(u, i, "1") for u, i, _ in stars])
    insert(url, "wide", "numeric", [*stars, ("u1", "huge", "1e400")])
    with LocalEngine(url, prefix=PREFIX) as running:
        yield running


def get(engine: LocalEngine, key: str) -> bytes:
    body: bytes = engine.s3.get_object(Bucket=engine.bucket, Key=f"{PREFIX}/{key}")["Body"].read()
    return body


def latest(engine: LocalEngine) -> bytes:
    return get(engine, "latest.json")


def manifest(engine: LocalEngine, run_id: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(get(engine, f"runs/{run_id}/manifest.json"))
    return loaded


def lists(engine: LocalEngine, run_id: str) -> dict[str, list[str]]:
    return {
        record["user"]: record["items"]
        for shard in manifest(engine, run_id)["shards"]
        for record in decode_shard(get(engine, shard["key"]))
    }


def test_the_issues_outlier_fails_the_run_and_rating_scale_is_the_remedy(engine: LocalEngine) -> None:
    svd = {**BASE, "algorithm": "SVD", "source": {"table": "stars"}}  # the issue's: SVD's SGD diverges
    remedied = engine.run({**svd, "rating_scale": [1, 5]}, name="stars-scaled")
    assert remedied.status == "SUCCEEDED", (remedied.error, remedied.cause)
    assert manifest(engine, "stars-scaled")["dataset"]["dropped"] == {"outside_rating_scale": 1}
    assert all(len(items) == 5 for items in lists(engine, "stars-scaled").values())
    before = latest(engine)

    failed = engine.run(svd, name="stars-outlier")
    assert failed.status == "FAILED"
    assert failed.error == "NonFiniteModelError"
    failure = json.loads(get(engine, "runs/stars-outlier/failure.json"))
    assert failure["error"] == "NonFiniteModelError"
    assert "ratings range from 1 to 500" in failure["cause"] and "rating_scale" in failure["cause"]
    assert latest(engine) == before


def test_equal_ratings_publish_with_zscore_and_fail_early_with_pearson_baseline(engine: LocalEngine) -> None:
    zscore = {"algorithm": "KNNWithZScore", "params": {"sim_options": {"user_based": False}}}
    published = engine.run({**BASE, "source": {"table": "likes"}, **zscore}, name="likes-zscore")
    assert published.status == "SUCCEEDED", (published.error, published.cause)
    assert all(len(items) == 5 for items in lists(engine, "likes-zscore").values())
    before = latest(engine)

    pearson = {"algorithm": "KNNBaseline", "params": {"sim_options": {"name": "pearson_baseline"}}}
    failed = engine.run({**BASE, "source": {"table": "likes"}, **pearson}, name="likes-pearson")
    assert failed.status == "FAILED" and failed.error == "SimilarityError"
    assert "'pearson_baseline' cannot run on this data" in (failed.cause or "")
    assert latest(engine) == before


def test_a_numeric_rating_no_float8_holds_is_counted_not_fatal(engine: LocalEngine) -> None:
    result = engine.run({**BASE, "source": {"table": "wide"}}, name="wide")
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    assert manifest(engine, "wide")["dataset"]["dropped"] == {"rating_out_of_range": 1}


def test_every_object_is_strict_json(engine: LocalEngine, tmp_path: Path) -> None:
    """Runs in the module's order, last: the bucket then holds published and failed runs."""
    assert engine.export(tmp_path).written > 0
    documents = sorted(tmp_path.rglob("*.json"))
    shards = sorted(tmp_path.rglob("*.jsonl.gz"))
    assert any(p.name == "failure.json" for p in documents) and shards

    def refuse(word: str) -> Any:
        raise ValueError(f"{word} is not JSON")

    lines = tmp_path / "lines.jsonl"
    lines.write_bytes(b"".join(gzip.decompress(shard.read_bytes()) for shard in shards))
    for document in documents:
        json.loads(document.read_bytes(), parse_constant=refuse)
    for line in lines.read_bytes().split(b"\n"):
        if line:
            json.loads(line, parse_constant=refuse)
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: parsed with Python's strict reader only")
    script = (
        "const fs = require('fs');"
        "for (const f of process.argv.slice(2)) {"
        "  const text = fs.readFileSync(f, 'utf8');"
        "  if (f.endsWith('.jsonl')) { for (const l of text.split('\\n')) if (l) JSON.parse(l); }"
        "  else JSON.parse(text);"
        "}"
    )
    subprocess.run([node, "-e", script, *map(str, documents), str(lines)], check=True, timeout=60)
