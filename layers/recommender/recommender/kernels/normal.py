"""NormalPredictor: Surprise draws every estimate from N(mu, sigma) with numpy's global generator,
mu the global mean and sigma the (maximum-likelihood) standard deviation of the training ratings.

No product can match those draws: they depend on how many draws came before, in one process. What
the product does instead: the same distribution, with Surprise's own mu and sigma, drawn from
`np.random.default_rng([seed, u])` for user u (inner id), one draw per item in inner-id order. The
seed is recorded in the model at Train time. Hence every user's list depends only on the model:
a rerun of the same run publishes the same lists, however users are cut into blocks or shards,
and users get independent streams. The published scores are these draws, clipped to the scale.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..config import DEFAULT_SEED
from . import Kernel, register


def export_normal(algo: Any, trainset: Any) -> dict[str, np.ndarray]:
    return {
        "mu": np.asarray(trainset.global_mean, dtype=np.float64),
        "sigma": np.asarray(algo.sigma, dtype=np.float64),
        "seed": np.asarray(DEFAULT_SEED, dtype=np.int64),
    }


def user_rng(seed: int, user: int) -> np.random.Generator:
    """The generator of one user's draws: a function of the seed and the inner id only."""
    return np.random.default_rng([seed, user])


class NormalKernel(Kernel):
    thread_safe = True  # no state kept between calls
    block_matrices = 1  # the draws are written straight into the scores

    def scores(self, users: np.ndarray) -> np.ndarray:
        a = self.arrays
        mu, sigma, seed = float(a["mu"]), float(a["sigma"]), int(a["seed"])
        n_items = self.model.n_items
        scores = np.empty((len(users), n_items), dtype=np.float64)
        for row, user in enumerate(users.tolist()):
            scores[row] = user_rng(seed, user).normal(mu, sigma, n_items)
        return scores


register("NormalPredictor", export=export_normal, kernel=NormalKernel)
