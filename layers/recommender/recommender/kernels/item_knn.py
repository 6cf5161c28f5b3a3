"""ItemKNN (recommender/algorithms/implicit_knn.py): est(u, i) = X_u . S[:, i], a ranking score, with
S the sparse items x items similarity.

Arrays: S as CSR (`sim_indptr`, `sim_indices`, `sim_data`: row j holds item j's neighbours), `x`
(X's value of each rating, in the order of the model's `seen_indices`; 0.0 for a rating left out
by `min_rating`), the confidence rule for fold-in (`confidence`, `has_min_rating`, `min_rating`),
and `weighting` and `K` for the record.

A block of users is scored without scipy: every rating (user r, item j, value v) of the block
expands into S's row j, and each (r, neighbour i, v S[j, i]) is added into the block's scores by
one `np.bincount` over the flat index r n_items + i. The expansion holds at most K entries per
rating and is cut into chunks of at most SCORE_BLOCK_BYTES, so memory stays bounded per block
whatever the users rated. The sums are the model's estimate up to the order of float additions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..model import UserLayout, csr_rows
from . import SCORE_BLOCK_BYTES, Kernel, register
from .als import confidence_arrays

WEIGHTING_CODES = {"bm25": 0, "tfidf": 1, "cosine": 2}
#: bytes held per expanded (rating, neighbour) entry: flat index, weight and their temporaries
BYTES_PER_ENTRY = 40


def export_item_knn(algo: Any, trainset: Any) -> dict[str, np.ndarray]:
    return {
        "sim_indptr": np.asarray(algo.sim_indptr, dtype=np.int64),
        "sim_indices": np.asarray(algo.sim_indices, dtype=np.int64),
        "sim_data": np.asarray(algo.sim_data, dtype=np.float64),
        "x": np.asarray(algo.user_values, dtype=np.float64),
        "weighting": np.asarray(WEIGHTING_CODES[algo.weighting], dtype=np.int64),
        "K": np.asarray(algo.K, dtype=np.int64),
        **confidence_arrays(algo),
    }


def sparse_rows_product(
    rows: np.ndarray,
    items: np.ndarray,
    values: np.ndarray,
    n_rows: int,
    arrays: dict[str, np.ndarray],
    n_items: int,
) -> np.ndarray:
    """Dense (n_rows, n_items) result of the sparse rows (rows[k], items[k], values[k]) times S,
    numpy only; also fold-in's product for one row."""
    indptr, indices, data = arrays["sim_indptr"], arrays["sim_indices"], arrays["sim_data"]
    out = np.zeros(n_rows * n_items, dtype=np.float64)
    kept = values != 0
    rows, items, values = rows[kept], items[kept], values[kept]
    starts, lengths = indptr[items], indptr[items + 1] - indptr[items]
    ends = np.cumsum(lengths)
    budget = max(1, SCORE_BLOCK_BYTES // BYTES_PER_ENTRY)
    first = 0
    while first < len(items):
        # the ratings first..last expand into at most `budget` entries (at least one rating)
        done = int(ends[first - 1]) if first else 0
        last = max(first + 1, int(np.searchsorted(ends, done + budget, side="right")))
        count = lengths[first:last]
        offsets = np.cumsum(count) - count
        positions = np.repeat(starts[first:last] - offsets, count) + np.arange(int(count.sum()))
        flat = np.repeat(rows[first:last] * n_items, count) + indices[positions]
        weights = np.repeat(values[first:last], count) * data[positions]
        out += np.bincount(flat, weights=weights, minlength=n_rows * n_items)
        first = last
    return out.reshape(n_rows, n_items)


class ItemKNNKernel(Kernel):
    thread_safe = True  # no state kept between calls
    # Peak: the scores and one bincount result of the same size, plus one expansion chunk
    # (SCORE_BLOCK_BYTES). Selecting the top-n needs 3.
    block_matrices = 3

    @classmethod
    def user_layout(cls, arrays: dict[str, np.ndarray]) -> UserLayout:
        return UserLayout(ratings=("x",))

    def scores(self, users: np.ndarray) -> np.ndarray:
        model = self.model
        indptr, positions = csr_rows(model.seen_indptr, users)
        rows = np.repeat(np.arange(len(users)), np.diff(indptr))
        items = np.asarray(model.seen_indices[positions], dtype=np.int64)
        return sparse_rows_product(
            rows, items, self.arrays["x"][positions], len(users), self.arrays, model.n_items
        )


register("ItemKNN", export=export_item_knn, kernel=ItemKNNKernel)
