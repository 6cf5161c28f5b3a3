"""Offline evaluation: how well an algorithm predicts held-out ratings, and how well it ranks them.

Train's protocol, reproducible from the data, the algorithm's name and a seed (Surprise's own
cross-validation, which `recommender evaluate` also reports, is in `report.py`):

- **Hold-out of each user's latest ratings** (`holdout_split`, `evaluate`): the question a
  recommender answers is "what will this user rate next?", so each user's latest ratings (or a
  seeded random share, without timestamps) are held out, the model is fitted on the rest with
  `training.fit`, and the published ranking (`scoring.recommend`: top-k unseen items, the
  product's tie rule) is scored against the held-out items: precision, recall, nDCG, MAP, hit
  rate and catalogue coverage at k. The same metrics for "the most-rated items the user has not
  rated" (`popularity_top_n_metrics`) say whether personalisation earns its keep.

**Bounded cost on large data** (`evaluation_split`): above `EVALUATION_MAX_RATINGS` ratings, the
hold-out protocol runs on a sample of users instead of all of them: users are ordered by a
seeded 64-bit BLAKE2b hash of their raw id, and the longest prefix of that order holding at most
`EVALUATION_MAX_RATINGS` ratings is kept, each user with all their ratings; the same split rule
then applies to those ratings alone. The sample depends only on the ids and the seed (not on row
order), so a user stays in or out as the data grows. The model is measured fitted on the
sample's training ratings, so its figures are those of a smaller data set (an item learnt from
fewer users): comparable between sampled runs with the same budget, not with unsampled ones.
The report's "sample" says whether and how the users were sampled.

Ranking metrics use binary relevance: every held-out item of a user is relevant, whatever its
rating. For one user with relevant set R and top-k list L:
    precision@k = |L ∩ R| / k                   (k, even when L is shorter)
    recall@k    = |L ∩ R| / |R|
    ndcg@k      = DCG / ideal DCG, DCG = Σ over hits at 1-based rank p of 1 / log2(p + 1), the
                  ideal DCG summing min(k, |R|) ranks
    map@k       = Σ over hits at rank p of (hits in the first p) / p, divided by min(k, |R|)
    hit_rate@k  = 1 if L ∩ R is not empty, else 0
Each is averaged over the test users. coverage@k is global: the distinct items recommended to the
test users, over the items of the model (the training items).

**Similar items** (`similar_items_metrics`, the report's "similar_items"): how useful the
published "more like this" lists are, asked as the same question on the same split: for each test
user, the similar items of their `RECENT_ITEMS` most recent training items, merged, seen items
dropped, the first k; hit_rate@k and ndcg@k of that list against the held-out items, beside the
popularity list's, and the share of test users whose list is not empty (a user whose recent items
all lack a list, being below min_support, gets none and counts as a miss).

numpy and Surprise only: no pandas.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from surprise import accuracy

from .config import DEFAULT_SIMILAR_MIN_SUPPORT
from .errors import DatasetError
from .model import ModelArrays
from .ratings import Ratings
from .scoring import fallback, kernel_for, recommend
from .similarity import CO_OCCURRENCE, ItemSimilarity, Raters, measure_of
from .training import effective_params, fit, model_from_fit, rating_scale_of

METHOD_LATEST = "latest-by-timestamp"
METHOD_RANDOM = "random"
METRIC_NAMES = ("precision", "recall", "ndcg", "map", "hit_rate", "coverage")
#: training items per test user whose similar items make that user's "more like this" list: the
#: few an item page would show lists for (the item on screen and the last ones viewed)
RECENT_ITEMS = 3


#: above this many ratings, `evaluation_split` keeps a sample of users holding at most this many, so
#: evaluating costs the same whatever the size of the data: a fraction of the final fit's time at
#: MovieLens 25M's shape (benchmarks/train_scale.py measures the budgets side by side; docs/scaling.md)
EVALUATION_MAX_RATINGS = 2_000_000
SAMPLE_RULE = "users in order of blake2b-64(user id, key=seed), the longest prefix within max_ratings"


@dataclass(frozen=True)
class Split:
    """Training and held-out ratings, both with raw ids (each numbered by first appearance, as
    Surprise numbers them). Every test user and every test item also occurs in `train`.
    `sample` describes the sample of users split, when only a sample was (`sample_summary`)."""

    train: Ratings
    test: Ratings
    sample: dict[str, Any] | None = None


# --- the hold-out split -------------------------------------------------------------------------


def _renumber(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(old codes in order of first appearance, new codes of every row) for a subset of rows."""
    if codes.size == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int32)
    unique, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    new_code = np.empty(len(unique), dtype=np.int32)
    new_code[order] = np.arange(len(unique), dtype=np.int32)
    return unique[order], new_code[inverse.reshape(-1)]


