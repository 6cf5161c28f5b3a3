"""Property-based tests: generated ratings tables, hostile ones included, through Extract (a real
PostgreSQL), Train, every predictor and Merge, asserting what the README promises whatever the data:

- either the run fails with one of the product's own errors, whose message says what is wrong, and
  nothing is published (latest.json does not move);
- or every published object is strict JSON (no NaN, no Infinity), the manifest and every shard
  record are valid against their JSON Schemas, every user with an unseen item gets a non-empty
  list of unseen items ranked best first with finite scores inside the rating scale, and every id
  comes out exactly as PostgreSQL prints it.

The tables: ids from the whole of Unicode that PostgreSQL's text holds (no NUL, no lone
surrogates), empty ids, duplicates of a (user, item) pair, NULLs, ratings from the whole float range
(extremes, subnormals, NaN, infinities) in a `real`, `double precision` or `numeric` column, and
tiny or degenerate shapes (one user, one item, every rating equal). The number of examples is
bounded (HYPOTHESIS_EXAMPLES, 100 by default, about 10 s here) so that CI stays quick.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Iterator
from contextlib import closing
from decimal import Decimal
from typing import Any

import jsonschema
import psycopg2
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from psycopg2 import sql

from recommender.config import RunConfig, Settings
from recommender.contracts import MergeResult
from recommender.errors import (
    ConfigError,
    DatasetError,
    EmptyListsError,
    IncompleteRunError,
    NonFiniteModelError,
    NonFiniteScoreError,
    SimilarityError,
)
from recommender.manifest import load_schema
from recommender.sharding import decode_shard
from recommender.steps import extract, merge, predict, train
from recommender.storage import latest_key
from tests.conftest import Databases, mocked_s3

pytestmark = pytest.mark.slow  # a property test: generated tables through every step

EXAMPLES = int(os.environ.get("HYPOTHESIS_EXAMPLES", "100"))
# The product's own errors for data it cannot publish good lists from: each names the problem. A
# TypeError, KeyError, ZeroDivisionError... escaping is a failure of the test.
CLEAR_FAILURES = (
    ConfigError,
    DatasetError,
    IncompleteRunError,
    EmptyListsError,
    NonFiniteModelError,
    NonFiniteScoreError,
    SimilarityError,
)
BUCKET = "hostile"
PREFIX = "p"

# Text PostgreSQL's UTF-8 `text` can hold: any code point but NUL and the surrogates.
ids = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), min_size=0, max_size=12
)
# A few ids reused often, so that users rate several items and items have several raters.
pools = st.lists(ids, min_size=1, max_size=6, unique=True)
HUGE = "1e400"  # beyond float8: only a numeric column holds it
ratings = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-10, max_value=10),
    st.sampled_from([0.0, -0.0, 1.0, 5.0, 1e-300, 5e-324, 1e38, 3.5e38, 1e308, -1e308, HUGE]),
    st.none(),
)


@st.composite
def tables(draw: st.DrawFn) -> tuple[str, list[tuple[str | None, str | None, Any]]]:
    column_type = draw(st.sampled_from(["real", "double precision", "numeric"]))
    users, items = draw(pools), draw(pools)
    rows = draw(
        st.lists(
            st.tuples(
                st.one_of(st.sampled_from(users), st.none()),
                st.one_of(st.sampled_from(items), st.none()),
                ratings,
            ),
            min_size=1,
            max_size=40,
        )
    )
    return column_type, rows


def storable(column_type: str, value: Any) -> Any:
    """The value as the column takes it: numeric holds no infinity but numbers beyond float8;
    real holds neither past 3.4e38 (infinity then) nor below 1.2e-38 (zero then)."""
    if value is None:
        return None
    if value == HUGE:
        return Decimal(HUGE) if column_type == "numeric" else math.inf
    if column_type == "numeric":
        return None if math.isinf(value) else Decimal("NaN") if math.isnan(value) else Decimal(repr(value))
    if column_type == "real" and math.isfinite(value):
        if abs(value) > 3.4e38:
            return math.copysign(math.inf, value)
        if abs(value) < 1.2e-38:
            return 0.0
    return value


def usable(value: Any) -> bool:
    """Whether a stored rating is a rating the product keeps: a finite float8."""
    if value is None:
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


@pytest.fixture(scope="module")
def database(databases: Databases) -> str:
    return databases.create()


@pytest.fixture
def s3() -> Iterator[Any]:
    with mocked_s3(BUCKET) as client:
        yield client


def strict_json(data: bytes) -> Any:
    """JSON as a strict reader reads it: NaN and Infinity are not JSON."""

    def refuse(constant: str) -> Any:
        raise AssertionError(f"published JSON holds {constant}")

    return json.loads(data, parse_constant=refuse)


def run_pipeline(s3: Any, url: str, table: str, run_input: dict[str, Any]) -> MergeResult:
    """Extract, Train, every shard, Merge: what the state machine runs, without it."""
    settings_ = Settings(bucket=BUCKET, prefix=PREFIX)
    config = extract.validate_input(run_input)
    extracted = extract.run(
        lambda: psycopg2.connect(url), s3, settings_, f"run-{uuid.uuid4().hex[:8]}", config
    )
    run_id, resolved = extracted["run_id"], extracted["config"]
    trained = train.run(s3, settings_, run_id, resolved)
    plan = strict_json(s3.get_object(Bucket=BUCKET, Key=trained["shard_plan_key"])["Body"].read())
    for shard in plan:
        predict.run(s3, settings_, run_id, shard, resolved["top_n"])
    merged = merge.run(s3, settings_, run_id, resolved, extracted["extract"], trained)
    return merged


def published_objects(s3: Any) -> dict[str, bytes]:
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/")
    return {
        o["Key"]: s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read()
        for o in listed.get("Contents", [])
    }


def assert_similar_items_round_trip(
    objects: dict[str, bytes], manifest: dict[str, Any], catalogue: set[str]
) -> None:
    """Every item of the table has a line of similar items: never itself, finite, ranked."""
    similar: dict[str, dict[str, Any]] = {}
    for shard in manifest["similar"]["shards"]:
        for record in decode_shard(objects[f"{PREFIX}/{shard['key']}"]):
            jsonschema.validate(record, load_schema("similar-record"))
            similar[record["item"]] = record
    assert set(similar) == catalogue, "an item id did not round-trip, or an item is missing"
    for item, record in similar.items():
        assert item not in record["items"] and set(record["items"]) <= catalogue
        assert all(math.isfinite(s) and s > 0 for s in record["scores"])
        assert record["scores"] == sorted(record["scores"], reverse=True), "not ranked best first"


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(
    table=tables(),
    evaluate=st.booleans(),
    algorithm=st.sampled_from(["auto", "SVD", "BaselineOnly", "KNNWithZScore", "ALS", "ItemKNN", "EASE"]),
)
def test_any_table_either_fails_clearly_or_publishes_finite_ranked_lists(
    s3: Any, database: str, table: tuple[str, list[tuple[Any, Any, Any]]], evaluate: bool, algorithm: str
) -> None:
    column_type, rows = table
    name = f"t_{uuid.uuid4().hex[:10]}"
    with closing(psycopg2.connect(database)) as conn, conn.cursor() as cursor:
        cursor.execute(
            sql.SQL("CREATE TABLE {} (user_id text, item_id text, rating {})").format(
                sql.Identifier(name), sql.SQL(column_type)
            )
        )
        cursor.executemany(
            sql.SQL("INSERT INTO {} VALUES (%s, %s, %s)").format(sql.Identifier(name)),
            [(u, i, storable(column_type, r)) for u, i, r in rows],
        )
        conn.commit()
    for key in list(published_objects(s3)):  # each example starts from an empty bucket
        s3.delete_object(Bucket=BUCKET, Key=key)
    run_input = {
        "source": {"table": name},
        "algorithm": algorithm,
        "evaluate": evaluate,
        "users_per_shard": 2,
        "max_invalid_fraction": 1.0,
    }
    try:
        run_pipeline(s3, database, name, run_input)
    except CLEAR_FAILURES as error:
        event(f"failed: {type(error).__name__}")
        assert str(error), "a failure must say what is wrong"
        assert latest_key(PREFIX) not in published_objects(s3), "a failed run published"
        return
    finally:
        with closing(psycopg2.connect(database)) as conn, conn.cursor() as cursor:
            cursor.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))
            conn.commit()

    event("published")
    objects = published_objects(s3)
    for key, data in objects.items():
        if key.endswith(".json"):
            strict_json(data)
    latest = strict_json(objects[latest_key(PREFIX)])
    jsonschema.validate(latest, load_schema("latest"))
    manifest = strict_json(objects[f"{PREFIX}/{latest['manifest']}"])
    jsonschema.validate(manifest, load_schema("manifest"))
    low, high = manifest["model"]["rating_scale"]

    valid = [
        (u, i) for u, i, r in rows if u is not None and i is not None and usable(storable(column_type, r))
    ]
    items_of: dict[str, set[str]] = {}
    for u, i in valid:
        items_of.setdefault(u, set()).add(i)
    catalogue = {i for _, i in valid}
    published: dict[str, dict[str, Any]] = {}
    for shard in manifest["shards"]:
        for record in decode_shard(objects[f"{PREFIX}/{shard['key']}"]):
            jsonschema.validate(record, load_schema("shard-record"))
            published[record["user"]] = record
    assert set(published) == set(items_of), "an id did not round-trip, or a user is missing"
    for user, record in published.items():
        assert set(record["items"]) <= catalogue - items_of[user], "a seen or unknown item"
        assert len(record["items"]) == len(set(record["items"]))
        assert all(math.isfinite(s) and low <= s <= high for s in record["scores"])
        assert record["scores"] == sorted(record["scores"], reverse=True), "not ranked best first"
        if catalogue - items_of[user]:
            assert record["items"], f"user {user!r} has unseen items but an empty list"
    assert all(math.isfinite(s) for s in manifest["fallback"]["scores"])
    assert_similar_items_round_trip(objects, manifest, catalogue)
    RunConfig.from_input(manifest["config"])  # the recorded input is still a valid input
