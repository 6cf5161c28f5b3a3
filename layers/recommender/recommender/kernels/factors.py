"""Factor models: SVD, SVD++, NMF and BaselineOnly share one estimate,

    est = mu + bu[u] + bi[i] + qi[i] . p[u]      (biased)
    est = qi[i] . p[u]                            (SVD and NMF with biased=False)

where p[u] is the user's factors (`pu`), and for SVD++ `pu[u] + |I(u)|^-1/2 * sum of yj over the
items u rated`, computed once in Train exactly as Surprise computes it. BaselineOnly has no
factors. Terms are added in Surprise's order so that the float results agree.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import Kernel, register


def _biases(algo: Any) -> dict[str, np.ndarray]:
    return {"bu": np.asarray(algo.bu, dtype=np.float64), "bi": np.asarray(algo.bi, dtype=np.float64)}


def export_svd(algo: Any, trainset: Any) -> dict[str, np.ndarray]:
    """SVD and NMF: factors, and biases when the model is biased."""
    arrays = {"pu": np.asarray(algo.pu, dtype=np.float64), "qi": np.asarray(algo.qi, dtype=np.float64)}
    if algo.biased:
        arrays.update(_biases(algo))
    return arrays


def export_svdpp(algo: Any, trainset: Any) -> dict[str, np.ndarray]:
    """SVD++: the implicit-feedback term folded into each user's factors, as Surprise sums it."""
    pu = np.asarray(algo.pu, dtype=np.float64)
    effective = np.empty_like(pu)
    for u in range(trainset.n_users):
        rated = trainset.ur[u]
        implicit = sum(algo.yj[j] for (j, _) in rated) / np.sqrt(len(rated))
        effective[u] = pu[u] + implicit
    return {"pu": effective, "qi": np.asarray(algo.qi, dtype=np.float64), **_biases(algo)}


def export_baseline(algo: Any, trainset: Any) -> dict[str, np.ndarray]:
    return _biases(algo)


class FactorKernel(Kernel):
    block_matrices = 2

    def scores(self, users: np.ndarray) -> np.ndarray:
        a = self.arrays
        if "bu" not in a:  # unbiased
            dots: np.ndarray = a["pu"][users] @ a["qi"].T
            return dots
        scores: np.ndarray = (self.model.global_mean + a["bu"][users])[:, None] + a["bi"][None, :]
        if "pu" in a:
            scores += a["pu"][users] @ a["qi"].T
        return scores


register("SVD", "NMF", export=export_svd, kernel=FactorKernel)
register("SVDpp", export=export_svdpp, kernel=FactorKernel)
register("BaselineOnly", export=export_baseline, kernel=FactorKernel)