def subset(ratings: Ratings, rows: np.ndarray) -> Ratings:
    """The ratings of the given rows (a boolean mask or indices), in their original order, with
    ids renumbered by first appearance among them, as `snapshot.ratings_from_rows` would."""
    index = np.flatnonzero(rows) if rows.dtype == np.bool_ else np.asarray(rows, dtype=np.int64)
    user_codes, users = _renumber(ratings.users[index])
    item_codes, items = _renumber(ratings.items[index])
    return Ratings(
        user_ids=[ratings.user_ids[c] for c in user_codes.tolist()],
        item_ids=[ratings.item_ids[c] for c in item_codes.tolist()],
        users=users,
        items=items,
        ratings=ratings.ratings[index].copy(),
        timestamps=None if ratings.timestamps is None else ratings.timestamps[index].copy(),
    )


def held_out_counts(counts: np.ndarray, fraction: float) -> np.ndarray:
    """Ratings held out per user: `fraction` of them rounded half up, at least 1 and at most all
    but one; none for a user with fewer than 2 ratings (they all stay in train)."""
    wanted = np.floor(fraction * counts + 0.5).astype(np.int64)
    held = np.clip(wanted, 1, np.maximum(counts - 1, 1))
    return np.where(counts >= 2, held, 0)


def holdout_split(ratings: Ratings, fraction: float = 0.2, seed: int = 0) -> Split:
    """Hold out, per user, the latest `fraction` of their ratings.

    - With timestamps: the latest by timestamp (a missing timestamp counts as oldest; equal
      timestamps are ordered as the rows are, a later row being later). `seed` is not used.
    - Without: a random share, drawn from `numpy.random.default_rng(seed)`.
    A user with fewer than 2 ratings keeps them all in train; every other user keeps at least one.
    A held-out rating whose item has no rating left in train goes back to train (a model cannot
    rank an item it has never seen). The same ratings and seed always give the same split.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be between 0 and 1 (exclusive), not {fraction}")
    n = ratings.n_ratings
    rows = np.arange(n)
    users = ratings.users.astype(np.int64)
    if ratings.timestamps is not None:
        when = np.where(np.isnan(ratings.timestamps), -np.inf, ratings.timestamps)
        order = np.lexsort((rows, when, users))  # per user, oldest first
    else:
        key = np.random.default_rng(seed).random(n)
        order = np.lexsort((rows, key, users))
    counts = np.bincount(users, minlength=len(ratings.user_ids))
    held = held_out_counts(counts, fraction)
    starts = np.cumsum(counts) - counts
    sorted_users = users[order]
    from_end = counts[sorted_users] - 1 - (rows - starts[sorted_users])
    test = np.zeros(n, dtype=np.bool_)
    test[order] = from_end < held[sorted_users]
    in_train = np.zeros(len(ratings.item_ids), dtype=np.bool_)
    in_train[ratings.items[~test]] = True
    test &= in_train[ratings.items]
    return Split(train=subset(ratings, ~test), test=subset(ratings, test))


def user_sample(ratings: Ratings, max_ratings: int, seed: int = 0) -> np.ndarray:
    """Which users (a boolean mask over inner ids) make the sample: in order of a 64-bit BLAKE2b
    hash of their raw id keyed with the seed (ties, never seen, by the id's bytes), the longest
    prefix holding at most `max_ratings` ratings, and at least one user."""
    key = int(seed).to_bytes(8, "little", signed=True)
    encoded = [user.encode("utf-8", "surrogatepass") for user in ratings.user_ids]
    order = sorted(
        range(len(encoded)),
        key=lambda u: (hashlib.blake2b(encoded[u], digest_size=8, key=key).digest(), encoded[u]),
    )
    counts = np.bincount(ratings.users, minlength=len(encoded))[order]
    keep = max(1, int(np.searchsorted(np.cumsum(counts), max_ratings, side="right")))
    chosen = np.zeros(len(encoded), dtype=np.bool_)
    chosen[np.asarray(order[:keep], dtype=np.int64)] = True
    return chosen


def evaluation_split(
    ratings: Ratings,
    fraction: float = 0.2,
    seed: int = 0,
    max_ratings: int | None = EVALUATION_MAX_RATINGS,
) -> Split:
    """`holdout_split` of the ratings, or, when there are more than `max_ratings`, of a sample of
    users with all their ratings (`user_sample`), so that evaluating costs about the same
    whatever the size of the data. At or below `max_ratings`, exactly `holdout_split`."""
    if max_ratings is None or ratings.n_ratings <= max_ratings:
        return holdout_split(ratings, fraction, seed)
    chosen = user_sample(ratings, max_ratings, seed)
    sample = subset(ratings, chosen[ratings.users])
    split = holdout_split(sample, fraction, seed)
    described = {
        "sampled": True,
        "users": len(sample.user_ids),
        "ratings": sample.n_ratings,
        "of_users": len(ratings.user_ids),
        "of_ratings": ratings.n_ratings,
        "max_ratings": int(max_ratings),
        "seed": int(seed),
        "rule": SAMPLE_RULE,
    }
    return Split(train=split.train, test=split.test, sample=described)


def sample_summary(split: Split, ratings: Ratings) -> dict[str, Any]:
    """The report's "sample": how the users were sampled, or that all of them were split."""
    if split.sample is not None:
        return dict(split.sample)
    return {"sampled": False, "users": len(ratings.user_ids), "ratings": ratings.n_ratings}


def _nonempty(split: Split) -> Split:
    if split.test.n_ratings == 0:
        raise DatasetError(
            "no rating can be held out: every user has fewer than 2 ratings, or no held-out item"
            " has another rating to learn it from"
        )
    return split


def split_method(ratings: Ratings) -> str:
    return METHOD_LATEST if ratings.timestamps is not None else METHOD_RANDOM


# --- rating accuracy ----------------------------------------------------------------------------


def rating_metrics(algorithm: Any, test: Ratings) -> dict[str, float]:
    """RMSE and MAE of `algorithm.predict(raw user, raw item)` (clipped, with Surprise's own
    fallback for an impossible prediction) over the test ratings, by `surprise.accuracy`."""
    predictions = [
        algorithm.predict(test.user_ids[u], test.item_ids[i], r_ui=r)
        for u, i, r in zip(test.users.tolist(), test.items.tolist(), test.ratings.tolist())
    ]
    try:
        return {
            "rmse": float(accuracy.rmse(predictions, verbose=False)),
            "mae": float(accuracy.mae(predictions, verbose=False)),
        }
    except OverflowError:  # an error's square beyond float64: ratings near its limit
        return _scaled_rating_metrics(predictions)


def _scaled_rating_metrics(predictions: list[Any]) -> dict[str, float]:
    """RMSE and MAE computed on errors scaled into range, for errors whose squares overflow (a
    ranking model's scores are far from ratings of 1e300): the same figures up to rounding.
    Halving both sides first keeps the difference itself finite."""
    halves = np.array([0.5 * true_r - 0.5 * est for _, _, true_r, est, _ in predictions], dtype=np.float64)
    scale = float(np.abs(halves).max())
    if scale == 0.0:
        return {"rmse": 0.0, "mae": 0.0}
    scaled = halves / scale
    return {
        "rmse": 2.0 * scale * float(np.sqrt(np.mean(scaled**2))),
        "mae": 2.0 * scale * float(np.mean(np.abs(scaled))),
    }


# --- ranking metrics ----------------------------------------------------------------------------


def relevant_items(test: Ratings) -> dict[str, set[str]]:
    """Each test user's held-out items (raw ids), users in order of first appearance in test."""
    relevant: dict[str, set[str]] = {user: set() for user in test.user_ids}
    for u, i in zip(test.users.tolist(), test.items.tolist()):
        relevant[test.user_ids[u]].add(test.item_ids[i])
    return relevant


def user_metrics(recommended: Sequence[str], relevant: set[str], k: int) -> dict[str, float]:
    """precision, recall, ndcg, map and hit_rate at k of one user's list (see the module doc)."""
    hits = 0
    dcg = 0.0
    precision_sum = 0.0
    for rank, item in enumerate(recommended[:k], start=1):
        if item in relevant:
            hits += 1
            dcg += 1.0 / math.log2(rank + 1)
            precision_sum += hits / rank
    ideal = min(k, len(relevant))
    idcg = sum(1.0 / math.log2(rank + 1) for rank in range(1, ideal + 1))
    return {
        "precision": hits / k,
        "recall": hits / len(relevant) if relevant else 0.0,
        "ndcg": dcg / idcg if idcg else 0.0,
        "map": precision_sum / ideal if ideal else 0.0,
        "hit_rate": 1.0 if hits else 0.0,
    }


def ranking_metrics(
    lists: Iterable[tuple[Sequence[str], set[str]]], k: int, n_items: int
) -> dict[str, float]:
    """Means over users of `user_metrics`, and coverage: distinct recommended items / n_items.
    `lists` holds one (top-k list, relevant items) pair per test user."""
    totals = dict.fromkeys(METRIC_NAMES[:-1], 0.0)
    shown: set[str] = set()
    users = 0
    for recommended, relevant in lists:
        users += 1
        shown.update(recommended[:k])
        for name, value in user_metrics(recommended, relevant, k).items():
            totals[name] += value
    result = {f"{name}@{k}": (total / users if users else 0.0) for name, total in totals.items()}
    result[f"coverage@{k}"] = len(shown) / n_items if n_items else 0.0
    return result


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")


def top_n_lists(
    model: ModelArrays, users: Sequence[str], k: int, algorithm: Any = None
) -> dict[str, list[str]]:
    """What the product publishes for these raw user ids: the top-k unseen items by
    `scoring.recommend`, and the fallback list for a user the model does not know.
    `algorithm` is needed only for a `refit` model (scored pair by pair)."""
    index = {raw: inner for inner, raw in enumerate(model.user_ids)}
    known = np.asarray([index[u] for u in users if u in index], dtype=np.int64)
    lists: dict[str, list[str]] = {}
    if known.size:
        kernel = kernel_for(model, algorithm)
        for top in recommend(model, known, k, kernel):
            lists[model.user_ids[top.user]] = [model.item_ids[i] for i in top.items.tolist()]
    if len(lists) < len(users):
        default = [model.item_ids[i] for i in fallback(model, k).items.tolist()]
        for user in users:
            lists.setdefault(user, default)
    return lists


def top_n_metrics(model: ModelArrays, test: Ratings, k: int = 10, algorithm: Any = None) -> dict[str, float]:
    """Ranking metrics of the model's top-k unseen items for every test user, against that user's
    held-out items. "Unseen" means not rated in the data the model was fitted on (the train
    ratings). `algorithm` (the fitted Surprise object) is needed only for a `refit` model, such
    as a user's own AlgoBase subclass."""
    _check_k(k)
    relevant = relevant_items(test)
    lists = top_n_lists(model, list(relevant), k, algorithm)
    return ranking_metrics(((lists[u], items) for u, items in relevant.items()), k, model.n_items)


def popularity_order(train: Ratings) -> np.ndarray:
    """Train items, most-rated first; equal counts: first appearance first."""
    counts = np.bincount(train.items, minlength=len(train.item_ids))
    return np.lexsort((np.arange(len(train.item_ids)), -counts))


def popularity_top_n_metrics(train: Ratings, test: Ratings, k: int = 10) -> dict[str, float]:
    """The same metrics for the non-personal baseline: each user's k most-rated unseen items."""
    _check_k(k)
    order = popularity_order(train)
    train_users = {raw: inner for inner, raw in enumerate(train.user_ids)}
    by_user = np.argsort(train.users, kind="stable")
    bounds = np.concatenate(([0], np.cumsum(np.bincount(train.users, minlength=len(train.user_ids)))))
    relevant = relevant_items(test)

    def top(user: str) -> list[str]:
        inner = train_users.get(user)
        seen = np.empty(0, dtype=train.items.dtype)
        if inner is not None:
            seen = train.items[by_user[bounds[inner] : bounds[inner + 1]]]
        candidates = order[: k + len(seen)]
        picked = candidates[~np.isin(candidates, seen)][:k]
        return [train.item_ids[i] for i in picked.tolist()]

    return ranking_metrics(((top(u), items) for u, items in relevant.items()), k, len(train.item_ids))


# --- similar items ------------------------------------------------------------------------------


def recent_items(train: Ratings, m: int = RECENT_ITEMS) -> dict[str, list[str]]:
    """Each training user's m most recent distinct items (raw ids), the most recent first.

    With timestamps: by timestamp, a missing one counting as oldest and equal ones ordered as the
    rows are (a later row being later), as `holdout_split` orders them. Without: the latest rows
    of the snapshot order, which is all the order the data has. An item rated twice counts once,
    at its latest rating."""
    users = train.users.astype(np.int64)
    rows = np.arange(train.n_ratings)
    if train.timestamps is not None:
        when = np.where(np.isnan(train.timestamps), -np.inf, train.timestamps)
    else:
        when = np.zeros(train.n_ratings)
    newest = np.lexsort((rows, when, users))[::-1]  # per user, newest first
    pairs = users[newest] * len(train.item_ids) + train.items[newest]
    _, first = np.unique(pairs, return_index=True)
    kept = newest[np.sort(first)]  # every (user, item) once, at its newest rating
    kept_users = users[kept]
    starts = np.flatnonzero(np.concatenate(([True], kept_users[1:] != kept_users[:-1])))
    rank = np.arange(len(kept)) - np.repeat(starts, np.diff(np.append(starts, len(kept))))
    recent: dict[str, list[str]] = {}
    for u, i in zip(kept_users[rank < m].tolist(), train.items[kept[rank < m]].tolist()):
        recent.setdefault(train.user_ids[u], []).append(train.item_ids[i])
    return recent


def similar_item_lists(
    model: ModelArrays,
    train: Ratings,
    users: Sequence[str],
    k: int,
    min_support: int = DEFAULT_SIMILAR_MIN_SUPPORT,
    m: int = RECENT_ITEMS,
) -> dict[str, list[str]]:
    """Each user's "more like this" list (raw ids): the published similar items (each item's top
    k, `similarity.ItemSimilarity`) of their m most recent training items (`recent_items`),
    merged, an item scoring its best similarity to any of them; items the user rated in training
    dropped; the first k by score, equal scores by the model's tie rule (`ModelArrays.tie_rank`).
    Built from the lists a run publishes, as an app server would merge them, so a user with many
    ratings may get fewer than k. Empty for a user unknown to the model or whose recent items
    have no list (below min_support)."""
    _check_k(k)
    item_index = model.item_index()
    user_index = {raw: inner for inner, raw in enumerate(model.user_ids)}
    recent = recent_items(train, m)
    wanted = {u: [item_index[i] for i in recent.get(u, []) if i in item_index] for u in users}
    needed = np.unique(np.asarray([i for items in wanted.values() for i in items], dtype=np.int64))
    raters = None
    if measure_of(model) == CO_OCCURRENCE:
        raters = Raters.from_seen(model.seen_indptr, model.seen_indices, model.n_items)
    similarity = ItemSimilarity(model, min_support, raters)
    neighbours = {item: (top, values) for item, top, values in similarity.lists(needed, k)}
    tie_rank = similarity.tie_rank
    lists: dict[str, list[str]] = {}
    for user in users:
        parts = [neighbours[i] for i in wanted[user]]
        inner = user_index.get(user)
        if inner is None or not parts:
            lists[user] = []
            continue
        items = np.concatenate([p[0] for p in parts])
        scores = np.concatenate([p[1] for p in parts])
        best = np.lexsort((-scores, items))  # per item, its best similarity first
        items, scores = items[best], scores[best]
        first = np.concatenate(([True], items[1:] != items[:-1]))
        keep = first & ~np.isin(items, model.seen(inner))
        items, scores = items[keep], scores[keep]
        order = np.lexsort((tie_rank[items], -scores))[:k]
        lists[user] = [model.item_ids[i] for i in items[order].tolist()]
    return lists


def similar_items_metrics(
    model: ModelArrays,
    train: Ratings,
    test: Ratings,
    k: int,
    popularity: dict[str, float],
    min_support: int = DEFAULT_SIMILAR_MIN_SUPPORT,
) -> dict[str, Any]:
    """The report's "similar_items": hit rate and nDCG at k of every test user's
    `similar_item_lists` list against their held-out items, averaged over all the test users (an
    empty list scores 0), beside the same figures of the popularity list (`popularity`:
    `popularity_top_n_metrics` of the same split and k); `with_list` is the share of test users
    whose list is not empty."""
    relevant = relevant_items(test)
    lists = similar_item_lists(model, train, list(relevant), k, min_support)
    figures = ranking_metrics(((lists[u], items) for u, items in relevant.items()), k, model.n_items)
    users = len(relevant)
    return {
        "k": int(k),
        "recent_items": RECENT_ITEMS,
        "min_support": int(min_support),
        "measure": measure_of(model),
        "users": users,
        "with_list": sum(1 for items in lists.values() if items) / users if users else 0.0,
        "model": {"hit_rate": figures[f"hit_rate@{k}"], "ndcg": figures[f"ndcg@{k}"]},
        "popularity": {"hit_rate": popularity[f"hit_rate@{k}"], "ndcg": popularity[f"ndcg@{k}"]},
    }


# --- the hold-out protocol, end to end -----------------------------------------------------------


def split_summary(split: Split, fraction: float, seed: int) -> dict[str, Any]:
    """The split's figures and protocol. A split of a sample of users also names the sample's
    budget, `sample_max_ratings`: part of the protocol, as the method, fraction and seed are."""
    summary: dict[str, Any] = {
        "train_ratings": split.train.n_ratings,
        "test_ratings": split.test.n_ratings,
        "test_users": len(split.test.user_ids),
        "method": split_method(split.train),
        "fraction": float(fraction),
        "seed": int(seed),
    }
    if split.sample is not None:
        summary["sample_max_ratings"] = split.sample["max_ratings"]
    return summary


def evaluate_split(
    split: Split,
    algorithm: str,
    params: dict[str, Any],
    rating_scale: tuple[float, float],
    k: int = 10,
) -> dict[str, Any]:
    """Fit on `split.train` with `training.fit`; RMSE, MAE and the top-k metrics on `split.test`.
    `seconds` is the fit time."""
    return fit_and_score(split, algorithm, params, rating_scale, k)[0]


def fit_and_score(
    split: Split,
    algorithm: str,
    params: dict[str, Any],
    rating_scale: tuple[float, float],
    k: int = 10,
) -> tuple[dict[str, Any], ModelArrays]:
    """`evaluate_split`'s figures and the model they were measured on, for the figures that need
    it too (the similar items)."""
    fitted = fit(split.train, algorithm, params, rating_scale)
    model = model_from_fit(fitted)
    result: dict[str, Any] = rating_metrics(fitted.algorithm, split.test)
    result.update(top_n_metrics(model, split.test, k, fitted.algorithm))
    result["seconds"] = float(fitted.seconds)
    return result, model


def evaluate(
    ratings: Ratings,
    algorithm: str,
    params: dict[str, Any],
    rating_scale: tuple[float, float] | None = None,
    k: int = 10,
    fraction: float = 0.2,
    seed: int = 0,
    split: Split | None = None,
    max_ratings: int | None = EVALUATION_MAX_RATINGS,
    similar_min_support: int = DEFAULT_SIMILAR_MIN_SUPPORT,
) -> dict[str, Any]:
    """Hold-out split, fit on train, score the test: a JSON-serialisable report. `split`, when
    given, is `evaluation_split(ratings, fraction, seed, max_ratings)` (or `holdout_split`)
    already computed by the caller. Above `max_ratings` ratings, a sample of users is split
    (see the module docstring); None: never. `similar_min_support` is the run's
    `similar_min_support`, so that the similar items measured are those the run publishes.

    {"split": {train_ratings, test_ratings, test_users, method, fraction, seed
               [, sample_max_ratings when sampled]},
     "sample": {"sampled": false, users, ratings} or
               {"sampled": true, users, ratings (of the sample), of_users, of_ratings (of all the
                data), max_ratings, seed, rule},
     "model": {rmse, mae, precision@k, recall@k, ndcg@k, map@k, hit_rate@k, coverage@k, seconds},
     "popularity": {precision@k, ..., coverage@k},
     "similar_items": {k, recent_items, min_support, measure, users, with_list,
                       "model": {hit_rate, ndcg}, "popularity": {hit_rate, ndcg}}
                      (`similar_items_metrics`, on the model fitted on the training part),
     "algorithm", "params" (as fitted, defaults included), "rating_scale", "k"}
    The rating scale is the configured one, else the range of all the ratings (train and test).
    """
    _check_k(k)
    scale = rating_scale_of(ratings, rating_scale)
    split = _nonempty(split or evaluation_split(ratings, fraction, seed, max_ratings))
    measured, model = fit_and_score(split, algorithm, params, scale, k)
    popularity = popularity_top_n_metrics(split.train, split.test, k)
    return {
        "algorithm": algorithm,
        "params": effective_params(algorithm, params),
        "rating_scale": [float(scale[0]), float(scale[1])],
        "k": int(k),
        "split": split_summary(split, fraction, seed),
        "sample": sample_summary(split, ratings),
        "model": measured,
        "popularity": popularity,
        "similar_items": similar_items_metrics(
            model, split.train, split.test, k, popularity, similar_min_support
        ),
    }
