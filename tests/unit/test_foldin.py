"""Fold-in (recommender/foldin.py): recommendations for ratings given at request time, from the
published model's arrays, without Surprise.

- Exactness anchors: for a user IN the training data, folding in that user's own training ratings
  (in training order) gives Surprise's `estimate` bit for bit for SlopeOne, item-based k-NN (every
  kind, with k/min_k cases that hit ties and the fallbacks) and BaselineOnly/KNNBaseline with ALS
  baselines; for the SGD-trained factor models the solve is checked to be the exact minimiser of
  the documented objective (gradient ~ 0), since SGD itself does not reach it.
- Quality: users held out of training, fold-in against a full retrain that includes them (see
  test_quality_against_retrain for the measure and the numbers).
- The API's contract: rated and excluded items never appear, unknown ids are ignored, no known
  item gives the fallback, unsupported kinds raise naming the algorithm, no Surprise import
  (tests/integration/test_imports.py).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from recommender import foldin
from recommender.dataset import Ratings
from recommender.errors import FoldInUnsupportedError
from recommender.foldin import SUPPORTED, estimates, recommend_for_ratings, user_factors
from recommender.kernels import load_kernel
from recommender.model import ModelArrays
from recommender.sample_data import SyntheticSpec, synthetic_ratings
from recommender.scoring import fallback
from recommender.snapshot import ratings_from_rows
from recommender.training import FittedModel, estimate_or_default, fit, model_from_fit

SCALE = (1.0, 5.0)
KNN = ("KNNBasic", "KNNWithMeans", "KNNWithZScore", "KNNBaseline")


def _published(fitted: FittedModel) -> ModelArrays:
    return ModelArrays.from_bytes(model_from_fit(fitted).to_bytes())


def _own_ratings(fitted: FittedModel, user: int) -> tuple[np.ndarray, np.ndarray]:
    """A training user's ratings in Surprise's order (ur[u])."""
    pairs = fitted.trainset.ur[user]
    return np.array([i for i, _ in pairs], dtype=np.int64), np.array([r for _, r in pairs])


def _surprise_row(fitted: FittedModel, user: int, n_items: int) -> np.ndarray:
    out = np.empty(n_items)
    for i in range(n_items):
        try:
            out[i] = estimate_or_default(fitted.algorithm, user, i)
        except ZeroDivisionError:  # KNNBasic, min_k <= 0, no neighbour with sim > 0 (as the kernel)
            out[i] = fitted.algorithm.default_prediction()
    return out


@pytest.fixture(scope="module")
def small() -> Ratings:
    """Integer stars on few items: similarities and estimates tie, candidates outnumber k."""
    rows = [
        (u, i, r)
        for u, i, r, _ in synthetic_ratings(SyntheticSpec(users=60, items=30, ratings_per_user=10, seed=11))
    ]
    rows += [("rated-a-lot", f"item-{i:05d}", float(1 + i % 5)) for i in range(1, 31, 2)]
    return ratings_from_rows(rows)


# --- exactness anchors ----------------------------------------------------------------------------

EXACT_CASES: list[tuple[str, dict[str, Any]]] = [
    ("SlopeOne", {}),
    ("BaselineOnly", {}),  # ALS, Surprise's default method
    ("BaselineOnly", {"bsl_options": {"method": "als", "reg_u": 3, "reg_i": 2, "n_epochs": 4}}),
    *[
        (name, {"k": k, "min_k": min_k, "sim_options": {"name": sim, "user_based": False}})
        for name in KNN
        for sim in ("cosine", "msd", "pearson_baseline")
        for k, min_k in ((40, 1), (3, 2), (2, 5), (0, 0))
    ],
    (
        "KNNBaseline",
        {"k": 5, "sim_options": {"name": "pearson", "user_based": False}, "bsl_options": {"reg_u": 4}},
    ),
]


@pytest.mark.parametrize(
    "case", EXACT_CASES, ids=[f"{n}-{'-'.join(f'{k}={v}' for k, v in p.items())}" for n, p in EXACT_CASES]
)
def test_exact_for_a_training_user(case: tuple[str, dict[str, Any]], small: Ratings) -> None:
    name, params = case
    fitted = fit(small, name, params, SCALE)
    model = _published(fitted)
    assert model.kind == name
    for user in range(0, model.n_users, 7):
        items, values = _own_ratings(fitted, user)
        expected = _surprise_row(fitted, user, model.n_items)
        got = estimates(model, fitted.params, items, values)
        np.testing.assert_array_equal(got, expected, err_msg=f"{name} user {user}")
        if name in ("BaselineOnly", "KNNBaseline"):  # the folded-in bias IS Surprise's (ALS)
            assert foldin._baseline_bias(model, fitted.params, items, values) == model.arrays["bu"][user]


@pytest.mark.parametrize("name", ["KNNBaseline", "KNNWithZScore"])
def test_knn_neighbourhood_exact_with_sgd_baselines(
    name: str, small: Ratings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With SGD baselines the folded-in bu is an approximation (test_baseline_sgd_minimiser), so the
    model's own bu is injected: the neighbourhood part is then exact. (ZScore: no baseline at all.)"""
    params = {"k": 4, "sim_options": {"name": "msd", "user_based": False}, "bsl_options": {"method": "sgd"}}
    fitted = fit(small, name, params, SCALE)
    model = _published(fitted)
    for user in range(0, model.n_users, 5):
        if name == "KNNBaseline":
            own = float(model.arrays["bu"][user])
            monkeypatch.setattr(foldin, "_baseline_bias", lambda *args, own=own: own)
        items, values = _own_ratings(fitted, user)
        np.testing.assert_array_equal(
            estimates(model, fitted.params, items, values), _surprise_row(fitted, user, model.n_items)
        )


