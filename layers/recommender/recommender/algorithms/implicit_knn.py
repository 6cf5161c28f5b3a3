"""ItemKNN: sparse item-item neighbours fitted by the `implicit` library
(`implicit.nearest_neighbours`), a ranking model for top-N lists that scales with the catalogue.

Each rating becomes a value of the users x items matrix X (`confidence` and `min_rating`, see
recommender/confidence.py). implicit weights X's columns (`weighting`), keeps for every item its
`K` most similar items by the dot product of the weighted columns, and scores

    est(u, i) = sum over the items j the user rated of X[u, j] S[j, i]

with S the sparse items x items similarity (at most K entries per row): the user's row of X
itself, unweighted, times S, as implicit's `recommend` computes it. The product exports S as CSR
arrays and a numpy kernel computes the same product (kernels/item_knn.py), so the predictors never
import implicit or scipy. Unlike EASE's dense items x items matrix, S holds at most K x n_items
entries: 59,000 items at K=100 take about 70 MB.

Parameters:
- `weighting`: "bm25" (default; `K1` 1.2 and `B` 0.75 are BM25's saturation and length
  normalisation), "tfidf" or "cosine": implicit's BM25Recommender, TFIDFRecommender and
  CosineRecommender;
- `K` (default 100): neighbours kept per item;
- `confidence` ("binary" or "rating", default "binary") and `min_rating` (default none);
- `num_threads` (default 1): implicit's fit threads; neighbours are exact, so threads change speed
  only.

What `estimate` returns is a SCORE, not a rating: evaluate ItemKNN by its ranking. Unknown users
and items raise `PredictionImpossible`; `default_prediction()` is 0.0, an empty row's score, so the
fallback for new users follows the product's tie rule alone (the most rated items first).

Fold-in (foldin.py) is exact: the given ratings' row of X times S.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

import numpy as np
from surprise import AlgoBase, PredictionImpossible, Trainset

from .. import confidence as conf
from ..params import WEIGHTINGS
from ..ratings import trainset_rows

DEFAULT_K = 100
DEFAULT_K1 = 1.2
DEFAULT_B = 0.75


def _check(weighting: Any, K: Any, K1: Any, B: Any, num_threads: Any) -> None:
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {', '.join(WEIGHTINGS)}, not {weighting!r}")
    for name, value, low in (("K", K, 1), ("num_threads", num_threads, 0)):
        if isinstance(value, bool) or not isinstance(value, Integral) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, not {value!r}")
    for name, value in (("K1", K1), ("B", B)):
        if isinstance(value, bool) or not isinstance(value, Real) or not 0 <= float(value) < math.inf:
            raise ValueError(f"{name} must be a finite number >= 0, not {value!r}")
    if B > 1:
        raise ValueError(f"B must be from 0 to 1, not {B!r}")


class ItemKNN(AlgoBase):  # type: ignore[misc]  # Surprise has no type hints
    """implicit's item-item neighbours as a Surprise algorithm; `estimate` is a ranking score."""

    def __init__(
        self,
        weighting: str = "bm25",
        K: int = DEFAULT_K,  # implicit's name
        K1: float = DEFAULT_K1,
        B: float = DEFAULT_B,
        confidence: str = "binary",
        min_rating: float | None = None,
        num_threads: int = 1,
    ) -> None:
        _check(weighting, K, K1, B, num_threads)
        conf.check_confidence(confidence, min_rating)
        AlgoBase.__init__(self)
        self.weighting = weighting
        self.K = int(K)
        self.K1 = float(K1)
        self.B = float(B)
        self.confidence = confidence
        self.min_rating = None if min_rating is None else float(min_rating)
        self.num_threads = int(num_threads)

    def library_model(self) -> Any:
        """implicit's own (unfitted) model for this weighting."""
        from implicit import nearest_neighbours as nn

        if self.weighting == "bm25":
            return nn.BM25Recommender(K=self.K, K1=self.K1, B=self.B, num_threads=self.num_threads)
        if self.weighting == "tfidf":
            return nn.TFIDFRecommender(K=self.K, num_threads=self.num_threads)
        return nn.CosineRecommender(K=self.K, num_threads=self.num_threads)

    def fit(self, trainset: Trainset) -> ItemKNN:
        AlgoBase.fit(self, trainset)
        indptr, items, ratings = trainset_rows(trainset)
        self.user_indptr, self.user_items = indptr, items
        self.user_values = conf.values(ratings, self.confidence, self.min_rating)
        matrix = conf.user_item_matrix(indptr, items, self.user_values, trainset.n_items, np.float64)
        model = conf.fit_library_model(self.library_model, matrix)
        self.model = model
        similarity = model.similarity.tocsr()
        similarity.sort_indices()
        self.sim_indptr = np.asarray(similarity.indptr, dtype=np.int64)
        self.sim_indices = np.asarray(similarity.indices, dtype=np.int64)
        self.sim_data = np.asarray(similarity.data, dtype=np.float64)
        # (row, column) of every entry as one sorted key: S[j, i] is one binary search away
        rows = np.repeat(np.arange(trainset.n_items, dtype=np.int64), np.diff(self.sim_indptr))
        self.sim_keys = rows * trainset.n_items + self.sim_indices
        return self

    def estimate(self, u: Any, i: Any) -> float:
        """sum over the user's ratings of X[u, j] S[j, i], left to right in Surprise's order."""
        if not (self.trainset.knows_user(u) and self.trainset.knows_item(i)):
            raise PredictionImpossible("User and/or item is unknown.")
        start, end = int(self.user_indptr[u]), int(self.user_indptr[u + 1])
        if start == end or len(self.sim_keys) == 0:
            return 0.0
        keys = self.user_items[start:end] * self.trainset.n_items + int(i)
        at = np.minimum(np.searchsorted(self.sim_keys, keys), len(self.sim_keys) - 1)
        found = self.sim_keys[at] == keys
        terms = np.where(found, self.user_values[start:end] * self.sim_data[at], 0.0)
        return float(np.cumsum(terms)[-1])

    def default_prediction(self) -> float:
        """An empty row's score: 0.0 (see the module docstring)."""
        return 0.0
