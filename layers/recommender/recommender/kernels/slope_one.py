"""SlopeOne: Surprise's estimate is

    est = user_mean[u] + mean of dev[i, j] over R_i(u)

where R_i(u) is the items j that u rated and that share at least one user with i (freq[i, j] > 0).
For a block of users, with H the 0/1 matrix of the items each user rated, both the sums and the
sizes of R_i(u) are matrix products: H @ dev.T and H @ related.T. The sums are exact up to the
order of float additions (BLAS adds in its own order: well within 1e-9 of Surprise).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..model import UserLayout
from ..selection import seen_pairs
from . import Kernel, register


def export_slope_one(algo: Any, trainset: Any) -> dict[str, np.ndarray]:
    """`dev` is Surprise's, zeroed where no user rated both items (Surprise leaves NaN there, and
    never reads it), so that a product with it needs no mask. `related` (freq > 0) is stored as
    float32 so BLAS multiplies it as is; its products are counts of at most n_items, exact in
    float32. Together they take 12 bytes per item pair, against Surprise's 16 (dev and freq)."""
    related = np.asarray(algo.freq) > 0
    return {
        "user_mean": np.asarray(algo.user_mean, dtype=np.float64),
        "dev": np.where(related, np.asarray(algo.dev, dtype=np.float64), 0.0),
        "related": related.astype(np.float32),
    }


class SlopeOneKernel(Kernel):
    thread_safe = True  # no state kept between calls
    # Peak: the 0/1 matrix in float64 and float32 (1.5) plus the sums (1); then the sums and the
    # counts (float32, 0.5). Selecting the top-n needs 3 too (scores, -scores, argpartition).
    block_matrices = 3

    @classmethod
    def user_layout(cls, arrays: dict[str, np.ndarray]) -> UserLayout:
        return UserLayout(rows=("user_mean",))

    def scores(self, users: np.ndarray) -> np.ndarray:
        a = self.arrays
        rows, items = seen_pairs(self.model, users)
        rated = np.zeros((len(users), self.model.n_items), dtype=np.float32)
        rated[rows, items] = 1.0
        sums: np.ndarray = rated.astype(np.float64) @ a["dev"].T
        counts = rated @ a["related"].T  # |R_i(u)|, exact
        del rated
        np.maximum(counts, 1.0, out=counts)  # an empty R_i(u) has a zero sum: est = user_mean
        np.divide(sums, counts, out=sums)
        sums += a["user_mean"][users][:, None]
        return sums


register("SlopeOne", export=export_slope_one, kernel=SlopeOneKernel)
