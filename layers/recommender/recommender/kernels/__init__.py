"""Vectorised scoring kernels: one per Surprise algorithm family, reading only the model's arrays.

A kernel computes, for a block of users and every item at once, exactly what Surprise's
`estimate(u, i)` returns (before clipping), and Surprise's own fallback, `default_prediction()`
(the global mean), wherever `estimate` would raise `PredictionImpossible`. Nothing on this path
unpickles anything or builds a Surprise object: the predictor Lambda needs numpy and the arrays.

Each family registers two things for the Surprise class names it serves:
- `export(algo, trainset) -> dict[str, np.ndarray]`: run in Train, the arrays the kernel needs
  (numeric dtypes only, so `np.load(..., allow_pickle=False)` reads them);
- a `Kernel` subclass, built from the loaded `ModelArrays`.
A kernel also says which of its arrays belong to the users (`user_layout`), so that Train can
cut the model into an item side and one part per shard (see `model`).
Algorithms without a kernel (a user's own `AlgoBase` subclass) take the per-pair path in
`scoring.PairwiseKernel`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import NoKernelError
from ..model import UserLayout
from ..selection import check_scores, mask_seen, select_top_n

if TYPE_CHECKING:
    from ..model import ModelArrays

SCORE_BLOCK_BYTES = 64 * 1024 * 1024  # bound on the float64 users x items block held at once


def rows_within(budget_bytes: int, bytes_per_cell: int, columns: int) -> int:
    """Rows of `columns` cells that fit in `budget_bytes`. At least one: a row wider than the budget
    is still processed, alone, so the bound is on blocks of rows, never a refusal."""
    return max(1, budget_bytes // (bytes_per_cell * max(1, columns)))


Export = Callable[[Any, Any], dict[str, np.ndarray]]


class Kernel:
    """Scores blocks of users against the whole catalogue. Subclasses implement `scores`."""

    #: float64 users x items matrices `scores` holds at its peak (the result + temporaries)
    block_matrices = 2
    #: what the generic top_n holds at its peak, in rows the group bound leaves open: the scores,
    #: a partitioned copy, the tie ranks at the cut and three boolean masks (select_rows)
    selection_matrices = 3

    #: whether `top_n` may run for several blocks at once on threads (no state shared between
    #: calls, or only per-thread state); kernels that cache as they go say False
    thread_safe = False

    def __init__(self, model: ModelArrays) -> None:
        self.model = model
        self.arrays = model.arrays

    @classmethod
    def user_layout(cls, arrays: dict[str, np.ndarray]) -> UserLayout | None:
        """The arrays a shard's user part carries, or None when scoring a user needs every user."""
        return None

    def scores(self, users: np.ndarray) -> np.ndarray:
        """Unclipped estimates, shape (len(users), n_items), float64; impossible -> global mean."""
        raise NotImplementedError

    def block_rows(self) -> int:
        """Users per block, so that a block's matrices stay within SCORE_BLOCK_BYTES."""
        peak = max(self.block_matrices, self.selection_matrices)
        return rows_within(SCORE_BLOCK_BYTES, 8 * peak, self.model.n_items)

    def top_n(self, users: np.ndarray, n: int, tie_rank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Top-n unseen items of a block of users: (indices, unclipped values), -inf padded."""
        scores = self.scores(users)
        check_scores(scores, self.model, users)
        mask_seen(scores, self.model, users)
        return select_top_n(scores, n, tie_rank)


@dataclass(frozen=True)
class KernelSpec:
    export: Export
    kernel: type[Kernel]


REGISTRY: dict[str, KernelSpec] = {}


def register(*names: str, export: Export, kernel: type[Kernel]) -> None:
    for name in names:
        REGISTRY[name] = KernelSpec(export, kernel)


def kernel_name(algo: Any) -> str | None:
    """The registered name serving this algorithm, or None. Only Surprise's own classes and the
    product's own (`recommender.algorithms`) qualify, exactly: a subclass may override `estimate`,
    and then only the per-pair path is exact."""
    import surprise

    from ..algorithms import PRODUCT_ALGORITHMS

    name = type(algo).__name__
    if name not in REGISTRY:
        return None
    if type(algo) is getattr(surprise, name, None) or type(algo) is PRODUCT_ALGORITHMS.get(name):
        return name
    return None


def export_arrays(algo: Any, trainset: Any) -> dict[str, np.ndarray]:
    name = kernel_name(algo)
    if name is None:
        raise NoKernelError(f"no kernel for {type(algo).__name__}")
    return REGISTRY[name].export(algo, trainset)


def user_layout(model: ModelArrays) -> UserLayout | None:
    """How this model's users are cut into user parts (one per shard); None: the model stays whole."""
    spec = REGISTRY.get(model.kind)
    return None if spec is None else spec.kernel.user_layout(model.arrays)


def load_kernel(model: ModelArrays) -> Kernel:
    spec = REGISTRY.get(model.kind)
    if spec is None:
        raise NoKernelError(f"no kernel for model kind {model.kind!r}")
    return spec.kernel(model)


# Importing the families registers them.
from . import als, co_clustering, ease, factors, item_knn, knn, normal, slope_one  # noqa: E402, F401
