"""Similar items for every item: this product's exact cosine top-N against implicit's
`similar_items`, on the same item factors (groundwork for issue 17; not yet in the pipeline).

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/similar.py [--items 59000] [--factors 64]

Both rank every item's top 10 others by the cosine of item factors. The product computes float32
cosines for blocks of items against the catalogue, on one thread per CPU, and selects exactly
(`similarity.top_similar_by_factors`: the user lists' bound, then float64 rescoring); implicit normalises in float32 and selects
its own way. Prints each one's seconds and the share of items whose lists agree as sets.
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from recommender.similarity import top_similar_by_factors, unit_rows

TOP_N = 10


def product(q: np.ndarray, support: np.ndarray, tie_rank: np.ndarray) -> np.ndarray:
    step = max(1, (64 * 2**20) // (4 * 2 * len(q)))
    unit = unit_rows(q)
    unit32 = unit.astype(np.float32)
    starts = range(0, len(q), step)

    def block(start: int) -> np.ndarray:
        items = np.arange(start, min(start + step, len(q)))
        return top_similar_by_factors(unit, unit32, items, TOP_N, tie_rank, support, 1)[0]

    with ThreadPoolExecutor(len(os.sched_getaffinity(0))) as pool:
        return np.concatenate(list(pool.map(block, starts)))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=59_000)
    parser.add_argument("--factors", type=int, default=64)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(50, args.factors))
    q = centres[rng.integers(0, 50, args.items)] + rng.normal(0, 0.5, (args.items, args.factors))
    support = rng.integers(1, 1000, args.items)
    tie_rank = np.empty(args.items, dtype=np.int64)
    tie_rank[np.lexsort((np.arange(args.items), -support))] = np.arange(args.items)

    started = time.perf_counter()
    ours = product(q, support, tie_rank)
    ours_s = time.perf_counter() - started

    from implicit.cpu.als import AlternatingLeastSquares

    peer = AlternatingLeastSquares(factors=args.factors)
    peer.item_factors = q.astype(np.float32)
    peer.user_factors = np.zeros((1, args.factors), np.float32)
    started = time.perf_counter()
    ids, _ = peer.similar_items(np.arange(args.items), N=TOP_N + 1)
    peer_s = time.perf_counter() - started
    same = np.mean(
        [set(a.tolist()) == set(b[b != i].tolist()[:TOP_N]) for i, (a, b) in enumerate(zip(ours, ids))]
    )
    print(f"{args.items:,} items x {args.factors} factors, top {TOP_N} similar of every item")
    print(
        f"  product (exact): {ours_s:.1f} s   implicit similar_items: {peer_s:.1f} s   same sets: {same:.3f}"
    )


if __name__ == "__main__":
    main()
