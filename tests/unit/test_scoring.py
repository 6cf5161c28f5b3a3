"""Top-N: the kernel and the per-pair path against a brute force over Surprise's own estimates."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest
from surprise import PredictionImpossible

from recommender import scoring
from recommender.kernels import load_kernel
from recommender.model import KIND_REFIT, ModelArrays
from recommender.scoring import (
    PairwiseKernel,
    fallback,
    mask_seen,
    recommend,
    select_top_n,
)
from recommender.snapshot import ratings_from_rows
from recommender.training import FittedModel, fit, model_from_fit

N_USERS, N_ITEMS, PER_USER = 60, 40, 15
FULL_USER = "rated-everything"
TOL = 1e-9


def _rows() -> list[tuple[str, str, str]]:
    rng = np.random.default_rng(7)
    rows = []
    for u in range(N_USERS):
        for i in rng.choice(N_ITEMS, size=PER_USER, replace=False).tolist():
            rows.append((f"user-{u:02d}", f"item-{i:02d}", str(int(rng.integers(1, 6)))))
    rows += [(FULL_USER, f"item-{i:02d}", str(int(rng.integers(1, 6)))) for i in range(N_ITEMS)]
    # interleave users and items so that inner ids (first appearance) differ from sorted order
    return [rows[k] for k in rng.permutation(len(rows)).tolist()]


_FITS: dict[str, tuple[FittedModel, ModelArrays]] = {}


def _fitted(name: str, params: dict[str, Any]) -> tuple[FittedModel, ModelArrays]:
    key = f"{name}{sorted(params.items())}"
    if key not in _FITS:
        fitted = fit(ratings_from_rows(_rows()), name, params, (1.0, 5.0))
        _FITS[key] = (fitted, model_from_fit(fitted))
    return _FITS[key]


def _estimate(algo: Any, u: Any, i: Any) -> float:
    """The ranking estimate, straight from Surprise: estimate(), or its default when impossible."""
    try:
        est = algo.estimate(u, i)
    except PredictionImpossible:
        return float(algo.default_prediction())
    return float(est[0] if isinstance(est, tuple) else est)


def _brute_force(fitted: FittedModel, u: int, n: int) -> tuple[list[int], dict[int, float]]:
    """Top-n unseen items of inner user u by (-estimate, -ratings of the item, inner id)."""
    trainset, algo = fitted.trainset, fitted.algorithm
    seen = {i for i, _ in trainset.ur[u]}
    counts = [len(trainset.ir[i]) for i in range(trainset.n_items)]
    est = {i: _estimate(algo, u, i) for i in range(trainset.n_items) if i not in seen}
    ranked = sorted(est, key=lambda i: (-est[i], -counts[i], i))
    return ranked[:n], est


def _assert_same_ranking(got: list[int], expected: list[int], est: dict[int, float]) -> int:
    """Equal lists, allowing only swaps of items whose estimates differ by less than TOL."""
    assert len(got) == len(expected)
    assert len(set(got)) == len(got)
    swaps = 0
    for g, e in zip(got, expected):
        assert g in est, f"item {g} was rated by the user"
        if g != e:
            swaps += 1
            assert abs(est[g] - est[e]) < TOL, (got, expected)
    return swaps


SVD_CASES: list[dict[str, Any]] = [
    {"n_factors": 10, "n_epochs": 20},
    {"n_factors": 10, "n_epochs": 20, "biased": False},
    {"n_factors": 3, "n_epochs": 30, "lr_all": 0.01},
    # over-fitted: many estimates above the top of the scale, so clipping would create ties
    {"n_factors": 20, "n_epochs": 200, "lr_all": 0.05, "reg_all": 0.0},
]


@pytest.mark.parametrize("params", SVD_CASES, ids=["biased", "unbiased", "3-factors", "overfit"])
def test_svd_kernel_against_brute_force(params: dict[str, Any]) -> None:
    fitted, model = _fitted("SVD", params)
    algo, trainset = fitted.algorithm, fitted.trainset
    assert model.kind == "SVD"
    assert ("bu" in model.arrays) is params.get("biased", True)
    users = np.arange(model.n_users)

    scores = load_kernel(model).scores(users)
    expected = np.asarray([[algo.estimate(u, i) for i in range(model.n_items)] for u in range(model.n_users)])
    assert np.abs(scores - expected).max() < TOL

    lists = list(recommend(model, users, 10))
    assert [top.user for top in lists] == users.tolist()
    full_user = trainset.to_inner_uid(FULL_USER)
    above_scale = 0
    for top in lists:
        u = top.user
        items = top.items.tolist()
        if u == full_user:
            assert items == [] and top.scores.size == 0
            continue
        assert len(items) == 10
        assert not set(items) & {i for i, _ in trainset.ur[u]}
        wanted, est = _brute_force(fitted, u, 10)
        _assert_same_ranking(items, wanted, est)
        raw_u = trainset.to_raw_uid(u)
        for i, score in zip(items, top.scores.tolist()):
            assert abs(scores[u, i] - algo.estimate(u, i)) < TOL
            assert abs(score - algo.predict(raw_u, trainset.to_raw_iid(i)).est) < TOL
            assert 1.0 <= score <= 5.0
            above_scale += est[i] > 5.0
    if params.get("reg_all") == 0.0:
        # the case is meant to rank unclipped estimates above the scale; make sure it does
        assert above_scale > 0


def _scored_blocks(
    model: ModelArrays, users: np.ndarray, monkeypatch: pytest.MonkeyPatch, rows: int | None = None
) -> tuple[list[scoring.UserTopN], list[np.ndarray]]:
    """recommend's lists, and the blocks of users its kernel scored (`rows` users a block if given)."""
    kernel = load_kernel(model)
    scored: list[np.ndarray] = []
    top_n = kernel.top_n

    def counted(block: np.ndarray, n: int, tie_rank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scored.append(block.copy())
        return top_n(block, n, tie_rank)

    monkeypatch.setattr(kernel, "top_n", counted)
    if rows is not None:
        monkeypatch.setattr(kernel, "block_rows", lambda: rows)
    return list(recommend(model, users, 10, kernel)), scored


def test_recommend_in_small_blocks_gives_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    _, model = _fitted("SVD", SVD_CASES[0])
    users = np.arange(model.n_users)[::-1].copy()
    whole, scored = _scored_blocks(model, users, monkeypatch)
    assert [len(block) for block in scored] == [len(users)]  # every user in one block by default
    blocks, scored = _scored_blocks(model, users, monkeypatch, rows=7)
    assert [len(block) for block in scored] == [min(7, len(users) - k) for k in range(0, len(users), 7)]
    assert np.array_equal(np.concatenate(scored), users)
    assert [t.user for t in blocks] == users.tolist()
    for a, b in zip(whole, blocks):
        assert a.user == b.user
        assert np.array_equal(a.items, b.items)
        assert np.array_equal(a.scores, b.scores)


@pytest.mark.parametrize("n", [1, 24, 25, 26, 40, 100])
def test_recommend_list_lengths(n: int) -> None:
    fitted, model = _fitted("SVD", SVD_CASES[0])
    for top in recommend(model, np.arange(model.n_users), n):
        unseen = model.n_items - len(fitted.trainset.ur[top.user])
        assert len(top.items) == min(n, unseen)
        wanted, est = _brute_force(fitted, top.user, n)
        _assert_same_ranking(top.items.tolist(), wanted, est)


def test_mask_seen() -> None:
    _, model = _fitted("SVD", SVD_CASES[0])
    users = np.asarray([5, 0, 5, model.n_users - 1])
    scores = np.zeros((len(users), model.n_items))
    mask_seen(scores, model, users)
    for row, u in enumerate(users.tolist()):
        masked = set(np.flatnonzero(np.isneginf(scores[row])).tolist())
        assert masked == set(model.seen(u).tolist())
        assert len(masked) == len(model.seen(u))


@pytest.mark.parametrize(
    ("name", "params"),
    [("tests.unit.custom_algorithms:ShiftedBaseline", {}), ("tests.unit.custom_algorithms:ItemMean", {})],
)
def test_pairwise_path_against_brute_force(name: str, params: dict[str, Any]) -> None:
    fitted, model = _fitted(name, params)
    assert model.kind == KIND_REFIT
    with pytest.raises(ValueError, match="refitted algorithm"):
        next(recommend(model, np.arange(3), 10))
    kernel = PairwiseKernel(model, fitted.algorithm)
    trainset = fitted.trainset
    full_user = trainset.to_inner_uid(FULL_USER)
    for top in recommend(model, np.arange(model.n_users), 10, kernel):
        if top.user == full_user:
            assert top.items.size == 0
            continue
        wanted, _ = _brute_force(fitted, top.user, 10)
        # the per-pair path calls the very same estimate(): no tolerance is needed
        assert top.items.tolist() == wanted
        raw_u = trainset.to_raw_uid(top.user)
        for i, score in zip(top.items.tolist(), top.scores.tolist()):
            published = fitted.algorithm.predict(raw_u, trainset.to_raw_iid(i)).est
            assert score == pytest.approx(published, abs=TOL)


def test_pairwise_ties_are_ranked_by_item_count() -> None:
    """KNNBasic with a high min_k falls back to the global mean often: the tie rule decides."""
    fitted, model = _fitted("KNNBasic", {"k": 40, "min_k": 22})
    top = next(recommend(model, np.asarray([0]), model.n_items, PairwiseKernel(model, fitted.algorithm)))
    values = top.scores.tolist()
    assert len(values) != len(set(values)), "the case is meant to have ties"
    counts = model.item_counts
    for (a, va), (b, vb) in zip(zip(top.items, values), zip(top.items[1:], values[1:])):
        assert va >= vb
        if va == vb:
            assert (-counts[a], a) < (-counts[b], b)


# Items 0..4 ranked for ties: item 1 first, then 3, 0, 2, 4.
TIE_RANK = np.asarray([2, 0, 3, 1, 4])
NEG = -np.inf
HANDCRAFTED = np.asarray(
    [
        [5, 7, 7, 7, 1],
        [1, 1, 1, 1, 1],
        [NEG, 2, NEG, 2, 3],
        [0, NEG, 0, NEG, NEG],
        [9, 8, 7, 6, 5],
        [2, 2, 3, 3, 2],
        [NEG, NEG, NEG, NEG, NEG],
        [4, 4, 4, 4, 5],
    ],
    dtype=np.float64,
)
# the full ranking of each row's finite entries, worked out by hand
HANDCRAFTED_ORDER = [
    [1, 3, 2, 0, 4],
    [1, 3, 0, 2, 4],
    [4, 1, 3],
    [0, 2],
    [0, 1, 2, 3, 4],
    [3, 2, 1, 0, 4],
    [],
    [4, 1, 3, 0, 2],
]


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 50])
def test_select_top_n_handcrafted(n: int) -> None:
    picked, values = select_top_n(HANDCRAFTED.copy(), n, TIE_RANK)
    k = min(n, 5)
    assert picked.shape == values.shape == (len(HANDCRAFTED), k)
    for row, order in enumerate(HANDCRAFTED_ORDER):
        wanted = order[:k]
        assert picked[row, : len(wanted)].tolist() == wanted, (row, n)
        assert values[row, : len(wanted)].tolist() == HANDCRAFTED[row, wanted].tolist()
        assert np.isneginf(values[row, len(wanted) :]).all()
        assert np.array_equal(values[row], HANDCRAFTED[row, picked[row]])
        assert len(set(picked[row].tolist())) == k


