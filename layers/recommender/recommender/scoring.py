"""Top-N unseen items for blocks of users.

Ranking rule, everywhere in the product (user lists and the fallback):
1. higher estimate first, where the estimate is Surprise's `estimate()` before clipping to the
   rating scale (clipping would turn every estimate above the top of the scale into a tie);
2. equal estimates: the item with more ratings in the training data first;
3. then the item that appears first in the dataset snapshot (lower inner id).
The published `score` is the estimate clipped to the rating scale, which is what Surprise's
`predict()` returns.

Items the user rated are never recommended; a user who rated nearly everything gets a shorter list.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .model import KIND_FACTORS, ModelArrays, estimate_or_default

logger = logging.getLogger(__name__)

SCORE_BLOCK_BYTES = 64 * 1024 * 1024  # bound on the users x items score block held at once


@dataclass(frozen=True)
class UserTopN:
    user: int  # inner id
    items: np.ndarray  # inner ids, best first
    scores: np.ndarray  # clipped estimates


def select_top_n(scores: np.ndarray, n: int, tie_rank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top-n of a score block under the ranking rule; -inf marks excluded items.

    A partial selection (argpartition) finds n candidates per row in linear time; only rows where
    items equal to the n-th score were left out (a tie across the cut) are sorted in full.
    Returns (indices, values), each rows x min(n, items); excluded entries come last as -inf.
    """
    rows, m = scores.shape
    k = min(n, m)
    if k == 0 or rows == 0:
        return np.empty((rows, 0), dtype=np.int64), np.empty((rows, 0), dtype=scores.dtype)
    if k < m:
        picked = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        picked = np.broadcast_to(np.arange(m), (rows, m)).copy()
    values = np.take_along_axis(scores, picked, axis=1)
    order = np.lexsort((tie_rank[picked], -values), axis=1)
    picked = np.take_along_axis(picked, order, axis=1)
    values = np.take_along_axis(values, order, axis=1)
    if k < m:
        cut = values[:, -1:]
        left_out_ties = (scores == cut).sum(axis=1) > (values == cut).sum(axis=1)
        for r in np.flatnonzero(left_out_ties & np.isfinite(cut[:, 0])):
            full = np.lexsort((tie_rank, -scores[r]))[:k]
            picked[r], values[r] = full, scores[r, full]
    return picked, values


def mask_seen(scores: np.ndarray, model: ModelArrays, users: np.ndarray) -> None:
    """Set the score of every item a user rated to -inf, for a block of users, without a loop."""
    starts = model.seen_indptr[users]
    lengths = model.seen_indptr[users + 1] - starts
    total = int(lengths.sum())
    rows = np.repeat(np.arange(len(users)), lengths)
    positions = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(total)
    scores[rows, model.seen_indices[positions]] = -np.inf


def factor_scores(model: ModelArrays, users: np.ndarray) -> np.ndarray:
    """SVD's estimate for a block of users and every item, in the order Surprise adds the terms."""
    f = model.factors
    dots: np.ndarray = f["pu"][users] @ f["qi"].T
    if not model.biased:
        return dots
    scores: np.ndarray = (model.global_mean + f["bu"][users])[:, None] + f["bi"][None, :]
    scores += dots
    return scores


class PairwiseScorer:
    """The per-pair path: Surprise's own `estimate` for every (user, item) pair.

    Used for algorithms that have no vectorised kernel yet. It costs one Python call per pair,
    about 1000x slower than a kernel at catalogue scale, hence the warning.
    """

    def __init__(self, algorithm: Any) -> None:
        self.algorithm = algorithm
        logger.warning(
            "scoring %s pair by pair: one estimate() call per (user, item), slow for large shards",
            type(algorithm).__name__,
        )

    def __call__(self, model: ModelArrays, users: np.ndarray) -> np.ndarray:
        items = range(model.n_items)
        return np.asarray(
            [[estimate_or_default(self.algorithm, int(u), i) for i in items] for u in users],
            dtype=np.float64,
        ).reshape(len(users), model.n_items)


def block_size(n_items: int) -> int:
    return max(1, SCORE_BLOCK_BYTES // (8 * max(1, n_items)))


def recommend(
    model: ModelArrays,
    users: np.ndarray,
    n: int,
    scorer: PairwiseScorer | None = None,
) -> Iterator[UserTopN]:
    """Yield the top-n unseen items of every user, a bounded block of users at a time."""
    if model.kind != KIND_FACTORS and scorer is None:
        raise ValueError(f"a {model.kind!r} model needs a per-pair scorer")
    tie_rank = model.tie_rank()
    low, high = model.rating_scale
    step = block_size(model.n_items)
    for start in range(0, len(users), step):
        block = np.asarray(users[start : start + step], dtype=np.int64)
        scores = factor_scores(model, block) if scorer is None else scorer(model, block)
        mask_seen(scores, model, block)
        picked, values = select_top_n(scores, n, tie_rank)
        for row, user in enumerate(block.tolist()):
            keep = np.isfinite(values[row])
            yield UserTopN(user, picked[row][keep], np.clip(values[row][keep], low, high))


def fallback(model: ModelArrays, n: int) -> UserTopN:
    """The list for a user the model has never seen: Surprise's estimate for an unknown user,
    ranked by the same rule, excluding nothing."""
    picked, values = select_top_n(model.unknown_user_scores[None, :], n, model.tie_rank())
    low, high = model.rating_scale
    return UserTopN(-1, picked[0], np.clip(values[0], low, high))
