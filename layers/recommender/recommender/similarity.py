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

import numpy as np

from .kernels.item_knn import sparse_rows_product
from .model import csr_rows
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
    cosine: np.ndarray = np.divide(common, scale, out=np.zeros_like(common), where=scale > 0)
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
    an item below `min_support` gets an empty list."""
    scores = np.array(similarity, dtype=np.float64)
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
    scores[:, support < min_support] = -np.inf
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