def test_select_top_n_random_ties_and_exclusions() -> None:
    rng = np.random.default_rng(3)
    for _ in range(30):
        m = int(rng.integers(1, 12))
        rows = int(rng.integers(1, 20))
        scores = rng.integers(0, 3, size=(rows, m)).astype(np.float64)
        scores[rng.random((rows, m)) < 0.2] = -np.inf
        tie_rank = rng.permutation(m)
        for n in range(1, m + 2):
            picked, values = select_top_n(scores.copy(), n, tie_rank)
            assert picked.shape == (rows, min(n, m))
            for r in range(rows):
                finite = [i for i in range(m) if np.isfinite(scores[r, i])]
                row = scores[r]
                wanted = sorted(finite, key=lambda i: (-row[i], tie_rank[i]))[:n]
                assert picked[r, : len(wanted)].tolist() == wanted
                assert np.isneginf(values[r, len(wanted) :]).all()


def test_select_top_n_empty() -> None:
    picked, values = select_top_n(np.zeros((3, 0)), 5, np.zeros(0, dtype=np.int64))
    assert picked.shape == values.shape == (3, 0)
    picked, values = select_top_n(np.zeros((0, 4)), 2, np.arange(4))
    assert picked.shape[0] == values.shape[0] == 0


def test_tie_rank() -> None:
    _, model = _fitted("SVD", SVD_CASES[0])
    rank = model.tie_rank()
    order = np.argsort(rank)
    expected = sorted(range(model.n_items), key=lambda i: (-model.item_counts[i], i))
    assert order.tolist() == expected


