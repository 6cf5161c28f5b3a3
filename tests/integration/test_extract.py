"""Extract against a real PostgreSQL: ids survive exactly, duplicates resolve by timestamp,
and configuration mistakes fail with errors that name the field."""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import boto3
import psycopg2
import pytest
from moto import mock_aws

from recommender import storage
from recommender.config import ConfigError, Settings, SourceTable
from recommender.database import DatabaseUnavailableError
from recommender.dataset import DatasetError, extract_to_s3, source_query
from recommender.snapshot import read_snapshot
from recommender.steps import extract

BUCKET = "test-bucket"
TRICKY_IDS = [
    "plain",
    "with,comma",
    'with "quotes"',
    "with\nnewline",
    "line\u2028separator",
    "naïve café",
    "emoji 🎬",
    "  padded  ",
    "",
    "back\\slash",
    "tab\there",
    "x" * 500,
]


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def execute(url: str, statement: str, rows: list[tuple[Any, ...]] | None = None) -> None:
    with closing(psycopg2.connect(url)) as conn, conn.cursor() as cursor:
        if rows is None:
            cursor.execute(statement)
        else:
            cursor.executemany(statement, rows)
        conn.commit()


def snapshot(s3: Any, key: str) -> Any:
    return read_snapshot(io.BytesIO(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()))


def test_ids_round_trip_exactly(database_url: str, s3: Any) -> None:
    execute(database_url, "CREATE TABLE ratings (user_id text, item_id text, rating real)")
    rows = [
        (u, i, float(1 + (n + m) % 5))
        for n, u in enumerate(TRICKY_IDS)
        for m, i in enumerate(TRICKY_IDS[::-1])
    ]
    execute(database_url, "INSERT INTO ratings VALUES (%s, %s, %s)", rows)
    with closing(psycopg2.connect(database_url)) as conn:
        summary = extract_to_s3(conn, s3, BUCKET, "snap.csv.gz", SourceTable())
    assert summary.rows == len(rows)
    data = s3.get_object(Bucket=BUCKET, Key="snap.csv.gz")["Body"].read()
    assert summary.sha256 == hashlib.sha256(data).hexdigest() and summary.bytes == len(data)
    ratings = snapshot(s3, "snap.csv.gz")
    got = {
        (ratings.user_ids[u], ratings.item_ids[i], r)
        for u, i, r in zip(ratings.users, ratings.items, ratings.ratings)
    }
    assert got == set(rows)
    assert sorted(ratings.user_ids) == sorted(TRICKY_IDS)


def test_integer_and_uuid_ids_become_their_text(database_url: str, s3: Any) -> None:
    execute(database_url, "CREATE TABLE r (uid bigint, iid uuid, score smallint, extra text)")
    execute(
        database_url,
        "INSERT INTO r VALUES (%s, %s, %s, 'x')",
        [
            (9007199254740993, "0b7e6a34-3f1e-4c6b-9b8e-1f2a3b4c5d6e", 4),
            (-1, "00000000-0000-0000-0000-000000000001", 2),
        ],
    )
    source = SourceTable(table="r", user_column="uid", item_column="iid", rating_column="score")
    with closing(psycopg2.connect(database_url)) as conn:
        extract_to_s3(conn, s3, BUCKET, "snap.csv.gz", source)
    ratings = snapshot(s3, "snap.csv.gz")
    assert ratings.user_ids == ["9007199254740993", "-1"]
    assert ratings.item_ids == [
        "0b7e6a34-3f1e-4c6b-9b8e-1f2a3b4c5d6e",
        "00000000-0000-0000-0000-000000000001",
    ]
    assert ratings.ratings.tolist() == [4.0, 2.0]


@pytest.mark.parametrize("column_type", ["timestamptz", "bigint"])
def test_duplicated_pairs_keep_the_latest_rating(database_url: str, s3: Any, column_type: str) -> None:
    execute(
        database_url,
        f"CREATE TABLE ratings (user_id text, item_id text, rating real, rated_at {column_type})",
    )
    stamp = (lambda s: f"to_timestamp({s})") if column_type == "timestamptz" else str
    execute(
        database_url,
        "INSERT INTO ratings VALUES "
        f"('u1', 'a', 1, {stamp(100)}), ('u1', 'a', 5, {stamp(300)}), ('u1', 'a', 3, {stamp(200)}),"
        f"('u1', 'b', 2, NULL), ('u1', 'b', 4, {stamp(50)}),"
        f"('u2', 'a', 2, {stamp(10)})",
    )
    source = SourceTable(timestamp_column="rated_at")
    with closing(psycopg2.connect(database_url)) as conn:
        summary = extract_to_s3(conn, s3, BUCKET, "snap.csv.gz", source)
    ratings = snapshot(s3, "snap.csv.gz")
    got = {
        (ratings.user_ids[u], ratings.item_ids[i]): (r, t)
        for u, i, r, t in zip(ratings.users, ratings.items, ratings.ratings, ratings.timestamps)
    }
    assert summary.rows == 3
    assert got == {("u1", "a"): (5.0, 300.0), ("u1", "b"): (4.0, 50.0), ("u2", "a"): (2.0, 10.0)}


