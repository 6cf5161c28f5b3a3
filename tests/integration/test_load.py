"""Loading ratings into a real PostgreSQL: the synthetic blocks and any rows round-trip exactly
through COPY, the table is a normal one, and `recommender load` as a user runs it."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from recommender import cli
from recommender.cli import main
from recommender.config import SourceTable
from recommender.sample_data import (
    Row,
    SyntheticSpec,
    calibrated,
    load_ratings,
    load_synthetic,
    synthetic_ratings,
)

CHECKSUM = """
    SELECT count(*), md5(string_agg(
        concat_ws(',', user_id, item_id, rating::text, extract(epoch FROM rated_at)::bigint::text),
        E'\\n' ORDER BY user_id::bigint, item_id))
    FROM {table}
"""


def _fetch(url: str, query: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with closing(psycopg2.connect(url)) as conn, conn.cursor() as cursor:
        cursor.execute(query, args)
        rows: list[tuple[Any, ...]] = cursor.fetchall()
        return rows


def _checksum(rows: list[Row]) -> tuple[int, str]:
    lines = sorted((int(u), i, f"{r:g}", str(int(t))) for u, i, r, t in rows)
    text = "\n".join(",".join([str(u), i, r, t]) for u, i, r, t in lines)
    return len(rows), hashlib.md5(text.encode()).hexdigest()


def test_synthetic_blocks_round_trip_exactly(database_url: str) -> None:
    """1,500 users: two random-stream chunks, cut into blocks of 200 users on the way in."""
    spec = SyntheticSpec(users=1500, items=80, ratings_per_user=6, seed=2)
    source = SourceTable(timestamp_column="rated_at")
    with closing(psycopg2.connect(database_url)) as conn:
        loaded = load_synthetic(conn, spec, source, block_users=200)
    rows = list(synthetic_ratings(spec))
    assert loaded == len(rows)
    [(count, digest)] = _fetch(database_url, CHECKSUM.format(table="ratings"))
    assert (count, digest) == _checksum(rows)
    stored = _fetch(
        database_url, "SELECT user_id, item_id, rating, extract(epoch FROM rated_at) FROM ratings"
    )
    assert sorted((u, i, r, float(t)) for u, i, r, t in stored) == sorted(rows)


def test_the_table_is_a_normal_table_with_no_index(database_url: str) -> None:
    with closing(psycopg2.connect(database_url)) as conn:
        load_synthetic(
            conn, SyntheticSpec(users=30, items=20, ratings_per_user=5), SourceTable(timestamp_column="t")
        )
    [(persistence, indexes)] = _fetch(
        database_url, "SELECT relpersistence, relhasindex FROM pg_class WHERE relname = 'ratings'"
    )
    assert (persistence, indexes) == ("p", False)  # permanent (logged), no index
    columns = _fetch(
        database_url,
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'ratings'"
        " ORDER BY ordinal_position",
    )
    assert columns == [
        ("user_id", "text"),
        ("item_id", "text"),
        ("rating", "real"),
        ("t", "timestamp with time zone"),
    ]


def test_rows_with_any_ids_and_times_round_trip(database_url: str) -> None:
    rows: list[Row] = [
        ("with,comma", 'with "quotes"', 4.5, 1_700_000_000.0),
        ("with\nnewline", "naïve café 🎬", 1.0, 0.0),
        ("  padded  ", "back\\slash", 3.25, -86_401.0),
        ("", "x" * 300, 5.0, 4_102_444_799.0),
    ]
    fractional: list[Row] = [("a", "b", 2.0, 1_700_000_000.25), ("a", "c", 3.0, 12.000001)]
    for batch in (rows, fractional):
        with closing(psycopg2.connect(database_url)) as conn:
            assert load_ratings(conn, iter(batch), SourceTable(timestamp_column="rated_at")) == len(batch)
        stored = _fetch(
            database_url, "SELECT user_id, item_id, rating, extract(epoch FROM rated_at) FROM ratings"
        )
        assert sorted((u, i, r, float(t)) for u, i, r, t in stored) == sorted(batch)
    with closing(psycopg2.connect(database_url)) as conn:
        assert load_ratings(conn, iter(rows), SourceTable(table="no_time", schema="public")) == len(rows)
    assert sorted(_fetch(database_url, "SELECT * FROM public.no_time")) == sorted(r[:3] for r in rows)


def test_a_load_replaces_the_table_and_works_in_autocommit(database_url: str) -> None:
    source = SourceTable(timestamp_column="rated_at")
    with closing(psycopg2.connect(database_url)) as conn:
        load_synthetic(conn, SyntheticSpec(users=200, items=50, ratings_per_user=8), source)
        conn.autocommit = True  # no transaction of ours: the COPY cannot be FREEZE, still loads
        smaller = SyntheticSpec.with_total(users=40, items=50, ratings=300)
        assert load_synthetic(conn, smaller, source) == 300
    assert _fetch(database_url, "SELECT count(*) FROM ratings") == [(300,)]


def test_load_command_synthetic(database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["load", "--synthetic", "--users", "400", "--items", "90", "--ratings", "5000", "--seed", "3"]
    assert main([*args, "--database-url", database_url, "--table", "small"]) == 0
    out = capsys.readouterr().out
    assert "400 users x 90 items, 5,000 ratings (seed 3)" in out
    assert "loaded 5,000 ratings in " in out and " rows/s); table size " in out
    assert "Next: recommender run --database-url URL --table small --timestamp-column rated_at" in out
    rows = list(synthetic_ratings(SyntheticSpec.with_total(400, 90, 5000, seed=3, **calibrated(90))))
    assert _fetch(database_url, CHECKSUM.format(table="small")) == [_checksum(rows)]

    per_user = ["load", "--synthetic", "--users", "100", "--items", "50", "--ratings-per-user", "7"]
    assert main([*per_user, "--database-url", database_url, "--timestamp-column", "at"]) == 0
    expected = list(synthetic_ratings(SyntheticSpec(100, 50, 7, **calibrated(50))))
    assert _fetch(database_url, "SELECT count(*) FROM ratings") == [(len(expected),)]


def test_load_command_movielens(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "u.data").write_text(
        "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t878887116\n"
    )
    assert main(["load", "--movielens", str(tmp_path), "--database-url", database_url]) == 0
    assert "loaded 3 ratings" in capsys.readouterr().out
    stored = _fetch(
        database_url, "SELECT user_id, item_id, rating, extract(epoch FROM rated_at)::bigint FROM ratings"
    )
    assert sorted(stored) == [
        ("186", "302", 3.0, 891717742),
        ("196", "242", 3.0, 881250949),
        ("22", "377", 1.0, 878887116),
    ]


def test_data_dir_starts_the_embedded_server_there(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`load --data-dir DIR` and `run --data-dir DIR` start the embedded server on DIR (here it
    stands in for the test server), so what one loaded the other reads."""
    started: list[Path | None] = []

    @contextlib.contextmanager
    def embedded(data_dir: Path | None = None) -> Iterator[str]:
        started.append(data_dir)
        yield database_url

    monkeypatch.setattr("recommender.local.embedded_postgres", embedded)
    monkeypatch.setenv("DATABASE_URL", "postgresql://nowhere/never-used")
    folder = tmp_path / "pg"
    args = [
        "load",
        "--synthetic",
        "--users",
        "50",
        "--items",
        "20",
        "--ratings",
        "400",
        "--data-dir",
        str(folder),
    ]
    assert main(args) == 0
    assert started == [folder.resolve()]
    assert f"Next: recommender run --data-dir {folder} --timestamp-column rated_at" in capsys.readouterr().out
    assert _fetch(database_url, "SELECT count(*) FROM ratings") == [(400,)]

    with contextlib.ExitStack() as stack:
        run = cli.build_parser().parse_args(["run", "--data-dir", str(folder)])
        assert cli._database(stack, run) == database_url
        assert started[-1] == folder.resolve()
        default = cli.build_parser().parse_args(["run"])
        assert cli._database(stack, default) == "postgresql://nowhere/never-used"
        assert isinstance(default, argparse.Namespace) and default.data_dir is None
