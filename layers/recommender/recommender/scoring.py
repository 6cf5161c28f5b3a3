"""Top-N unseen items for every user of a shard, a bounded block of users at a time.

The ranking rule is in `selection.py`. The published `score` is the estimate clipped to the
rating scale, which is what Surprise's `predict()` returns. Items the user rated are never
recommended; a user who rated nearly everything gets a shorter list.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from .errors import NonFiniteScoreError
from .kernels import Kernel, load_kernel
from .model import KIND_REFIT, ModelArrays
from .selection import check_lists, mask_seen, select_top_n

Ranked = TypeVar("Ranked")

__all__ = [
    "PairwiseKernel",
    "UserTopN",
    "fallback",
    "mask_seen",
    "recommend",
    "select_top_n",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class UserTopN:
    user: int  # inner id
    items: np.ndarray  # inner ids, best first
    scores: np.ndarray  # clipped estimates


class PairwiseKernel(Kernel):
    """The per-pair path: the algorithm's own `estimate` for every (user, item) pair.

    For algorithms without a kernel, such as a user's own `AlgoBase` subclass. It costs one
    Python call per pair (tens of microseconds each), hence the warning with the count.
    """

    block_matrices = 1

    def __init__(self, model: ModelArrays, algorithm: Any) -> None:
        super().__init__(model)
        self.algorithm = algorithm

    def warn(self, users: int) -> None:
        calls = users * self.model.n_items
        logger.warning(
            "%s has no vectorised kernel: scoring pair by pair, %d users x %d items = %d estimate()"
            " calls (about %.0f s at 20 us per call)",
            type(self.algorithm).__name__,
            users,
            self.model.n_items,
            calls,
            calls * 20e-6,
        )

    def scores(self, users: np.ndarray) -> np.ndarray:
        # Surprise is imported by the refit that made `algorithm`; scoring with a kernel needs none.
        from .training import estimate_or_default

        items = range(self.model.n_items)
        return np.asarray(
            [[estimate_or_default(self.algorithm, int(u), i) for i in items] for u in users],
            dtype=np.float64,
        ).reshape(len(users), self.model.n_items)


def kernel_for(model: ModelArrays, algorithm: Any = None) -> Kernel:
    """The kernel that scores this model: its registered one, or for a `refit` model the per-pair
    path over the refitted `algorithm`, which only the caller that refitted it can give."""
    if model.kind == KIND_REFIT:
        if algorithm is None:
            raise ValueError("a 'refit' model is scored pair by pair: pass the refitted algorithm")
        return PairwiseKernel(model, algorithm)
    return load_kernel(model)


def scoring_threads() -> int:
    """Blocks of users ranked at once: one per CPU this process may run on (Lambda gives more
    vCPUs with more memory), when BLAS multiplies on one thread per call (OPENBLAS_NUM_THREADS=1,
    as the template sets for the predictors); otherwise one, as BLAS's own threads already take
    every CPU for the product, and blocks run beside them only contend (measured: 15% slower)."""
    if os.environ.get("OPENBLAS_NUM_THREADS") != "1":
        return 1
    return len(os.sched_getaffinity(0))


def recommend(
    model: ModelArrays, users: np.ndarray, n: int, kernel: Kernel | None = None
) -> Iterator[UserTopN]:
    """Yield the top-n unseen items of every user, a bounded block of users at a time."""
    kernel = kernel or kernel_for(model)
    if isinstance(kernel, PairwiseKernel):
        kernel.warn(len(users))
    tie_rank = model.tie_rank()
    low, high = model.rating_scale
    workers = scoring_threads() if kernel.thread_safe else 1
    step = max(1, kernel.block_rows() // workers)

    def rank(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return kernel.top_n(block, n, tie_rank)

    for block, (picked, values) in ranked_blocks(rank, users, step, workers):
        check_lists(model, block, n, values)
        lengths = np.isfinite(values).sum(axis=1).tolist()  # excluded entries are last, as -inf
        clipped = np.clip(values, low, high)
        for row, user in enumerate(block.tolist()):
            size = lengths[row]
            yield UserTopN(user, picked[row, :size], clipped[row, :size])


def ranked_blocks(
    rank: Callable[[np.ndarray], Ranked], rows: np.ndarray, step: int, workers: int
) -> Iterator[tuple[np.ndarray, Ranked]]:
    """Each block of `step` rows (users, or items for similar items) with `rank(block)`, in
    order. With several workers (kernels that allow it: `Kernel.thread_safe`), several blocks
    are ranked at once on threads: numpy releases the GIL in every step of a block, so a block's
    selection runs beside another block's product. The caller divides its block size by the
    workers, so the blocks in flight together hold what one block did: memory stays bounded."""
    blocks = (np.asarray(rows[start : start + step], dtype=np.int64) for start in range(0, len(rows), step))
    if workers == 1:
        for block in blocks:
            yield block, rank(block)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="top-n") as pool:
        in_flight: deque[tuple[np.ndarray, Future[Ranked]]] = deque()
        for block in blocks:
            in_flight.append((block, pool.submit(rank, block)))
            if len(in_flight) == workers:
                done, future = in_flight.popleft()
                yield done, future.result()
        while in_flight:
            done, future = in_flight.popleft()
            yield done, future.result()


def fallback(model: ModelArrays, n: int) -> UserTopN:
    """The list for a user the model has never seen: Surprise's estimate for an unknown user,
    ranked by the same rule, excluding nothing."""
    scores = model.unknown_user_scores
    bad = np.flatnonzero(~np.isfinite(scores))
    if bad.size:
        raise NonFiniteScoreError(
            f"the fallback list: the {model.kind} model scored a new user {scores[bad[0]]} for"
            f" {bad.size:,} of {model.n_items:,} items (item {model.item_ids[int(bad[0])]!r} first)"
        )
    picked, values = select_top_n(scores[None, :], n, model.tie_rank())
    low, high = model.rating_scale
    return UserTopN(-1, picked[0], np.clip(values[0], low, high))