def test_rows_with_a_null_are_left_out(database_url: str, s3: Any) -> None:
    execute(database_url, "CREATE TABLE ratings (user_id text, item_id text, rating real)")
    execute(
        database_url,
        "INSERT INTO ratings VALUES ('u', 'i', 3), (NULL, 'i', 3), ('u', NULL, 3), ('u', 'j', NULL)",
    )
    with closing(psycopg2.connect(database_url)) as conn:
        summary = extract_to_s3(conn, s3, BUCKET, "snap.csv.gz", SourceTable())
    assert summary.rows == 1
    assert summary.source_rows == 4 and summary.invalid_rows == 3
    assert summary.dropped == {"null_user": 1, "null_item": 1, "null_rating": 1}


def test_bad_ratings_are_counted_and_duplicates_averaged(database_url: str, s3: Any) -> None:
    execute(database_url, "CREATE TABLE ratings (user_id text, item_id text, rating float8)")
    rows = [("u", f"i{k}", 3.0) for k in range(40)]
    rows += [("u", "i0", 4.0), ("v", "i1", float("nan")), ("v", "i2", float("inf")), ("v", "i3", 9.0)]
    rows += [("x" * 1025, "i1", 3.0), ("v", "i4", 0.5)]
    execute(database_url, "INSERT INTO ratings VALUES (%s, %s, %s)", rows)
    with closing(psycopg2.connect(database_url)) as conn:
        summary = extract_to_s3(conn, s3, BUCKET, "snap.csv.gz", SourceTable(), rating_scale=(1.0, 5.0))
    assert summary.dropped == {
        "non_finite_rating": 2,
        "outside_rating_scale": 4,  # NaN and infinity are outside too; 9.0 and 0.5
        "id_too_long": 1,
    }
    assert summary.invalid_rows == 5
    assert summary.duplicates_merged == 1
    ratings = snapshot(s3, "snap.csv.gz")
    got = {
        (ratings.user_ids[u], ratings.item_ids[i]): r
        for u, i, r in zip(ratings.users, ratings.items, ratings.ratings)
    }
    assert got[("u", "i0")] == 3.5 and len(got) == 40


def test_too_many_invalid_rows_fail_and_name_the_setting(database_url: str, s3: Any) -> None:
    execute(database_url, "CREATE TABLE ratings (user_id text, item_id text, rating real)")
    execute(
        database_url,
        "INSERT INTO ratings VALUES (%s, %s, %s)",
        [(f"u{k}", "i", 8.0 + k % 2) for k in range(10)],
    )
    with closing(psycopg2.connect(database_url)) as conn, pytest.raises(DatasetError) as failure:
        extract_to_s3(conn, s3, BUCKET, "snap.csv.gz", SourceTable(), (1.0, 5.0), max_invalid_fraction=0.05)
    assert "no usable rating among 10 rows (outside_rating_scale: 10)" in str(failure.value)
    execute(database_url, "INSERT INTO ratings VALUES (%s, %s, %s)", [(f"u{k}", "j", 4.0) for k in range(30)])
    with (
        closing(psycopg2.connect(database_url)) as conn,
        pytest.raises(DatasetError, match=r"max_invalid_fraction 0\.05"),
    ):
        extract_to_s3(conn, s3, BUCKET, "snap.csv.gz", SourceTable(), (1.0, 5.0), max_invalid_fraction=0.05)
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0  # nothing half-written


def test_an_empty_table_is_a_clear_error(database_url: str, s3: Any) -> None:
    execute(database_url, "CREATE TABLE ratings (user_id text, item_id text, rating real)")
    with (
        closing(psycopg2.connect(database_url)) as conn,
        pytest.raises(DatasetError, match="no usable rating among 0 rows"),
    ):
        extract_to_s3(conn, s3, BUCKET, "snap.csv.gz", SourceTable())


