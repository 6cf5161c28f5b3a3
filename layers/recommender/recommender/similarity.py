"""Similar items ("more like this"): for a block of items, every other item's similarity, exactly,
from arrays; and each item's top-n under the product's ranking rule.

What "similar" means depends on the model (issue 17); this module holds the measures that need
only arrays a predictor already has:
- `factor_cosine`: the cosine of item factors, biases left out (SVD, SVD++, NMF, ALS). An item
  whose factors are all zero has no direction: its similarity to everything is 0, so it ties
  with every unrelated item rather than looking like a neighbour;
- `co_occurrence_cosine`: the cosine of the items' binary user vectors over the snapshot (how
  many users rated both, over the geometric mean of their counts), for models without an
  item-item notion of their own.
Then `top_similar` ranks a block of similarities: an item is never similar to itself, items with
fewer ratings than `min_support` neither get a list nor appear in one, and ties break as in the
user lists (more ratings first, then the lower inner id: `ModelArrays.tie_rank`).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .errors import ModelIntegrityError
from .kernels import SCORE_BLOCK_BYTES, rows_within
from .kernels.item_knn import sparse_rows_product
from .model import ModelArrays, csr_rows
from .scoring import ranked_blocks, scoring_threads
from .selection import bounded_candidates, rank_candidates, select_top_n


def factor_cosine(item_factors: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Cosine of each item of `items` with every item: (len(items), n_items), float64."""
    unit = unit_rows(item_factors)
    cosine: np.ndarray = unit[items] @ unit.T
    return cosine


def co_occurrence_cosine(
    item_users_indptr: np.ndarray,
    item_users: np.ndarray,
    user_items_indptr: np.ndarray,
    user_items: np.ndarray,
    items: np.ndarray,
    n_items: int,
) -> np.ndarray:
    """Cosine of each item of `items` with every item over binary user vectors, from the two CSR
    views of the ratings (item -> users, user -> items): counts of users in common, by one sparse
    product (every user of an item expands into that user's items), over sqrt(count_i count_j)."""
    indptr, positions = csr_rows(item_users_indptr, items)
    rows = np.repeat(np.arange(len(items)), np.diff(indptr))
    users = np.asarray(item_users[positions], dtype=np.int64)
    arrays = {
        "sim_indptr": user_items_indptr,
        "sim_indices": user_items,
        "sim_data": np.ones(len(user_items)),
    }
    common = sparse_rows_product(rows, users, np.ones(len(users)), len(items), arrays, n_items)
    counts = np.diff(item_users_indptr).astype(np.float64)
    scale = np.sqrt(np.outer(counts[items], counts))
    # an item without raters has no users in common with any: its row and column are 0 already
    cosine: np.ndarray = np.divide(common, scale, out=common, where=scale > 0)
    return cosine