def test_candidate_order_breaks_similarity_ties(small: Ratings) -> None:
    """k = 1 among rated items of equal similarity: the one given first wins, as in Surprise."""
    fitted = fit(small, "KNNBasic", {"k": 1, "sim_options": {"name": "cosine", "user_based": False}}, SCALE)
    model = _published(fitted)
    model.arrays["sim"] = np.ones_like(model.arrays["sim"])  # every similarity ties
    first = estimates(model, fitted.params, np.array([3, 5]), np.array([2.0, 4.0]))
    swapped = estimates(model, fitted.params, np.array([5, 3]), np.array([4.0, 2.0]))
    assert (first == 2.0).all() and (swapped == 4.0).all()


FACTOR_CASES: list[tuple[str, dict[str, Any]]] = [
    ("SVD", {"n_factors": 6, "n_epochs": 15}),
    ("SVD", {"n_factors": 6, "n_epochs": 15, "reg_all": 0.05, "reg_pu": 0.1}),
    ("SVD", {"n_factors": 6, "n_epochs": 15, "biased": False, "reg_bu": 0.3}),
    ("SVDpp", {"n_factors": 5, "n_epochs": 5, "reg_bu": 0.07}),
    ("NMF", {"n_factors": 4, "n_epochs": 20}),
    ("NMF", {"n_factors": 4, "n_epochs": 20, "biased": True, "reg_pu": 0.1}),
    ("BaselineOnly", {"bsl_options": {"method": "sgd", "n_epochs": 10}}),
    ("BaselineOnly", {"bsl_options": {"method": "sgd", "reg": 0.2}}),
]


def _regularisation(name: str, params: dict[str, Any], n: int) -> tuple[float, float]:
    """(lambda_p, lambda_b) as the module docstring states them, written out independently."""
    if name == "BaselineOnly":
        return 0.0, n * params["bsl_options"].get("reg", 0.02)  # these cases are all SGD
    if name == "NMF":
        return n * params.get("reg_pu", 0.06), n * params.get("reg_bu", 0.02)
    reg_all = params.get("reg_all", 0.02)
    return n * params.get("reg_pu", reg_all), n * params.get("reg_bu", reg_all)


@pytest.mark.parametrize(
    "case", FACTOR_CASES, ids=[f"{n}-{'-'.join(f'{k}={v}' for k, v in p.items())}" for n, p in FACTOR_CASES]
)
def test_factor_solve_is_the_minimiser(case: tuple[str, dict[str, Any]], small: Ratings) -> None:
    """SGD does not reach a minimiser, so no estimate of Surprise's is the anchor here: the fold-in
    must be the exact minimiser of sum (r - mu - bu - bi - q.p)^2 + lambda_p |p|^2 + lambda_b bu^2
    (no mu nor bu for unbiased models): its gradient vanishes. The scores are the factor formula."""
    name, params = case
    fitted = fit(small, name, params, SCALE)
    model = _published(fitted)
    a = model.arrays
    biased = "bu" in a
    for user in range(0, model.n_users, 9):
        items, values = _own_ratings(fitted, user)
        p, bu = user_factors(model, fitted.params, items, values)
        lam_p, lam_b = _regularisation(name, params, len(items))
        q = a["qi"][items] if "qi" in a else np.zeros((len(items), 0))
        predicted = q @ p + ((model.global_mean + bu + a["bi"][items]) if biased else 0.0)
        error = values - predicted
        grad_p = -2 * q.T @ error + 2 * lam_p * p
        grad_b = -2 * error.sum() + 2 * lam_b * bu
        scale = 1.0 + np.abs(values).sum() * (1.0 + np.abs(q).max(initial=0.0))
        assert np.abs(grad_p).max(initial=0.0) < 1e-9 * scale
        if biased:
            assert abs(grad_b) < 1e-9 * scale
        else:
            assert bu == 0.0
        expected = ((model.global_mean + bu) + a["bi"] if biased else 0.0) + (
            a["qi"] @ p if "qi" in a else 0.0
        )
        np.testing.assert_allclose(estimates(model, fitted.params, items, values), expected, rtol=1e-12)


