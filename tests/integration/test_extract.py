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

import numpy as np
import psycopg2
import pytest

from recommender import storage
from recommender.config import Settings, SourceTable
from recommender.dataset import extract_to_s3, source_query
from recommender.errors import ConfigError, DatabaseUnavailableError, DatasetError
from recommender.snapshot import read_snapshot
from recommender.steps import extract
from tests.conftest import mocked_s3

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
    with mocked_s3(BUCKET) as client:
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


#: the smallest magnitudes PostgreSQL cannot turn into a float8: halfway to the next power of two
#: above the largest double (rounds to infinity), and halfway to the smallest subnormal (rounds to 0)
FLOAT8_OVERFLOW = str(2**1024 - 2**970)
FLOAT8_UNDERFLOW = "0." + str(5**1075).rjust(1075, "0")


@pytest.mark.parametrize("timestamp", [False, True], ids=["averaged", "latest"])
def test_a_rating_no_float8_holds_is_an_invalid_row(database_url: str, s3: Any, timestamp: bool) -> None:
    """A numeric rating of 1e400 (or 1e-400) failed the whole extract ("out of range for type
    double precision"); it is an invalid row like NaN, counted by its own reason."""
    execute(database_url, "CREATE TABLE ratings (user_id text, item_id text, rating numeric, at bigint)")
    rows = [(f"u{k}", "i", str(1 + k % 5), k) for k in range(100)]
    unrepresentable = ["1e400", "-1e400", "1e-400", FLOAT8_OVERFLOW, "-" + FLOAT8_OVERFLOW, FLOAT8_UNDERFLOW]
    rows += [("v", f"big{k}", value, 0) for k, value in enumerate(unrepresentable)]
    just_inside = [str(2**1024 - 2**970 - 1), "4.9406564584124654e-324", "0", "-0.0"]
    rows += [("w", f"edge{k}", value, 0) for k, value in enumerate(just_inside)]
    rows += [("v", "nan", "NaN", 0), ("v", "inf", "Infinity", 0)]
    execute(database_url, "INSERT INTO ratings VALUES (%s, %s, %s::numeric, %s)", rows)
    source = SourceTable(timestamp_column="at" if timestamp else None)
    with closing(psycopg2.connect(database_url)) as conn:
        summary = extract_to_s3(conn, s3, BUCKET, "snap.csv.gz", source, max_invalid_fraction=0.1)
    assert summary.dropped == {"rating_out_of_range": 6, "non_finite_rating": 2}
    assert summary.invalid_rows == 8 and summary.rows == 104
    ratings = snapshot(s3, "snap.csv.gz")
    kept = {
        ratings.item_ids[i]: r
        for u, i, r in zip(ratings.users, ratings.items, ratings.ratings)
        if ratings.user_ids[u] == "w"
    }
    assert kept == {"edge0": 1.7976931348623157e308, "edge1": 5e-324, "edge2": 0.0, "edge3": 0.0}
    with closing(psycopg2.connect(database_url)) as conn:
        scaled = extract_to_s3(
            conn, s3, BUCKET, "scaled.csv.gz", source, (0.0, 5.0), max_invalid_fraction=0.2
        )
    # beyond the scale too, as NaN and Infinity are (-0.0 and 0 are within it)
    assert scaled.dropped == {"rating_out_of_range": 6, "non_finite_rating": 2, "outside_rating_scale": 7}


@pytest.mark.parametrize("column_type", ["float8", "numeric", "timestamptz"])
def test_a_timestamp_that_is_not_a_number_counts_as_unknown(
    database_url: str, s3: Any, column_type: str
) -> None:
    """NaN sorts above every number in PostgreSQL, so a NaN timestamp would win over a real newer
    one: like NULL, it counts as oldest, and so does ±Infinity (no moment a rating was given)."""
    execute(database_url, f"CREATE TABLE ratings (user_id text, item_id text, rating real, at {column_type})")
    if column_type == "timestamptz":
        stamp = {"nan": "'infinity'", "inf": "'infinity'", "-inf": "'-infinity'", "big": "'infinity'"}

        def real(seconds: int) -> str:
            return f"to_timestamp({seconds})"

    else:
        stamp = {"nan": "'NaN'", "inf": "'Infinity'", "-inf": "'-Infinity'", "big": "'1e400'::numeric"}

        def real(seconds: int) -> str:
            return str(seconds)

        if column_type == "float8":
            stamp["big"] = "'1e300'"  # the largest float8s are real (if odd) numbers
    execute(
        database_url,
        "INSERT INTO ratings VALUES "
        f"('u1', 'a', 1, {stamp['nan']}), ('u1', 'a', 5, {real(100)}),"
        f"('u1', 'b', 2, {stamp['inf']}), ('u1', 'b', 4, {real(50)}),"
        f"('u1', 'c', 3, {stamp['-inf']}),"
        f"('u1', 'd', 1, {stamp['big']}), ('u1', 'd', 2, {real(60)}),"
        f"('u2', 'a', 2, {real(10)})",
    )
    with closing(psycopg2.connect(database_url)) as conn:
        summary = extract_to_s3(conn, s3, BUCKET, "snap.csv.gz", SourceTable(timestamp_column="at"))
    ratings = snapshot(s3, "snap.csv.gz")
    assert ratings.timestamps is not None
    got = {
        (ratings.user_ids[u], ratings.item_ids[i]): (r, t)
        for u, i, r, t in zip(ratings.users, ratings.items, ratings.ratings, ratings.timestamps.tolist())
    }
    assert summary.rows == 5
    assert got.pop(("u1", "c"))[0] == 3.0 and np.isnan(ratings.timestamps).sum() == 1
    expected_d = (1.0, 1e300) if column_type == "float8" else (2.0, 60.0)
    assert got == {
        ("u1", "a"): (5.0, 100.0),
        ("u1", "b"): (4.0, 50.0),
        ("u1", "d"): expected_d,
        ("u2", "a"): (2.0, 10.0),
    }


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