def top_similar(
    similarity: np.ndarray,
    items: np.ndarray,
    n: int,
    tie_rank: np.ndarray,
    support: np.ndarray,
    min_support: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Each item's top-n others of a block of similarities (rows: `items`): (indices, values),
    -inf padded. The item itself and items with fewer than `min_support` ratings are left out;
    an item below `min_support` gets an empty list. The block is masked in place (a float64 block
    is not copied): pass one made for the call."""
    scores = np.asarray(similarity, dtype=np.float64)
    scores[:, support < min_support] = -np.inf
    scores[np.arange(len(items)), items] = -np.inf
    scores[support[items] < min_support] = -np.inf
    return select_top_n(scores, n, tie_rank)


def unit_rows(item_factors: np.ndarray) -> np.ndarray:
    """Item factors scaled to length 1 (zero rows stay zero): their dot products are cosines."""
    norms = np.linalg.norm(item_factors, axis=1)
    unit: np.ndarray = np.divide(
        item_factors, norms[:, None], out=np.zeros_like(item_factors), where=norms[:, None] > 0
    )
    return unit


def top_similar_by_factors(
    unit: np.ndarray,
    unit32: np.ndarray,
    items: np.ndarray,
    n: int,
    tie_rank: np.ndarray,
    support: np.ndarray,
    min_support: int,
) -> tuple[np.ndarray, np.ndarray]:
    """`top_similar` of `factor_cosine`, at the speed of a float32 product: the cosines in float32
    (`unit32`: `unit_rows` as float32), the candidates within twice float32's error of each row's
    n-th best (`selection.bounded_candidates`; |error| <= about d 2^-24 for unit vectors), then
    rescored in float64 and ranked, as the factor kernel ranks users' lists. Rows the bound leaves
    open are ranked from float64 cosines in full."""
    k = min(n, len(unit))
    scores = unit32[items] @ unit32.T
    thin = np.flatnonzero(support < min_support)
    if thin.size:  # a pass over the block only when some item is below the minimum support
        scores[:, thin] = -np.inf
    scores[np.arange(len(items)), items] = -np.inf
    scores[support[items] < min_support] = -np.inf
    error = (unit.shape[1] + 2) * 2.0**-24
    found = bounded_candidates(scores, k, np.full(len(items), 2 * error + 1e-30))
    exact = np.einsum("ij,ij->i", unit[items[found.rows]], unit[found.items])
    picked, values = rank_candidates(len(items), k, found.rows, found.items, exact, tie_rank)
    if found.unbounded.size:
        rows = found.unbounded
        picked[rows], values[rows] = top_similar(
            unit[items[rows]] @ unit.T, items[rows], k, tie_rank, support, min_support
        )
    return picked, values


# --- What "similar" means for each model -------------------------------------------------------

FACTOR_COSINE = "factor-cosine"
EASE_WEIGHTS = "ease-weights"
ITEM_KNN = "item-knn-similarity"
KNN_SIMILARITY = "knn-item-similarity"
CO_OCCURRENCE = "co-occurrence-cosine"

#: what each measure is, in the manifest's words
MEASURES = {
    FACTOR_COSINE: "cosine of the items' latent factors (qi), biases left out",
    EASE_WEIGHTS: "EASE's learned item-item weight B[i, j]: how much rating i raises j's score",
    ITEM_KNN: "the item-item neighbour similarity S[i, j] ItemKNN scores with (its K neighbours)",
    KNN_SIMILARITY: "Surprise's item-item similarity (sim_options) k-NN scores with, its k nearest",
    CO_OCCURRENCE: "cosine of the items' sets of raters in the training ratings:"
    " users who rated both / sqrt(raters of i x raters of j)",
}
FACTOR_KINDS = frozenset({"SVD", "SVDpp", "NMF", "ALS"})
KNN_KINDS = frozenset({"KNNBasic", "KNNWithMeans", "KNNWithZScore", "KNNBaseline"})
SIMILAR_RULE = (
    "the most similar first (only a positive similarity counts); equal similarity: more ratings in"
    " the training data first, then earlier first appearance in the snapshot; never the item"
    " itself; an item with fewer ratings than min_support has no list and is in none"
)

#: float64 items x catalogue matrices a block holds at its peak (similarity, masked copy, selection)
BLOCK_MATRICES = 4


def measure_of(model: ModelArrays) -> str:
    """The measure of a model's kind: its own item-item notion where it has one, co-occurrence
    otherwise (BaselineOnly, SlopeOne, CoClustering, NormalPredictor, user-based k-NN, refit)."""
    if model.kind in FACTOR_KINDS:
        return FACTOR_COSINE
    if model.kind == "EASE":
        return EASE_WEIGHTS
    if model.kind == "ItemKNN":
        return ITEM_KNN
    if model.kind in KNN_KINDS and not bool(model.arrays["user_based"]):
        return KNN_SIMILARITY
    return CO_OCCURRENCE


@dataclass(frozen=True)
class Raters:
    """Who rated what, both ways, deduplicated: what co-occurrence needs and a split model's item
    side lacks (its users travel in parts). Train writes it as `model/raters.npz`."""

    user_indptr: np.ndarray  # user -> distinct items
    user_items: np.ndarray
    item_indptr: np.ndarray  # item -> distinct users
    item_users: np.ndarray

    @classmethod
    def from_seen(cls, indptr: np.ndarray, indices: np.ndarray, n_items: int) -> Raters:
        """From a model's CSR of what each user rated, which may list an item twice."""
        n_users = len(indptr) - 1
        users = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(indptr))
        pairs = np.unique(users * n_items + np.asarray(indices, dtype=np.int64))  # sorted by user, item
        user_indptr = np.zeros(n_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(pairs // n_items, minlength=n_users), out=user_indptr[1:])
        return cls.from_distinct(user_indptr, (pairs % n_items).astype(np.int32), n_items)

    @classmethod
    def from_distinct(cls, user_indptr: np.ndarray, user_items: np.ndarray, n_items: int) -> Raters:
        """From each user's distinct items: the item view by one stable sort, at about 20 bytes
        per rating at its peak (a predictor unpacks it beside the model)."""
        order = np.argsort(user_items, kind="stable")  # by item, then user
        users = np.repeat(np.arange(len(user_indptr) - 1, dtype=np.int32), np.diff(user_indptr))
        item_users = users[order]
        del users, order
        item_indptr = np.zeros(n_items + 1, dtype=np.int64)
        np.cumsum(np.bincount(user_items, minlength=n_items), out=item_indptr[1:])
        return cls(user_indptr, user_items, item_indptr, item_users)

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, user_indptr=self.user_indptr, user_items=self.user_items)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, n_items: int) -> Raters:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            user_indptr, user_items = npz["user_indptr"], npz["user_items"]
        if user_items.size and not (user_items.min() >= 0 and user_items.max() < n_items):
            raise ModelIntegrityError(f"raters.npz names items outside the model's {n_items}")
        return cls.from_distinct(user_indptr, user_items, n_items)


