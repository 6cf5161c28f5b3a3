"""Fitting a Surprise algorithm on a dataset snapshot.

The trainset is built from compact arrays, without pandas, yet identical to what
`Dataset.load_from_df(df, reader).build_full_trainset()` builds from the snapshot's rows in their
stored order: same inner ids, same rating order in `ur` and `ir`, same `all_ratings()` sequence
and `global_mean`. Anyone can therefore reproduce a published model with Surprise alone from the
snapshot, the seed and the parameters.

It is an `ArrayTrainset`: Surprise's `Trainset` holding the ratings as arrays (CSR by user, in
`ur`'s order) instead of dicts of lists of tuples, which take about 200 bytes per rating (5 GB at
25 million ratings). `all_ratings()`, all that SVD, NMF and SGD baselines read, iterates the
arrays; `ur` and `ir` are built on first use, for the algorithms that read them (k-NN, SVD++,
SlopeOne, co-clustering, ALS baselines).
"""

from __future__ import annotations

import importlib
import inspect
import math
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import surprise
from surprise import AlgoBase, PredictionImpossible, Trainset

from . import kernels
from .algorithms import PRODUCT_ALGORITHMS
from .config import DEFAULT_SEED
from .errors import ConfigError, DatasetError, NonFiniteModelError, SimilarityError
from .model import KIND_REFIT, ModelArrays, utf8_order
from .params import check_params, similarity_name
from .ratings import Ratings, trainset_rows

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
    if ":" not in name:  # a user's own class checks its own values (see params.py)
        check_params(name, params)
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


def _is_inner_id(value: Any, n: int) -> bool:
    """`value in d` for a dict `d` keyed by 0..n-1, without the dict: 3, 3.0, True and
    numpy.int64(3) are keys; "3", 3.5 and None are not."""
    if isinstance(value, int):
        return 0 <= value < n
    try:
        return bool(0 <= value < n) and bool(value == int(value))
    except (TypeError, ValueError, OverflowError):
        return False


def _rating_lists(
    indptr: np.ndarray, keys: np.ndarray, values: np.ndarray
) -> defaultdict[int, list[tuple[int, float]]]:
    """Surprise's `ur` (or `ir`) from CSR arrays: row -> [(column, rating), ...]."""
    lists: defaultdict[int, list[tuple[int, float]]] = defaultdict(list)
    bounds, columns, ratings = indptr.tolist(), keys.tolist(), values.tolist()
    for row in range(len(bounds) - 1):
        a, b = bounds[row], bounds[row + 1]
        lists[row] = list(zip(columns[a:b], ratings[a:b]))
    return lists


class ArrayTrainset(Trainset):  # type: ignore[misc]  # Surprise has no type hints
    """Surprise's `Trainset` over compact arrays, identical in everything Surprise reads.

    - `all_ratings()` yields (user, item, rating) as Python int, int, float, users in inner id
      order and each user's ratings in row order: Surprise's order (its `ur` keys are inner ids
      in first-appearance order, each list in row order). It iterates the arrays at C speed
      (`zip` over memoryviews), without a Python object per stored rating.
    - `global_mean` is `np.mean` over the ratings in that order, as Surprise computes it.
    - `ur` and `ir` are Surprise's dicts of lists, built on first access.
    - `knows_user`/`knows_item` answer as `u in ur` would, without building `ur`.
    Memory: the rows' arrays (shared, not copied, when users come sorted, as from a snapshot of
    a table with timestamps), the per-user order when they do not, and the id dicts.
    """

    def __init__(self, ratings: Ratings, rating_scale: tuple[float, float]) -> None:
        n_users, n_items = len(ratings.user_ids), len(ratings.item_ids)
        users = np.ascontiguousarray(ratings.users, dtype=np.int32)
        items = np.ascontiguousarray(ratings.items, dtype=np.int32)
        values = np.ascontiguousarray(ratings.ratings, dtype=np.float64)
        user_counts = np.bincount(users, minlength=n_users)
        item_counts = np.bincount(items, minlength=n_items)
        if user_counts.size != n_users or item_counts.size != n_items:
            raise ValueError("inner ids beyond the ids given")
        if (n_users and user_counts.min() == 0) or (n_items and item_counts.min() == 0):
            raise ValueError("every user and item id must have a rating")
        if users.size < 2 or bool(np.all(users[1:] >= users[:-1])):
            by_user = (users, items, values)  # already in Surprise's order: no copy
        else:
            order = np.argsort(users, kind="stable")
            by_user = (users[order], items[order], values[order])
        self.rows = (users, items, values)  # in row order
        self.user_of, self.user_items, self.user_ratings = by_user
        self.user_indptr = np.zeros(n_users + 1, dtype=np.int64)
        np.cumsum(user_counts, out=self.user_indptr[1:])
        self.item_counts = item_counts.astype(np.int64)
        self.user_ids = ratings.user_ids
        self.item_ids = ratings.item_ids
        # what Trainset.__init__ sets
        self._ur: defaultdict[int, list[tuple[int, float]]] | None = None
        self._ir: defaultdict[int, list[tuple[int, float]]] | None = None
        self.n_users = n_users
        self.n_items = n_items
        self.n_ratings = int(values.size)
        self.rating_scale = rating_scale
        self._raw2inner_id_users = {raw: inner for inner, raw in enumerate(ratings.user_ids)}
        self._raw2inner_id_items = {raw: inner for inner, raw in enumerate(ratings.item_ids)}
        self._global_mean: Any = None
        self._inner2raw_id_users = None
        self._inner2raw_id_items = None

    @property
    def ur(self) -> defaultdict[int, list[tuple[int, float]]]:
        if self._ur is None:
            self._ur = _rating_lists(self.user_indptr, self.user_items, self.user_ratings)
        return self._ur

    @ur.setter
    def ur(self, value: defaultdict[int, list[tuple[int, float]]]) -> None:
        self._ur = value

    @property
    def ir(self) -> defaultdict[int, list[tuple[int, float]]]:
        if self._ir is None:
            users, items, values = self.rows
            order = np.argsort(items, kind="stable")  # each item's ratings in row order
            indptr = np.zeros(self.n_items + 1, dtype=np.int64)
            np.cumsum(self.item_counts, out=indptr[1:])
            self._ir = _rating_lists(indptr, users[order], values[order])
        return self._ir

    @ir.setter
    def ir(self, value: defaultdict[int, list[tuple[int, float]]]) -> None:
        self._ir = value

    def knows_user(self, uid: Any) -> bool:
        if self._ur is not None:  # exactly Surprise's answer, even after ur grew a key
            return uid in self._ur
        return _is_inner_id(uid, self.n_users)

    def knows_item(self, iid: Any) -> bool:
        if self._ir is not None:
            return iid in self._ir
        return _is_inner_id(iid, self.n_items)

    def all_ratings(self) -> Iterator[tuple[int, int, float]]:
        return zip(self.user_of.data, self.user_items.data, self.user_ratings.data)

    @property
    def global_mean(self) -> Any:
        if self._global_mean is None:
            self._global_mean = np.mean(self.user_ratings)
        return self._global_mean


