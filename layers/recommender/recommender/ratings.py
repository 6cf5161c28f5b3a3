"""Ratings as arrays, and the snapshot's columns: what every step shares about the data.

Apart from `dataset` (which needs psycopg2 to extract) so that reading a snapshot, fitting and
scoring import no database driver; `dataset` re-exports these names.
"""

from __future__ import annotations

from dataclasses import dataclass

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
