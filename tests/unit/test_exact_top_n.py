"""Exact top-N whatever the scores look like: the factor kernel and the selection beneath it.

The kernels select each user's top-N through a bound taken from the row itself (selection.py):
the N-th largest of the maxima of groups of items. These tests aim at that bound's weak spots:
every high score in one block of items or in one of the bound's own groups, massive ties, all
scores equal, one item dominating, users with almost every item seen, no biases, scores that
differ below float32's resolution, N larger than the unseen items. The reference is the float64
estimate of every unseen item ranked under the product's rule, one user at a time. Catalogues
have 2,000 items so that the bound is in use (it needs a few hundred items per N).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recommender.kernels import load_kernel
from recommender.kernels.factors import FactorKernel
from recommender.model import ModelArrays, utf8_order
from recommender.scoring import recommend
from recommender.selection import GROUP_SIZE, bounded_candidates, group_count, groups_kept, select_top_n

USERS, ITEMS, FACTORS = 48, 2_000, 8


def factor_model(
    pu: np.ndarray,
    qi: np.ndarray,
    bu: np.ndarray | None = None,
    bi: np.ndarray | None = None,
    seen: list[np.ndarray] | None = None,
) -> ModelArrays:
    """An SVD-shaped model (biased when biases are given); each user rated a few items unless
    `seen` says otherwise; item counts are uneven so the tie rule is not the item order."""
    rng = np.random.default_rng(5)
    users, items = len(pu), len(qi)
    if seen is None:
        seen = [rng.choice(items, size=int(rng.integers(0, 30)), replace=False) for _ in range(users)]
    indptr = np.zeros(users + 1, dtype=np.int64)
    np.cumsum([len(s) for s in seen], out=indptr[1:])
    indices = np.concatenate(seen).astype(np.int32) if indptr[-1] else np.zeros(0, np.int32)
    ids = [f"u{u}" for u in range(users)]
    arrays = {"pu": pu, "qi": qi}
    if bu is not None and bi is not None:
        arrays |= {"bu": bu, "bi": bi}
    return ModelArrays(
        kind="SVD",
        user_ids=ids,
        item_ids=[f"i{i}" for i in range(items)],
        seen_indptr=indptr,
        seen_indices=indices,
        item_counts=rng.integers(0, 4, items),
        global_mean=3.0,
        rating_scale=(1.0, 5.0),
        unknown_user_scores=np.full(items, 3.0),
        user_order=utf8_order(ids),
        arrays=arrays,
    )


def random_large_biases(rng: np.random.Generator) -> ModelArrays:
    return factor_model(
        rng.normal(0, 0.1, (USERS, FACTORS)),
        rng.normal(0, 0.1, (ITEMS, FACTORS)),
        rng.normal(0, 0.3, USERS),
        rng.normal(0, 0.5, ITEMS),
    )


def clustered_weak_biases(rng: np.random.Generator) -> ModelArrays:
    centres = rng.normal(0, 1, (8, FACTORS))
    return factor_model(
        centres[rng.integers(0, 8, USERS)] + rng.normal(0, 0.3, (USERS, FACTORS)),
        centres[rng.integers(0, 8, ITEMS)] + rng.normal(0, 0.3, (ITEMS, FACTORS)),
        rng.normal(0, 0.01, USERS),
        rng.normal(0, 0.01, ITEMS),
    )


def high_scores_in_one_block(rng: np.random.Generator) -> ModelArrays:
    """Items 500 to 599 share a direction every user likes: the top of every list is there."""
    pu, qi = rng.normal(0, 0.1, (USERS, FACTORS)), rng.normal(0, 0.1, (ITEMS, FACTORS))
    pu[:, 0] = 1.0
    qi[500:600, 0] += 5.0 + rng.random(100)
    return factor_model(pu, qi)


def high_scores_in_one_group(rng: np.random.Generator) -> ModelArrays:
    """The high items are exactly one of the bound's groups for N = 10 (every n_groups-th item)."""
    pu, qi = rng.normal(0, 0.1, (USERS, FACTORS)), rng.normal(0, 0.1, (ITEMS, FACTORS))
    pu[:, 0] = 1.0
    qi[7 :: group_count(ITEMS, 10), 0] += 5.0
    return factor_model(pu, qi)


def massive_ties(rng: np.random.Generator) -> ModelArrays:
    """Factors of 0 and 1: three distinct scores for 2,000 items."""
    return factor_model(
        rng.integers(0, 2, (USERS, 2)).astype(float), rng.integers(0, 2, (ITEMS, 2)).astype(float)
    )


