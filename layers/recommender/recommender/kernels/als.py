"""ALS (recommender/algorithms/implicit_als.py): est(u, i) = x_u . y_i, served by the factor kernel.

ALS has no mean and no biases, so its factors are exactly an unbiased factor model's (`pu`, `qi`),
and `FactorKernel` scores them: its float32 prefilter, then the exact float64 top-N. The other
arrays are for fold-in only (foldin.py): how a given rating becomes a value of the matrix
(`confidence`, `min_rating` when `has_min_rating`), and the solve's `alpha` and `regularization`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..confidence import CONFIDENCE_CODES
from . import register
from .factors import FactorKernel


def confidence_arrays(algo: Any) -> dict[str, np.ndarray]:
    """The confidence rule as numbers (model arrays are numeric only)."""
    return {
        "confidence": np.asarray(CONFIDENCE_CODES[algo.confidence], dtype=np.int64),
        "has_min_rating": np.asarray(algo.min_rating is not None, dtype=np.int64),
        "min_rating": np.asarray(0.0 if algo.min_rating is None else algo.min_rating, dtype=np.float64),
    }


def export_als(algo: Any, trainset: Any) -> dict[str, np.ndarray]:
    return {
        "pu": np.ascontiguousarray(algo.pu, dtype=np.float64),
        "qi": np.ascontiguousarray(algo.qi, dtype=np.float64),
        "alpha": np.asarray(algo.alpha, dtype=np.float64),
        "regularization": np.asarray(algo.regularization, dtype=np.float64),
        **confidence_arrays(algo),
    }


register("ALS", export=export_als, kernel=FactorKernel)
