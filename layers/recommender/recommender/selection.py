"""Top-N selection under the product's ranking rule, for blocks of scores.

Ranking rule, everywhere in the product (user lists and the fallback):
1. higher estimate first, where the estimate is Surprise's `estimate()` before clipping to the
   rating scale (clipping would turn every estimate above the top of the scale into a tie);
2. equal estimates: the item with more ratings in the training data first;
3. then the item that appears first in the dataset snapshot (lower inner id).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .errors import NonFiniteScoreError
from .model import csr_rows

if TYPE_CHECKING:
    from .model import ModelArrays


#: items per group of the bound (`bounded_candidates`). Item i belongs to group i % n_groups, so a
#: group's maximum is an elementwise maximum of contiguous slices of the row (one vectorised pass),
#: and neighbouring items (one genre, one upload batch) fall in different groups.
GROUP_SIZE = 16


@dataclass(frozen=True)
class Candidates:
    """Where a row's top-n can be: (rows[j], items[j]) pairs, and the rows the bound left open."""

    rows: np.ndarray
    items: np.ndarray
    unbounded: np.ndarray


def groups_kept(k: int) -> int:
    """Groups gathered per row: the k whose maxima bound the row, and room for a few more within
    the margin of the k-th (rows that need more are `unbounded`)."""
    return k + 4


def group_count(items: int, k: int) -> int:
    """How many groups the bound uses for a top-k of `items` columns; 0 when too few groups would
    be left out for the bound to narrow anything (then every row is selected whole). At least
    GROUP_SIZE groups, so the items past the last whole round fit in one more (fewer than
    GROUP_SIZE of them)."""
    n_groups = items // GROUP_SIZE
    return n_groups if n_groups >= max(2 * groups_kept(k), GROUP_SIZE) else 0


def group_maxima(scores: np.ndarray, n_groups: int) -> np.ndarray:
    """Each row's maximum over each group of items (item i in group i % n_groups)."""
    rows, m = scores.shape
    whole = n_groups * GROUP_SIZE
    maxima: np.ndarray = np.max(scores[:, :whole].reshape(rows, GROUP_SIZE, n_groups), axis=1)
    tail = m - whole  # items past the last whole round: the first `tail` groups hold one more
    if tail:
        np.maximum(maxima[:, :tail], scores[:, whole:], out=maxima[:, :tail])
    return maxima


def bounded_candidates(scores: np.ndarray, k: int, margin: np.ndarray) -> Candidates:
    """Every item whose score is within `margin` (per row) of its row's k-th largest, found
    without partitioning whole rows; `k` must be at most the number of columns.

    The bound: the items fall into groups of GROUP_SIZE; the k-th largest group maximum is at most
    the row's k-th largest score (k distinct groups, each with an item at least that large). So
    every item within `margin` of the k-th largest score is in a group whose maximum is within
    `margin` of that bound. When the `groups_kept(k)` groups with the largest maxima include every
    such group (no more than that many groups reach the bound minus the margin), the row's
    candidates are the items of those groups within `margin` of their k-th largest, the row's.
    This costs one pass over the block for the maxima and work proportional to the groups kept,
    whatever the scores look like. Rows where more groups reach the bound (scores tied across the
    row, or fewer than k finite scores) are returned as `unbounded`: select them in full.

    `margin` is what callers with approximate scores need: scores within `e` of the exact ones
    (float32 products) with `margin = 2 e` contain every item of the exact top-k, ties included.
    With exact scores, margin 0 gives the items at least as large as the k-th: the top-k and the
    ties across the cut. Thresholds are compared in float64, so no rounding narrows them.
    """
    rows, m = scores.shape
    kept = groups_kept(k)
    n_groups = group_count(m, k)
    if n_groups == 0 or rows == 0:
        return Candidates(np.zeros(0, np.int64), np.zeros(0, np.int64), np.arange(rows))
    maxima = group_maxima(scores, n_groups)
    bound = np.partition(maxima, n_groups - k, axis=1)[:, n_groups - k].astype(np.float64)
    reach = maxima >= (bound - margin)[:, None]  # False throughout for NaN: those rows go in full
    counts = np.count_nonzero(reach, axis=1)
    bounded = (counts <= kept) & (counts > 0)
    in_bound = np.flatnonzero(bounded)
    if len(in_bound) < rows:
        reach, counts = reach[in_bound], counts[in_bound]
    # each bounded row's groups in `kept` slots; spare slots name a group past the last item
    where, group = np.nonzero(reach)
    top = np.full((len(in_bound), kept), n_groups * (GROUP_SIZE + 1))
    top[where, np.arange(len(where)) - (np.cumsum(counts) - counts)[where]] = group

    members = GROUP_SIZE + (1 if m > n_groups * GROUP_SIZE else 0)
    items = (top[:, :, None] + n_groups * np.arange(members)).reshape(len(in_bound), kept * members)
    past_end = items >= m
    np.minimum(items, m - 1, out=items)
    flat = scores.reshape(-1)  # a view: blocks are C-contiguous
    values = flat[items + (in_bound * m)[:, None]]
    values[past_end] = -np.inf  # never a candidate: each bounded row has k finite scores above
    cut = np.partition(values, values.shape[1] - k, axis=1)[:, values.shape[1] - k]
    keep = values >= (cut.astype(np.float64) - margin[in_bound])[:, None]
    where, column = np.nonzero(keep)
    return Candidates(in_bound[where], items[where, column], np.flatnonzero(~bounded))


