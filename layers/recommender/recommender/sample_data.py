"""Ratings to try the product on: a synthetic dataset with real structure, or a MovieLens folder,
loaded into a PostgreSQL table with COPY.

The synthetic data has what makes collaborative filtering work and what makes it hard: latent
tastes (users like items whose factors match theirs), long-tail popularity (a few items get most
ratings, most items few), skewed activity (a few users rate a lot), and per-user and per-item biases.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from psycopg2 import sql

from .config import SourceTable

Row = tuple[str, str, float, float]  # user id, item id, rating, seconds since the epoch
COPY_BATCH_ROWS = 100_000
START_EPOCH = 1_700_000_000.0  # November 2023


@dataclass(frozen=True)
class SyntheticSpec:
    users: int = 2000
    items: int = 1000
    ratings_per_user: int = 40  # mean; activity is log-normal around it, at least 5
    factors: int = 8
    seed: int = 0


def synthetic_ratings(spec: SyntheticSpec) -> Iterator[Row]:
    """Integer-star ratings (1-5) drawn from a latent-factor model with popularity bias."""
    rng = np.random.default_rng(spec.seed)
    popularity = 1.0 / np.arange(1, spec.items + 1) ** 0.9  # Zipf-like long tail
    rng.shuffle(popularity)  # popular items are spread over the id range
    user_f = rng.normal(0, 1, (spec.users, spec.factors)) / np.sqrt(spec.factors)
    item_f = rng.normal(0, 1, (spec.items, spec.factors)) / np.sqrt(spec.factors)
    user_bias = rng.normal(0, 0.4, spec.users)
    item_bias = rng.normal(0, 0.5, spec.items) + 0.4 * np.log(popularity / popularity.mean())
    item_bias -= item_bias.mean()
    sigma = 0.8
    activity = rng.lognormal(np.log(spec.ratings_per_user) - sigma**2 / 2, sigma, spec.users)
    counts = np.clip(activity.round().astype(int), 5, max(5, spec.items // 2))
    counts = np.minimum(counts, spec.items)
    for u in range(spec.users):
        affinity = item_f @ user_f[u]
        weights = popularity * np.exp(1.5 * affinity)  # users rate what they expect to like
        chosen = rng.choice(spec.items, size=counts[u], replace=False, p=weights / weights.sum())
        raw = 3.0 + user_bias[u] + item_bias[chosen] + 1.2 * affinity[chosen]
        stars = np.clip(np.rint(raw + rng.normal(0, 0.6, len(chosen))), 1, 5)
        times = START_EPOCH + np.sort(rng.uniform(0, 365 * 86400, len(chosen)))
        user = str(u + 1)
        for item, star, stamp in zip(chosen.tolist(), stars.tolist(), times.tolist()):
            yield user, f"item-{item + 1:05d}", star, round(stamp)


def read_movielens(path: Path) -> Iterator[Row]:
    """Rows of a MovieLens folder: `ratings.csv` (ml-latest*, ml-25m) or `u.data` (ml-100k)."""
    path = Path(path)
    if (path / "ratings.csv").is_file():
        with open(path / "ratings.csv", newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader)
            if header[:4] != ["userId", "movieId", "rating", "timestamp"]:
                raise ValueError(f"{path / 'ratings.csv'}: unexpected header {header}")
            for user, item, rating, stamp in reader:
                yield user, item, float(rating), float(stamp)
    elif (path / "u.data").is_file():
        with open(path / "u.data", encoding="latin-1") as handle:
            for line in handle:
                user, item, rating, stamp = line.split("\t")
                yield user, item, float(rating), float(stamp)
    else:
        raise FileNotFoundError(f"{path} holds neither ratings.csv nor u.data (a MovieLens folder)")


def load_ratings(conn: Any, rows: Iterable[Row], source: SourceTable) -> int:
    """(Re)create the source table and fill it with COPY; returns the number of rows loaded.

    Columns: user and item as text, rating as real, timestamp (when the mapping names one) as
    timestamptz, which is what an application's ratings table typically looks like.
    """
    table = (
        sql.SQL("{}.{}").format(sql.Identifier(source.schema), sql.Identifier(source.table))
        if source.schema
        else sql.Identifier(source.table)
    )
    columns = [
        sql.SQL("{} text NOT NULL").format(sql.Identifier(source.user_column)),
        sql.SQL("{} text NOT NULL").format(sql.Identifier(source.item_column)),
        sql.SQL("{} real NOT NULL").format(sql.Identifier(source.rating_column)),
    ]
    if source.timestamp_column:
        columns.append(sql.SQL("{} timestamptz").format(sql.Identifier(source.timestamp_column)))
    copy = sql.SQL("COPY {} FROM STDIN WITH (FORMAT csv)").format(table)
    total = 0
    with conn.cursor() as cursor:
        cursor.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
        cursor.execute(sql.SQL("CREATE TABLE {} ({})").format(table, sql.SQL(", ").join(columns)))
        batch = io.StringIO()
        writer = csv.writer(batch)
        for user, item, rating, stamp in rows:
            record: list[Any] = [user, item, rating]
            if source.timestamp_column:
                record.append(datetime.fromtimestamp(stamp, UTC).isoformat())
            writer.writerow(record)
            total += 1
            if total % COPY_BATCH_ROWS == 0:
                batch.seek(0)
                cursor.copy_expert(copy, batch)
                batch.seek(0)
                batch.truncate()
        batch.seek(0)
        cursor.copy_expert(copy, batch)
    conn.commit()
    return total
