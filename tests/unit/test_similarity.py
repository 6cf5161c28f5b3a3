"""Similar items: each measure against a per-pair brute force, and the ranking's rules (never
itself, minimum support, the product's tie rule), on small synthetic data with a fixed seed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recommender.similarity import co_occurrence_cosine, factor_cosine, top_similar

N_ITEMS, N_USERS = 40, 30


def ratings(seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(users, items) of distinct ratings; item 39 has none and item 38 one."""
    rng = np.random.default_rng(seed)
    pairs = {(int(u), int(i)) for u, i in zip(rng.integers(0, N_USERS, 400), rng.integers(0, 38, 400))}
    pairs.add((0, 38))
    users, items = map(np.asarray, zip(*sorted(pairs)))
    return users, items


def csr(keys: np.ndarray, values: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((values, keys))
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(keys, minlength=n), out=indptr[1:])
    return indptr, values[order]


def test_factor_cosine_equals_the_definition_pair_by_pair() -> None:
    rng = np.random.default_rng(0)
    q = rng.normal(size=(N_ITEMS, 5))
    q[7] = 0.0  # no direction
    items = np.array([0, 7, 12, 39])
    got = factor_cosine(q, items)
    for row, i in enumerate(items.tolist()):
        for j in range(N_ITEMS):
            a, b = np.linalg.norm(q[i]), np.linalg.norm(q[j])
            want = 0.0 if a == 0 or b == 0 else float(q[i] @ q[j]) / (a * b)
            assert got[row, j] == pytest.approx(want, abs=1e-12)


def test_co_occurrence_cosine_counts_users_in_common() -> None:
    users, items = ratings()
    item_indptr, item_users = csr(items, users, N_ITEMS)
    user_indptr, user_items = csr(users, items, N_USERS)
    block = np.arange(N_ITEMS)
    got = co_occurrence_cosine(item_indptr, item_users, user_indptr, user_items, block, N_ITEMS)
    raters = [set(users[items == i].tolist()) for i in range(N_ITEMS)]
    for i in range(N_ITEMS):
        for j in range(N_ITEMS):
            size = len(raters[i]) * len(raters[j])
            want = len(raters[i] & raters[j]) / math.sqrt(size) if size else 0.0
            assert got[i, j] == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("min_support", [1, 2, 5])
def test_top_similar_leaves_out_itself_and_thin_items_and_breaks_ties_by_the_rule(min_support: int) -> None:
    users, items = ratings()
    support = np.bincount(items, minlength=N_ITEMS)
    tie_rank = np.empty(N_ITEMS, dtype=np.int64)
    tie_rank[np.lexsort((np.arange(N_ITEMS), -support))] = np.arange(N_ITEMS)
    item_indptr, item_users = csr(items, users, N_ITEMS)
    user_indptr, user_items = csr(users, items, N_USERS)
    block = np.arange(N_ITEMS)
    similarity = co_occurrence_cosine(item_indptr, item_users, user_indptr, user_items, block, N_ITEMS)
    similarity = np.round(similarity, 1)  # many ties
    picked, values = top_similar(similarity.copy(), block, 8, tie_rank, support, min_support)
    for i in range(N_ITEMS):
        finite = np.isfinite(values[i])
        got = picked[i][finite].tolist()
        if support[i] < min_support:
            assert got == []
            continue
        others = [j for j in range(N_ITEMS) if j != i and support[j] >= min_support]
        want = sorted(others, key=lambda j: (-similarity[i, j], tie_rank[j]))[:8]
        assert got == want
        assert i not in got


@pytest.mark.parametrize("structure", ["random", "clustered", "ties"])
def test_the_float32_path_ranks_exactly_like_float64_cosines(structure: str) -> None:
    """`top_similar_by_factors` (float32 product, bound, float64 rescoring) gives exactly the lists
    of `top_similar` over float64 cosines, on 2,000 items so that the bound is in use."""
    from recommender.similarity import top_similar_by_factors, unit_rows

    rng = np.random.default_rng(1)
    n_items = 2_000
    if structure == "random":
        q = rng.normal(size=(n_items, 16))
    elif structure == "clustered":
        q = rng.normal(size=(8, 16))[rng.integers(0, 8, n_items)] + rng.normal(0, 0.05, (n_items, 16))
    else:
        q = rng.integers(0, 2, (n_items, 3)).astype(float)  # few distinct directions: massive ties
    support = rng.integers(0, 6, n_items)
    tie_rank = np.empty(n_items, dtype=np.int64)
    tie_rank[np.lexsort((np.arange(n_items), -support))] = np.arange(n_items)
    unit = unit_rows(q)
    items = np.arange(0, n_items, 7)
    want, want_values = top_similar(factor_cosine(q, items), items, 10, tie_rank, support, 2)
    got, values = top_similar_by_factors(unit, unit.astype(np.float32), items, 10, tie_rank, support, 2)
    assert np.array_equal(np.isfinite(values), np.isfinite(want_values))
    assert np.array_equal(np.where(np.isfinite(values), got, -1), np.where(np.isfinite(values), want, -1))


def test_collapsed_factors_rank_by_the_tie_rule_and_zero_factors_have_no_neighbours() -> None:
    """A degenerate factor model: every item points the same way (every cosine is 1, as a model
    that learnt nothing but popularity may) except a third with all-zero factors (NMF's dead
    items). The lists are then the tie rule alone, and a direction-less item is similar to
    nothing: no list, and in none, rather than ties at 0."""
    from recommender.model import ModelArrays
    from recommender.similarity import ItemSimilarity

    n_items = 3_000  # enough groups for the selection's bound to be in use
    support = np.random.default_rng(4).integers(1, 40, n_items)
    q = np.full((n_items, 16), 0.3)
    q[::3] = 0.0
    model = ModelArrays(
        kind="SVD",
        user_ids=[],
        item_ids=[f"i{k}" for k in range(n_items)],
        seen_indptr=np.zeros(1, dtype=np.int64),
        seen_indices=np.zeros(0, dtype=np.int64),
        item_counts=support,
        global_mean=3.0,
        rating_scale=(1.0, 5.0),
        unknown_user_scores=np.zeros(n_items),
        user_order=np.zeros(0, dtype=np.int64),
        arrays={"qi": q},
        users_in_parts=True,
    )
    lists = {
        item: (top.tolist(), values)
        for item, top, values in ItemSimilarity(model, 5).lists(np.arange(n_items), 10)
    }
    tie_rank = model.tie_rank()
    eligible = sorted((j for j in range(n_items) if j % 3 and support[j] >= 5), key=lambda j: tie_rank[j])
    for item, (got, values) in lists.items():
        if item % 3 == 0 or support[item] < 5:
            assert got == []
            continue
        assert got == [j for j in eligible if j != item][:10]
        np.testing.assert_allclose(values, 1.0, rtol=1e-12)