class ItemSimilarity:
    """Each item's top-n similar items, for blocks of items, under the model's measure."""

    def __init__(self, model: ModelArrays, min_support: int, raters: Raters | None = None) -> None:
        self.model = model
        self.measure = measure_of(model)
        self.min_support = min_support
        self.tie_rank = model.tie_rank()
        self.support = np.asarray(model.item_counts, dtype=np.int64)
        if self.measure == CO_OCCURRENCE and raters is None:
            raise ValueError("co-occurrence needs the raters (Raters)")
        self.raters = raters
        if self.measure == FACTOR_COSINE:
            self.unit = unit_rows(np.asarray(model.arrays["qi"], dtype=np.float64))
            self.unit32 = self.unit.astype(np.float32)

    def block_rows(self) -> int:
        """Items per block within SCORE_BLOCK_BYTES: factor cosines hold one float32 matrix and its
        float32 temporary (the bound reads it in place), the other measures BLOCK_MATRICES float64
        ones. Bigger blocks keep the product's matrix multiply efficient."""
        per_cell = 2 * 4 if self.measure == FACTOR_COSINE else 8 * BLOCK_MATRICES
        return rows_within(SCORE_BLOCK_BYTES, per_cell, self.model.n_items)

    def limit(self, n: int) -> int:
        """k-NN keeps an item's k nearest: no more neighbours than its own k."""
        if self.measure == KNN_SIMILARITY:
            return min(n, int(self.model.arrays["k"]))
        return n

    def dense_similarities(self, items: np.ndarray) -> np.ndarray:
        """Exact similarities of `items` with every item, a new (len(items), n_items) float64 block,
        for the measures ranked from dense rows: EASE, k-NN and co-occurrence (factor cosines go
        by `top_similar_by_factors`, ItemKNN's sparse neighbours by `neighbours`)."""
        arrays, n_items = self.model.arrays, self.model.n_items
        if self.measure == EASE_WEIGHTS:
            return np.asarray(arrays["weights"][items], dtype=np.float64)  # indexing copies
        if self.measure == KNN_SIMILARITY:
            return np.asarray(arrays["sim"][items], dtype=np.float64)
        raters = self.raters
        assert raters is not None
        return co_occurrence_cosine(
            raters.item_indptr, raters.item_users, raters.user_indptr, raters.user_items, items, n_items
        )

    def top(self, items: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(indices, similarities) of each item's top-n, -inf padded; one block of items."""
        items = np.asarray(items, dtype=np.int64)
        k = self.limit(n)
        if self.measure == FACTOR_COSINE:
            picked, values = top_similar_by_factors(
                self.unit, self.unit32, items, k, self.tie_rank, self.support, self.min_support
            )
        elif self.measure == ITEM_KNN:
            picked, values = self.neighbours(items, k)
        else:
            picked, values = top_similar(
                self.dense_similarities(items), items, k, self.tie_rank, self.support, self.min_support
            )
        values[~(values > 0)] = -np.inf  # only a positive similarity makes a neighbour; NaN none
        return picked, values

    def neighbours(self, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """`top` for ItemKNN: each item's stored neighbours (at most K) are its only candidates,
        ranked as they are, without a dense row of the catalogue."""
        arrays, support = self.model.arrays, self.support
        indptr, positions = csr_rows(arrays["sim_indptr"], items)
        rows = np.repeat(np.arange(len(items)), np.diff(indptr))
        others = np.asarray(arrays["sim_indices"][positions], dtype=np.int64)
        values = np.asarray(arrays["sim_data"][positions], dtype=np.float64)
        kept = (values > 0) & (others != items[rows]) & (support[others] >= self.min_support)
        kept &= support[items[rows]] >= self.min_support
        k = min(k, self.model.n_items)
        return rank_candidates(len(items), k, rows[kept], others[kept], values[kept], self.tie_rank)

    def lists(self, items: np.ndarray, n: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """(item, its similar items best first, their similarities) for every item, in order;
        blocks on one thread per CPU, as the users' lists (`scoring.ranked_blocks`)."""
        workers = scoring_threads()
        step = max(1, self.block_rows() // workers)
        for block, (picked, values) in ranked_blocks(lambda b: self.top(b, n), items, step, workers):
            lengths = np.isfinite(values).sum(axis=1).tolist()
            for row, item in enumerate(block.tolist()):
                yield item, picked[row, : lengths[row]], values[row, : lengths[row]]