def build_trainset(ratings: Ratings, rating_scale: tuple[float, float]) -> ArrayTrainset:
    """Surprise's Trainset from arrays; see the module docstring for why it must be identical."""
    return ArrayTrainset(ratings, rating_scale)


def surprise_trainset(ratings: Ratings, rating_scale: tuple[float, float]) -> Trainset:
    """The same trainset as Surprise's own class, with `ur` and `ir` as dicts of lists (about
    200 bytes per rating): for comparisons, and for code that needs a plain Trainset."""
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


KNN_NAMES = ("KNNBasic", "KNNWithMeans", "KNNWithZScore", "KNNBaseline")


def _similarity(name: str, params: dict[str, Any]) -> str | None:
    """The similarity a built-in k-NN algorithm computes with these params, else None."""
    if name not in KNN_NAMES:
        return None
    options = params.get("sim_options") or {}
    return similarity_name(options) if isinstance(options, dict) else None


def check_similarity(ratings: Ratings, name: str, params: dict[str, Any]) -> None:
    """Refuse, before any fit, a similarity that is 0/0 for every pair on these ratings.

    pearson_baseline correlates deviations from the baselines: when every rating is equal
    (like/click data), no rating deviates, so every similarity is 0/0. cosine divides by the
    norms of the ratings: when every rating is 0, every norm is 0."""
    similarity = _similarity(name, params)
    if similarity not in ("pearson_baseline", "cosine") or ratings.n_ratings == 0:
        return
    low, high = float(ratings.ratings.min()), float(ratings.ratings.max())
    if low != high or (similarity == "cosine" and low != 0.0):
        return
    why = (
        "no rating deviates from its baseline"
        if similarity == "pearson_baseline"
        else "the ratings' norms are 0"
    )
    raise SimilarityError(
        f"{name} with sim_options name {similarity!r} cannot run on this data: every one of the"
        f" {ratings.n_ratings:,} ratings is {low:g}, so {why} and every similarity is 0/0. Use"
        " sim_options name 'msd' (or 'pearson': both are defined on equal ratings, and give every"
        " item the same estimate, so lists follow popularity), or EASE, which ranks like/click data"
        " where every rating is equal"
    )