@pytest.mark.parametrize(
    ("name", "params"),
    [("SVD", SVD_CASES[0]), ("SVD", SVD_CASES[1]), ("KNNBasic", {"k": 40, "min_k": 22})],
)
@pytest.mark.parametrize("n", [5, 40, 60])
def test_fallback(name: str, params: dict[str, Any], n: int) -> None:
    fitted, model = _fitted(name, params)
    algo, trainset = fitted.algorithm, fitted.trainset
    unknown = {
        i: algo.predict("someone new", trainset.to_raw_iid(i), clip=False).est for i in range(model.n_items)
    }
    counts = [len(trainset.ir[i]) for i in range(model.n_items)]
    wanted = sorted(unknown, key=lambda i: (-unknown[i], -counts[i], i))[:n]
    top = fallback(model, n)
    assert top.user == -1
    assert top.items.tolist() == wanted
    for i, score in zip(wanted, top.scores.tolist()):
        assert score == pytest.approx(algo.predict("someone new", trainset.to_raw_iid(i)).est, abs=TOL)
    if name != "SVD" or params.get("biased") is False:
        # every estimate is the global mean: the order is the tie rule alone
        assert len(set(unknown.values())) == 1
        assert wanted == sorted(range(model.n_items), key=lambda i: (-counts[i], i))[:n]


