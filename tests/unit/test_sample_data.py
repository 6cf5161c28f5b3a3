"""The synthetic generator (recommender/sample_data.py): deterministic, the same whatever the block
size, the shape it promises (long-tail popularity, log-normal activity, no repeated pair, stars
1-5, times within a year), latent structure a factor model finds, the sampler's exactness, and
the numpy CSV formatting that feeds COPY."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
from datetime import UTC, datetime

import numpy as np
import pytest

from recommender.evaluation import holdout_split, rating_metrics
from recommender.sample_data import (
    CALIBRATED,
    RNG_CHUNK_USERS,
    SELECTION_STRENGTH,
    START_EPOCH,
    YEAR_SECONDS,
    ChunkReader,
    RatingBlock,
    SyntheticCsv,
    SyntheticSpec,
    _Model,
    calibrated,
    item_id,
    synthetic_blocks,
    synthetic_ratings,
    timestamp_text,
)
from recommender.snapshot import ratings_from_rows
from recommender.training import fit

FIELDS = ("users", "items", "ratings", "timestamps")


def _all(spec: SyntheticSpec, block_users: int = 4096) -> RatingBlock:
    return RatingBlock.concat(list(synthetic_blocks(spec, block_users)))


def _same(a: RatingBlock, b: RatingBlock) -> bool:
    return all(np.array_equal(getattr(a, name), getattr(b, name)) for name in FIELDS)


@pytest.fixture(scope="module")
def wide() -> tuple[SyntheticSpec, RatingBlock]:
    spec = SyntheticSpec(users=3000, items=2000, ratings_per_user=30, seed=1)
    return spec, _all(spec)


def test_deterministic_for_a_seed_and_different_across_seeds() -> None:
    spec = SyntheticSpec(users=300, items=120, ratings_per_user=10, seed=7)
    assert _same(_all(spec), _all(spec))
    other = _all(SyntheticSpec(users=300, items=120, ratings_per_user=10, seed=8))
    assert len(other) != len(_all(spec)) or not _same(other, _all(spec))


@pytest.mark.parametrize("block_users", [1, 333, RNG_CHUNK_USERS, 2500, 10_000])
def test_the_same_whatever_the_block_size(block_users: int) -> None:
    """2,500 users span three random-stream chunks; blocks cut them anywhere."""
    spec = SyntheticSpec(users=2500, items=300, ratings_per_user=8, seed=3)
    blocks = list(synthetic_blocks(spec, block_users))
    assert all(len(np.unique(b.users)) <= block_users for b in blocks)
    assert [int(b.users[0]) for b in blocks] == list(range(0, spec.users, block_users))
    assert _same(RatingBlock.concat(blocks), _all(spec))


def test_rows_are_the_blocks_with_ids() -> None:
    spec = SyntheticSpec(users=50, items=40, ratings_per_user=6, seed=2)
    block = _all(spec)
    rows = list(synthetic_ratings(spec))
    assert rows == [
        (str(u + 1), f"item-{i + 1:05d}", r, float(t))
        for u, i, r, t in zip(
            block.users.tolist(), block.items.tolist(), block.ratings.tolist(), block.timestamps.tolist()
        )
    ]
    assert item_id(0, 59_000) == "item-00001" and item_id(99_998, 99_999) == "item-99999"
    assert item_id(0, 100_000) == "item-000001"  # wider only from 100,000 items


def test_ratings_are_valid(wide: tuple[SyntheticSpec, RatingBlock]) -> None:
    spec, data = wide
    pairs = data.users * spec.items + data.items
    assert len(np.unique(pairs)) == len(pairs)  # no (user, item) twice
    assert set(np.unique(data.ratings).tolist()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert np.all(np.diff(data.users) >= 0)  # grouped by user
    assert data.users.min() == 0 and data.users.max() == spec.users - 1
    assert data.items.min() >= 0 and data.items.max() < spec.items
    assert data.timestamps.min() >= START_EPOCH and data.timestamps.max() <= START_EPOCH + YEAR_SECONDS
    same_user = data.users[1:] == data.users[:-1]
    assert np.all(np.diff(data.timestamps)[same_user] >= 0)  # in time order within a user


def test_long_tail_popularity(wide: tuple[SyntheticSpec, RatingBlock]) -> None:
    spec, data = wide
    per_item = np.sort(np.bincount(data.items, minlength=spec.items))[::-1]
    top_share = per_item[: spec.items // 100].sum() / per_item.sum()
    assert top_share > 0.15  # the top 1% of items: 21% of the ratings (1% if uniform)
    assert np.median(per_item) < 0.6 * per_item.mean()


def test_activity_is_log_normal(wide: tuple[SyntheticSpec, RatingBlock]) -> None:
    spec, data = wide
    counts = np.bincount(data.users, minlength=spec.users)
    assert counts.min() >= 5 and counts.max() <= spec.items // 2
    assert abs(counts.mean() - spec.ratings_per_user) < 0.05 * spec.ratings_per_user
    assert np.median(counts) < 0.85 * counts.mean()  # skewed: a few users rate a lot
    logs = np.log(counts)
    assert 0.65 < logs.std() < 0.85  # sigma 0.8, a little less where clipped at 5
    third_moment = np.mean((logs - logs.mean()) ** 3) / logs.std() ** 3
    assert abs(third_moment) < 0.3  # the log is about symmetric


def test_an_exact_total() -> None:
    spec = SyntheticSpec.with_total(users=1000, items=300, ratings=54_321, seed=1)
    assert spec.ratings_per_user == 54
    data = _all(spec)
    assert len(data) == 54_321
    counts = np.bincount(data.users, minlength=1000)
    assert counts.min() >= 5 and counts.max() <= 150
    with pytest.raises(ValueError, match="cannot be spread"):
        SyntheticSpec.with_total(users=10, items=20, ratings=101)  # at most 10 each
    with pytest.raises(ValueError, match="invalid synthetic spec"):
        SyntheticSpec(items=0)


def test_latent_structure_a_factor_model_finds() -> None:
    """On 2-factor data, SVD's RMSE beats the biases alone (BaselineOnly) and the global mean by
    a wide margin. Measured: 0.72, against 0.84 and 1.08."""
    rows = [
        (u, i, r) for u, i, r, _ in synthetic_ratings(SyntheticSpec(users=400, items=200, factors=2, seed=5))
    ]
    split = holdout_split(ratings_from_rows(rows), 0.2, seed=0)
    svd = fit(split.train, "SVD", {"n_factors": 8, "n_epochs": 60, "lr_all": 0.01, "reg_all": 0.05}, (1, 5))
    baseline = fit(split.train, "BaselineOnly", {}, (1, 5))
    svd_rmse = rating_metrics(svd.algorithm, split.test)["rmse"]
    baseline_rmse = rating_metrics(baseline.algorithm, split.test)["rmse"]
    mean_rmse = float(np.sqrt(np.mean((split.test.ratings - split.train.ratings.mean()) ** 2)))
    assert svd_rmse < baseline_rmse - 0.07
    assert svd_rmse < mean_rmse - 0.25


def test_users_choose_items_they_expect_to_like() -> None:
    """The rated items' affinity sits above the user's mean over the catalogue (by popularity),
    by 0.43 of its standard deviation here (0 if choices ignored taste), and it drives the stars."""
    spec = SyntheticSpec(users=500, items=400, ratings_per_user=20, seed=4)
    model = _Model(spec)
    data = _all(spec)
    user_f = model.user_f[data.users]
    rated = np.einsum("nk,nk->n", user_f, model.item_f[data.items])
    by_popularity = model.popularity / model.popularity.sum()
    mean = user_f @ (by_popularity @ model.item_f)
    spread = np.sqrt(np.einsum("nk,kl,nl->n", user_f, np.cov(model.item_f.T, aweights=by_popularity), user_f))
    assert np.mean((rated - mean) / spread) > 0.3
    assert np.corrcoef(rated, data.ratings)[0, 1] > 0.2


def test_the_first_pick_follows_the_target_exactly() -> None:
    """A user's first rated item is one draw from popularity x min(1, exp(1.5 (a - cap))): over
    20,000 users, the first picks per item match the summed probabilities (chi-square). This
    checks the alias table, the rejection step and the order of acceptance together."""
    spec = SyntheticSpec(users=20_000, items=40, ratings_per_user=5, factors=3, seed=9)
    model = _Model(spec)
    data = _all(spec)
    firsts = data.items[np.concatenate([[True], data.users[1:] != data.users[:-1]])]
    affinity = model.user_f @ model.item_f.T
    weights = model.popularity * np.exp(SELECTION_STRENGTH * np.minimum(affinity - model.cap[:, None], 0.0))
    expected = (weights / weights.sum(axis=1, keepdims=True)).sum(axis=0)
    observed = np.bincount(firsts, minlength=spec.items)
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    assert chi2 < 80  # 39 degrees of freedom: p < 1e-4 beyond 80
    uniform_pop = np.full(spec.items, spec.users / spec.items)
    assert float(((observed - uniform_pop) ** 2 / uniform_pop).sum()) > 1000  # not flat


def _digest(data: RatingBlock) -> str:
    digest = hashlib.sha256()
    for name in FIELDS:
        digest.update(np.ascontiguousarray(getattr(data, name)).tobytes())
    return digest.hexdigest()[:16]


def test_the_structure_fields_left_alone_keep_the_data_bit_for_bit() -> None:
    """The data of a seed stays what it is as the spec gains fields: these digests are of the
    generator before it had popularity_exponent, selection_strength, activity_sigma and topics."""
    plain = SyntheticSpec(users=3000, items=2000, ratings_per_user=30, seed=1, topics=0)
    assert _digest(_all(plain)) == "1015747bc1f82617"
    exact = SyntheticSpec.with_total(users=5000, items=3000, ratings=400_000, seed=2, topics=0)
    assert _digest(_all(exact)) == "eb9ae2a5c5d101a5"


def test_topics_the_first_pick_follows_the_target_exactly() -> None:
    """With groups of items, a user's first item is one draw from taste[group] x popularity x
    min(1, exp(1.5 (a - cap))): the group and alias draws and the rejection step together."""
    spec = SyntheticSpec(
        users=20_000, items=40, ratings_per_user=5, factors=3, seed=9, topics=4, topic_concentration=0.5
    )
    model = _Model(spec)
    data = _all(spec)
    firsts = data.items[np.concatenate([[True], data.users[1:] != data.users[:-1]])]
    affinity = model.user_f @ model.item_f.T
    taste = np.concatenate([model.tastes(chunk) for chunk in range(model.chunks)])
    weights = (
        model.popularity
        * taste[:, model.topic]
        * np.exp(spec.selection_strength * np.minimum(affinity - model.cap[:, None], 0.0))
    )
    expected = (weights / weights.sum(axis=1, keepdims=True)).sum(axis=0)
    observed = np.bincount(firsts, minlength=spec.items)
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    assert chi2 < 80  # 39 degrees of freedom: p < 1e-4 beyond 80
    no_groups = model.popularity * np.exp(1.5 * np.minimum(affinity - model.cap[:, None], 0.0))
    flat = (no_groups / no_groups.sum(axis=1, keepdims=True)).sum(axis=0)
    assert float(((observed - flat) ** 2 / flat).sum()) > 200  # measured 365: the groups tell


@pytest.mark.parametrize("block_users", [1, 700, 3000])
def test_topics_the_same_whatever_the_block_size(block_users: int) -> None:
    spec = SyntheticSpec(users=2500, items=300, ratings_per_user=8, seed=3, topics=7, topic_concentration=0.2)
    data = _all(spec)
    assert _same(RatingBlock.concat(list(synthetic_blocks(spec, block_users))), data)
    assert len(np.unique(data.users * spec.items + data.items)) == len(data)


def test_topics_users_keep_to_their_groups() -> None:
    """A concentrated taste (0.1 over 10 groups): a user's ratings fall mostly in a few groups,
    far more than a taste-blind draw would put there. Measured: 86% in the user's top 2 of 10."""
    spec = SyntheticSpec(
        users=1000, items=500, ratings_per_user=30, seed=6, topics=10, topic_concentration=0.1
    )
    model = _Model(spec)
    data = _all(spec)
    per_group = np.zeros((spec.users, spec.topics))
    np.add.at(per_group, (data.users, model.topic[data.items]), 1)
    top_two = np.sort(per_group, axis=1)[:, -2:].sum() / per_group.sum()
    assert top_two > 0.7  # about 0.3 for a taste-blind draw over 10 equal groups