@pytest.mark.parametrize(
    ("source", "field"),
    [
        (SourceTable(table="nope"), "source.table"),
        (SourceTable(table='ratings"; DROP TABLE ratings; --'), "source.table"),
        (SourceTable(user_column="uid"), "source.user_column"),
        (SourceTable(rating_column="item_id"), "source.rating_column"),
        (SourceTable(timestamp_column="item_id"), "source.timestamp_column"),
        (SourceTable(schema="other"), "source.table"),
    ],
)
def test_configuration_mistakes_name_the_field(database_url: str, source: SourceTable, field: str) -> None:
    execute(database_url, "CREATE TABLE ratings (user_id text, item_id text, rating real)")
    execute(database_url, "INSERT INTO ratings VALUES ('u', 'i', 3)")
    with closing(psycopg2.connect(database_url)) as conn, conn.cursor() as cursor:
        with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
            source_query(cursor, source)
        cursor.execute("SELECT count(*) FROM ratings")  # the injection attempt executed nothing
        assert cursor.fetchone() == (1,)


def test_extract_step_writes_snapshot_and_metadata(database_url: str, s3: Any) -> None:
    execute(
        database_url, 'CREATE SCHEMA app; CREATE TABLE app."Ratings" ("User" text, item text, stars numeric)'
    )
    execute(
        database_url, "INSERT INTO app.\"Ratings\" VALUES ('a', 'x', 4.5), ('b', 'x', 1.5), ('a', 'y', 3)"
    )
    settings = Settings(bucket=BUCKET, prefix="pre/fix", database_url=database_url)
    run_input = {
        "algorithm": "KNNBasic",
        "params": {"k": 5},
        "source": {
            "schema": "app",
            "table": "Ratings",
            "user_column": "User",
            "item_column": "item",
            "rating_column": "stars",
        },
    }
    result = extract.run(
        lambda: psycopg2.connect(database_url), s3, settings, "run-1", extract.validate_input(run_input)
    )
    assert result["extract"]["dataset_key"] == "pre/fix/runs/run-1/dataset/ratings.csv.gz"
    assert result["extract"]["rows"] == 3
    assert result["config"]["params"] == {"k": 5, "verbose": False}
    meta = json.loads(
        s3.get_object(Bucket=BUCKET, Key="pre/fix/runs/run-1/dataset/metadata.json")["Body"].read()
    )
    assert meta["rows"] == 3 and meta["source"]["table"] == "Ratings"
    assert "password" not in json.dumps(meta)
    ratings = snapshot(s3, result["extract"]["dataset_key"])
    assert sorted(ratings.ratings.tolist()) == [1.5, 3.0, 4.5]


def test_bad_algorithm_fails_validation() -> None:
    with pytest.raises(ConfigError, match="algorithm 'SVD\\+\\+'"):
        extract.validate_input({"algorithm": "SVD++"})
    with pytest.raises(ConfigError, match="params: SVD has no parameter"):
        extract.validate_input({"params": {"n_factor": 5}})


def test_ids_that_are_not_utf8_are_a_clear_error(databases: Any, s3: Any) -> None:
    url = databases.create(encoding="SQL_ASCII")
    execute(url, "CREATE TABLE ratings (user_id text, item_id text, rating real)")
    execute(url, "INSERT INTO ratings VALUES ('u1', 'i', 3), (E'caf\\xe9', 'i', 4)")
    with closing(psycopg2.connect(url)) as conn:
        extract_to_s3(conn, s3, BUCKET, "snap.csv.gz", SourceTable())
    with pytest.raises(DatasetError, match=r"not valid UTF-8 .*SQL_ASCII"):
        snapshot(s3, "snap.csv.gz")


class DroppingCursor(psycopg2.extensions.cursor):  # type: ignore[misc]
    """A real cursor whose COPY writes part of the table, then loses the connection."""

    def copy_expert(self, sql: Any, file: Any, size: int = 8192) -> None:
        file.write(os.urandom(3 * 1024 * 1024))  # incompressible: parts really are uploaded
        raise psycopg2.OperationalError("server closed the connection unexpectedly")


def test_a_connection_lost_mid_extract_leaves_no_snapshot(
    database_url: str, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage, "MULTIPART_PART_SIZE", 1024 * 1024)
    execute(database_url, "CREATE TABLE ratings (user_id text, item_id text, rating real)")
    execute(database_url, "INSERT INTO ratings VALUES ('u', 'i', 3)")
    with (
        closing(psycopg2.connect(database_url, cursor_factory=DroppingCursor)) as conn,
        pytest.raises(DatabaseUnavailableError, match="during extract"),
    ):
        extract_to_s3(conn, s3, BUCKET, "snap.csv.gz", SourceTable())
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
