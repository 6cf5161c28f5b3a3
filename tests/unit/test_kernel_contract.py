"""The contract every kernel keeps, checked the same way for every algorithm and option.

On small synthetic data with a fixed seed (integer stars, so similarities and estimates tie):
- the kernel's scores equal Surprise's `estimate(u, i)` for every user and every item, and
  Surprise's fallback (`default_prediction()`) wherever `estimate` raises `PredictionImpossible`;
- every user's top-N equals the brute-force top-N under the ranking rule (selection.py);
- items a user rated never appear, and a user who rated everything gets an empty list;
- the published scores are Surprise's `predict()` (clipped) values;
- cutting users into small blocks changes nothing;
- a split model (item side + one shard's part) gives each shard's users the same lists.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from recommender.dataset import Ratings
from recommender.kernels import load_kernel, user_layout
from recommender.model import ModelArrays, UserPart
from recommender.sample_data import SyntheticSpec, synthetic_ratings
from recommender.scoring import recommend
from recommender.sharding import plan_shards, shard_users
from recommender.snapshot import ratings_from_rows
from recommender.training import FittedModel, estimate_or_default, fit, model_from_fit

TOP_N = 7
SCALE = (1.0, 5.0)
KNN = ("KNNBasic", "KNNWithMeans", "KNNWithZScore", "KNNBaseline")
SIMILARITIES = ("cosine", "msd", "pearson", "pearson_baseline")

CASES: list[tuple[str, dict[str, Any]]] = [
    ("SVD", {"n_factors": 6, "n_epochs": 15}),
    ("SVD", {"n_factors": 6, "n_epochs": 15, "biased": False}),
    ("SVDpp", {"n_factors": 5, "n_epochs": 10}),
    ("NMF", {"n_factors": 4, "n_epochs": 20}),
    ("NMF", {"n_factors": 4, "n_epochs": 20, "biased": True}),
    ("BaselineOnly", {"bsl_options": {"method": "als"}}),
    ("BaselineOnly", {"bsl_options": {"method": "sgd", "n_epochs": 10}}),
    ("SlopeOne", {}),
    ("CoClustering", {}),
    ("CoClustering", {"n_cltr_u": 2, "n_cltr_i": 4, "n_epochs": 10}),
    ("EASE", {}),
    ("EASE", {"reg": 2.5}),
    ("EASE", {"implicit": False}),
    ("EASE", {"implicit": False, "reg": 2.5}),
    ("ALS", {"factors": 6}),
    ("ALS", {"factors": 6, "confidence": "rating", "min_rating": 3.0, "alpha": 4.0}),
    ("ItemKNN", {"K": 5}),
    ("ItemKNN", {"weighting": "tfidf", "K": 10, "confidence": "rating"}),
    ("ItemKNN", {"weighting": "cosine", "min_rating": 3.0}),
    *[
        (name, {"k": k, "min_k": min_k, "sim_options": {"name": sim, "user_based": user_based}})
        for name in KNN
        for sim in SIMILARITIES
        for user_based in (True, False)
        for k, min_k in ((3, 2), (40, 1))
    ],
]


def case_id(case: tuple[str, dict[str, Any]]) -> str:
    name, params = case
    sim = params.get("sim_options")
    if sim:
        based = "user" if sim["user_based"] else "item"
        return f"{name}-{sim['name']}-{based}-k{params['k']}-min{params['min_k']}"
    return name + "".join(f"-{k}={v}" for k, v in params.items() if k not in ("n_factors", "n_epochs"))


@pytest.fixture(scope="module")
def ratings() -> Ratings:
    rows = [
        (u, i, r)
        for u, i, r, _ in synthetic_ratings(SyntheticSpec(users=45, items=30, ratings_per_user=8, seed=11))
    ]
    rows += [("rated-everything", f"item-{i:05d}", float(1 + i % 5)) for i in range(1, 31)]
    rows += [("one-rating", "item-00007", 4.0)]
    return ratings_from_rows(rows)


def surprise_estimates(fitted: FittedModel, model: ModelArrays) -> np.ndarray:
    return np.array(
        [
            [estimate_or_default(fitted.algorithm, u, i) for i in range(model.n_items)]
            for u in range(model.n_users)
        ]
    )


def brute_force_top_n(model: ModelArrays, estimates: np.ndarray, user: int) -> list[int]:
    seen = set(model.seen(user).tolist())
    unseen = [i for i in range(model.n_items) if i not in seen]
    return sorted(unseen, key=lambda i: (-estimates[user, i], -model.item_counts[i], i))[:TOP_N]


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_kernel_equals_surprise(case: tuple[str, dict[str, Any]], ratings: Ratings) -> None:
    name, params = case
    fitted = fit(ratings, name, params, SCALE)
    model = ModelArrays.from_bytes(model_from_fit(fitted).to_bytes())
    assert model.kind == name, f"{name} has no kernel: it would be scored pair by pair"
    kernel = load_kernel(model)
    users = np.arange(model.n_users)

    expected = surprise_estimates(fitted, model)
    np.testing.assert_allclose(kernel.scores(users), expected, rtol=1e-9, atol=1e-9)

    lists = {top.user: top for top in recommend(model, users, TOP_N, kernel)}
    kernel.block_rows = lambda: 4  # type: ignore[method-assign]
    blocked = {top.user: top for top in recommend(model, users, TOP_N, kernel)}
    assert set(lists) == set(range(model.n_users))
    for user, top in lists.items():
        want = brute_force_top_n(model, expected, user)
        got = top.items.tolist()
        assert len(got) == len(want)
        for a, b in zip(got, want):
            assert a == b or abs(expected[user, a] - expected[user, b]) < 1e-9, (user, got, want)
        assert not set(got) & set(model.seen(user).tolist())
        predicted = [fitted.algorithm.predict(model.user_ids[user], model.item_ids[i]).est for i in got]
        np.testing.assert_allclose(top.scores, predicted, rtol=1e-9, atol=1e-9)
        assert blocked[user].items.tolist() == got
    everything = model.user_ids.index("rated-everything")
    assert lists[everything].items.size == 0


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_split_model_scores_each_shard_like_the_whole_model(
    case: tuple[str, dict[str, Any]], ratings: Ratings
) -> None:
    """A predictor that reads the item side and its own shard's part (as written by Train and
    read back from bytes) gives every user exactly the lists the whole model gives."""
    name, params = case
    whole = model_from_fit(fit(ratings, name, params, SCALE))
    layout = user_layout(whole)
    if layout is None:
        assert name in KNN and params["sim_options"]["user_based"], f"{name} should be split"
        return
    item_side = ModelArrays.from_bytes(whole.item_side(layout).to_bytes())
    assert item_side.users_in_parts and item_side.n_users == 0
    assert not set(layout.names) & set(item_side.arrays), "user arrays left in the item side"
    expected = {
        top.user: top for top in recommend(whole, np.arange(whole.n_users), TOP_N, load_kernel(whole))
    }
    plan = plan_shards(whole, users_per_shard=10)
    assert len(plan) > 2
    for shard in plan:
        users = shard_users(whole, shard)
        part = UserPart.from_bytes(whole.user_part(users, layout).to_bytes())
        joined = item_side.with_users(part)
        got = list(recommend(joined, joined.user_order, TOP_N, load_kernel(joined)))
        assert [joined.user_ids[top.user] for top in got] == [whole.user_ids[u] for u in users.tolist()]
        for top, user in zip(got, users.tolist()):
            assert top.items.tolist() == expected[user].items.tolist()
            np.testing.assert_allclose(top.scores, expected[user].scores, rtol=1e-12, atol=1e-12)


def test_co_clustering_scores_chunk_by_chunk_exactly(
    ratings: Ratings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CoClustering builds its scores a few rows at a time (so its passes run in cache): any
    chunk size gives Surprise's sums bit for bit, in Surprise's order."""
    from recommender.kernels import co_clustering

    fitted = fit(ratings, "CoClustering", {}, SCALE)
    model = model_from_fit(fitted)
    expected = surprise_estimates(fitted, model)
    users = np.arange(model.n_users)
    for rows in (1, 3, 7, model.n_users):
        monkeypatch.setattr(co_clustering, "CHUNK_BYTES", 8 * model.n_items * rows)
        assert np.array_equal(load_kernel(model).scores(users), expected), rows
