"""Ratings out of PostgreSQL into a dataset snapshot in S3, and the snapshot back into arrays.

The snapshot is a gzip-compressed CSV written by PostgreSQL itself (`COPY (query) TO STDOUT`), so
ids with commas, quotes, newlines or any Unicode character round-trip exactly and no row ever
becomes a Python object on the way out. Columns: user, item, rating and, when configured, the
timestamp as seconds since the epoch.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import numpy as np
from psycopg2 import sql

from .config import ConfigError, SourceTable
from .storage import S3Writer

SNAPSHOT_COLUMNS = ("user", "item", "rating")
TIMESTAMP_COLUMN = "timestamp"


class DatasetError(ValueError):
    """The ratings cannot be used as they are; the message names the row or the column."""


@dataclass(frozen=True)
class ExtractSummary:
    rows: int
    bytes: int
    sha256: str
    seconds: float
    has_timestamp: bool


@dataclass
class Ratings:
    """Ratings as compact arrays. Inner indices follow first appearance in the snapshot, which is
    exactly how Surprise numbers raw ids, so `users[k]` is Surprise's inner user id of row k."""

    user_ids: list[str]
    item_ids: list[str]
    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    timestamps: np.ndarray | None = None

    @property
    def n_ratings(self) -> int:
        return int(self.ratings.shape[0])


def _column_types(cursor: Any, source: SourceTable) -> dict[str, str]:
    """Map column name -> PostgreSQL type category; raises a clear error when the table is missing."""
    parts = [source.schema, source.table] if source.schema else [source.table]
    qualified = sql.SQL(".").join(sql.Identifier(p) for p in parts).as_string(cursor)
    cursor.execute("SELECT to_regclass(%s)::oid", (qualified,))
    row = cursor.fetchone()
    if row is None or row[0] is None:
        raise ConfigError(f"source.table: table {qualified} does not exist or is not visible")
    cursor.execute(
        "SELECT a.attname, t.typcategory FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid"
        " WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped",
        (row[0],),
    )
    return {name: category for name, category in cursor.fetchall()}


def export_query(cursor: Any, source: SourceTable) -> sql.Composed:
    """The SELECT that COPY streams; checks every configured column exists and has a usable type."""
    types = _column_types(cursor, source)
    for field_name in ("user_column", "item_column", "rating_column", "timestamp_column"):
        column = getattr(source, field_name)
        if column is not None and column not in types:
            raise ConfigError(f"source.{field_name}: column {column!r} not in table {source.table!r}")
    if types[source.rating_column] != "N":
        raise ConfigError(f"source.rating_column: column {source.rating_column!r} is not numeric")

    user, item, rating = (
        sql.Identifier(source.user_column),
        sql.Identifier(source.item_column),
        sql.Identifier(source.rating_column),
    )
    table = (
        sql.SQL("{}.{}").format(sql.Identifier(source.schema), sql.Identifier(source.table))
        if source.schema
        else sql.Identifier(source.table)
    )
    columns = [
        sql.SQL("{}::text AS {}").format(user, sql.Identifier("user")),
        sql.SQL("{}::text AS {}").format(item, sql.Identifier("item")),
        sql.SQL("{} AS {}").format(rating, sql.Identifier("rating")),
    ]
    not_null = sql.SQL("{} IS NOT NULL AND {} IS NOT NULL AND {} IS NOT NULL").format(user, item, rating)
    if source.timestamp_column is None:
        return sql.SQL("SELECT {} FROM {} WHERE {}").format(sql.SQL(", ").join(columns), table, not_null)

    ts = sql.Identifier(source.timestamp_column)
    category = types[source.timestamp_column]
    if category == "D":
        epoch = sql.SQL("extract(epoch FROM {})::float8").format(ts)
    elif category == "N":
        epoch = sql.SQL("{}::float8").format(ts)
    else:
        raise ConfigError(
            f"source.timestamp_column: column {source.timestamp_column!r} is neither a date/time nor a number"
        )
    columns.append(sql.SQL("{} AS {}").format(epoch, sql.Identifier(TIMESTAMP_COLUMN)))
    # The latest rating of a (user, item) pair wins; NULL timestamps count as oldest.
    return sql.SQL(
        "SELECT DISTINCT ON ({u}, {i}) {cols} FROM {table} WHERE {nn} ORDER BY {u}, {i}, {ts} DESC NULLS LAST"
    ).format(u=user, i=item, cols=sql.SQL(", ").join(columns), table=table, nn=not_null, ts=ts)


def extract_to_s3(conn: Any, s3: Any, bucket: str, key: str, source: SourceTable) -> ExtractSummary:
    """Stream the ratings table into a compressed snapshot object.

    PostgreSQL writes CSV straight into a gzip stream that uploads itself in parts: memory stays
    bounded by one part, whatever the size of the table.
    """
    started = time.perf_counter()
    with conn.cursor() as cursor:
        query = export_query(cursor, source)
        copy = sql.SQL("COPY ({}) TO STDOUT WITH (FORMAT csv, HEADER true)").format(query)
        with S3Writer(s3, bucket, key, "application/gzip") as writer:
            with gzip.GzipFile(fileobj=writer, mode="wb", compresslevel=6, mtime=0) as compressed:
                cursor.copy_expert(copy, compressed, size=1024 * 1024)
            rows = cursor.rowcount
    return ExtractSummary(
        rows=rows,
        bytes=writer.bytes_written,
        sha256=writer.sha256,
        seconds=time.perf_counter() - started,
        has_timestamp=source.timestamp_column is not None,
    )


def iter_snapshot_rows(stream: IO[bytes]) -> Iterator[list[str]]:
    """Yield the CSV rows of a gzip snapshot (header checked, then skipped)."""
    text = io.TextIOWrapper(gzip.GzipFile(fileobj=stream, mode="rb"), encoding="utf-8", newline="")
    reader = csv.reader(text)
    header = next(reader, None)
    if header is None or tuple(header[:3]) != SNAPSHOT_COLUMNS:
        raise DatasetError(f"not a ratings snapshot: header is {header!r}")
    yield from reader


def read_snapshot(stream: IO[bytes]) -> Ratings:
    """Parse a snapshot into Ratings; inner ids are given in order of first appearance."""
    return ratings_from_rows(iter_snapshot_rows(stream))


def ratings_from_rows(rows: Iterable[list[str] | tuple[Any, ...]]) -> Ratings:
    user_index: dict[str, int] = {}
    item_index: dict[str, int] = {}
    users: list[int] = []
    items: list[int] = []
    values: list[float] = []
    stamps: list[float] = []
    with_time = False
    for line, row in enumerate(rows, start=2):
        user, item, text = str(row[0]), str(row[1]), row[2]
        try:
            value = float(text)
        except ValueError:
            raise DatasetError(f"row {line}: rating {text!r} is not a number") from None
        if not math.isfinite(value):
            raise DatasetError(f"row {line}: rating {text!r} is not a finite number")
        users.append(user_index.setdefault(user, len(user_index)))
        items.append(item_index.setdefault(item, len(item_index)))
        values.append(value)
        if len(row) > 3:
            with_time = True
            stamps.append(float(row[3]) if row[3] not in ("", None) else math.nan)
    return Ratings(
        user_ids=list(user_index),
        item_ids=list(item_index),
        users=np.asarray(users, dtype=np.int32),
        items=np.asarray(items, dtype=np.int32),
        ratings=np.asarray(values, dtype=np.float64),
        timestamps=np.asarray(stamps, dtype=np.float64) if with_time else None,
    )
