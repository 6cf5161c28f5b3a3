"""Fold-in: recommendations between scheduled runs for a user described only by ratings given at
request time (a new user, or one who rated more since the last run), from the PUBLISHED model's
arrays. No Surprise here: this module imports numpy and the package's numpy-only modules (model,
selection, kernels), so an app server can serve it from `model.npz` alone.

    recommend_for_ratings(model, params, {"item-00042": 5.0, ...}, n=10, exclude=...)

`params` are the model's effective Surprise parameters ("params" in the run's model/metadata.json),
which fold-in needs for the regularisation of the solve and the baseline options; a parameter
missing from them takes Surprise's default.

The result: the top-n items (raw ids) and their estimates clipped to the rating scale, ranked with
the product's rule (selection.py: higher unclipped estimate, then more ratings, then lower inner
id), never an item just rated nor one in `exclude`.
- Items the model does not know are ignored, in `ratings` and in `exclude`: the published arrays
  have nothing for them (no factors, no similarities, no deviations).
- With no rated item the model knows (no ratings, or only unknown items), the answer is the
  fallback, what the run publishes for a user it has never seen: `model.unknown_user_scores`
  ranked by the same rule (minus `exclude`).

Per algorithm (`SUPPORTED` lists them in one line each). "Exact" means: for a user in the training
data, folding in that user's own training ratings (in training order) gives Surprise's estimates.

Factor models, SVD, SVDpp, NMF (kinds with factors `qi`): the new user's factors p and bias bu are
the exact minimiser (a regularised least-squares solve, item factors and biases held fixed) of

    sum over the rated items j of (r_j - mu - bu - bi_j - q_j . p)^2 + lambda_p |p|^2 + lambda_b bu^2

with lambda_p = n reg_pu and lambda_b = n reg_bu for n rated items: Surprise's SGD applies its
regularisation once per rating, so its objective for one user carries it n times. reg_pu and
reg_bu default to reg_all (0.02) for SVD and SVD++; NMF's own defaults are reg_pu 0.06 and reg_bu
0.02. Unbiased models (SVD and NMF with biased=False: no `bu` in the arrays) have no bias term and
no mu (Surprise trains them without the mean), est = q . p. Every item is then scored as the
factor kernel scores it: (mu + bu) + bi_i + q_i . p.
This APPROXIMATES a retrain: Surprise's SGD stops after n_epochs from a random start, so its own
user factors are not this minimiser (they are typically shrunk towards their initialisation), and
a retrain moves the item factors too. Measured against a retrain (tests/unit/test_foldin.py):
when the model has learnt user factors, the fold-in's top-10 agrees with the retrain's as much as
two retrains with different seeds agree; but Surprise's default SVD (20 epochs at lr 0.005) barely
moves user factors from their random start, its lists are mostly the bias ranking, and there the
fold-in's (more personal) lists agree with a retrain no better than the fallback does. Also:
- SVD++: the published arrays hold each user's effective vector pu + |I(u)|^-1/2 sum of y_j (the
  implicit vectors y_j are not published), so fold-in solves for that effective vector directly,
  as a free vector regularised with reg_pu; the implicit-feedback structure is not used.
- NMF: the non-negativity of the factors is not imposed on the new user's p (the item factors
  stay non-negative); the estimate is the same dot product.

BaselineOnly: bu only, est = (mu + bu) + bi_i, with bu the closed-form minimiser of
sum (r_j - mu - bi_j - bu)^2 + lambda_b bu^2, the regularisation from the model's `bsl_options`:
- method "als" (Surprise's default): lambda_b = reg_u (default 15), as Surprise's ALS uses it (not
  per rating). EXACT: Surprise's last ALS step computes every bu this way from the final bi, and
  the sum is added in the same order;
- method "sgd": lambda_b = n reg (default 0.02, per rating), an approximation of SGD, as above.

Item-based k-NN, KNNBasic, KNNWithMeans, KNNWithZScore, KNNBaseline (sim_options user_based
False): EXACT. Surprise's item-based estimate of (u, i) only reads the similarities between items
and u's own ratings, so the new user's ratings are the candidates: for each item i, the k rated
items j with the largest sim[i, j] (a stable sort: among equal similarities, the one given first in
`ratings` wins, as heapq.nlargest keeps Surprise's order), only sim > 0 counting, then

    Basic     est = sum(sim * r) / sum(sim)              (fewer than min_k: the global mean)
    Means     est = mu_i + sum(sim * (r - mu_j)) / sum(sim)
    ZScore    est = mu_i + sum(sim * (r - mu_j) / sigma_j) / sum(sim) * sigma_i
    Baseline  est = b(u, i) + sum(sim * (r - b(u, j))) / sum(sim),   b(u, i) = (mu + bu) + bi_i

with the means and sigmas of the model's items, and Surprise's min_k fallbacks (the term before
the `+`), sums added in Surprise's order. For KNNBaseline the user's bu is folded in as for
BaselineOnly with the model's `bsl_options`: exact with ALS baselines (the default), an
approximation with SGD ones. User-based k-NN is not supported: its neighbours are users, and the
new user's similarities to them were never computed (nor are the co-rating statistics published).

SlopeOne: EXACT. est = mean of the given ratings + the mean of dev[i, j] over the rated items j
that share a user with i (the model's dev/related arrays), summed in Surprise's order.

EASE (recommender/algorithms/ease.py): EXACT. The given ratings are the user's row x of X (1.0
for each known item rated with the model's implicit=True, the rating itself with implicit=False),
and the scores are x @ B over every item, the rows of B added in the order of `ratings`, as
Surprise's estimate adds them (Surprise's order for a training user). No solve: EASE has no user
state beyond that row. Scores rank, they do not predict stars (the clipped scores mean nothing).

ALS (recommender/algorithms/implicit_als.py): the new user's factors are the closed-form solve
implicit's `recalculate_user` computes, the item factors y held fixed:

    p = (Y^T Y + regularization I + sum over the rated items j of (c_j - 1) y_j y_j^T)^-1 sum c_j y_j

with c_j = alpha x_j and x_j the rating's value under the model's `confidence` and `min_rating`
(recommender/confidence.py). Every item then scores y_i . p. implicit solves in float32 and this
module in float64, so the factors agree to float32's precision. For a training user this is one
more half-step of ALS, not the published factors: those were solved against the item factors of
the iteration before the last.

ItemKNN (recommender/algorithms/implicit_knn.py): EXACT. The given ratings' row of X (their
values under the model's confidence rule) times the similarity S, as the kernel computes it.

Not supported (FoldInUnsupportedError, a ValueError naming the algorithm and the supported ones):
user-based k-NN, CoClustering (a new user's cluster would need the co-cluster averages of a refit),
NormalPredictor (no user state at all: its lists are random draws), and "refit" models (a user's
own algorithm: only a refit can score it).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import numpy as np

from . import confidence
from .errors import FoldInUnsupportedError
from .kernels import SCORE_BLOCK_BYTES, rows_within
from .kernels.item_knn import sparse_rows_product
from .model import KIND_REFIT, ModelArrays
from .selection import select_top_n

__all__ = ["SUPPORTED", "als_user_factors", "estimates", "recommend_for_ratings", "user_factors"]

FACTOR_KINDS = ("SVD", "SVDpp", "NMF", "BaselineOnly")
KNN_KINDS = ("KNNBasic", "KNNWithMeans", "KNNWithZScore", "KNNBaseline")

SUPPORTED: dict[str, str] = {
    "SVD": "regularised least-squares solve of the user's factors and bias (approximates a retrain)",
    "SVDpp": "least-squares solve of the user's effective factor vector and bias (approximates)",
    "NMF": "regularised least-squares solve of the user's factors (and bias), not kept non-negative",
    "BaselineOnly": "closed-form user bias: exact with ALS baselines, approximates SGD ones",
    "KNNBasic": "item-based only (user_based=False): Surprise's estimate, exact",
    "KNNWithMeans": "item-based only (user_based=False): Surprise's estimate, exact",
    "KNNWithZScore": "item-based only (user_based=False): Surprise's estimate, exact",
    "KNNBaseline": "item-based only (user_based=False): exact, the user's bias folded in as BaselineOnly",
    "SlopeOne": "user's mean plus the mean deviations: Surprise's estimate, exact",
    "EASE": "the given ratings' row of X times the item-item weights (x @ B): the model's estimate, exact",
    "ALS": "implicit's closed-form solve of the user's factors given the item factors (recalculate_user)",
    "ItemKNN": "the given ratings' row of X times the sparse item-item similarity (x @ S): exact",
}

#: Surprise's defaults, for parameters the run's metadata does not name
SVD_REG_ALL = 0.02
NMF_REG_PU = 0.06
NMF_REG_BU = 0.02
ALS_REG_U = 15.0
SGD_REG = 0.02

#: peak bytes per (item, rated item) cell while scoring k-NN and SlopeOne in chunks of items
BYTES_PER_CELL = 64


def _supported_list() -> str:
    return ", ".join(SUPPORTED) + " (k-NN item-based only: sim_options user_based=False)"


def _check_supported(model: ModelArrays) -> None:
    kind = model.kind
    if kind not in SUPPORTED:
        what = (
            "a 'refit' model (an algorithm without a kernel, scored only by refitting it)"
            if kind == KIND_REFIT
            else f"the algorithm {kind}"
        )
        raise FoldInUnsupportedError(f"fold-in does not support {what}; supported: {_supported_list()}")
    if kind in KNN_KINDS and bool(model.arrays["user_based"]):
        raise FoldInUnsupportedError(
            f"fold-in does not support user-based {kind} (sim_options user_based=True): the new user's"
            f" similarities to the other users are unknown; supported: {_supported_list()}"
        )


def _reg(params: Mapping[str, Any], name: str, default: float) -> float:
    value = params.get(name)
    return default if value is None else float(value)


def _bias_regularisation(bsl_options: Mapping[str, Any] | None, n: int) -> float:
    """lambda_b for a bias fitted by Surprise's baseline options, for n ratings."""
    options = bsl_options or {}
    method = options.get("method", "als")
    if method == "als":
        return _reg(options, "reg_u", ALS_REG_U)
    if method == "sgd":
        return n * _reg(options, "reg", SGD_REG)
    raise ValueError(f"bsl_options method {method!r} is not 'als' or 'sgd'")


