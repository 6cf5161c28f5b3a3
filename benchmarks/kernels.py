"""Top-N for every user: this product's kernels against the seed's per-pair loop and `implicit`.

    .venv/bin/pip install -e '.[bench]'        # implicit: a benchmark-only dependency
    .venv/bin/python benchmarks/kernels.py      # every size below; --quick for the small ones only

Side by side, in one process, on the same data and the same factors (100 factors, top 10, the
items each user rated excluded):
- the seed article's predictor: Surprise's `predict` once per unseen (user, item) pair, measured
  on a sample of users and extrapolated to all users (stated as such);
- `implicit`'s batch `recommend(userids, user_items, N, filter_already_liked_items=True)` given the
  same factors, the biases folded into two extra factor columns: the strongest common CPU peer;
- this product's kernel (`FactorKernel.top_n` through `scoring.recommend`).
It prints each one's time (the product and implicit: best of 3 runs), its ratio to the product, the overlap of its top-N lists with the
product's, and peak memory (the process's resident set above its level before the call, sampled
every 2 ms), then the same for the k-NN kernels at a size k-NN fits, and one predictor shard of
5,000 users over 60,000 items. Then everything again as JSON.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from surprise import SVD

from recommender.model import ModelArrays, utf8_order
from recommender.sample_data import SyntheticSpec, synthetic_ratings
from recommender.scoring import recommend
from recommender.snapshot import ratings_from_rows
from recommender.training import build_trainset, fit, model_from_fit

TOP_N = 10
FACTORS = 100
REPEAT = 3  # the product and implicit: best of 3; the per-pair loop: once, on a sample
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * PAGE


def best_of(runs: int, work: Callable[[], Any]) -> tuple[Any, float, float]:
    """`measure` repeated: the fastest time, the largest peak (the first run pays page faults and
    lazy initialisation, for the product and implicit alike)."""
    results = [measure(work) for _ in range(runs)]
    return results[-1][0], min(r[1] for r in results), max(r[2] for r in results)


def measure(work: Callable[[], Any]) -> tuple[Any, float, float]:
    """(result, seconds, peak resident MB above the level before)."""
    base = rss()
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    result = work()
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    return result, seconds, (max(peak[0], rss()) - base) / 2**20


def factor_problem(n_users: int, n_items: int, per_user: int, seed: int = 0) -> tuple[ModelArrays, SVD]:
    """An SVD model of the given size with long-tail 'seen' items, built without a slow fit: the
    same arrays serve the product's kernel, implicit and Surprise's own SVD object."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
    popularity /= popularity.sum()
    counts = np.clip(rng.poisson(per_user, n_users), 1, n_items // 2)
    users = np.repeat(np.arange(n_users), counts)
    items = np.concatenate([rng.choice(n_items, size=c, replace=False, p=popularity) for c in counts])
    ratings = ratings_from_rows(
        zip(
            (f"u{u}" for u in users.tolist()),
            (f"i{i}" for i in items.tolist()),
            rng.integers(1, 6, len(users)).astype(float).tolist(),
            strict=True,
        )
    )
    trainset = build_trainset(ratings, (1.0, 5.0))
    algo = SVD(n_factors=FACTORS)
    algo.trainset = trainset
    algo.pu = rng.normal(0, 0.1, (trainset.n_users, FACTORS))
    algo.qi = rng.normal(0, 0.1, (trainset.n_items, FACTORS))
    algo.bu = rng.normal(0, 0.3, trainset.n_users)
    algo.bi = rng.normal(0, 0.5, trainset.n_items)
    indptr = np.zeros(trainset.n_users + 1, dtype=np.int64)
    np.cumsum([len(trainset.ur[u]) for u in range(trainset.n_users)], out=indptr[1:])
    indices = np.fromiter(
        (i for u in range(trainset.n_users) for i, _ in trainset.ur[u]), np.int32, int(indptr[-1])
    )
    model = ModelArrays(
        kind="SVD",
        user_ids=ratings.user_ids,
        item_ids=ratings.item_ids,
        seen_indptr=indptr,
        seen_indices=indices,
        item_counts=np.bincount(ratings.items, minlength=trainset.n_items),
        global_mean=float(trainset.global_mean),
        rating_scale=(1.0, 5.0),
        unknown_user_scores=trainset.global_mean + algo.bi,
        user_order=utf8_order(ratings.user_ids),
        arrays={"pu": algo.pu, "qi": algo.qi, "bu": algo.bu, "bi": algo.bi},
    )
    return model, algo


def product(model: ModelArrays, users: np.ndarray) -> list[list[int]]:
    return [top.items.tolist() for top in recommend(model, users, TOP_N)]


def implicit_recommend(model: ModelArrays) -> tuple[list[list[int]], float, float]:
    from implicit.cpu.als import AlternatingLeastSquares
    from scipy.sparse import csr_matrix

    a = model.arrays
    user_factors = np.hstack([a["pu"], np.ones((model.n_users, 1)), (model.global_mean + a["bu"])[:, None]])
    item_factors = np.hstack([a["qi"], a["bi"][:, None], np.ones((model.n_items, 1))])
    peer = AlternatingLeastSquares(factors=user_factors.shape[1])  # only its recommend() is used
    peer.user_factors = np.ascontiguousarray(user_factors, dtype=np.float32)
    peer.item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)
    liked = csr_matrix(
        (np.ones(len(model.seen_indices), dtype=np.float32), model.seen_indices, model.seen_indptr),
        shape=(model.n_users, model.n_items),
    )
    users = np.arange(model.n_users)
    (ids, _scores), seconds, memory = best_of(
        REPEAT, lambda: peer.recommend(users, liked, N=TOP_N, filter_already_liked_items=True)
    )
    return [row[row >= 0].tolist() for row in ids], seconds, memory


