"""The shard plan (balanced, contiguous ranges of the UTF-8 order) and the shard objects."""

from __future__ import annotations

import gzip
import itertools
import json
from unittest import mock

import numpy as np
import pytest

from recommender.contracts import Shard
from recommender.errors import ConfigError, ShardError
from recommender.model import ModelArrays, utf8_order
from recommender.scoring import UserTopN
from recommender.sharding import (
    MAX_SHARDS,
    check_shard_count,
    check_shard_object,
    decode_shard,
    encode_shard,
    object_metadata,
    plan_shards,
    shard_users,
)

TRICKY_USERS = [
    "line\nbreak",
    "sep\u2028arator",
    "para\u2029graph",
    'quote"d',
    "it's",
    "comma,id",
    "😀",
    "\uff61",
    "tab\tid",
    "back\\slash",
    "nul\x00id",
    "ünï",
    "",
    "plain",
    "\x1c\x1d\x1e\x85",  # str.splitlines() breaks on these too
]


def _model(user_ids: list[str], item_ids: list[str] | None = None) -> ModelArrays:
    item_ids = item_ids or ["i0", "i1", "i2"]
    n_users, n_items = len(user_ids), len(item_ids)
    return ModelArrays(
        kind="SVD",
        user_ids=user_ids,
        item_ids=item_ids,
        seen_indptr=np.zeros(n_users + 1, dtype=np.int64),
        seen_indices=np.zeros(0, dtype=np.int32),
        item_counts=np.ones(n_items, dtype=np.int64),
        global_mean=3.0,
        rating_scale=(1.0, 5.0),
        unknown_user_scores=np.full(n_items, 3.0),
        user_order=utf8_order(user_ids),
    )


def _shuffled_ids(n: int) -> list[str]:
    rng = np.random.default_rng(n)
    return [f"u{k}" for k in rng.permutation(n).tolist()]