def all_scores_equal(rng: np.random.Generator) -> ModelArrays:
    return factor_model(
        np.zeros((USERS, FACTORS)), np.zeros((ITEMS, FACTORS)), np.zeros(USERS), np.zeros(ITEMS)
    )


def one_item_dominating(rng: np.random.Generator) -> ModelArrays:
    model = random_large_biases(rng)
    model.arrays["bi"][123] = 1e6
    return model


def almost_everything_seen(rng: np.random.Generator) -> ModelArrays:
    """Every user rated all but a few items (0 to 12): N is often larger than what is left."""
    seen = [np.sort(rng.permutation(ITEMS)[int(rng.integers(0, 13)) :]) for _ in range(USERS)]
    return factor_model(rng.normal(0, 1, (USERS, FACTORS)), rng.normal(0, 1, (ITEMS, FACTORS)), seen=seen)


def no_biases(rng: np.random.Generator) -> ModelArrays:
    """Alternating least squares' shape: non-negative-ish factors, no mean, no biases."""
    return factor_model(np.abs(rng.normal(0, 1, (USERS, 32))), np.abs(rng.normal(0, 0.05, (ITEMS, 32))))


def below_float32_resolution(rng: np.random.Generator) -> ModelArrays:
    """Scores 3 + 1e-12 apart: float32 sees one value, float64 a strict order."""
    bi = 1e-12 * rng.permutation(ITEMS).astype(float)
    return factor_model(np.zeros((USERS, 1)), np.zeros((ITEMS, 1)), np.zeros(USERS), bi)


def near_ties_within_float32_error(rng: np.random.Generator) -> ModelArrays:
    """Scores of about 1, 1e-6 apart, each from its own factors of about 100 that cancel:
    float32's error (up to about 1e-5, different for every item) exceeds the spacing, so the
    float32 order of the top items is not the float64 order, and only the kernel's margin
    keeps the true ones."""
    p = rng.normal(0, 1, 16)
    p /= np.linalg.norm(p)
    qi = rng.normal(0, 100, (ITEMS, 16))
    qi += np.outer(1.0 + 1e-6 * rng.permutation(ITEMS) - qi @ p, p)
    return factor_model(np.tile(p, (USERS, 1)), qi)


def one_user_far_from_the_rest(rng: np.random.Generator) -> ModelArrays:
    model = clustered_weak_biases(rng)
    model.arrays["pu"][0] *= 1e4
    model.arrays["pu"][1] = 0.0
    return model


STRUCTURES: list[Callable[[np.random.Generator], ModelArrays]] = [
    random_large_biases,
    clustered_weak_biases,
    high_scores_in_one_block,
    high_scores_in_one_group,
    massive_ties,
    all_scores_equal,
    one_item_dominating,
    almost_everything_seen,
    no_biases,
    below_float32_resolution,
    near_ties_within_float32_error,
    one_user_far_from_the_rest,
]
#: structures whose scores are distinct enough that the bound settles every row in float32
SETTLED_IN_FLOAT32 = [random_large_biases, clustered_weak_biases, high_scores_in_one_block, no_biases]


def reference(model: ModelArrays, n: int) -> list[tuple[list[int], list[float]]]:
    """Every user's top-n by the float64 estimate under the ranking rule, one user at a time,
    and the published (clipped) scores."""
    scores = load_kernel(model).scores(np.arange(model.n_users))
    rank = model.tie_rank()
    lists = []
    for u in range(model.n_users):
        row = scores[u].copy()
        row[model.seen(u)] = np.nan
        unseen = np.flatnonzero(~np.isnan(row))
        best = unseen[np.lexsort((rank[unseen], -row[unseen]))][:n]
        lists.append((best.tolist(), np.clip(row[best], *model.rating_scale).tolist()))
    return lists


@pytest.mark.parametrize("n", [1, 10, 20, 2_500])
@pytest.mark.parametrize("structure", STRUCTURES, ids=lambda s: s.__name__)
def test_the_factor_kernel_ranks_exactly_whatever_the_factors(
    structure: Callable[[np.random.Generator], ModelArrays], n: int
) -> None:
    model = structure(np.random.default_rng(0))
    got = list(recommend(model, np.arange(USERS), n))
    for top, (items, scores) in zip(got, reference(model, n), strict=True):
        assert top.items.tolist() == items, top.user
        np.testing.assert_allclose(top.scores, scores, rtol=1e-12)


