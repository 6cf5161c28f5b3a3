"""Ratings as arrays, and the snapshot's columns: what every step shares about the data.

Apart from `dataset` (which needs psycopg2 to extract) so that reading a snapshot, fitting and
scoring import no database driver; `dataset` re-exports these names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

SNAPSHOT_COLUMNS = ("user", "item", "rating")


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


def trainset_rows(trainset: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indptr, item indices, ratings): a trainset's ratings as CSR over inner user ids, in Surprise's
    `ur` order (the order of `ModelArrays.seen_indices`). Read from the product's ArrayTrainset arrays
    when it has them (no per-rating Python objects), else from any Trainset's `ur`."""
    if all(hasattr(trainset, name) for name in ("user_indptr", "user_items", "user_ratings")):
        return (
            np.asarray(trainset.user_indptr, dtype=np.int64),
            np.asarray(trainset.user_items, dtype=np.int64),
            np.asarray(trainset.user_ratings, dtype=np.float64),
        )
    n_users = trainset.n_users
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum([len(trainset.ur[u]) for u in range(n_users)], out=indptr[1:])
    total = int(indptr[-1])
    items = np.fromiter((i for u in range(n_users) for i, _ in trainset.ur[u]), dtype=np.int64, count=total)
    ratings = np.fromiter(
        (r for u in range(n_users) for _, r in trainset.ur[u]), dtype=np.float64, count=total
    )
    return indptr, items, ratings
