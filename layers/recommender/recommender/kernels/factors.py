"""Factor models: SVD, SVD++, NMF and BaselineOnly share one estimate,

    est = mu + bu[u] + bi[i] + qi[i] . p[u]      (biased)
    est = qi[i] . p[u]                            (SVD and NMF with biased=False)

where p[u] is the user's factors (`pu`), and for SVD++ `pu[u] + |I(u)|^-1/2 * sum of yj over the
items u rated`, computed once in Train exactly as Surprise computes it. BaselineOnly has no
factors. Terms are added in Surprise's order so that the float results agree.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from ..model import UserLayout
from ..selection import seen_pairs
from . import SCORE_BLOCK_BYTES, Kernel, register, rows_within

#: |score| bound below which a float32 product cannot overflow (float32's largest is 3.4e38)
FLOAT32_LIMIT = 1e37


def _biases(algo: Any) -> dict[str, np.ndarray]:
    return {"bu": np.asarray(algo.bu, dtype=np.float64), "bi": np.asarray(algo.bi, dtype=np.float64)}


def export_svd(algo: Any, trainset: Any) -> dict[str, np.ndarray]:
    """SVD and NMF: factors, and biases when the model is biased."""
    arrays = {"pu": np.asarray(algo.pu, dtype=np.float64), "qi": np.asarray(algo.qi, dtype=np.float64)}
    if algo.biased:
        arrays.update(_biases(algo))
    return arrays


def export_svdpp(algo: Any, trainset: Any) -> dict[str, np.ndarray]:
    """SVD++: the implicit-feedback term folded into each user's factors, as Surprise sums it."""
    pu = np.asarray(algo.pu, dtype=np.float64)
    effective = np.empty_like(pu)
    for u in range(trainset.n_users):
        rated = trainset.ur[u]
        implicit = sum(algo.yj[j] for (j, _) in rated) / np.sqrt(len(rated))
        effective[u] = pu[u] + implicit
    return {"pu": effective, "qi": np.asarray(algo.qi, dtype=np.float64), **_biases(algo)}


def export_baseline(algo: Any, trainset: Any) -> dict[str, np.ndarray]:
    return _biases(algo)


