"""Fitting a Surprise algorithm on a dataset snapshot.

The trainset is built from compact arrays, without pandas, yet identical to what
`Dataset.load_from_df(df, reader).build_full_trainset()` builds from the snapshot's rows in their
stored order: same inner ids, same rating order in `ur` and `ir`. Anyone can therefore reproduce a
published model with Surprise alone from the snapshot, the seed and the parameters.
"""

from __future__ import annotations

import importlib
import inspect
import platform
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
import surprise
from surprise import AlgoBase, PredictionImpossible, Trainset

from . import kernels
from .algorithms import PRODUCT_ALGORITHMS
from .config import DEFAULT_SEED, ConfigError
from .dataset import DatasetError, Ratings
from .model import KIND_REFIT, ModelArrays, utf8_order

ALGORITHM_NAMES = (
    "SVD",
    "SVDpp",
    "NMF",
    "BaselineOnly",
    "KNNBasic",
    "KNNWithMeans",
    "KNNWithZScore",
    "KNNBaseline",
    "SlopeOne",
    "CoClustering",
    "NormalPredictor",
)
#: the product's own algorithms (recommender/algorithms), named like Surprise's, each with a kernel
PRODUCT_ALGORITHM_NAMES = tuple(PRODUCT_ALGORITHMS)


def algorithm_class(name: str) -> type[AlgoBase]:
    """A Surprise algorithm by name, one of the product's own (`PRODUCT_ALGORITHM_NAMES`), or a
    user's own `AlgoBase` subclass as "module:Class".

    A user's class must be importable where the steps run (in Lambda: from a layer). It is scored
    pair by pair, since no kernel knows its `estimate`.
    """
    if ":" in name:
        module_name, _, class_name = name.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as error:
            raise ConfigError(f"algorithm {name!r} cannot be imported: {error}") from None
        if not (isinstance(cls, type) and issubclass(cls, AlgoBase)):
            raise ConfigError(f"algorithm {name!r} is not a surprise.AlgoBase subclass")
        return cls
    if name in PRODUCT_ALGORITHMS:
        return PRODUCT_ALGORITHMS[name]
    if name not in ALGORITHM_NAMES:
        raise ConfigError(
            f"algorithm {name!r} is not one of: {', '.join(ALGORITHM_NAMES + PRODUCT_ALGORITHM_NAMES)}"
            " (or a 'module:Class' path to your own AlgoBase subclass)"
        )
    builtin: type[AlgoBase] = getattr(surprise, name)
    return builtin


def effective_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments the algorithm is built with: the user's, checked, plus the defaults
    that make a run reproducible and quiet (a fixed `random_state`, `verbose=False`)."""
    cls = algorithm_class(name)
    parameters = inspect.signature(cls.__init__).parameters.values()
    accepted = {
        p.name for p in parameters if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    }
    if any(p.kind == p.VAR_KEYWORD for p in parameters):
        # The k-NN algorithms pass **kwargs to AlgoBase, which reads these two (bsl_options
        # configures the baselines of the pearson_baseline similarity).
        accepted |= {"bsl_options", "sim_options"}
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise ConfigError(
            f"params: {name} has no parameter(s) {', '.join(unknown)}"
            f" (it takes: {', '.join(sorted(accepted)) or 'none'})"
        )
    result = dict(params)
    if "random_state" in accepted:
        result.setdefault("random_state", DEFAULT_SEED)
    if "verbose" in accepted:
        result.setdefault("verbose", False)
    return result


def make_algorithm(name: str, params: dict[str, Any]) -> AlgoBase:
    try:
        return algorithm_class(name)(**effective_params(name, params))
    except ConfigError:
        raise
    except (TypeError, ValueError) as error:
        raise ConfigError(f"params: {name} rejected its parameters: {error}") from error


def rating_scale_of(ratings: Ratings, configured: tuple[float, float] | None) -> tuple[float, float]:
    """The configured scale, or the data's own range when none is given."""
    if ratings.n_ratings == 0:
        raise DatasetError("the ratings table has no usable rows")
    low, high = float(ratings.ratings.min()), float(ratings.ratings.max())
    if configured is None:
        return (low, high) if low < high else (low, low + 1.0)
    if low < configured[0] or high > configured[1]:
        raise DatasetError(
            f"rating_scale {list(configured)} does not hold the data's ratings ({low} to {high})"
        )
    return configured