@pytest.mark.parametrize("structure", SETTLED_IN_FLOAT32, ids=lambda s: s.__name__)
def test_distinct_scores_never_need_the_full_float64_pass(
    structure: Callable[[np.random.Generator], ModelArrays], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bound is what makes the kernel fast: rows it cannot settle are scored in float64 in
    full, which is exact but costs a float64 product and a whole-row selection per row."""

    def refuse(self: FactorKernel, users: np.ndarray, n: int, tie_rank: np.ndarray) -> None:
        raise AssertionError(f"{len(users)} rows took the full float64 pass")

    model = structure(np.random.default_rng(1))
    expected = [items for items, _ in reference(model, 10)]
    monkeypatch.setattr(FactorKernel, "_top_n_float64", refuse)
    assert [top.items.tolist() for top in recommend(model, np.arange(USERS), 10)] == expected


def brute_select(scores: np.ndarray, n: int, tie_rank: np.ndarray) -> list[list[int]]:
    return [[int(i) for i in np.lexsort((tie_rank, -row))[:n] if np.isfinite(row[i])] for row in scores]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    items=st.sampled_from([1, 7, 1_023, 1_024, 1_100, 3_001]),
    distinct=st.sampled_from([1, 2, 5, 1_000_000]),
    excluded=st.sampled_from([0.0, 0.3, 0.99, 1.0]),
    n=st.integers(1, 60),
)
def test_select_top_n_equals_a_full_sort(
    seed: int, items: int, distinct: int, excluded: float, n: int
) -> None:
    """Ties of every size, rows mostly or wholly excluded (-inf), catalogues on both sides of
    where the bound starts: the selection is the full sort's first n finite items."""
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, distinct, (6, items)).astype(np.float64)
    scores[rng.random(scores.shape) < excluded] = -np.inf
    tie_rank = rng.permutation(items)
    picked, values = select_top_n(scores.copy(), n, tie_rank)
    assert picked.shape == values.shape == (6, min(n, items))
    for row, want in enumerate(brute_select(scores, n, tie_rank)):
        assert picked[row, : len(want)].tolist() == want
        assert np.array_equal(values[row], scores[row, picked[row]])
        assert np.isneginf(values[row, len(want) :]).all()
        assert len(set(picked[row].tolist())) == picked.shape[1]


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(1, 40), spread=st.sampled_from([1e-9, 1e-3, 1.0]))
def test_candidates_within_the_margin_hold_the_exact_top_k(seed: int, k: int, spread: float) -> None:
    """Scores known only within +-e (a float32 product) and a margin of 2e: every item whose exact
    score reaches the exact k-th largest is a candidate, whichever way the errors fall."""
    rng = np.random.default_rng(seed)
    exact = rng.normal(0, spread, (8, 4_000)) + rng.integers(0, 3, (8, 4_000))
    error = 1e-6 * rng.random(8)
    approximate = exact + error[:, None] * rng.uniform(-1, 1, exact.shape)
    found = bounded_candidates(approximate, k, 2 * error)
    kth = np.sort(exact, axis=1)[:, -k]
    for row in range(8):
        needed = set(np.flatnonzero(exact[row] >= kth[row]).tolist())
        if row in found.unbounded:
            continue
        assert needed <= set(found.items[found.rows == row].tolist())
    assert len(found.unbounded) < 8 or spread < 1e-6, "the bound settled no row of distinct scores"


def test_the_bound_keeps_groups_of_the_stated_size() -> None:
    n_groups = group_count(ITEMS, 10)
    assert n_groups == ITEMS // GROUP_SIZE
    assert group_count(GROUP_SIZE * 2 * 14 - 1, 10) == 0, "too few groups to leave any out"


def test_a_collapsed_model_ranks_by_the_tie_rule_with_a_bounded_number_of_candidates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A fit that collapsed (every factor and bias 0: every score the mean) is a model users get
    from tiny or degenerate data. Every unseen item ties, so the lists follow the tie rule alone
    (more ratings first). Measured at 5,000 users x 59,000 items, the earlier kernel let every
    item through its threshold: 181 s and 13.7 GB. The float64 rescoring must see at most a few
    groups' items per user, whatever ties; tied rows are ranked whole, within the block bound."""
    users, items = 300, 5_000
    model = factor_model(np.zeros((users, 4)), np.zeros((items, 4)), np.zeros(users), np.zeros(items))
    rescored: list[int] = []
    exact = FactorKernel._exact

    def counted(self: FactorKernel, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        rescored.append(len(rows))
        return exact(self, rows, columns)

    monkeypatch.setattr(FactorKernel, "_exact", counted)
    lists = list(recommend(model, np.arange(users), 10))
    assert max(rescored) <= users * groups_kept(10) * (GROUP_SIZE + 1)
    rank = model.tie_rank()
    for top in lists:
        unseen = np.setdiff1d(np.arange(items), model.seen(top.user))
        assert top.items.tolist() == unseen[np.argsort(rank[unseen], kind="stable")][:10].tolist()
        assert top.scores.tolist() == [3.0] * 10
