"""NormalPredictor's kernel: Surprise's distribution, but draws that depend only on the model.

Surprise's own draws cannot be reproduced (numpy's global generator, in call order), so the
contract test does not apply. What is checked instead (see kernels/normal.py):
- mu and sigma are the fitted algorithm's, and survive the model's round trip;
- a user's draws depend only on the seed and the user's inner id: the same across calls, across
  block splits, shards and user order;
- the published lists exclude what the user rated, and the scores are the draws clipped;
- over many draws, the scores' mean and standard deviation are mu and sigma.
"""

from __future__ import annotations

import numpy as np
import pytest
import surprise

from recommender.config import DEFAULT_SEED
from recommender.kernels import kernel_name, load_kernel
from recommender.kernels.normal import NormalKernel
from recommender.model import ModelArrays
from recommender.sample_data import SyntheticSpec, synthetic_ratings
from recommender.scoring import UserTopN, recommend
from recommender.snapshot import ratings_from_rows
from recommender.training import FittedModel, fit, model_from_fit

TOP_N = 7
SCALE = (1.0, 5.0)


@pytest.fixture(scope="module")
def fitted() -> FittedModel:
    spec = SyntheticSpec(users=400, items=60, ratings_per_user=8, seed=5)
    rows = [(u, i, r) for u, i, r, _ in synthetic_ratings(spec)]
    rows += [("rated-everything", f"item-{i:05d}", float(1 + i % 5)) for i in range(1, 61)]
    return fit(ratings_from_rows(rows), "NormalPredictor", {}, SCALE)


@pytest.fixture(scope="module")
def model(fitted: FittedModel) -> ModelArrays:
    return ModelArrays.from_bytes(model_from_fit(fitted).to_bytes())


def lists(model: ModelArrays, users: np.ndarray, rows_per_block: int | None = None) -> dict[int, UserTopN]:
    kernel = load_kernel(model)
    if rows_per_block is not None:
        kernel.block_rows = lambda: rows_per_block  # type: ignore[method-assign]
    return {top.user: top for top in recommend(model, users, TOP_N, kernel)}


def test_registered_with_surprise_mu_and_sigma(fitted: FittedModel, model: ModelArrays) -> None:
    assert kernel_name(surprise.NormalPredictor()) == "NormalPredictor"
    assert model.kind == "NormalPredictor"
    assert isinstance(load_kernel(model), NormalKernel)
    assert float(model.arrays["mu"]) == fitted.trainset.global_mean
    assert float(model.arrays["sigma"]) == fitted.algorithm.sigma
    assert int(model.arrays["seed"]) == DEFAULT_SEED
    assert all(value.dtype != object for value in model.arrays.values())


def test_draws_depend_only_on_seed_and_user(model: ModelArrays) -> None:
    users = np.arange(model.n_users)
    scores = load_kernel(model).scores(users)
    assert scores.shape == (model.n_users, model.n_items)
    assert np.array_equal(scores, load_kernel(model).scores(users))  # another call, another kernel
    blocks = np.concatenate([load_kernel(model).scores(block) for block in np.array_split(users, 7)])
    assert np.array_equal(blocks, scores)
    shuffled = np.random.default_rng(1).permutation(users)
    assert np.array_equal(load_kernel(model).scores(shuffled), scores[shuffled])
    # the documented stream, so anyone can reproduce a list with numpy alone
    mu, sigma = float(model.arrays["mu"]), float(model.arrays["sigma"])
    user = 17
    expected = np.random.default_rng([DEFAULT_SEED, user]).normal(mu, sigma, model.n_items)
    assert np.array_equal(scores[user], expected)
    assert len({row.tobytes() for row in scores}) == model.n_users  # users get their own draws


def test_lists_are_reproducible_across_blocks_and_shards(model: ModelArrays) -> None:
    users = np.arange(model.n_users)
    whole = lists(model, users)
    assert set(whole) == set(range(model.n_users))
    shards = [lists(model, shard, rows_per_block=3) for shard in np.array_split(users[::-1], 5)]
    for part in [lists(model, users, rows_per_block=4), *shards]:
        for user, top in part.items():
            assert top.items.tolist() == whole[user].items.tolist()
            assert np.array_equal(top.scores, whole[user].scores)


def test_lists_exclude_seen_items_and_publish_clipped_draws(model: ModelArrays) -> None:
    users = np.arange(model.n_users)
    scores = load_kernel(model).scores(users)
    low, high = model.rating_scale
    for user, top in lists(model, users).items():
        seen = set(model.seen(user).tolist())
        got = top.items.tolist()
        assert not set(got) & seen
        assert len(got) == min(TOP_N, model.n_items - len(seen))
        unseen = [i for i in range(model.n_items) if i not in seen]
        best = sorted(unseen, key=lambda i: -scores[user, i])[:TOP_N]  # draws are continuous: no ties
        assert got == best
        np.testing.assert_array_equal(top.scores, np.clip(scores[user, got], low, high))
    assert lists(model, np.asarray([model.user_ids.index("rated-everything")])).popitem()[1].items.size == 0


def test_draws_follow_surprise_distribution(fitted: FittedModel, model: ModelArrays) -> None:
    draws = load_kernel(model).scores(np.arange(model.n_users)).ravel()
    assert draws.size >= 20_000
    mu, sigma = fitted.trainset.global_mean, fitted.algorithm.sigma
    # five standard errors: the draws are seeded, so this never flickers
    assert abs(draws.mean() - mu) < 5 * sigma / np.sqrt(draws.size)
    assert abs(draws.std() - sigma) < 5 * sigma / np.sqrt(2 * draws.size)