def test_the_calibrated_point_is_the_documented_one() -> None:
    """docs/scaling.md's Calibration section and the README name these values."""
    assert dict(CALIBRATED) == {"topics": 350, "topic_concentration": 0.1, "time_shuffle": 1.0}
    assert calibrated(59_000) == dict(CALIBRATED)
    assert calibrated(90) == {**CALIBRATED, "topics": 90}  # never more groups than items
    SyntheticSpec(users=10, items=5, **calibrated(5))  # a valid spec at any catalogue size


@pytest.mark.parametrize("block_users", [1, 700, 3000])
def test_calibrated_the_same_whatever_the_block_size(block_users: int) -> None:
    spec = SyntheticSpec(users=2500, items=1000, ratings_per_user=12, seed=3, **calibrated(1000))
    data = _all(spec)
    assert _same(RatingBlock.concat(list(synthetic_blocks(spec, block_users))), data)
    assert len(np.unique(data.users * spec.items + data.items)) == len(data)


def _same_group_pairs(data: RatingBlock, users: int, topic: np.ndarray) -> float:
    """The share of each user's pairs of rated items that fall in the same group."""
    per_group = np.zeros((users, int(topic.max()) + 1))
    np.add.at(per_group, (data.users, topic[data.items]), 1)
    n = per_group.sum(axis=1)
    return float((per_group * (per_group - 1)).sum() / (n * (n - 1)).sum())