def test_the_per_pair_path_warns_with_its_cost(caplog: pytest.LogCaptureFixture) -> None:
    fitted, model = _fitted("tests.unit.custom_algorithms:ItemMean", {})
    with caplog.at_level("WARNING", logger="recommender.scoring"):
        list(recommend(model, np.arange(5), 3, PairwiseKernel(model, fitted.algorithm)))
    message = caplog.text
    assert "ItemMean has no vectorised kernel" in message
    assert f"5 users x {model.n_items} items = {5 * model.n_items} estimate() calls" in message


@pytest.mark.parametrize(("name", "params"), [("SVD", SVD_CASES[0]), ("KNNBasic", {"k": 40, "min_k": 22})])
def test_blocks_ranked_on_threads_give_the_same_lists_in_order(
    name: str, params: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With BLAS on one thread per call, thread-safe kernels rank several blocks at once, each
    half the size (the blocks in flight hold what one did); the lists and their order are the
    serial ones. Kernels that keep state between calls (k-NN) stay on one thread."""
    _, model = _fitted(name, params)
    users = np.arange(model.n_users)[::-1].copy()
    serial, _ = _scored_blocks(model, users, monkeypatch, rows=8)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    threaded, blocks = _scored_blocks(model, users, monkeypatch, rows=8)
    kernel_threads = 2 if load_kernel(model).thread_safe else 1
    assert sorted((len(block) for block in blocks), reverse=True) == [  # threads finish in any order
        min(8 // kernel_threads, len(users) - k) for k in range(0, len(users), 8 // kernel_threads)
    ]
    assert [t.user for t in threaded] == users.tolist()
    for a, b in zip(serial, threaded, strict=True):
        assert np.array_equal(a.items, b.items)
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-13)  # BLAS rounds by block shape
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    assert scoring.scoring_threads() == 1, "beside BLAS's own threads, blocks would only contend"