def build_trainset(ratings: Ratings, rating_scale: tuple[float, float]) -> Trainset:
    """Surprise's Trainset from arrays; see the module docstring for why it must be identical."""
    ur: defaultdict[int, list[tuple[int, float]]] = defaultdict(list)
    ir: defaultdict[int, list[tuple[int, float]]] = defaultdict(list)
    for u, i, r in zip(ratings.users.tolist(), ratings.items.tolist(), ratings.ratings.tolist()):
        ur[u].append((i, r))
        ir[i].append((u, r))
    return Trainset(
        ur,
        ir,
        len(ur),
        len(ir),
        ratings.n_ratings,
        rating_scale,
        {raw: inner for inner, raw in enumerate(ratings.user_ids)},
        {raw: inner for inner, raw in enumerate(ratings.item_ids)},
    )


@dataclass
class FittedModel:
    algorithm: AlgoBase
    trainset: Trainset
    params: dict[str, Any]
    rating_scale: tuple[float, float]
    seconds: float


def fit(
    ratings: Ratings,
    name: str,
    params: dict[str, Any],
    rating_scale: tuple[float, float] | None,
) -> FittedModel:
    """Fit the named algorithm on every rating (the published model sees all the data)."""
    scale = rating_scale_of(ratings, rating_scale)
    full_params = effective_params(name, params)
    algo = make_algorithm(name, params)
    trainset = build_trainset(ratings, scale)
    started = time.perf_counter()
    if name == "NormalPredictor":
        np.random.seed(DEFAULT_SEED)  # its only randomness is numpy's global generator
    algo.fit(trainset)
    return FittedModel(algo, trainset, full_params, scale, time.perf_counter() - started)


UNKNOWN_USER = "UKN__"  # the inner id Surprise's predict() gives a user it has never seen


def estimate_or_default(algo: Any, user: Any, item: Any) -> float:
    """Surprise's estimate, unclipped, with its own fallback when the prediction is impossible."""
    try:
        est = algo.estimate(user, item)
    except PredictionImpossible:
        return float(algo.default_prediction())
    return float(est[0] if isinstance(est, tuple) else est)


def model_from_fit(fitted: FittedModel) -> ModelArrays:
    algo, trainset = fitted.algorithm, fitted.trainset
    n_users, n_items = trainset.n_users, trainset.n_items
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum([len(trainset.ur[u]) for u in range(n_users)], out=indptr[1:])
    indices = np.fromiter(
        (i for u in range(n_users) for i, _ in trainset.ur[u]), dtype=np.int32, count=int(indptr[-1])
    )
    counts = np.asarray([len(trainset.ir[i]) for i in range(n_items)], dtype=np.int64)
    unknown = np.asarray(
        [estimate_or_default(algo, UNKNOWN_USER, i) for i in range(n_items)], dtype=np.float64
    )
    name = kernels.kernel_name(algo)
    kind = KIND_REFIT if name is None else name
    arrays = {} if name is None else kernels.export_arrays(algo, trainset)
    user_ids = [trainset.to_raw_uid(u) for u in range(n_users)]
    return ModelArrays(
        kind=kind,
        user_ids=user_ids,
        item_ids=[trainset.to_raw_iid(i) for i in range(n_items)],
        seen_indptr=indptr,
        seen_indices=indices,
        item_counts=counts,
        global_mean=float(trainset.global_mean),
        rating_scale=(float(fitted.rating_scale[0]), float(fitted.rating_scale[1])),
        unknown_user_scores=unknown,
        user_order=utf8_order(user_ids),
        arrays=arrays,
    )


def library_versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scikit-surprise": surprise.__version__,
        "platform": sys.platform,
    }