@pytest.mark.parametrize(
    ("n_users", "per_shard"),
    [(10, 3), (10, 4), (100, 7), (101, 10), (1000, 33), (7, 7), (8, 7), (5, 1), (1, 1), (37, 36)],
)
def test_plan_is_balanced_and_covers_every_user(n_users: int, per_shard: int) -> None:
    ids = _shuffled_ids(n_users)
    model = _model(ids)
    plan = plan_shards(model, per_shard)
    assert [s["index"] for s in plan] == list(range(len(plan)))
    assert len(plan) == -(-n_users // per_shard)  # ceil: as few shards as the limit allows
    sizes = [s["users"] for s in plan]
    assert max(sizes) - min(sizes) <= 1
    assert max(sizes) <= per_shard
    assert sum(sizes) == n_users
    # contiguous ranges, every position exactly once
    assert plan[0]["start"] == 0 and plan[-1]["end"] == n_users
    covered: list[int] = []
    for shard in plan:
        assert shard["end"] - shard["start"] == shard["users"]
        covered += list(range(shard["start"], shard["end"]))
    assert covered == list(range(n_users))
    # users in shard order, each shard an id range
    everyone: list[int] = []
    for shard in plan:
        users = shard_users(model, shard)
        assert users.tolist() == model.user_order[shard["start"] : shard["end"]].tolist()
        assert shard["first_user"] == ids[int(model.user_order[shard["start"]])] == ids[users[0]]
        assert shard["last_user"] == ids[int(model.user_order[shard["end"] - 1])] == ids[users[-1]]
        everyone += users.tolist()
    assert sorted(everyone) == list(range(n_users))
    keys = [ids[u].encode() for u in everyone]
    assert keys == sorted(keys)
    for left, right in itertools.pairwise(plan):
        assert left["last_user"].encode() < right["first_user"].encode()
    json.dumps(plan)  # the plan is the Map's ItemReader input: plain JSON


@pytest.mark.parametrize("per_shard", [50, 51, 10**6])
def test_one_shard_when_the_limit_exceeds_the_users(per_shard: int) -> None:
    ids = _shuffled_ids(50)
    plan = plan_shards(_model(ids), per_shard)
    assert len(plan) == 1
    assert plan[0]["users"] == 50 and plan[0]["index"] == 0
    assert plan[0]["first_user"] == min(ids, key=str.encode)
    assert plan[0]["last_user"] == max(ids, key=str.encode)


def test_plan_uses_utf8_order_of_tricky_ids() -> None:
    model = _model(TRICKY_USERS)
    plan = plan_shards(model, 4)
    ordered = sorted(TRICKY_USERS, key=lambda s: s.encode("utf-8"))
    assert [s["first_user"] for s in plan] == [ordered[s["start"]] for s in plan]
    assert plan[0]["first_user"] == ""
    assert plan[-1]["last_user"] == "😀"


def test_encode_decode_round_trip_with_tricky_ids() -> None:
    items = ["item\n1", "item\u2028two", '"3"', "😀4", "i,5", "\x85six"]
    model = _model(TRICKY_USERS, items)
    lists = [
        UserTopN(u, np.asarray([(u + k) % len(items) for k in range(3)]), np.asarray([4.9876543, 3.5, 1.0]))
        for u in range(len(TRICKY_USERS))
    ]
    lists.append(UserTopN(0, np.zeros(0, dtype=np.int64), np.zeros(0)))  # an empty list
    data, count = encode_shard(model, lists)
    assert count == len(lists)
    assert data[:2] == b"\x1f\x8b"
    payload = gzip.decompress(data)
    # one JSON line per user, whatever the ids hold
    assert payload.count(b"\n") == len(lists)
    assert "\u2028".encode() in payload  # written as UTF-8, not escaped
    records = list(decode_shard(data))
    assert len(records) == len(lists)
    for record, top in zip(records, lists):
        assert record["user"] == TRICKY_USERS[top.user]
        assert record["items"] == [items[i] for i in top.items.tolist()]
        assert record["scores"] == [round(s, 6) for s in top.scores.tolist()]
    assert records[0]["scores"] == [4.987654, 3.5, 1.0]
    assert records[-1] == {"user": TRICKY_USERS[0], "items": [], "scores": []}


def test_encode_is_deterministic() -> None:
    model = _model(["a", "b"])
    lists = [UserTopN(1, np.asarray([2, 0]), np.asarray([4.0, 3.0]))]
    assert encode_shard(model, lists) == encode_shard(model, lists)


def test_empty_shard() -> None:
    data, count = encode_shard(_model(["a"]), [])
    assert count == 0
    assert list(decode_shard(data)) == []


def test_a_plan_never_has_more_shards_than_a_run_may_have() -> None:
    check_shard_count(MAX_SHARDS * 1000, 1000)  # exactly the cap
    with pytest.raises(
        ConfigError, match=r"users_per_shard: 10,000,001 users .* 10,001 shards.* at least 1,001"
    ):
        check_shard_count(MAX_SHARDS * 1000 + 1, 1000)
    model = _model([f"u{k}" for k in range(11)])
    with mock.patch("recommender.sharding.MAX_SHARDS", 10):
        with pytest.raises(ConfigError, match="users_per_shard"):
            plan_shards(model, 1)
        assert len(plan_shards(model, 2)) == 6


def test_the_largest_plan_keeps_the_maps_output_small() -> None:
    """What the DISTRIBUTED Map collects is one {} per shard (the ASL keeps nothing of a
    predictor's result): at MAX_SHARDS it must stay well inside Step Functions' 256 KiB."""
    collected = json.dumps([{}] * MAX_SHARDS, separators=(",", ":")).encode()
    assert len(collected) < 256 * 1024 / 4


def test_a_shard_object_is_checked_against_its_record_and_its_shard() -> None:
    """The one check the predictor (is its work done?) and Merge (may the run be published?) apply."""
    model = _model(["a", "b", "c"])
    lists = [
        UserTopN(0, np.asarray([2, 0]), np.asarray([4.0, 3.0])),
        UserTopN(1, np.zeros(0, np.int64), np.zeros(0)),
    ]
    data, count = encode_shard(model, lists)
    shard = Shard(index=4, start=0, end=2, users=2, first_user="a", last_user="b")
    recorded = object_metadata(data, count, 1.25)
    checked = check_shard_object(data, recorded, shard, "k")
    assert (checked.bytes, checked.records, checked.empty_lists, checked.seconds) == (len(data), 2, 1, 1.25)
    assert check_shard_object(data, {**recorded, "seconds": "nan"}, shard, "k").seconds == 0.0
    with pytest.raises(ShardError, match="shard 4: k does not match its recorded checksum"):
        check_shard_object(data[:-1], recorded, shard, "k")
    truncated = data[: len(data) // 2]
    with pytest.raises(ShardError, match="shard 4: k is unreadable"):
        check_shard_object(truncated, object_metadata(truncated, count, 1.0), shard, "k")
    with pytest.raises(ShardError, match="shard 4: k holds 2 users, planned 3"):
        check_shard_object(data, recorded, Shard(**{**shard, "users": 3}), "k")
