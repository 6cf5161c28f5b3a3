"""Similar items for every item, as the predictors publish them (`similarity.ItemSimilarity`,
exact), beside implicit's `similar_items` on the same factors, neighbours or ratings, in one
process. Run it with BLAS on one thread per call, as the Predict function does:

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/similar.py [--items 59000] [--quick]

Each row ranks every item's top 10 others and prints seconds, and the share of items whose lists
agree with implicit's as sets (implicit ranks in float32 and breaks ties its own way, so a few
lists may differ where similarities tie or differ by float32 noise):
- factors, random and clustered (the worst case for the selection's bound: near ties), with the
  floor beside them: the float32 product of every item with the catalogue, nothing selected;
- ItemKNN's neighbours (K per item) against implicit's ItemItemRecommender on the same matrix;
- co-occurrence cosine from the ratings against implicit's CosineRecommender fitted on the same
  binary ratings (its fit computes the same cosine; its time includes that fit).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import scipy.sparse as sp

from recommender.model import ModelArrays
from recommender.similarity import ItemSimilarity, Raters, unit_rows

TOP_N = 10


def model(kind: str, n_items: int, support: np.ndarray, arrays: dict[str, np.ndarray]) -> ModelArrays:
    return ModelArrays(
        kind=kind,
        user_ids=[],
        item_ids=[f"item-{i}" for i in range(n_items)],
        seen_indptr=np.zeros(1, dtype=np.int64),
        seen_indices=np.zeros(0, dtype=np.int64),
        item_counts=support,
        global_mean=3.0,
        rating_scale=(1.0, 5.0),
        unknown_user_scores=np.zeros(n_items),
        user_order=np.zeros(0, dtype=np.int64),
        arrays=arrays,
        users_in_parts=True,
    )


Lists = list[tuple[set[int], np.ndarray]]  # each item's similar items and their similarities


def ours(similarity: ItemSimilarity) -> tuple[float, Lists]:
    started = time.perf_counter()
    items = np.arange(similarity.model.n_items)
    lists = [(set(top.tolist()), values) for _, top, values in similarity.lists(items, TOP_N)]
    return time.perf_counter() - started, lists


def theirs(similar_items: Callable[[], tuple[np.ndarray, np.ndarray]]) -> tuple[float, Lists]:
    """implicit's lists of N + 1 (the item itself is usually first), without the item itself and
    non-positive similarities, cut to N."""
    started = time.perf_counter()
    ids, scores = similar_items()
    seconds = time.perf_counter() - started
    lists = []
    for i, (row, value) in enumerate(zip(np.asarray(ids), np.asarray(scores, dtype=np.float64))):
        kept = (row != i) & (value > 0)
        lists.append((set(row[kept][:TOP_N].tolist()), value[kept][:TOP_N]))
    return seconds, lists


def agreement(a: Lists, b: Lists) -> tuple[float, float]:
    """(share of items with the same set, share with the same similarities in order): sets may
    differ only where similarities tie at the cut, which the second share shows."""
    sets = np.mean([x == y for (x, _), (y, _) in zip(a, b)])
    values = np.mean(
        [len(u) == len(v) and np.allclose(u, v, rtol=1e-5, atol=1e-6) for (_, u), (_, v) in zip(a, b)]
    )
    return float(sets), float(values)


def factor_floor(q: np.ndarray) -> float:
    """The float32 product of every item with the catalogue, in the same blocks, nothing kept."""
    unit32 = unit_rows(q).astype(np.float32)
    workers = len(os.sched_getaffinity(0))
    step = max(1, (64 * 2**20) // (8 * 4 * len(q)) // workers)
    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda s: float((unit32[s : s + step] @ unit32.T)[0, 0]), range(0, len(q), step)))
    return time.perf_counter() - started


def row(
    name: str, ours_s: float, peer_s: float, same: tuple[float, float], floor: float | None = None
) -> None:
    floor_text = f"{floor:8.1f}" if floor is not None else "       -"
    print(f"  {name:<38} {ours_s:8.1f} {peer_s:10.1f} {floor_text} {same[0]:10.3f} {same[1]:12.3f}")


def factors(n_items: int, d: int, clustered: bool, support: np.ndarray) -> None:
    from implicit.cpu.als import AlternatingLeastSquares

    rng = np.random.default_rng(0)
    if clustered:  # 50 tight clusters: every item has hundreds of near-equal neighbours
        centres = rng.normal(size=(50, d))
        q = centres[rng.integers(0, 50, n_items)] + rng.normal(0, 0.05, (n_items, d))
    else:
        q = rng.normal(size=(n_items, d))
    ours_s, mine = ours(ItemSimilarity(model("SVD", n_items, support, {"qi": q}), 1))
    peer = AlternatingLeastSquares(factors=d)
    peer.item_factors = q.astype(np.float32)
    peer.user_factors = np.zeros((1, d), np.float32)
    peer_s, other = theirs(lambda: peer.similar_items(np.arange(n_items), N=TOP_N + 1))
    label = "clustered (worst case)" if clustered else "random"
    row(f"factors x{d}, {label}", ours_s, peer_s, agreement(mine, other), factor_floor(q))


def ratings(n_items: int, n_users: int, per_user: int) -> sp.csr_matrix:
    """Binary user x item ratings with skewed (Zipf-like) popularity."""
    rng = np.random.default_rng(1)
    weights = 1.0 / np.arange(1, n_items + 1) ** 0.8
    weights /= weights.sum()
    users = np.repeat(np.arange(n_users), per_user)
    items = rng.choice(n_items, size=n_users * per_user, p=weights)
    matrix = sp.coo_matrix((np.ones(len(items)), (users, items)), shape=(n_users, n_items)).tocsr()
    matrix.data[:] = 1.0
    matrix.sort_indices()
    return matrix


def neighbours(x: sp.csr_matrix) -> None:
    from implicit.nearest_neighbours import ItemItemRecommender

    peer = ItemItemRecommender(K=50)
    peer.fit(x, show_progress=False)
    s = peer.similarity.tocsr()
    s.sort_indices()
    support = np.asarray(x.getnnz(axis=0), dtype=np.int64)
    arrays = {
        "sim_indptr": s.indptr.astype(np.int64),
        "sim_indices": s.indices.astype(np.int64),
        "sim_data": s.data.astype(np.float64),
    }
    ours_s, mine = ours(ItemSimilarity(model("ItemKNN", x.shape[1], support, arrays), 1))
    items = np.arange(x.shape[1])
    peer_s, other = theirs(lambda: peer.similar_items(items, N=TOP_N + 1))
    row("ItemKNN neighbours (K=50)", ours_s, peer_s, agreement(mine, other))


def co_occurrence(x: sp.csr_matrix) -> None:
    from implicit.nearest_neighbours import CosineRecommender

    support = np.asarray(x.getnnz(axis=0), dtype=np.int64)
    raters = Raters.from_seen(x.indptr.astype(np.int64), x.indices.astype(np.int64), x.shape[1])
    ours_s, mine = ours(ItemSimilarity(model("SlopeOne", x.shape[1], support, {}), 1, raters))
    items = np.arange(x.shape[1])

    def fit_and_list() -> tuple[np.ndarray, np.ndarray]:
        peer = CosineRecommender(K=TOP_N + 1)
        peer.fit(x, show_progress=False)
        ids, scores = peer.similar_items(items, N=TOP_N + 1)
        return np.asarray(ids), np.asarray(scores)

    peer_s, other = theirs(fit_and_list)
    row(f"co-occurrence ({x.nnz:,} ratings)", ours_s, peer_s, agreement(mine, other))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=59_000)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--users", type=int, default=60_000)
    parser.add_argument("--per-user", type=int, default=40)
    parser.add_argument("--quick", action="store_true", help="5,000 items, 5,000 users")
    args = parser.parse_args()
    if args.quick:
        args.items, args.users = 5_000, 5_000
    support = np.random.default_rng(2).integers(1, 1000, args.items)
    print(f"{args.items:,} items, top {TOP_N} similar of every item, {len(os.sched_getaffinity(0))} CPUs")
    print(
        f"  {'measure':<38} {'product':>8} {'implicit':>10} {'floor':>8} {'same sets':>10} {'same scores':>12}"
    )
    factors(args.items, args.factors, False, support)
    factors(args.items, args.factors, True, support)
    x = ratings(args.items, args.users, args.per_user)
    neighbours(x)
    co_occurrence(x)


if __name__ == "__main__":
    main()