def rank_candidates(
    rows: int,
    k: int,
    cand_rows: np.ndarray,
    cand_items: np.ndarray,
    cand_values: np.ndarray,
    tie_rank: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The first k candidates of each row under the ranking rule: (indices, values), rows x k,
    -inf padded (rows without enough candidates stay padded). Candidates come grouped by row in
    ascending order, as np.nonzero gives them. Each row's few are sorted on their own, laid out
    in a table as wide as the most any row has: cheaper than one sort of them all."""
    counts = np.bincount(cand_rows, minlength=rows)
    width = max(k, int(counts.max(initial=0)))
    column = np.arange(len(cand_rows)) - (np.cumsum(counts) - counts)[cand_rows]
    items = np.zeros((rows, width), dtype=np.int64)
    values = np.full((rows, width), -np.inf)
    ranks = np.full((rows, width), len(tie_rank), dtype=np.int64)  # padding ranks after every item
    items[cand_rows, column] = cand_items
    values[cand_rows, column] = cand_values
    ranks[cand_rows, column] = tie_rank[cand_items]
    order = np.lexsort((ranks, -values), axis=1)[:, :k]
    return np.take_along_axis(items, order, axis=1), np.take_along_axis(values, order, axis=1)


def select_rows(scores: np.ndarray, k: int, tie_rank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ranking rule's top-k of whole rows in linear time, however many scores tie: the items
    above the k-th largest score, then as many of the ties at it as the row still needs, those
    with the lowest tie ranks (one partition of the ranks per distinct number needed: at most k).
    `k` must be at most the number of columns."""
    m = scores.shape[1]
    kth = np.partition(scores, m - k, axis=1)[:, m - k : m - k + 1]
    above = scores > kth
    wanted = k - np.count_nonzero(above, axis=1)  # at least 1: the k-th itself is at the cut
    at_cut = scores == kth
    ranks = np.where(at_cut, tie_rank[None, :], m)
    last_rank = np.empty(len(scores), dtype=ranks.dtype)
    for count in np.unique(wanted).tolist():
        rows = np.flatnonzero(wanted == count)
        last_rank[rows] = np.partition(ranks[rows], count - 1, axis=1)[:, count - 1]
    chosen = above | (at_cut & (ranks <= last_rank[:, None]))
    cand_rows, cand_items = np.nonzero(chosen)
    return rank_candidates(len(scores), k, cand_rows, cand_items, scores[cand_rows, cand_items], tie_rank)


def select_top_n(scores: np.ndarray, n: int, tie_rank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top-n of a block of exact scores under the ranking rule; -inf marks excluded items.

    Returns (indices, values), each rows x min(n, items); excluded entries come last as -inf.
    The group bound (`bounded_candidates`) finds each row's few candidates; the rows it leaves
    open (ties across the row, fewer than n finite scores) are selected whole (`select_rows`).
    """
    scores = np.ascontiguousarray(scores)
    rows, m = scores.shape
    k = min(n, m)
    if k == 0 or rows == 0:
        return np.empty((rows, k), dtype=np.int64), np.empty((rows, k), dtype=scores.dtype)
    found = bounded_candidates(scores, k, np.zeros(rows))
    picked, values = rank_candidates(
        rows, k, found.rows, found.items, scores[found.rows, found.items], tie_rank
    )
    if found.unbounded.size:
        open_rows = found.unbounded
        picked[open_rows], values[open_rows] = select_rows(scores[open_rows], k, tie_rank)
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
