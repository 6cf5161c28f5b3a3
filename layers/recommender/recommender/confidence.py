"""How ratings become the implicit-feedback matrix of the `implicit` models (ALS and ItemKNN).

`implicit` reads a users x items matrix whose entries say how sure we are that the user likes the
item; an absent entry means "no evidence". Explicit ratings become that matrix by two parameters:
- `confidence`: "binary" (every kept rating is 1.0: "rated" as interest, what MovieLens-style
  top-N evaluation rewards) or "rating" (the rating itself, so a 5 counts more than a 1; every kept
  rating must then be above 0, since implicit reads a value <= 0 as no or negative evidence);
- `min_rating` (default none): ratings below it are left out of the matrix, as no evidence of
  interest. They still count as seen: the product never recommends an item the user rated.
A repeated (user, item) pair (no timestamp column to keep the latest) adds its values, as the
sparse matrix sums duplicates.

The values are kept per rating, in Surprise's `ur` order (the order of `ModelArrays.seen_indices`),
0.0 for a rating left out, so that kernels and fold-in rebuild a user's row from the model's arrays.
This module is numpy only: the predictors and fold-in use `values`; only Train builds the scipy
matrix (`user_item_matrix`, which imports scipy when called).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from numbers import Real
from typing import Any

import numpy as np

from .errors import DatasetError

CONFIDENCES = ("binary", "rating")
#: the codes stored in the model's arrays (numeric dtypes only)
CONFIDENCE_CODES = {name: code for code, name in enumerate(CONFIDENCES)}


def check_confidence(confidence: Any, min_rating: Any) -> None:
    if confidence not in CONFIDENCES:
        raise ValueError(f"confidence must be one of {', '.join(CONFIDENCES)}, not {confidence!r}")
    if min_rating is not None and (
        isinstance(min_rating, bool) or not isinstance(min_rating, Real) or not math.isfinite(min_rating)
    ):
        raise ValueError(f"min_rating must be a finite number or null, not {min_rating!r}")


def values(ratings: np.ndarray, confidence: str, min_rating: float | None) -> np.ndarray:
    """Each rating's value in the matrix (module docstring); 0.0 where it is left out."""
    ratings = np.asarray(ratings, dtype=np.float64)
    kept = np.ones(ratings.shape, dtype=bool) if min_rating is None else ratings >= min_rating
    if confidence == "binary":
        return kept.astype(np.float64)
    bad = kept & ~(ratings > 0)
    if bad.any():
        lowest = float(ratings[bad].min())
        raise DatasetError(
            f"confidence 'rating' needs every kept rating above 0, and {int(bad.sum()):,} are not"
            f" (lowest {lowest:g}): implicit reads a value <= 0 as no or negative evidence. Set"
            " min_rating above 0 to leave them out, or use confidence 'binary'"
        )
    return np.where(kept, ratings, 0.0)


def user_item_matrix(
    indptr: np.ndarray, items: np.ndarray, x: np.ndarray, n_items: int, dtype: Any = np.float32
) -> Any:
    """The scipy CSR matrix implicit fits on: the non-zero values only, duplicates summed."""
    from scipy.sparse import csr_matrix

    n_users = len(indptr) - 1
    users = np.repeat(np.arange(n_users), np.diff(indptr))
    kept = x != 0
    matrix = csr_matrix((x[kept], (users[kept], items[kept])), shape=(n_users, n_items), dtype=dtype)
    matrix.sum_duplicates()
    matrix.sort_indices()
    return matrix


def fit_library_model(make: Callable[[], Any], matrix: Any) -> Any:
    """implicit's model built by `make` and fitted, quietly and reproducibly: BLAS on one thread
    (implicit warns, when its model is built, that a BLAS thread pool slows its own threads down;
    and one thread fixes the order of BLAS's sums), no progress bar, and none of the warnings
    implicit raises about its own internal conversions."""
    import warnings

    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, "blas"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"implicit\.")
        model = make()
        model.fit(matrix, show_progress=False)
    return model