def per_pair(model: ModelArrays, algo: Any, sample: int) -> tuple[list[list[int]], float, int]:
    """The seed's loop: predict() for every unseen item of each sampled user, then sort."""
    users = np.linspace(0, model.n_users - 1, sample).astype(int)
    lists = []
    started = time.perf_counter()
    for u in users.tolist():
        raw = model.user_ids[u]
        seen = set(model.seen(u).tolist())
        preds = [
            (algo.predict(raw, model.item_ids[i], clip=False).est, i)
            for i in range(model.n_items)
            if i not in seen
        ]
        preds.sort(key=lambda p: -p[0])
        lists.append([i for _, i in preds[:TOP_N]])
    return lists, time.perf_counter() - started, len(users)


def overlap(a: list[list[int]], b: list[list[int]]) -> float:
    shared = sum(len(set(x) & set(y)) for x, y in zip(a, b, strict=True))
    return shared / max(1, sum(len(y) for y in b))


def factor_row(n_users: int, n_items: int, per_user: int, sample: int) -> dict[str, Any]:
    model, algo = factor_problem(n_users, n_items, per_user)
    users = np.arange(model.n_users)
    ours, ours_s, ours_mb = best_of(REPEAT, lambda: product(model, users))
    peer, peer_s, peer_mb = implicit_recommend(model)
    seed_lists, seed_sample_s, sampled = per_pair(model, algo, sample)
    sampled_users = np.linspace(0, model.n_users - 1, sample).astype(int).tolist()
    seed_s = seed_sample_s / sampled * model.n_users
    return {
        "size": f"{model.n_users:,} x {model.n_items:,}",
        "ratings": int(model.seen_indptr[-1]),
        "product_seconds": ours_s,
        "product_peak_mb": ours_mb,
        "implicit_seconds": peer_s,
        "implicit_peak_mb": peer_mb,
        "implicit_over_product": peer_s / ours_s,
        "implicit_overlap": overlap(peer, ours),
        "implicit_identical_users": sum(set(x) == set(y) for x, y in zip(peer, ours, strict=True))
        / len(ours),
        "per_pair_sample_users": sampled,
        "per_pair_sample_seconds": seed_sample_s,
        "per_pair_seconds_extrapolated": seed_s,
        "per_pair_over_product": seed_s / ours_s,
        "per_pair_overlap": overlap(seed_lists, [ours[u] for u in sampled_users]),
    }