def test_calibrated_items_co_occur_within_groups_beyond_popularity() -> None:
    """What item-kNN needs and the old defaults lack: pairs of items a user rates share a group
    of the calibrated partition far more often than a taste-blind draw makes them (1 in 350 for
    equal groups). Measured: 0.017 calibrated, 0.0025 with the defaults."""
    shape = {"users": 1000, "items": 3500, "ratings_per_user": 30, "seed": 4}
    spec = SyntheticSpec(**shape, **calibrated(3500))
    topic = _Model(spec).topic
    assert _same_group_pairs(_all(spec), spec.users, topic) > 0.01
    assert _same_group_pairs(_all(SyntheticSpec(**shape)), spec.users, topic) < 0.005


def test_time_shuffle_reorders_times_only() -> None:
    """time_shuffle moves no rating: the same rows, and each user's same times, given in another
    order. At 0, a user's rows are timed in order of choice (increasing); at 1, not."""
    spec = SyntheticSpec(
        users=300, items=400, ratings_per_user=20, seed=5, topics=20, topic_concentration=0.3
    )
    ordered, shuffled = _all(spec), _all(dataclasses.replace(spec, time_shuffle=1.0))
    for name in ("users", "items", "ratings"):
        assert np.array_equal(getattr(ordered, name), getattr(shuffled, name))
    key = ordered.users * 10 * YEAR_SECONDS
    assert np.array_equal(np.sort(key + ordered.timestamps), np.sort(key + shuffled.timestamps))
    increasing = np.diff(ordered.timestamps)[np.diff(ordered.users) == 0]
    assert (increasing >= 0).all()
    assert (np.diff(shuffled.timestamps)[np.diff(shuffled.users) == 0] < 0).mean() > 0.3  # about half