class FactorKernel(Kernel):
    """Exact top-N at the speed of one float32 matrix product per block.

    Selecting the top-N of every row of a users x items matrix is what costs most once the
    product is done, so no row is partitioned in full:
    1. one float32 product scores a block against every item, the biases folded in as two extra
       factor columns (`[p, 1, mu + bu] . [q, bi, 1]`);
    2. a per-row threshold is the N-th best score among a small sample of items likely to rank
       high for anyone (highest `bi + |q|`). It cannot exceed the row's true N-th best score;
    3. the threshold is lowered by twice a bound on float32's error for that row, so every item
       that could be in the exact top-N passes, and items clearly below it are dropped in one
       vectorised comparison;
    4. the few survivors are rescored in float64 exactly as `scores` does and ranked under the
       product's rule.
    The result is the exact float64 top-N, and memory per block is bounded by `block_rows`.

    float32 holds magnitudes up to 3.4e38 only. Where a block's scores could reach
    FLOAT32_LIMIT (by Cauchy-Schwarz, |score| <= |user row| |item row|, and no partial sum is
    larger), the float32 product would overflow and the prefilter drop or misrank items, so such
    a block is scored in float64 in full, in sub-blocks within the same memory bound.
    """

    #: users x items float32 scores plus a boolean mask, per block row and item (bytes)
    bytes_per_cell = 5
    #: the sample: this fraction of the catalogue, but at least SAMPLE_MIN items and 4 N
    sample_fraction = 0.02
    sample_min = 64

    @classmethod
    def user_layout(cls, arrays: dict[str, np.ndarray]) -> UserLayout:
        return UserLayout(rows=tuple(name for name in ("pu", "bu") if name in arrays))

    def __init__(self, model: Any) -> None:
        super().__init__(model)
        a = self.arrays
        self.biased = "bu" in a
        item_cols = [a["qi"]] if "qi" in a else []
        if self.biased:
            item_cols += [a["bi"][:, None], np.ones((model.n_items, 1))]
        self._items64 = np.hstack(item_cols) if item_cols else np.zeros((model.n_items, 0))
        with np.errstate(over="ignore", invalid="ignore"):  # huge factors: the float64 path
            self._item_norm_max = float(np.linalg.norm(self._items64, axis=1).max(initial=0.0))
            fits = self._item_norm_max < FLOAT32_LIMIT
            self._items32 = np.ascontiguousarray(
                self._items64 if fits else self._items64[:0], dtype=np.float32
            )
            typical_user = float(np.linalg.norm(a["pu"], axis=1).mean()) if "pu" in a else 0.0
            promise = np.linalg.norm(a["qi"], axis=1) * typical_user if "qi" in a else np.zeros(model.n_items)
            if self.biased:
                promise = promise + a["bi"]
        self._by_promise = np.argsort(-promise, kind="stable")
        self._local = threading.local()

    def scores(self, users: np.ndarray) -> np.ndarray:
        a = self.arrays
        if not self.biased:
            dots: np.ndarray = a["pu"][users] @ a["qi"].T
            return dots
        scores: np.ndarray = (self.model.global_mean + a["bu"][users])[:, None] + a["bi"][None, :]
        if "pu" in a:
            scores += a["pu"][users] @ a["qi"].T
        return scores

    def block_rows(self) -> int:
        return rows_within(SCORE_BLOCK_BYTES, self.bytes_per_cell, self.model.n_items)

    def _buffers(self, rows: int) -> tuple[np.ndarray, np.ndarray]:
        """Score and mask buffers reused from block to block (per thread: the local engine runs
        shards in threads). Fresh ones would cost a page fault for every 4 KiB of every block."""
        held = getattr(self._local, "buffers", None)
        if held is None or held[0].shape[0] < rows:
            size = max(rows, min(self.block_rows(), 1 << 20))
            held = (
                np.empty((size, self.model.n_items), np.float32),
                np.empty((size, self.model.n_items), bool),
            )
            self._local.buffers = held
        return held[0][:rows], held[1][:rows]

    def _users64(self, users: np.ndarray) -> np.ndarray:
        a = self.arrays
        cols = [a["pu"][users]] if "pu" in a else []
        if self.biased:
            cols += [np.ones((len(users), 1)), (self.model.global_mean + a["bu"][users])[:, None]]
        return np.hstack(cols) if cols else np.zeros((len(users), 0))

    def _exact(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """`scores` for (user, item) pairs, term by term in the same order."""
        a = self.arrays
        if not self.biased:
            dots: np.ndarray = np.einsum("ij,ij->i", a["pu"][users], a["qi"][items])
            return dots
        exact: np.ndarray = (self.model.global_mean + a["bu"][users]) + a["bi"][items]
        if "pu" in a:
            exact += np.einsum("ij,ij->i", a["pu"][users], a["qi"][items])
        return exact

    def top_n(self, users: np.ndarray, n: int, tie_rank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n_items = self.model.n_items
        k = min(n, n_items)
        rows = len(users)
        picked = np.zeros((rows, k), dtype=np.int64)
        values = np.full((rows, k), -np.inf)
        if k == 0 or rows == 0:
            return picked, values
        users64 = self._users64(users)
        with np.errstate(over="ignore", invalid="ignore"):
            user_norms = np.linalg.norm(users64, axis=1)
            if not float(user_norms.max(initial=0.0)) * self._item_norm_max < FLOAT32_LIMIT:
                return self._top_n_float64(users, n, tie_rank)
        scores, mask = self._buffers(rows)
        np.matmul(users64.astype(np.float32), self._items32.T, out=scores)
        seen_rows, seen_items = seen_pairs(self.model, users)
        scores[seen_rows, seen_items] = -np.inf

        sample_size = min(n_items, max(self.sample_min, 4 * k, int(n_items * self.sample_fraction)))
        sample = scores[:, self._by_promise[:sample_size]]
        if sample_size > k:
            threshold = np.partition(sample, sample_size - k, axis=1)[:, sample_size - k].astype(np.float64)
        else:
            threshold = np.full(rows, -np.inf)
        # float32 error of a dot product of length d: at most about d * 2^-24 * |p| |q|
        width = users64.shape[1] + 2
        error = width * 2.0**-24 * user_norms * self._item_norm_max
        threshold -= 2 * error + 1e-30
        np.greater_equal(scores, threshold.astype(np.float32)[:, None], out=mask)
        if not np.isfinite(threshold).all():
            mask &= scores > -np.inf
        # one 1-D scan of the flat mask, then divmod: cheaper than a 2-D nonzero's per-axis indices
        cand_rows, cand_items = np.divmod(np.flatnonzero(mask), n_items)

        exact = self._exact(users[cand_rows], cand_items)
        order = np.lexsort((tie_rank[cand_items], -exact, cand_rows))
        cand_rows, cand_items, exact = cand_rows[order], cand_items[order], exact[order]
        starts = np.searchsorted(cand_rows, np.arange(rows))
        rank = np.arange(len(cand_rows)) - starts[cand_rows]
        keep = rank < k
        picked[cand_rows[keep], rank[keep]] = cand_items[keep]
        values[cand_rows[keep], rank[keep]] = exact[keep]
        return picked, values

    def _top_n_float64(
        self, users: np.ndarray, n: int, tie_rank: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The generic top-n (full float64 scores), in sub-blocks within the memory bound."""
        step = Kernel.block_rows(self)
        parts = [
            Kernel.top_n(self, users[start : start + step], n, tie_rank)
            for start in range(0, len(users), step)
        ]
        return np.concatenate([p for p, _ in parts]), np.concatenate([v for _, v in parts])


register("SVD", "NMF", export=export_svd, kernel=FactorKernel)
register("SVDpp", export=export_svdpp, kernel=FactorKernel)
register("BaselineOnly", export=export_baseline, kernel=FactorKernel)
