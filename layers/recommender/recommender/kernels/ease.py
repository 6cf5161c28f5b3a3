"""EASE (recommender/algorithms/ease.py): est(u, i) = X_u . B[:, i], a ranking score.

Arrays: `weights` (B, float64 n_items x n_items, as fitted), `x` (the values of X, one per rating,
in the order of the model's `seen_indices`: Surprise's `ur` order), `implicit` (for fold-in: how a
given rating becomes a value of X) and `reg` (for the record).

A block of users is scored as X[block] @ B, restricted to the items the block rated: with U their
union, X[block][:, U] @ B[U]. Users rate a small part of a catalogue, so this costs about
(ratings in the block) x n_items multiply-adds per user instead of n_items^2. B[U] is gathered in
chunks of rows of at most SCORE_BLOCK_BYTES. The sums are Surprise's up to the order of float
additions (BLAS adds in its own order: well within 1e-9); every known user and item has an estimate,
so the kernel never needs the fallback.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..model import UserLayout, csr_rows
from . import SCORE_BLOCK_BYTES, Kernel, register, rows_within


def export_ease(algo: Any, trainset: Any) -> dict[str, np.ndarray]:
    return {
        "weights": np.ascontiguousarray(algo.weights, dtype=np.float64),
        "x": np.asarray(algo.user_values, dtype=np.float64),
        "implicit": np.asarray(algo.implicit, dtype=np.int64),
        "reg": np.asarray(algo.reg, dtype=np.float64),
    }


class EASEKernel(Kernel):
    thread_safe = True  # no state kept between calls
    # Peak: the scores, the product being added to them, and the block's X over U (smaller);
    # plus one chunk of B's rows (SCORE_BLOCK_BYTES). Selecting the top-n needs 3.
    block_matrices = 3

    @classmethod
    def user_layout(cls, arrays: dict[str, np.ndarray]) -> UserLayout:
        return UserLayout(ratings=("x",))

    def _block_x(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(U, X[block][:, U]): the items the block rated and its rows of X over them."""
        model = self.model
        indptr, positions = csr_rows(model.seen_indptr, users)
        rows = np.repeat(np.arange(len(users)), np.diff(indptr))
        union, columns = np.unique(model.seen_indices[positions], return_inverse=True)
        x = np.zeros((len(users), len(union)), dtype=np.float64)
        np.add.at(x, (rows, columns), self.arrays["x"][positions])  # add.at: a repeated pair counts twice
        return union, x

    def scores(self, users: np.ndarray) -> np.ndarray:
        weights: np.ndarray = self.arrays["weights"]
        n_items = self.model.n_items
        union, x = self._block_x(users)
        if 2 * len(union) > n_items:  # most of the catalogue: B whole, without gathering it
            full = np.zeros((len(users), n_items), dtype=np.float64)
            full[:, union] = x
            dense: np.ndarray = full @ weights
            return dense
        out = np.zeros((len(users), n_items), dtype=np.float64)
        step = rows_within(SCORE_BLOCK_BYTES, 8, n_items)
        for start in range(0, len(union), step):
            out += x[:, start : start + step] @ weights[union[start : start + step]]
        return out


register("EASE", export=export_ease, kernel=EASEKernel)
