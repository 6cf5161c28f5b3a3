"""ALS: alternating least squares for implicit feedback (Hu, Koren and Volinsky 2008), fitted by the
`implicit` library (`implicit.cpu.als.AlternatingLeastSquares`), a ranking model for top-N lists.

Each rating becomes a value of the users x items matrix (`confidence` and `min_rating`, see
recommender/confidence.py), and implicit takes alpha x that value as the confidence that the user
likes the item; every absent pair is a "no" held with confidence 1. ALS alternates between solving
every user's factors given the items' and every item's given the users', minimising

    sum over all (u, i) of c_ui (p_ui - x_u . y_i)^2 + regularization (|x_u|^2 + |y_i|^2)

with p_ui = 1 where the user rated the item, else 0. A user's score for an item is the dot product
x_u . y_i: no mean and no biases, so the product's factor kernel serves it (kernels/factors.py,
unbiased), and the predictors never import implicit or scipy.

Parameters (implicit's names):
- `factors` (default 64), `regularization` (0.01), `alpha` (1.0), `iterations` (15): implicit's;
- `confidence` ("binary" or "rating", default "binary") and `min_rating` (default none);
- `random_state` (the run's seed by default): the random start of the factors;
- `num_threads` (default 1): implicit's fit threads. 1 makes a refit bit-for-bit the same; more
  threads are faster, and the factors may then differ in their last bits from run to run.
The factors are float32, as implicit fits them by default, and are published as float64.

What `estimate` returns is a SCORE, about 0 to 1 (how strongly the model expects the user to have
rated the item), not a rating: evaluate ALS by its ranking, not by RMSE. Unknown users and items
raise `PredictionImpossible`; `default_prediction()` is 0.0, the score of a user with no factors,
so the fallback for new users is ordered by the product's tie rule alone: the most rated items.

Fold-in (foldin.py) solves one user's factors given the item factors in closed form, as implicit's
`recalculate_user` does.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

import numpy as np
from surprise import AlgoBase, PredictionImpossible, Trainset

from .. import confidence as conf
from ..ratings import trainset_rows

DEFAULT_FACTORS = 64
DEFAULT_REGULARIZATION = 0.01
DEFAULT_ALPHA = 1.0
DEFAULT_ITERATIONS = 15


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, not {value!r}")


def _finite(name: str, value: Any, *, positive: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, not {value!r}")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be {'above' if positive else 'at least'} 0, not {value!r}")


class ALS(AlgoBase):  # type: ignore[misc]  # Surprise has no type hints
    """implicit's ALS as a Surprise algorithm; `estimate` is a ranking score (module docstring)."""

    factors: int
    regularization: float
    alpha: float
    iterations: int
    confidence: str
    min_rating: float | None
    random_state: int | None
    num_threads: int

    def __init__(
        self,
        factors: int = DEFAULT_FACTORS,
        regularization: float = DEFAULT_REGULARIZATION,
        alpha: float = DEFAULT_ALPHA,
        iterations: int = DEFAULT_ITERATIONS,
        confidence: str = "binary",
        min_rating: float | None = None,
        random_state: int | None = None,
        num_threads: int = 1,
    ) -> None:
        _positive_int("factors", factors)
        _finite("regularization", regularization, positive=False)
        _finite("alpha", alpha, positive=True)
        _positive_int("iterations", iterations)
        conf.check_confidence(confidence, min_rating)
        if isinstance(num_threads, bool) or not isinstance(num_threads, Integral) or num_threads < 0:
            raise ValueError(f"num_threads must be an integer >= 0 (0: every core), not {num_threads!r}")
        AlgoBase.__init__(self)
        self.factors = int(factors)
        self.regularization = float(regularization)
        self.alpha = float(alpha)
        self.iterations = int(iterations)
        self.confidence = confidence
        self.min_rating = None if min_rating is None else float(min_rating)
        self.random_state = random_state
        self.num_threads = int(num_threads)

    def library_model(self) -> Any:
        """implicit's own (unfitted) model with these parameters: the CPU class, whatever GPU exists."""
        from implicit.cpu.als import AlternatingLeastSquares

        return AlternatingLeastSquares(
            factors=self.factors,
            regularization=self.regularization,
            alpha=self.alpha,
            iterations=self.iterations,
            random_state=self.random_state,
            num_threads=self.num_threads,
        )

    def fit(self, trainset: Trainset) -> ALS:
        AlgoBase.fit(self, trainset)
        indptr, items, ratings = trainset_rows(trainset)
        x = conf.values(ratings, self.confidence, self.min_rating)
        matrix = conf.user_item_matrix(indptr, items, x, trainset.n_items)
        model = conf.fit_library_model(self.library_model, matrix)
        self.model = model
        self.pu = np.asarray(model.user_factors, dtype=np.float64)
        self.qi = np.asarray(model.item_factors, dtype=np.float64)
        return self

    def estimate(self, u: Any, i: Any) -> float:
        if not (self.trainset.knows_user(u) and self.trainset.knows_item(i)):
            raise PredictionImpossible("User and/or item is unknown.")
        return float(np.dot(self.pu[u], self.qi[i]))

    def default_prediction(self) -> float:
        """The score of a user without factors: 0.0 (see the module docstring)."""
        return 0.0
