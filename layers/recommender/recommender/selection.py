"""Top-N selection under the product's ranking rule, for blocks of scores.

Ranking rule, everywhere in the product (user lists and the fallback):
1. higher estimate first, where the estimate is Surprise's `estimate()` before clipping to the
   rating scale (clipping would turn every estimate above the top of the scale into a tie);
2. equal estimates: the item with more ratings in the training data first;
3. then the item that appears first in the dataset snapshot (lower inner id).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .errors import NonFiniteScoreError
from .model import csr_rows

if TYPE_CHECKING:
    from .model import ModelArrays


def select_top_n(scores: np.ndarray, n: int, tie_rank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top-n of a score block under the ranking rule; -inf marks excluded items.

    A partial selection (argpartition) finds n candidates per row in linear time; only rows where
    items equal to the n-th score were left out (a tie across the cut) are sorted in full.
    Returns (indices, values), each rows x min(n, items); excluded entries come last as -inf.
    """
    rows, m = scores.shape
    k = min(n, m)
    if k == 0 or rows == 0:
        return np.empty((rows, k), dtype=np.int64), np.empty((rows, k), dtype=scores.dtype)
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


_CAUSE = (
    "a score must be a finite number to be ranked and published. The model's parameters are"
    " finite (Train checks them), so the estimate itself overflowed or divided 0 by 0; ratings of"
    " extreme size are the usual cause: set rating_scale so that they are left out as invalid rows"
)


def check_scores(scores: np.ndarray, model: ModelArrays, users: np.ndarray) -> None:
    """Raise NonFiniteScoreError when a user's score of an item they have not rated is not
    finite, before the seen items are masked (a seen item's score never matters)."""
    rows = np.flatnonzero(~np.isfinite(scores).all(axis=1))
    for r in rows.tolist():
        user = int(users[r])
        row = scores[r].copy()
        row[model.seen(user)] = 0.0
        bad = np.flatnonzero(~np.isfinite(row))
        if bad.size:
            unseen = int(model.unseen_counts(np.asarray([user]), model.n_items)[0])
            raise NonFiniteScoreError(
                f"the {model.kind} model scored user {model.user_ids[user]!r} {row[bad[0]]} for"
                f" {bad.size:,} of {unseen:,} unseen items (item {model.item_ids[int(bad[0])]!r}"
                f" first): {_CAUSE}"
            )


def check_lists(model: ModelArrays, users: np.ndarray, n: int, values: np.ndarray) -> None:
    """Raise NonFiniteScoreError unless each user's top-n values (-inf padded) hold a finite
    score for min(n, items the user has not rated) items: any shorter list means some unseen
    item had no finite score, whichever kernel ranked it."""
    expected = model.unseen_counts(users, n)
    needed = np.arange(values.shape[1])[None, :] < expected[:, None]
    short = np.flatnonzero((needed & ~np.isfinite(values)).any(axis=1))
    if short.size:
        r = int(short[0])
        got = int(np.count_nonzero(np.isfinite(values[r])))
        raise NonFiniteScoreError(
            f"the {model.kind} model ranked {got} items for user"
            f" {model.user_ids[int(users[r])]!r}, who has {int(expected[r])} or more unseen items:"
            f" their scores are not finite, and {_CAUSE}"
        )


def seen_pairs(model: ModelArrays, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row in block, item) of every rating of a block of users, gathered without a Python loop."""
    indptr, positions = csr_rows(model.seen_indptr, users)
    rows = np.repeat(np.arange(len(users)), np.diff(indptr))
    return rows, model.seen_indices[positions]


def mask_seen(scores: np.ndarray, model: ModelArrays, users: np.ndarray) -> None:
    """Set the score of every item a user rated to -inf, for a block of users."""
    rows, items = seen_pairs(model, users)
    scores[rows, items] = -np.inf