def _baseline_bias(
    model: ModelArrays, params: Mapping[str, Any], items: np.ndarray, values: np.ndarray
) -> float:
    """argmin_bu sum (r - mu - bi - bu)^2 + lambda_b bu^2, summed as Surprise's ALS sums it."""
    lam = _bias_regularisation(params.get("bsl_options"), len(items))
    deviations = (values - model.global_mean) - model.arrays["bi"][items]
    total = float(np.cumsum(deviations)[-1]) if len(deviations) else 0.0  # left to right
    return total / (lam + len(items))


def user_factors(
    model: ModelArrays, params: Mapping[str, Any], items: np.ndarray, values: np.ndarray
) -> tuple[np.ndarray, float]:
    """Factor models: the new user's (p, bu), the minimiser described in the module docstring.
    `items` are inner item ids, `values` their ratings. p is empty for BaselineOnly, bu is 0.0
    for unbiased models."""
    _check_supported(model)
    if model.kind not in FACTOR_KINDS:
        raise ValueError(f"{model.kind} is not a factor model")
    a = model.arrays
    items = np.asarray(items, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    n = len(items)
    if model.kind == "BaselineOnly":
        return np.zeros(0), _baseline_bias(model, params, items, values)
    if model.kind == "NMF":
        reg_pu, reg_bu = _reg(params, "reg_pu", NMF_REG_PU), _reg(params, "reg_bu", NMF_REG_BU)
    else:
        reg_all = _reg(params, "reg_all", SVD_REG_ALL)
        reg_pu, reg_bu = _reg(params, "reg_pu", reg_all), _reg(params, "reg_bu", reg_all)
    q = a["qi"][items]
    factors = q.shape[1]
    biased = "bu" in a
    if biased:
        design = np.hstack([q, np.ones((n, 1))])
        target = values - model.global_mean - a["bi"][items]
        penalty = np.array([n * reg_pu] * factors + [n * reg_bu])
    else:
        design, target, penalty = q, values, np.full(factors, n * reg_pu)
    # The penalised least squares as one ordinary least-squares system: [A; sqrt(L)] x ~ [y; 0].
    # lstsq also gives the minimum-norm minimiser when there is no regularisation and too few ratings.
    stacked = np.vstack([design, np.diag(np.sqrt(penalty))])
    solution = np.linalg.lstsq(stacked, np.concatenate([target, np.zeros(len(penalty))]), rcond=None)[0]
    if biased:
        return solution[:factors], float(solution[factors])
    return solution, 0.0


def _factor_estimates(
    model: ModelArrays, params: Mapping[str, Any], items: np.ndarray, values: np.ndarray
) -> np.ndarray:
    a = model.arrays
    p, bu = user_factors(model, params, items, values)
    if "bu" not in a:
        dots: np.ndarray = a["qi"] @ p
        return dots
    est: np.ndarray = (model.global_mean + bu) + a["bi"]
    if "qi" in a:
        est += a["qi"] @ p
    return est


def _chunk_rows(rated: int) -> int:
    """Items per chunk, so that a chunk's (item, rated item) temporaries stay within the bound."""
    return rows_within(SCORE_BLOCK_BYTES, BYTES_PER_CELL, rated)


def _knn_estimates(
    model: ModelArrays, params: Mapping[str, Any], items: np.ndarray, values: np.ndarray
) -> np.ndarray:
    """Surprise's item-based estimate for every item, the given ratings as the candidates."""
    a, kind, gm = model.arrays, model.kind, model.global_mean
    sim: np.ndarray = a["sim"]
    k = max(0, int(a["k"]))
    min_k = float(a["min_k"])
    n_items = model.n_items
    # each candidate's own term and the estimate without neighbours, as Surprise computes them
    sigmas: np.ndarray | None = None
    if kind == "KNNBasic":
        terms, base = values, np.full(n_items, gm)
    elif kind in ("KNNWithMeans", "KNNWithZScore"):
        terms, base = values - a["means"][items], a["means"].astype(np.float64, copy=True)
        if kind == "KNNWithZScore":
            sigmas = a["sigmas"]
    else:  # KNNBaseline: b(u, j) = (mu + bi_j) + bu, Surprise's `gm + bx[nb] + by[y]`
        bu = _baseline_bias(model, params, items, values)
        terms = values - ((gm + a["bi"][items]) + bu)
        base = (gm + bu) + a["bi"]
    est = base.copy()
    width = min(k, len(items))
    if width == 0:
        return est
    step = _chunk_rows(len(items))
    for start in range(0, n_items, step):
        rows = slice(start, min(start + step, n_items))
        block = sim[rows][:, items]
        # heapq.nlargest's order: a stable descending sort, the earlier rating first among ties
        order = np.argsort(-block, axis=1, kind="stable")[:, :width]
        sims = np.take_along_axis(block, order, axis=1)
        positive = sims > 0
        actual_k = np.count_nonzero(positive, axis=1)
        sims = np.where(positive, sims, 0.0)  # the positive ones come first: zeros add nothing
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            sum_sim = np.cumsum(sims, axis=1)[:, -1]  # left to right, as Surprise's += loop
            weighted = sims * terms[order]
            if sigmas is not None:
                weighted = np.where(positive, weighted / sigmas[items][order], 0.0)
            ratio = np.cumsum(weighted, axis=1)[:, -1] / sum_sim
            if sigmas is not None:
                ratio *= sigmas[rows]
            ok = (actual_k >= min_k) & (actual_k > 0)
            est[rows] = np.where(ok, ratio if kind == "KNNBasic" else base[rows] + ratio, base[rows])
    return est


def _slope_one_estimates(model: ModelArrays, items: np.ndarray, values: np.ndarray) -> np.ndarray:
    a = model.arrays
    user_mean = np.mean(values)  # Surprise's np.mean of the user's ratings
    est = np.full(model.n_items, user_mean)
    step = _chunk_rows(len(items))
    for start in range(0, model.n_items, step):
        rows = slice(start, min(start + step, model.n_items))
        dev = a["dev"][rows][:, items]  # zero where unrelated: adding it changes no partial sum
        counts = np.count_nonzero(a["related"][rows][:, items] > 0, axis=1)
        sums = np.cumsum(dev, axis=1)[:, -1]  # left to right, as Surprise's sum()
        with np.errstate(invalid="ignore", divide="ignore"):
            est[rows] = np.where(counts > 0, user_mean + sums / np.maximum(counts, 1), user_mean)
    return est


def _ease_estimates(model: ModelArrays, items: np.ndarray, values: np.ndarray) -> np.ndarray:
    """x @ B, the rows of B added left to right (bit for bit the model's estimate)."""
    a = model.arrays
    weights: np.ndarray = a["weights"]
    x = np.ones(len(items)) if bool(a["implicit"]) else values
    est = np.zeros(model.n_items)
    for item, value in zip(items.tolist(), x.tolist()):
        est += value * weights[item]
    return est


def _implicit_values(model: ModelArrays, values: np.ndarray) -> np.ndarray:
    """The given ratings' values in the implicit-feedback matrix, under the model's rule."""
    a = model.arrays
    min_rating = float(a["min_rating"]) if bool(a["has_min_rating"]) else None
    return confidence.values(values, confidence.CONFIDENCES[int(a["confidence"])], min_rating)


def als_user_factors(model: ModelArrays, items: np.ndarray, values: np.ndarray) -> np.ndarray:
    """ALS: the new user's factors, implicit's `recalculate_user` solve (the module docstring)."""
    a = model.arrays
    qi: np.ndarray = a["qi"]
    x = _implicit_values(model, values)
    kept = x != 0
    y, c = qi[items[kept]], float(a["alpha"]) * x[kept]
    system = qi.T @ qi + float(a["regularization"]) * np.eye(qi.shape[1]) + (y.T * (c - 1.0)) @ y
    solution: np.ndarray = np.linalg.solve(system, y.T @ c)
    return solution


def _item_knn_estimates(model: ModelArrays, items: np.ndarray, values: np.ndarray) -> np.ndarray:
    rows = np.zeros(len(items), dtype=np.int64)
    x = _implicit_values(model, values)
    row: np.ndarray = sparse_rows_product(rows, items, x, 1, model.arrays, model.n_items)[0]
    return row


def estimates(
    model: ModelArrays, params: Mapping[str, Any], items: np.ndarray, values: np.ndarray
) -> np.ndarray:
    """Unclipped estimates of every item for a user who gave `values` to the inner item ids `items`
    (at least one; distinct), in that order: the order only breaks k-NN similarity ties."""
    _check_supported(model)
    items = np.asarray(items, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    if items.ndim != 1 or items.shape != values.shape or len(items) == 0:
        raise ValueError("items and values must be non-empty 1-D arrays of the same length")
    if model.kind in FACTOR_KINDS:
        return _factor_estimates(model, params, items, values)
    if model.kind in KNN_KINDS:
        return _knn_estimates(model, params, items, values)
    if model.kind == "EASE":
        return _ease_estimates(model, items, values)
    if model.kind == "ALS":
        dots: np.ndarray = model.arrays["qi"] @ als_user_factors(model, items, values)
        return dots
    if model.kind == "ItemKNN":
        return _item_knn_estimates(model, items, values)
    return _slope_one_estimates(model, items, values)


def recommend_for_ratings(
    model: ModelArrays,
    params: dict[str, Any],
    ratings: Mapping[str, float],
    n: int,
    exclude: Collection[str] = (),
) -> tuple[list[str], list[float]]:
    """The top-n items (raw ids) for a user who gave `ratings` (raw item id -> rating), and their
    estimates clipped to the rating scale; see the module docstring. Items the model does not know
    are ignored; with none it knows, the answer is the fallback list (minus `exclude`).
    Raises FoldInUnsupportedError for an algorithm fold-in cannot serve (even with no known item)."""
    _check_supported(model)
    if n < 0:
        raise ValueError(f"n must be >= 0, not {n}")
    index = model.item_index()
    known = [(index[item], float(value)) for item, value in ratings.items() if item in index]
    for item, value in known:
        if not np.isfinite(value):
            raise ValueError(f"the rating of {model.item_ids[item]!r} is not a finite number: {value}")
    items = np.asarray([item for item, _ in known], dtype=np.int64)
    values = np.asarray([value for _, value in known], dtype=np.float64)
    if len(items):
        scores = estimates(model, params, items, values)
    else:
        scores = np.asarray(model.unknown_user_scores, dtype=np.float64).copy()
    scores[items] = -np.inf
    excluded = [index[item] for item in exclude if item in index]
    scores[np.asarray(excluded, dtype=np.int64)] = -np.inf
    picked, chosen = select_top_n(scores[None, :], n, model.tie_rank())
    keep = np.isfinite(chosen[0])  # excluded items come last, as -inf
    low, high = model.rating_scale
    return (
        [model.item_ids[i] for i in picked[0][keep].tolist()],
        np.clip(chosen[0][keep], low, high).tolist(),
    )