# --- quality against a retrain -------------------------------------------------------------------

QUALITY_SPEC = SyntheticSpec(users=400, items=200, factors=2, seed=5)
HELD_OUT = 30
QUALITY_CASES: list[tuple[str, dict[str, Any]]] = [
    ("SVD", {"n_factors": 8, "n_epochs": 100, "lr_all": 0.02, "reg_all": 0.1}),
    ("KNNBaseline", {"sim_options": {"name": "pearson_baseline", "user_based": False}}),
]


def _overlaps(name: str, params: dict[str, Any]) -> dict[str, float]:
    rows = [(u, i, r) for u, i, r, _ in synthetic_ratings(QUALITY_SPEC)]
    users = sorted({u for u, _, _ in rows}, key=int)
    held = set(np.random.default_rng(1).choice(users, HELD_OUT, replace=False).tolist())
    part = fit(ratings_from_rows([r for r in rows if r[0] not in held]), name, params, SCALE)
    model = _published(part)
    full = _published(fit(ratings_from_rows(rows), name, params, SCALE))
    kernel = load_kernel(full)
    published_fallback = set(recommend_for_ratings(model, part.params, {}, 10)[0])
    found: dict[str, list[float]] = {"foldin": [], "fallback": [], "fallback_minus_rated": []}
    for user in sorted(held):
        mine = {i: r for u, i, r in rows if u == user}
        picked, _ = kernel.top_n(np.array([full.user_ids.index(user)]), 10, full.tie_rank())
        retrain = {full.item_ids[i] for i in picked[0].tolist()}
        folded = set(recommend_for_ratings(model, part.params, mine, 10)[0])
        minus_rated = set(recommend_for_ratings(model, part.params, {}, 10, exclude=mine)[0])
        found["foldin"].append(len(folded & retrain) / 10)
        found["fallback"].append(len(published_fallback & retrain) / 10)
        found["fallback_minus_rated"].append(len(minus_rated & retrain) / 10)
    return {key: float(np.mean(values)) for key, values in found.items()}


@pytest.mark.parametrize("case", QUALITY_CASES, ids=[name for name, _ in QUALITY_CASES])
def test_quality_against_retrain(case: tuple[str, dict[str, Any]]) -> None:
    """Fit on synthetic data (400 users, 200 items, 2 latent factors, seed 5) without 30 held-out
    users; for each of them, overlap@10 = |list ∩ retrain top-10| / 10, where the retrain is a full
    fit that includes them (same params and seed) and its top-10 excludes what they rated. Means
    over the 30 users, measured (scikit-surprise 1.1.5, numpy 2):

                    fold-in   fallback   fallback minus rated
        SVD          0.860      0.330          0.427
        KNNBaseline  0.927      0.277          0.410

    (On the block generator of November 2026; the figures below and the retrain-against-retrain
    agreement, 0.877 for SVD, were measured on the earlier per-user generator.)

    "fallback" is the published list for an unknown user (it excludes nothing); "fallback minus
    rated" is the stronger baseline of that list without the items the user rated. For SVD the
    fold-in agrees with the retrain as much as two retrains with different seeds agree.

    Where the fold-in does NOT beat the fallback: SVD with Surprise's defaults (100 factors, 20
    epochs at lr 0.005) barely moves the user factors from their random start, so its retrained
    lists are the bias ranking plus noise: fold-in 0.54 against 0.55 / 0.75 for the fallbacks (and
    0.67 between two retrains) on this data. Likewise with the default 8-factor synthetic data,
    whose item biases dominate every list (SVD above: fold-in 0.77, fallbacks 0.44 / 0.68)."""
    name, params = case
    measured = _overlaps(name, params)
    print(name, measured)
    assert measured["foldin"] >= 2 * measured["fallback"]
    assert measured["foldin"] >= measured["fallback"] + 0.2
    assert measured["foldin"] >= 1.5 * measured["fallback_minus_rated"]
    assert measured["foldin"] >= measured["fallback_minus_rated"] + 0.2


# --- the API's contract --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def svd(small: Ratings) -> tuple[ModelArrays, dict[str, Any]]:
    fitted = fit(small, "SVD", {"n_factors": 4, "n_epochs": 10}, SCALE)
    return _published(fitted), fitted.params