def test_heavy_users_in_a_small_catalogue() -> None:
    """Half of a 12-item catalogue each, with a strong taste: the exact draw finishes them."""
    spec = SyntheticSpec(users=300, items=12, ratings_per_user=8, factors=1, seed=1)
    data = _all(spec)
    counts = np.bincount(data.users, minlength=spec.users)
    assert counts.max() == 6 and counts.min() == 5
    assert len(np.unique(data.users * spec.items + data.items)) == len(data)


def test_no_users() -> None:
    assert list(synthetic_blocks(SyntheticSpec(users=0))) == []
    assert list(synthetic_ratings(SyntheticSpec(users=0))) == []


def test_timestamp_text_is_utc_iso() -> None:
    seconds = np.array([0, 1, 59, 86_399, 86_400, START_EPOCH, 951_782_400, 4_102_444_799, -1, -86_401])
    text = timestamp_text(seconds)
    got = [bytes(row[row != 0]).decode() for row in text]
    assert got == [datetime.fromtimestamp(int(s), UTC).strftime("%Y-%m-%d %H:%M:%S+00") for s in seconds]


def test_csv_of_a_block_is_what_csv_reads() -> None:
    spec = SyntheticSpec(users=60, items=30, ratings_per_user=6, seed=3)
    to_csv = SyntheticCsv(spec)
    text = b"".join(to_csv(block) for block in synthetic_blocks(spec, 17)).decode()
    parsed = list(csv.reader(io.StringIO(text)))
    rows = list(synthetic_ratings(spec))
    assert [r[:3] for r in parsed] == [[u, i, repr(r)] for u, i, r, _ in rows]
    assert [r[3] for r in parsed] == [
        datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S+00") for _, _, _, t in rows
    ]
    plain = SyntheticCsv(spec, timestamps=False)(_all(spec)).decode().splitlines()
    assert plain == [",".join(r[:3]) for r in parsed]


def test_chunk_reader_reads_across_chunks() -> None:
    reader = ChunkReader(iter([b"abc", b"", b"defgh", b"i"]))
    assert reader.read(2) == b"ab"
    assert reader.read(5) == b"c"  # a short read is fine for copy_expert
    assert reader.read(4) == b"defg"
    assert reader.read(-1) == b"h"
    assert reader.read(10) == b"i"
    assert reader.read(10) == b""
