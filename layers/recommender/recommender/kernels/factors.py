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
from ..selection import bounded_candidates, rank_candidates, seen_pairs
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


def _folded(factors: np.ndarray | None, *columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`[factors, columns...]` as one float32 matrix, and each row's float64 norm, without the
    float64 copy a stack would make (users: `[p, 1, mu + bu]`; items: `[q, bi, 1]`)."""
    width = (0 if factors is None else factors.shape[1]) + len(columns)
    rows = len(factors) if factors is not None else len(columns[0])
    folded = np.empty((rows, width), np.float32)
    squares = np.zeros(rows)
    if factors is not None:
        folded[:, : factors.shape[1]] = factors
        squares += np.einsum("ij,ij->i", factors, factors)
    for offset, column in enumerate(columns, start=width - len(columns)):
        folded[:, offset] = column
        squares += column * column
    return folded, np.sqrt(squares)


class FactorKernel(Kernel):
    """Exact top-N at the speed of one float32 matrix product per block, whatever the factors.

    Once the product is done, selecting every row's top-N is what costs most, so no row is
    partitioned in full:
    1. one float32 product scores a block against every item, the biases folded in as two extra
       factor columns (`[p, 1, mu + bu] . [q, bi, 1]`), and the items each user rated are set to -inf;
    2. `selection.bounded_candidates` bounds each row by its own group maxima and keeps the items
       within twice float32's error of the row's N-th best (a bound on that error for the row:
       about d 2^-24 |p| |q|). Every item of the exact top-N, ties included, is among them, and
       the cost is one pass over the block whatever the factors look like;
    3. those few candidates are rescored in float64 exactly as `scores` does and ranked under the
       product's rule. Rows the bound leaves open (scores tied across the row, fewer unseen items
       than N) are scored in float64 in full and selected whole.
    The result is the exact float64 top-N, and memory per block is bounded by `block_rows`.

    float32 holds magnitudes up to 3.4e38 only. Where a block's scores could reach
    FLOAT32_LIMIT (by Cauchy-Schwarz, |score| <= |user row| |item row|, and no partial sum is
    larger), the float32 product would overflow and the bound drop or misrank items, so such
    a block is scored in float64 in full, in sub-blocks within the same memory bound.
    """

    thread_safe = True  # its only state between calls is per thread: the score buffers

    #: users x items float32 scores per block row and item (bytes), with room for the gathered
    #: candidates (at most groups_kept(N) x (GROUP_SIZE + 1) per row)
    bytes_per_cell = 5

    @classmethod
    def user_layout(cls, arrays: dict[str, np.ndarray]) -> UserLayout:
        return UserLayout(rows=tuple(name for name in ("pu", "bu") if name in arrays))

    def __init__(self, model: Any) -> None:
        super().__init__(model)
        a = self.arrays
        self.biased = "bu" in a
        with np.errstate(over="ignore", invalid="ignore"):  # huge factors: the float64 path
            if self.biased:
                users32, user_norms = _folded(
                    a.get("pu"), np.ones(model.n_users), model.global_mean + a["bu"]
                )
                items32, item_norms = _folded(a.get("qi"), a["bi"], np.ones(model.n_items))
            else:
                users32, user_norms = _folded(a["pu"])
                items32, item_norms = _folded(a["qi"])
        self._users32, self._user_norms = users32, user_norms  # rows past float32's range never used
        self._item_norm_max = float(item_norms.max(initial=0.0))
        self._items32 = items32 if self._item_norm_max < FLOAT32_LIMIT else items32[:0]
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

    def _buffer(self, rows: int) -> np.ndarray:
        """A score buffer reused from block to block (one per thread: blocks, and the local
        engine's shards, run on threads). A fresh one would cost a page fault per 4 KiB."""
        held = getattr(self._local, "scores", None)
        if held is None or held.shape[0] < rows:
            held = np.empty((rows, self.model.n_items), np.float32)
            self._local.scores = held
        block: np.ndarray = held[:rows]
        return block

    def _exact(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """`scores` for (user, item) pairs, term by term in the same order. Each dot product is
        summed over its own row, so a pair's value does not depend on which pairs share its
        call (einsum's vectorised paths do), nor therefore on the size of the blocks."""
        a = self.arrays
        if self.biased:
            exact: np.ndarray = (self.model.global_mean + a["bu"][users]) + a["bi"][items]
            if "pu" not in a:  # BaselineOnly
                return exact
        products = a["pu"][users]
        products *= a["qi"][items]
        dots: np.ndarray = products.sum(axis=1)
        if not self.biased:
            return dots
        exact += dots
        return exact

    def top_n(self, users: np.ndarray, n: int, tie_rank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = min(n, self.model.n_items)
        rows = len(users)
        if k == 0 or rows == 0:
            return np.zeros((rows, k), dtype=np.int64), np.full((rows, k), -np.inf)
        user_norms = self._user_norms[users]
        if not float(user_norms.max(initial=0.0)) * self._item_norm_max < FLOAT32_LIMIT:
            with np.errstate(over="ignore", invalid="ignore"):  # beyond float64: check_lists says so
                return self._top_n_float64(users, n, tie_rank)
        scores = self._buffer(rows)
        np.matmul(self._users32[users], self._items32.T, out=scores)
        seen_rows, seen_items = seen_pairs(self.model, users)
        scores[seen_rows, seen_items] = -np.inf
        # float32 error of a dot product of length d: at most about d 2^-24 |p| |q| (inputs rounded
        # to float32 included); twice that, so the margin covers both sides of the cut
        error = (self._items32.shape[1] + 2) * 2.0**-24 * user_norms * self._item_norm_max
        found = bounded_candidates(scores, k, 2 * error + 1e-30)
        exact = self._exact(users[found.rows], found.items)
        picked, values = rank_candidates(rows, k, found.rows, found.items, exact, tie_rank)
        if found.unbounded.size:
            open_rows = found.unbounded
            picked[open_rows], values[open_rows] = self._top_n_float64(users[open_rows], n, tie_rank)
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
