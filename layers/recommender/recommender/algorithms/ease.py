"""EASE: Embarrassingly Shallow Autoencoders (Steck, WWW 2019), a ranking algorithm for top-N lists.

From the users x items matrix X (1 where the user rated the item, by default), EASE learns item-item
weights B in closed form, the minimiser of

    ||X - X B||^2 + reg ||B||^2    subject to diag(B) = 0

which is, with G = X^T X + reg I and P = G^-1:

    B[i, j] = -P[i, j] / P[j, j]   (i != j),    B[j, j] = 0

A user's score for item i is X_u . B[:, i]: the items the user rated, each weighted by how well it
predicts i across all users. No random start and no epochs: a fit is one matrix inversion.

Parameters:
- `reg` (lambda, default 300): the L2 penalty. It is added to G's diagonal, whose entries are the
  items' rating counts (implicit), so its useful size grows with the data: Steck used 500 on
  MovieLens-20M (136,000 users) and 200 to 1,000 on other sets. On a validation split of
  ml-latest-small's training part (610 users, benchmarks/quality.py), NDCG@10 was best at 300 and
  within 5% of that from 50 to 1,000: the choice is not delicate. With implicit=False, G grows
  with the squared ratings, so reg must grow with them: about 2,000 was best there (150 times the
  mean squared rating), and that rating-weighted model's NDCG@10 was 2.6% above the binary one's.
- `implicit` (default True): X is 1 for every rating, whatever its value ("rated" as implicit
  feedback, as in the paper). False: X holds the rating itself (raw, not centred), so a higher
  rating counts more; a low rating still counts as some interest, never as dislike.
- `max_items` (default 15,000): the memory guard below.

What `estimate` returns is a SCORE, not a rating. Scores rank items for one user; they do not
predict stars. X B approximates X itself, so a score says how much an item looks like the ones the
user rated (implicit=True: about 0 to 1, sometimes negative), or, with implicit=False, roughly the
rating the user would give times the chance of rating it at all (a 4-star item half likely to be
rated scores about 2). Surprise's `predict()` clips an estimate to the rating scale: as ratings
these are useless (RMSE and MAE mean nothing; evaluate EASE by its ranking). The product never
ranks by clipped values: it ranks by the unclipped estimate, like every algorithm. The published
`score` of a list is, as for every algorithm, the estimate clipped to the rating scale, and for
EASE it carries no information beyond the list's order. On ml-latest-small (scale 0.5 to 5) with
implicit=True, 95% of the top-10 scores are below 0.53, so nearly every published score is 0.5;
with implicit=False the top-10 scores run from about 0.4 to 2, mostly unclipped, yet still not
stars. Read EASE lists by their order.

Unknown users and items: `estimate` raises `PredictionImpossible`, as Surprise's algorithms do, and
`default_prediction()` is 0.0, not the global mean. 0.0 is what the closed form itself gives: a user
with no rating has an empty row (X_u . B = 0 for every item), and an item nobody rated has an empty
column in X, hence B[:, i] = 0. The fallback list for new users (every item scored 0.0) is then
ordered by the product's tie rule alone: the items with the most ratings first, that is the
popularity order, which is the usual cold-start answer for a ranking model.

Memory: B is a dense n_items x n_items float64 matrix, 8 n^2 bytes (760 MB for 9,724 items, 1.8 GB
for 15,000). The fit builds G in that one matrix and inverts it in place (LAPACK's Cholesky
routines, `_inverse_in_place`), so fitting peaks at about one such matrix; Train then writes the
model, B plus its serialised copies, about three (2.3 GB at 9,724 items). The default `max_items`
is 15,000 (Lambda's limit is 10,240 MB); `auto` measures EASE only where that peak fits Train's
memory (choice.py). The predictor loads B too. Above `max_items`, `fit` refuses with
`TooManyItemsError` before allocating anything. Raise `max_items` where the memory exists;
otherwise ItemKNN or ALS scale further.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

import numpy as np
from surprise import AlgoBase, PredictionImpossible, Trainset

from ..errors import TooManyItemsError
from ..ratings import trainset_rows

DEFAULT_REG = 300.0
DEFAULT_MAX_ITEMS = 15_000
#: float64 n_items x n_items matrices held at the peak of a fit (see the module docstring)
FIT_PEAK_MATRICES = 4


def _gigabytes(n_items: int, matrices: int) -> str:
    return f"{matrices * 8 * n_items * n_items / 1e9:.1f} GB"


def check_item_count(n_items: int, max_items: int) -> None:
    if n_items > max_items:
        raise TooManyItemsError(
            f"EASE: {n_items:,} items exceed max_items={max_items:,}. EASE holds dense items x items"
            f" float64 matrices: the weights alone take {_gigabytes(n_items, 1)} and fitting peaks at"
            f" about {_gigabytes(n_items, FIT_PEAK_MATRICES)}. Raise params.max_items if Train and the"
            " predictors have that memory, or choose an algorithm that scales with the number of"
            " items (SVD, or KNNBaseline item-based)"
        )


def user_rows(trainset: Trainset, implicit: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """X as CSR over inner user ids, in Surprise's order (`ur`): (indptr, item indices, values).
    Values are 1.0 (implicit) or the ratings. The same order as `ModelArrays.seen_indices`."""
    indptr, items, ratings = trainset_rows(trainset)
    return indptr, items, np.ones(len(items), dtype=np.float64) if implicit else ratings


def gram(indptr: np.ndarray, items: np.ndarray, values: np.ndarray, n_items: int) -> np.ndarray:
    """X^T X, dense, accumulated one user at a time over the items that user rated, in the one
    n x n matrix the fit then inverts in place. Costs the sum over users of (their ratings)^2."""
    g = np.zeros((n_items, n_items), dtype=np.float64)
    for u in range(len(indptr) - 1):
        start, end = int(indptr[u]), int(indptr[u + 1])
        if start == end:
            continue
        rated, x = items[start:end], values[start:end]
        if len(np.unique(rated)) == len(rated):
            g[np.ix_(rated, rated)] += np.outer(x, x)
        else:  # a repeated (user, item) pair: every rating counts, as in estimate's sum
            np.add.at(g, (rated[:, None], rated[None, :]), np.outer(x, x))
    return g


def ease_weights(g: np.ndarray, reg: float) -> np.ndarray:
    """B from the Gram matrix X^T X, in closed form (the module docstring), in `g`'s own memory:
    G + reg I is symmetric positive definite, so LAPACK's Cholesky factorisation and inverse
    (potrf, potri) overwrite it in place, and the peak is one n x n matrix, not the four of a
    general inverse. `g` is overwritten and returned as B."""
    n = g.shape[0]
    g[np.diag_indices(n)] += reg
    if n:
        _inverse_in_place(g)
    diagonal = np.diag(g).copy()
    g /= -diagonal[None, :]  # column j divided by -P[j, j]
    g[np.diag_indices(n)] = 0.0
    return g


def _inverse_in_place(g: np.ndarray) -> None:
    """P = G^-1 for a symmetric positive definite C-ordered `g`, written over it. `g.T` is the same
    matrix in Fortran order, which LAPACK overwrites without a copy; potri fills one triangle, and
    the other is copied over in bands of rows so that no n x n temporary is made."""
    from scipy.linalg import lapack  # Train's layer carries scipy; the predictors never fit

    n = g.shape[0]
    fortran = g.T
    factor, info = lapack.dpotrf(fortran, lower=True, overwrite_a=True, clean=False)
    if info == 0:
        factor, info = lapack.dpotri(factor, lower=True, overwrite_c=True)
    if info != 0 or not np.shares_memory(factor, g):
        raise np.linalg.LinAlgError(f"EASE: G + reg I is not positive definite (LAPACK info {info})")
    # `fortran`'s lower triangle holds P: that is g's upper triangle; copy it to g's lower one
    band = max(1, (1 << 22) // n)  # rows per band: about 32 MB of float64
    for start in range(0, n, band):
        stop = min(start + band, n)
        rows = g[start:stop, :stop]
        upper = g[:stop, start:stop].T  # the same entries, read from the filled triangle
        mask = np.arange(stop)[None, :] < np.arange(start, stop)[:, None]
        rows[mask] = upper[mask]


def _check_params(reg: Any, implicit: Any, max_items: Any) -> None:
    if isinstance(reg, bool) or not isinstance(reg, Real) or not math.isfinite(reg) or reg <= 0:
        raise ValueError(f"reg must be a finite number > 0, not {reg!r}")
    if not isinstance(implicit, bool):
        raise ValueError(f"implicit must be true or false, not {implicit!r}")
    if isinstance(max_items, bool) or not isinstance(max_items, Integral) or max_items < 1:
        raise ValueError(f"max_items must be an integer >= 1, not {max_items!r}")


class EASE(AlgoBase):  # type: ignore[misc]
    """EASE item-item weights in closed form; `estimate` is a ranking score (module docstring)."""

    def __init__(
        self, reg: float = DEFAULT_REG, implicit: bool = True, max_items: int = DEFAULT_MAX_ITEMS
    ) -> None:
        _check_params(reg, implicit, max_items)
        AlgoBase.__init__(self)
        self.reg = float(reg)
        self.implicit = implicit
        self.max_items = int(max_items)

    def fit(self, trainset: Trainset) -> EASE:
        check_item_count(trainset.n_items, self.max_items)  # before allocating anything
        AlgoBase.fit(self, trainset)
        self.user_indptr, self.user_items, self.user_values = user_rows(trainset, self.implicit)
        self.weights = ease_weights(
            gram(self.user_indptr, self.user_items, self.user_values, trainset.n_items), self.reg
        )
        return self

    def estimate(self, u: Any, i: Any) -> float:
        """X_u . B[:, i], summed left to right over the user's ratings in Surprise's order."""
        if not (self.trainset.knows_user(u) and self.trainset.knows_item(i)):
            raise PredictionImpossible("User and/or item is unknown.")
        start, end = int(self.user_indptr[u]), int(self.user_indptr[u + 1])
        if start == end:
            return 0.0
        terms = self.user_values[start:end] * self.weights[self.user_items[start:end], i]
        return float(np.cumsum(terms)[-1])

    def default_prediction(self) -> float:
        """The score of an empty user row or item column: 0.0 (see the module docstring)."""
        return 0.0