def _zscore_sigmas(algo: Any) -> None:
    """KNNWithZScore divides each neighbour's deviation from its mean by its sigma, and a sigma
    of 0 by the overall sigma; when that is 0 too (every rating equal), the z-score is 0/0 and
    every estimate NaN. A sigma is exactly 0 only when every deviation is exactly 0, so the
    z-score is 0 whatever the sigma: 1.0 makes Surprise's own division give it, and the estimate
    is then the mean, as the formula's limit is. Other sigmas are left as they are."""
    if isinstance(algo, surprise.KNNWithZScore):
        algo.sigmas[algo.sigmas == 0.0] = 1.0


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
    check_similarity(ratings, name, params)
    algo = make_algorithm(name, params)
    trainset = build_trainset(ratings, scale)
    started = time.perf_counter()
    if name == "NormalPredictor":
        np.random.seed(DEFAULT_SEED)  # its only randomness is numpy's global generator
    try:
        algo.fit(trainset)
    except ZeroDivisionError:
        similarity = _similarity(name, params)
        if similarity is None:
            raise
        raise SimilarityError(
            f"{name}'s {similarity} similarity divided 0 by 0 on this data (Surprise's 'float"
            " division'): some users or items share only ratings of 0 (cosine) or ratings equal to"
            " their baselines (pearson_baseline). Use sim_options name 'msd' or 'pearson', which"
            " are defined on any ratings"
        ) from None
    _zscore_sigmas(algo)
    return FittedModel(algo, trainset, full_params, scale, time.perf_counter() - started)


UNKNOWN_USER = "UKN__"  # the inner id Surprise's predict() gives a user it has never seen


def estimate_or_default(algo: Any, user: Any, item: Any) -> float:
    """Surprise's estimate, unclipped, with its own fallback when the prediction is impossible."""
    try:
        est = algo.estimate(user, item)
    except PredictionImpossible:
        return float(algo.default_prediction())
    return float(est[0] if isinstance(est, tuple) else est)


def seen_arrays(trainset: Trainset) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], list[str]]:
    """(CSR indptr and indices of the items each user rated, ratings per item, raw user ids,
    raw item ids), from an ArrayTrainset's arrays, or from any Trainset's `ur` and `ir`."""
    n_users, n_items = trainset.n_users, trainset.n_items
    if isinstance(trainset, ArrayTrainset):
        return (
            trainset.user_indptr,
            trainset.user_items,
            trainset.item_counts,
            list(trainset.user_ids),
            list(trainset.item_ids),
        )
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum([len(trainset.ur[u]) for u in range(n_users)], out=indptr[1:])
    indices = np.fromiter(
        (i for u in range(n_users) for i, _ in trainset.ur[u]), dtype=np.int32, count=int(indptr[-1])
    )
    counts = np.asarray([len(trainset.ir[i]) for i in range(n_items)], dtype=np.int64)
    user_ids = [trainset.to_raw_uid(u) for u in range(n_users)]
    item_ids = [trainset.to_raw_iid(i) for i in range(n_items)]
    return indptr, indices, counts, user_ids, item_ids


def check_finite_model(model: ModelArrays, fitted: FittedModel) -> None:
    """Refuse a model with a non-finite parameter, saying why it happens and what to change.

    A diverging SGD (SVD's, SVD++'s) is the usual cause: one rating far outside the others'
    scale (500 among stars from 1 to 5) makes its error, hence its steps, explode until the
    factors overflow. Ratings near float64's limit overflow any algorithm's sums."""
    bad = model.non_finite()
    if not bad:
        return
    name = type(fitted.algorithm).__name__
    arrays = "; ".join(f"{array}: {count:,} of {size:,} values" for array, count, size in bad)
    ratings = trainset_rows(fitted.trainset)[2]
    with np.errstate(over="ignore", invalid="ignore"):
        mean = float(np.mean(ratings)) if ratings.size else math.nan
    spread = f"{float(ratings.min()):g} to {float(ratings.max()):g}" if ratings.size else "nowhere"
    raise NonFiniteModelError(
        f"{name}'s fitted model is not finite (NaN or Infinity in {arrays}), so no list can be"
        f" ranked with it. The ratings range from {spread} (mean {mean:g}): one rating far outside"
        " the others' scale makes a fit diverge (SGD first: SVD, SVDpp, NMF), and ratings this"
        " large overflow. Set rating_scale to the real scale (for example [1, 5]): a rating"
        " outside it is an invalid row, left out of the snapshot and counted as"
        " outside_rating_scale, within max_invalid_fraction. Or correct the data; for SGD"
        " algorithms, a smaller learning rate (lr_all) may keep the fit finite."
    )


def model_from_fit(fitted: FittedModel) -> ModelArrays:
    algo, trainset = fitted.algorithm, fitted.trainset
    indptr, indices, counts, user_ids, item_ids = seen_arrays(trainset)
    unknown = np.asarray(
        [estimate_or_default(algo, UNKNOWN_USER, i) for i in range(trainset.n_items)], dtype=np.float64
    )
    name = kernels.kernel_name(algo)
    kind = KIND_REFIT if name is None else name
    arrays = {} if name is None else kernels.export_arrays(algo, trainset)
    model = ModelArrays(
        kind=kind,
        user_ids=user_ids,
        item_ids=item_ids,
        seen_indptr=indptr,
        seen_indices=indices,
        item_counts=counts,
        global_mean=float(trainset.global_mean),
        rating_scale=(float(fitted.rating_scale[0]), float(fitted.rating_scale[1])),
        unknown_user_scores=unknown,
        user_order=utf8_order(user_ids),
        arrays=arrays,
    )
    check_finite_model(model, fitted)
    return model