def knn_rows(n_users: int, n_items: int, per_user: int, sample: int) -> list[dict[str, Any]]:
    spec = SyntheticSpec(users=n_users, items=n_items, ratings_per_user=per_user, seed=1)
    ratings = ratings_from_rows((u, i, r) for u, i, r, _ in synthetic_ratings(spec))
    rows = []
    for name, user_based in (("KNNBaseline", True), ("KNNBaseline", False), ("KNNWithMeans", False)):
        params = {"k": 40, "sim_options": {"name": "pearson_baseline", "user_based": user_based}}
        fitted = fit(ratings, name, params, None)
        model = model_from_fit(fitted)
        users = np.arange(model.n_users)
        ours, ours_s, ours_mb = measure(functools.partial(product, model, users))
        seed_lists, seed_sample_s, sampled = per_pair(model, fitted.algorithm, sample)
        sampled_users = np.linspace(0, model.n_users - 1, sample).astype(int).tolist()
        seed_s = seed_sample_s / sampled * model.n_users
        rows.append(
            {
                "algorithm": f"{name} {'user' if user_based else 'item'}-based pearson_baseline k=40",
                "kind": model.kind,
                "size": f"{model.n_users:,} x {model.n_items:,}",
                "product_seconds": ours_s,
                "product_peak_mb": ours_mb,
                "per_pair_seconds_extrapolated": seed_s,
                "per_pair_over_product": seed_s / ours_s,
                "per_pair_overlap": overlap(seed_lists, [ours[u] for u in sampled_users]),
            }
        )
    return rows


def shard_memory(n_users: int, n_items: int) -> dict[str, Any]:
    """One predictor shard: the whole model loaded, then its users scored block by block."""
    model, _ = factor_problem(n_users, n_items, per_user=50, seed=2)
    users = np.arange(model.n_users)
    _, seconds, peak = measure(lambda: product(model, users))
    model_mb = sum(v.nbytes for v in model.arrays.values()) / 2**20
    return {
        "shard": f"{n_users:,} users x {n_items:,} items",
        "seconds": seconds,
        "peak_mb_above_model": peak,
        "model_mb": model_mb,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="only 5,000 x 5,000 and the k-NN rows")
    args = parser.parse_args()

    sizes = [(5_000, 5_000, 100, 20)] + ([] if args.quick else [(50_000, 20_000, 100, 5)])
    factors = [factor_row(*size) for size in sizes]
    knn = knn_rows(1_000, 500, 40, 20)
    shard = None if args.quick else shard_memory(5_000, 60_000)

    print(f"\nSVD top-{TOP_N}, {FACTORS} factors, seen items excluded (seconds; ratio = other / product)")
    print(
        f"{'size':>16} {'product':>9} {'implicit':>9} {'ratio':>6} {'overlap':>8} {'per-pair*':>11} {'ratio':>8}"
        f" {'peak MB product/implicit':>25}"
    )
    for r in factors:
        print(
            f"{r['size']:>16} {r['product_seconds']:9.2f} {r['implicit_seconds']:9.2f} {r['implicit_over_product']:6.2f}"
            f" {r['implicit_overlap']:8.4f} {r['per_pair_seconds_extrapolated']:11.1f} {r['per_pair_over_product']:8.0f}"
            f" {r['product_peak_mb']:12.0f} / {r['implicit_peak_mb']:.0f}"
        )
    print("  * per-pair: measured on a sample of users and extrapolated to all users")
    print("\nk-NN kernels (pearson_baseline, k=40)")
    for r in knn:
        print(
            f"  {r['algorithm']:<52} {r['size']:>12} kernel {r['product_seconds']:7.2f} s  per-pair* "
            f"{r['per_pair_seconds_extrapolated']:8.1f} s  ratio {r['per_pair_over_product']:6.0f}  overlap {r['per_pair_overlap']:.3f}"
        )
    if shard:
        print(
            f"\nOne shard, {shard['shard']}: {shard['seconds']:.1f} s, peak {shard['peak_mb_above_model']:.0f} MB"
            f" above the loaded model ({shard['model_mb']:.0f} MB of arrays)"
        )
    print(json.dumps({"factors": factors, "knn": knn, "shard": shard}, indent=1))


if __name__ == "__main__":
    main()