@pytest.mark.parametrize("name", ["SVD", "KNNWithMeans", "SlopeOne"], ids=["factors", "knn", "slope_one"])
def test_rated_and_excluded_never_appear(name: str, small: Ratings) -> None:
    params = {"sim_options": {"user_based": False}} if name.startswith("KNN") else {}
    fitted = fit(small, name, params, SCALE)
    model = _published(fitted)
    ratings = {model.item_ids[i]: float(1 + i % 5) for i in (0, 4, 9, 16)}
    exclude = [model.item_ids[i] for i in (1, 2, 3)] + ["not-an-item"]
    items, scores = recommend_for_ratings(model, fitted.params, ratings, model.n_items, exclude)
    assert len(items) == model.n_items - 4 - 3
    assert not set(items) & (set(ratings) | set(exclude))
    assert all(SCALE[0] <= s <= SCALE[1] for s in scores)
    assert len(set(items)) == len(items)
    # the ranking rule on the unclipped estimates: higher first, then more ratings, then inner id
    index = {raw: k for k, raw in enumerate(model.item_ids)}
    est = estimates(
        model, fitted.params, np.array([index[i] for i in ratings]), np.array(list(ratings.values()))
    )
    keys = [(-est[index[i]], -model.item_counts[index[i]], index[i]) for i in items]
    assert keys == sorted(keys)
    top3 = recommend_for_ratings(model, fitted.params, ratings, 3, exclude)
    assert top3 == (items[:3], scores[:3])


def test_unknown_items_are_ignored(svd: tuple[ModelArrays, dict[str, Any]]) -> None:
    model, params = svd
    ratings = {model.item_ids[3]: 5.0, model.item_ids[7]: 1.0}
    noisy = {"new-item": 5.0, **ratings, "another-new-item": 1.0}
    assert recommend_for_ratings(model, params, noisy, 10) == recommend_for_ratings(
        model, params, ratings, 10
    )


@pytest.mark.parametrize("ratings", [{}, {"never-seen": 4.0, "nor-this": 2.0}], ids=["none", "unknown"])
def test_no_known_item_gives_the_fallback(
    ratings: dict[str, float], svd: tuple[ModelArrays, dict[str, Any]]
) -> None:
    model, params = svd
    published = fallback(model, 8)
    items, scores = recommend_for_ratings(model, params, ratings, 8)
    assert items == [model.item_ids[i] for i in published.items.tolist()]
    assert scores == published.scores.tolist()
    excluded = recommend_for_ratings(model, params, ratings, 8, exclude=items[:2])[0]
    assert excluded[:6] == items[2:] and not set(excluded) & set(items[:2])


def test_n_zero_and_negative(svd: tuple[ModelArrays, dict[str, Any]]) -> None:
    model, params = svd
    assert recommend_for_ratings(model, params, {model.item_ids[0]: 3.0}, 0) == ([], [])
    with pytest.raises(ValueError, match="n must be"):
        recommend_for_ratings(model, params, {model.item_ids[0]: 3.0}, -1)
    with pytest.raises(ValueError, match="finite"):
        recommend_for_ratings(model, params, {model.item_ids[0]: float("nan")}, 3)


@pytest.mark.parametrize(
    ("name", "params", "named"),
    [
        ("CoClustering", {}, "CoClustering"),
        ("NormalPredictor", {}, "NormalPredictor"),
        ("KNNBaseline", {"sim_options": {"user_based": True}}, "user-based KNNBaseline"),
        ("KNNBasic", {}, "user-based KNNBasic"),  # Surprise's default is user-based
    ],
)
def test_unsupported_kinds_raise(name: str, params: dict[str, Any], named: str, small: Ratings) -> None:
    fitted = fit(small, name, params, SCALE)
    model = _published(fitted)
    for ratings in ({model.item_ids[0]: 4.0}, {}):  # even where the fallback would do
        with pytest.raises(FoldInUnsupportedError, match=named) as raised:
            recommend_for_ratings(model, fitted.params, ratings, 5)
        assert isinstance(raised.value, ValueError)
        assert "supported: SVD, SVDpp, NMF, BaselineOnly, KNNBasic" in str(raised.value)


def test_refit_models_raise(svd: tuple[ModelArrays, dict[str, Any]]) -> None:
    model = dataclasses.replace(svd[0], kind="refit", arrays={})
    with pytest.raises(FoldInUnsupportedError, match="'refit' model"):
        recommend_for_ratings(model, {}, {model.item_ids[0]: 4.0}, 5)


def test_supported_lists_the_kinds() -> None:
    assert set(SUPPORTED) == {
        "SVD",
        "SVDpp",
        "NMF",
        "BaselineOnly",
        *KNN,
        "SlopeOne",
        "EASE",
        "ALS",
        "ItemKNN",
    }
    assert all(isinstance(line, str) and "\n" not in line for line in SUPPORTED.values())
