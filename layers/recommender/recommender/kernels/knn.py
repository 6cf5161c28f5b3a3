"""k-NN models: KNNBasic, KNNWithMeans, KNNWithZScore and KNNBaseline, user- or item-based.

Surprise's `estimate(u, i)` is symmetric in x and y (x = u and y = i when user-based, else the
reverse): the candidates are `yr[y]`, the (x2, r) pairs of the ratings of y in Train's order;
the neighbours are `heapq.nlargest(k, candidates, key=sim[x, x2])`, that is the first k of a
STABLE descending sort (among equal similarities the earlier candidate wins, and ties are common
with integer stars); only neighbours with sim > 0 count (`actual_k`); then

    Basic     est = sum(sim * r) / sum(sim)                       (too few: PredictionImpossible)
    Means     est = mu[x] + sum(sim * (r - mu[x2])) / sum(sim)
    ZScore    est = mu[x] + sum(sim * (r - mu[x2]) / sigma[x2]) / sum(sim) * sigma[x]
    Baseline  est = b(u, i) + sum(sim * (r - b(x2, y))) / sum(sim)   b = mu + bu + bi

and when actual_k < min_k, or no neighbour counts (sum(sim) == 0, a ZeroDivisionError that
Surprise catches), the estimate is the term before the `+`; KNNBasic's impossible prediction is
the global mean, `default_prediction()`.

The kernel does the same with whole arrays, bit for bit (tests/unit/test_knn_kernel.py checks
equality, not closeness). For a chunk of (x, y) pairs, with the candidates padded to a common
width (padding last):
- order: each similarity is replaced by its dense rank in its row of `sim` (0 for the largest,
  equal values equal ranks: ranked once per row) and packed with the candidate's position into
  one integer, (rank << bits) | position. Sorting those integers (a plain, fast integer sort)
  IS the stable descending sort of the similarities, which is nlargest's order, ties included;
  the first k are the neighbours. Surprise's similarities are always finite (its Cython raises
  on 0/0, which `training.fit` reports as a SimilarityError), so the ranks are total;
- sums: sim and sim * term (term r, r - mu[x2] or r - b(x2, y), computed at load with Surprise's
  operations) are added left to right in that order by `cumsum`, as Surprise's `+=` loop does;
  the positive similarities come first, and zeroing the rest adds nothing;
- the fallbacks and the final `+`, `/`, `*` are Surprise's own, in its order.
ZScore's sigmas are the fitted object's: where every rating is equal, `training.fit` has set
Surprise's sigmas of 0 to 1.0 (the z-score is then 0, not 0/0), and the kernel equals Surprise's
estimate of that object.
So equal estimates stay equal, and the ranking's tie rule sees exactly Surprise's values.

Memory: pairs are grouped by candidate count (padding within 25 %) and chunked so that a chunk's
temporaries (BYTES_PER_CANDIDATE per padded candidate) stay within a fixed share of
SCORE_BLOCK_BYTES whatever the block size; the floor is one pair's candidates (at most a row of
`sim`). User-based blocks rank their users' rows, a bounded number at a time; item-based ranks
every item's row once and keeps them (uint16 while n_items < 65535: a quarter of `sim`).
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..model import UserLayout
from . import SCORE_BLOCK_BYTES, Kernel, register, rows_within


class KnnVariant(enum.Enum):
    """Which of Surprise's four estimates (the formulas above) a k-NN model makes; the value is
    the algorithm's name, which is also the model's `kind`."""

    BASIC = "KNNBasic"
    WITH_MEANS = "KNNWithMeans"
    WITH_Z_SCORE = "KNNWithZScore"
    BASELINE = "KNNBaseline"


#: peak bytes per padded candidate of a chunk (measured about 50 when all are neighbours): the
#: packed keys, then for the first k entries, similarities, masks, terms and their running sums
BYTES_PER_CANDIDATE = 64
#: consecutive widths of a group of pairs differ by at most this factor (bounds the padding)
WIDTH_GROWTH = 1.25
#: peak bytes per similarity while ranking rows: -sim, its argsort, the sorted copy, the ranks
RANKING_BYTES = 32


def export_knn(algo: Any, trainset: Any) -> dict[str, np.ndarray]:
    """The similarity matrix, k and min_k, the candidates `yr` as CSR in Surprise's order, and
    the per-x means and sigmas (WithMeans, WithZScore) or the baselines (Baseline)."""
    user_based = bool(algo.sim_options["user_based"])
    yr = trainset.ir if user_based else trainset.ur
    n_y = trainset.n_items if user_based else trainset.n_users
    indptr = np.zeros(n_y + 1, dtype=np.int64)
    np.cumsum([len(yr[y]) for y in range(n_y)], out=indptr[1:])
    total = int(indptr[-1])
    arrays = {
        "sim": np.asarray(algo.sim, dtype=np.float64),
        "k": np.int64(algo.k),
        "min_k": np.float64(algo.min_k),
        "user_based": np.int64(user_based),
        "yr_indptr": indptr,
        "yr_x": np.fromiter((x for y in range(n_y) for x, _ in yr[y]), dtype=np.int64, count=total),
        "yr_rating": np.fromiter((r for y in range(n_y) for _, r in yr[y]), dtype=np.float64, count=total),
    }
    name = type(algo).__name__
    if name in ("KNNWithMeans", "KNNWithZScore"):
        arrays["means"] = np.asarray(algo.means, dtype=np.float64)
    if name == "KNNWithZScore":
        arrays["sigmas"] = np.asarray(algo.sigmas, dtype=np.float64)
    if name == "KNNBaseline":
        arrays["bu"] = np.asarray(algo.bu, dtype=np.float64)
        arrays["bi"] = np.asarray(algo.bi, dtype=np.float64)
    return {key: np.asarray(value) for key, value in arrays.items()}


def _sequential_sum(values: np.ndarray) -> np.ndarray:
    """Sum over the last axis strictly left to right, as a Python `+=` loop adds."""
    if values.shape[-1] == 0:
        return np.zeros(values.shape[:-1])
    total: np.ndarray = np.cumsum(values, axis=-1)[..., -1]
    return total


class KNNKernel(Kernel):
    # The block's scores, then selecting the top-n (scores, -scores, argpartition). The rest of
    # SCORE_BLOCK_BYTES bounds the temporaries: half for a chunk's candidates, a quarter for the
    # rank rows of a user-based block, a quarter for computing them.
    block_matrices = 3

    @classmethod
    def user_layout(cls, arrays: dict[str, np.ndarray]) -> UserLayout | None:
        """Item-based: a user's candidates are the items they rated (`yr` is Surprise's `ur`, in
        the order of `seen`). User-based scoring reads every user's ratings: no parts."""
        if bool(arrays["user_based"]):
            return None
        return UserLayout(
            rows=("bu",) if "bu" in arrays else (),
            ratings=("yr_x", "yr_rating"),
            indptr=("yr_indptr",),
        )

    def __init__(self, model: Any) -> None:
        super().__init__(model)
        a = self.arrays
        self.variant = KnnVariant(model.kind)
        self.sim: np.ndarray = a["sim"]
        self.sim_flat = np.ascontiguousarray(self.sim).reshape(-1)
        self.n_x = self.sim.shape[0]
        self.k = int(a["k"])
        self.min_k = float(a["min_k"])
        self.user_based = bool(a["user_based"])
        self.indptr: np.ndarray = a["yr_indptr"]
        self.cand_x: np.ndarray = a["yr_x"]
        gm = self.model.global_mean
        rating: np.ndarray = a["yr_rating"]
        # The candidate's own term, as Surprise computes it: r, r - mu[x2], or r - b(x2, y)
        if self.variant in (KnnVariant.WITH_MEANS, KnnVariant.WITH_Z_SCORE):
            self.dev = rating - a["means"][self.cand_x]
        elif self.variant is KnnVariant.BASELINE:
            bx, by = (a["bu"], a["bi"]) if self.user_based else (a["bi"], a["bu"])
            y_of = np.repeat(np.arange(len(self.indptr) - 1), np.diff(self.indptr))
            self.dev = rating - ((gm + bx[self.cand_x]) + by[y_of])
        else:
            self.dev = rating
        self.cand_sigma: np.ndarray | None = (
            a["sigmas"][self.cand_x] if self.variant is KnnVariant.WITH_Z_SCORE else None
        )
        temporaries = SCORE_BLOCK_BYTES * (self.block_matrices - 1) // self.block_matrices
        self.chunk_candidates = max(1, temporaries // 2 // BYTES_PER_CANDIDATE)
        self.rank_bytes = temporaries // 4
        self.rank_dtype = np.uint16 if self.n_x < np.iinfo(np.uint16).max else np.int32
        self._all_ranks: np.ndarray | None = None  # item-based: every item's, computed once

    def _ranks(self, xs: np.ndarray) -> np.ndarray:
        """Dense rank of sim[x, x2] in row x, for each x in xs: 0 for the largest value, equal
        values equal ranks. Sorting (rank, candidate position) is then nlargest's order."""
        ranks = np.empty((len(xs), self.n_x), dtype=self.rank_dtype)
        rows = rows_within(self.rank_bytes, RANKING_BYTES, self.n_x)
        for r0 in range(0, len(xs), rows):
            keys = -self.sim[xs[r0 : r0 + rows]]
            order = np.argsort(keys, axis=1)  # any order among equal values
            ordered = np.take_along_axis(keys, order, axis=1)
            dense = np.zeros(ordered.shape, dtype=self.rank_dtype)
            np.cumsum(ordered[:, 1:] != ordered[:, :-1], axis=1, dtype=self.rank_dtype, out=dense[:, 1:])
            np.put_along_axis(ranks[r0 : r0 + rows], order, dense, axis=1)
        return ranks

    def _base(self, users: np.ndarray) -> np.ndarray:
        """The estimate without neighbours: global mean, mu[x], or the baseline b(u, i)."""
        a, n_items = self.arrays, self.model.n_items
        gm = self.model.global_mean
        if self.variant is KnnVariant.BASIC:
            return np.full((len(users), n_items), gm)
        if self.variant is KnnVariant.BASELINE:
            base: np.ndarray = (gm + a["bu"][users])[:, None] + a["bi"][None, :]
            return base
        if self.user_based:
            return np.repeat(a["means"][users][:, None], n_items, axis=1)
        return np.repeat(a["means"][None, :], len(users), axis=0)

    def _chunks(self, lengths: np.ndarray, n_x: int) -> Iterator[tuple[np.ndarray, slice]]:
        """(positions of ys, slice of xs) covering every pair, grouped by candidate count."""
        order = np.argsort(lengths, kind="stable")
        widths = np.maximum(lengths[order], 1)
        group = np.floor(np.log(widths) / np.log(WIDTH_GROWTH)).astype(np.int64)
        bounds = [0, *(np.flatnonzero(np.diff(group)) + 1).tolist(), len(order)]
        for start, stop in itertools.pairwise(bounds):
            pairs = max(1, self.chunk_candidates // int(widths[stop - 1]))
            if n_x <= pairs:
                step = pairs // n_x
                for g in range(start, stop, step):
                    yield order[g : min(g + step, stop)], slice(0, n_x)
            else:
                for g in range(start, stop):
                    for x0 in range(0, n_x, pairs):
                        yield order[g : g + 1], slice(x0, min(x0 + pairs, n_x))

    def _estimates(self, xs: np.ndarray, ranks: np.ndarray, ys: np.ndarray, base: np.ndarray) -> np.ndarray:
        """Surprise's estimate for every (x in xs, y in ys), shape (len(xs), len(ys)), given the
        rows of `_ranks` for xs and the estimate without neighbours `base`, of that shape."""
        if self.cand_x.size == 0:
            return base
        starts = self.indptr[ys]
        lengths = self.indptr[ys + 1] - starts
        width = max(1, int(lengths.max()))
        offsets = np.arange(width)
        valid = offsets[None, :] < lengths[:, None]
        entry = np.where(valid, starts[:, None] + offsets[None, :], 0)  # ys x width, into yr_*

        # key = (rank << bits) | candidate position, padding ranked last: sorting the keys is a
        # stable descending sort of the similarities, as heapq.nlargest orders them
        bits = max(1, (width - 1).bit_length())
        wide = (self.n_x + 1) << bits >= np.iinfo(np.int32).max
        keys = ranks[:, self.cand_x[entry]].astype(np.int64 if wide else np.int32)
        keys[:, ~valid] = self.n_x
        np.left_shift(keys, bits, out=keys)
        np.bitwise_or(keys, offsets.astype(keys.dtype), out=keys)
        keys.sort(axis=-1)
        first = keys[..., : max(0, min(self.k, width))]
        del keys
        real = np.right_shift(first, bits) < self.n_x
        position = np.bitwise_and(first, (1 << bits) - 1)
        taken = np.minimum(position + starts[None, :, None], self.cand_x.size - 1)
        del first, position
        flat = np.take(self.cand_x, taken)
        flat += (xs * self.n_x)[:, None, None]
        sims = np.take(self.sim_flat, flat)
        del flat

        # Surprise's loop over the neighbours, left to right: the positive ones come first, so
        # zeroing the rest adds nothing and leaves every partial sum as Surprise has it
        positive = real & (sims > 0)
        actual_k = np.count_nonzero(positive, axis=-1)
        sims *= positive
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            sum_sim = _sequential_sum(sims)
            terms = np.take(self.dev, taken)
            terms *= sims
            if self.cand_sigma is not None:
                terms /= np.take(self.cand_sigma, taken)
                terms[~positive] = 0.0  # sigma 0 (every rating equal) would put 0/0 there
            del sims, taken, positive
            sum_terms = _sequential_sum(terms)
            del terms
            ratio = sum_terms / sum_sim
            if self.variant is KnnVariant.WITH_Z_SCORE:
                ratio *= self.arrays["sigmas"][xs][:, None]
            # KNNBasic with min_k <= 0 and no neighbour: Surprise raises ZeroDivisionError
            # (not PredictionImpossible); the global mean is the only sensible score there.
            ok = (actual_k >= self.min_k) & (actual_k > 0)
            return np.where(ok, ratio if self.variant is KnnVariant.BASIC else base + ratio, base)

    def scores(self, users: np.ndarray) -> np.ndarray:
        users = np.asarray(users, dtype=np.int64)
        est = self._base(users)
        if len(users) == 0:
            return est
        if self.user_based:  # x = the block's users, y = every item
            items = np.arange(self.model.n_items)
            lengths = self.indptr[items + 1] - self.indptr[items]
            step = rows_within(self.rank_bytes, np.dtype(self.rank_dtype).itemsize, self.n_x)
            for r0 in range(0, len(users), step):
                xs = users[r0 : r0 + step]
                ranks = self._ranks(xs)
                for ys, rows in self._chunks(lengths, len(xs)):
                    block = slice(r0 + rows.start, r0 + rows.stop)
                    est[block, ys] = self._estimates(xs[rows], ranks[rows], ys, est[block, ys])
        else:  # x = every item, y = the block's users
            if self._all_ranks is None:
                self._all_ranks = self._ranks(np.arange(self.n_x))
            lengths = self.indptr[users + 1] - self.indptr[users]
            for ys, cols in self._chunks(lengths, self.model.n_items):
                xs = np.arange(self.model.n_items)[cols]
                est[ys, cols] = self._estimates(xs, self._all_ranks[cols], users[ys], est[ys, cols].T).T
        return est


register(*(variant.value for variant in KnnVariant), export=export_knn, kernel=KNNKernel)
