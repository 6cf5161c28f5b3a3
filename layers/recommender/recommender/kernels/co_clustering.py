"""CoClustering: Surprise's estimate for a known user and item (every pair a kernel scores) is

    est = avg_cocltr[cu, ci] + user_mean[u] - avg_cltr_u[cu] + item_mean[i] - avg_cltr_i[ci]

with cu, ci the user's and the item's clusters. The terms are added left to right as Surprise
adds them, so the float results are identical, not merely close.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..model import UserLayout
from . import Kernel, register, rows_within


def export_co_clustering(algo: Any, trainset: Any) -> dict[str, np.ndarray]:
    return {
        "cltr_u": np.asarray(algo.cltr_u, dtype=np.int64),
        "cltr_i": np.asarray(algo.cltr_i, dtype=np.int64),
        "avg_cocltr": np.asarray(algo.avg_cocltr, dtype=np.float64),
        "avg_cltr_u": np.asarray(algo.avg_cltr_u, dtype=np.float64),
        "avg_cltr_i": np.asarray(algo.avg_cltr_i, dtype=np.float64),
        "user_mean": np.asarray(algo.user_mean, dtype=np.float64),
        "item_mean": np.asarray(algo.item_mean, dtype=np.float64),
    }


#: rows of scores built at a time: the five passes over them then run in cache, not memory
CHUNK_BYTES = 2 * 1024 * 1024


class CoClusteringKernel(Kernel):
    thread_safe = True  # no state kept between calls
    # The scores are the only users x items matrix: every term is added in place, broadcast.
    block_matrices = 1

    @classmethod
    def user_layout(cls, arrays: dict[str, np.ndarray]) -> UserLayout:
        return UserLayout(rows=("cltr_u", "user_mean"))

    def scores(self, users: np.ndarray) -> np.ndarray:
        a = self.arrays
        cu = a["cltr_u"][users]
        ci = a["cltr_i"]
        item_cluster_mean = a["avg_cltr_i"][ci]
        scores = np.empty((len(users), self.model.n_items))
        step = rows_within(CHUNK_BYTES, 8, self.model.n_items)
        for start in range(0, len(users), step):
            rows = slice(start, start + step)
            chunk = scores[rows]
            np.take(a["avg_cocltr"][cu[rows]], ci, axis=1, out=chunk)
            chunk += a["user_mean"][users[rows]][:, None]
            chunk -= a["avg_cltr_u"][cu[rows]][:, None]
            chunk += a["item_mean"][None, :]
            chunk -= item_cluster_mean[None, :]
        return scores


register("CoClustering", export=export_co_clustering, kernel=CoClusteringKernel)
