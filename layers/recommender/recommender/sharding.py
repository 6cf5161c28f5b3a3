"""The shard plan, and the shard objects the predictors write and Merge verifies.

A shard is a contiguous range of users that one predictor handles (a `contracts.Shard` in the
plan); its shard object is the file of their lists. Users are ordered by the UTF-8 bytes of their
raw ids and cut into contiguous, balanced ranges (sizes differ by at most one). Each shard
therefore covers an id range, and the manifest's `first_user`/`last_user` let any reader find a
user's shard by binary search without opening the others.

A shard object is gzip-compressed JSON Lines, one user per line:
`{"user": "<id>", "items": ["<id>", ...], "scores": [4.87, ...]}`, best item first. Its predictor
records on it (S3 object metadata) its SHA-256, users and seconds: `check_shard_object` is the one
check of an object against them and against its shard, for a predictor deciding whether its work is
done already and for Merge before it publishes.
"""

from __future__ import annotations

import gzip
import itertools
import json
import math
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from . import strict_json
from .contracts import ItemShard, Shard
from .errors import ConfigError, ShardError
from .model import utf8_order
from .storage import sha256_hex

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    # the client reads shards without importing Surprise
    from .model import ModelArrays
    from .scoring import UserTopN


# The most shards a plan may have. A DISTRIBUTED Map runs at most 10,000 child executions at once;
# what it collects from them (one {} each, the ASL keeps nothing of a predictor's result) stays
# within Step Functions' 256 KiB state limit far beyond that; and Merge verifies every shard object
# within its time limit. Past it, a bigger users_per_shard is the answer (see `check_shard_count`).
MAX_SHARDS = 10_000


def shard_count(n_users: int, users_per_shard: int) -> int:
    return max(1, math.ceil(n_users / users_per_shard))


def check_shard_count(n_users: int, users_per_shard: int) -> None:
    """Refuse a plan with more than MAX_SHARDS shards before any work, naming the field to change."""
    shards = shard_count(n_users, users_per_shard)
    if shards > MAX_SHARDS:
        needed = math.ceil(n_users / MAX_SHARDS)
        raise ConfigError(
            f"users_per_shard: {n_users:,} users at {users_per_shard:,} per shard make {shards:,} shards,"
            f" more than the {MAX_SHARDS:,} a run may have; set users_per_shard to at least {needed:,}"
        )


#: the fewest items an item shard holds (unless the catalogue is smaller): a few milliseconds of
#: work each at this size, so more item shards would cost Merge more objects than they save
MIN_ITEMS_PER_SHARD = 1000


def plan_shards(model: ModelArrays, users_per_shard: int, similar_min_support: int = 1) -> list[Shard]:
    """One item per shard, for the DISTRIBUTED Map's ItemReader. Each of the first shards also
    lists the similar items of a range of items (`similar`; see `plan_item_shards`)."""
    n_users = model.n_users
    check_shard_count(n_users, users_per_shard)
    n_shards = shard_count(n_users, users_per_shard)
    bounds = np.linspace(0, n_users, n_shards + 1).round().astype(int).tolist()
    # Users who rated every item get an empty list, by rule; Merge expects exactly that many.
    rated_everything = model.unseen_counts(model.user_order, 1) == 0
    plan: list[Shard] = []
    for start, end in itertools.pairwise(bounds):
        if end <= start:
            continue
        plan.append(
            Shard(
                index=len(plan),
                start=start,
                end=end,
                users=end - start,
                first_user=model.user_ids[int(model.user_order[start])],
                last_user=model.user_ids[int(model.user_order[end - 1])],
                users_without_unseen=int(np.count_nonzero(rated_everything[start:end])),
            )
        )
    for shard, item_shard in zip(plan, plan_item_shards(model, len(plan), similar_min_support)):
        shard["similar"] = item_shard
    return plan


def plan_item_shards(model: ModelArrays, at_most: int, min_support: int) -> list[ItemShard]:
    """The items cut into contiguous, balanced ranges of UTF-8 id order, as users are: at most
    `at_most` (one per predictor) and at least MIN_ITEMS_PER_SHARD items each. The predictors'
    own Map runs them: an item shard needs the item side of the model, which every predictor
    loads anyway."""
    n_items = model.n_items
    if n_items == 0:
        return []
    count = max(1, min(at_most, n_items // MIN_ITEMS_PER_SHARD))
    order = utf8_order(model.item_ids)
    bounds = np.linspace(0, n_items, count + 1).round().astype(int).tolist()
    return [
        ItemShard(
            start=start,
            end=end,
            items=end - start,
            first_item=model.item_ids[int(order[start])],
            last_item=model.item_ids[int(order[end - 1])],
            min_support=min_support,
        )
        for start, end in itertools.pairwise(bounds)
    ]


def item_shard_items(model: ModelArrays, item_shard: ItemShard) -> np.ndarray:
    """Inner ids of the item shard's items, in shard order."""
    return utf8_order(model.item_ids)[int(item_shard["start"]) : int(item_shard["end"])]


def shard_users(model: ModelArrays, shard: Shard) -> np.ndarray:
    """Inner ids of the shard's users, in shard order."""
    return np.asarray(model.user_order[int(shard["start"]) : int(shard["end"])], dtype=np.int64)


#: decimal places a published score keeps, at least: scores are for ordering and display
SCORE_DECIMALS = 6


def published_scores(scores: np.ndarray, rating_scale: tuple[float, float]) -> list[float]:
    """Clipped estimates as published: rounded, and within the scale whatever the rounding.

    Rounding to a fixed number of decimals would publish 0.0 for every score of a scale near
    1e-300, below the scale, and could lift a score at the top of a scale with more decimals
    above it. So a scale spanning less than 1 keeps SCORE_DECIMALS significant digits of its
    span, and the rounded value is clamped back into the scale."""
    low, high = rating_scale
    span = high - low  # 0 when every rating is one number (a table of one rating, say)
    decimals = (
        SCORE_DECIMALS if span <= 0 else max(SCORE_DECIMALS, SCORE_DECIMALS - math.floor(math.log10(span)))
    )
    return [min(max(round(s, decimals), low), high) for s in scores.tolist()]


def encode_shard(model: ModelArrays, lists: Iterable[UserTopN]) -> tuple[bytes, int]:
    """Serialise a shard's lists; returns (gzip bytes, number of users)."""
    lines = []
    for top in lists:
        record = {
            "user": model.user_ids[top.user],
            "items": [model.item_ids[i] for i in top.items.tolist()],
            "scores": published_scores(top.scores, model.rating_scale),
        }
        what = f"the list of user {record['user']!r}"
        lines.append(strict_json.dumps(record, what=what, ensure_ascii=False, separators=(",", ":")))
    payload = ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass") if lines else b""
    return gzip.compress(payload, compresslevel=6, mtime=0), len(lines)


def published_similarities(values: np.ndarray) -> list[float]:
    """Similarities as published: 6 significant digits (an EASE weight may be 1e-9 and still
    order the list), which keeps their order."""
    return [float(f"{v:.{SCORE_DECIMALS}g}") for v in values.tolist()]


def encode_similar(
    model: ModelArrays, lists: Iterable[tuple[int, np.ndarray, np.ndarray]]
) -> tuple[bytes, int]:
    """Serialise an item shard's lists (`similarity.ItemSimilarity.lists`), one item per line:
    `{"item": "<id>", "items": [...], "scores": [...]}`; returns (gzip bytes, number of items)."""
    lines = []
    for item, similar, values in lists:
        record = {
            "item": model.item_ids[item],
            "items": [model.item_ids[j] for j in similar.tolist()],
            "scores": published_similarities(values),
        }
        what = f"the similar items of item {record['item']!r}"
        lines.append(strict_json.dumps(record, what=what, ensure_ascii=False, separators=(",", ":")))
    payload = ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass") if lines else b""
    return gzip.compress(payload, compresslevel=6, mtime=0), len(lines)


def decode_shard(data: bytes) -> Iterator[dict[str, Any]]:
    # split on "\n" only: ids may hold U+2028 and other characters str.splitlines() breaks on
    for line in gzip.decompress(data).decode("utf-8", "surrogatepass").split("\n"):
        if line:
            yield json.loads(line)


#: how an empty list reads in a shard record. Inside an id every `"` is escaped, so `items"` then
#: `:` can only end the key of a record's items: counting this counts the empty lists.
EMPTY_ITEMS = b'"items":[]'


def object_metadata(data: bytes, users: int, seconds: float, noun: str = "users") -> dict[str, str]:
    """What a predictor records on the shard object it writes, for `check_shard_object`: the
    records it holds under `noun` ("users", or "items" for similar items)."""
    return {noun: str(users), "sha256": sha256_hex(data), "seconds": f"{seconds:.3f}"}


@dataclass(frozen=True)
class CheckedShardObject:
    """A shard object that passed `check_shard_object`, and the figures Merge publishes of it."""

    bytes: int
    sha256: str
    records: int  # lines: users, or items for similar items
    empty_lists: int
    seconds: float  # the predictor's, as it recorded it


def check_shard_object(
    data: bytes, recorded: Mapping[str, str], shard: Shard, key: str, noun: str = "users"
) -> CheckedShardObject:
    """`data` (the object at `key`) checked against what its predictor recorded on it and against
    its shard's planned users (or, with `noun` "items", its item shard's planned items), or
    ShardError saying what is wrong."""
    planned = shard["users"] if noun == "users" else shard["similar"]["items"]
    digest = sha256_hex(data)
    if recorded.get("sha256") != digest:
        raise ShardError(f"shard {shard['index']}: {key} does not match its recorded checksum")
    try:
        # One user per line. The checksum already ties the object to what its predictor wrote, so
        # counting lines is enough; parsing every record's JSON would cost Merge most of its time.
        records = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as error:
        raise ShardError(f"shard {shard['index']}: {key} is unreadable ({error})") from None
    found = records.count(b"\n")
    if found != planned:
        raise ShardError(f"shard {shard['index']}: {key} holds {found} {noun}, planned {planned}")
    return CheckedShardObject(
        len(data), digest, found, records.count(EMPTY_ITEMS), recorded_seconds(recorded)
    )


def read_shard_object(
    s3: S3Client, bucket: str, key: str, shard: Shard, noun: str = "users"
) -> CheckedShardObject:
    """The shard object at `key`, read and checked (`check_shard_object`)."""
    response = s3.get_object(Bucket=bucket, Key=key)
    return check_shard_object(response["Body"].read(), response.get("Metadata", {}), shard, key, noun)


def recorded_seconds(recorded: Mapping[str, str]) -> float:
    """The predictor's time for the shard; 0.0 when it recorded none (or nothing finite), since
    the manifest's figures must all be finite numbers."""
    try:
        seconds = float(recorded.get("seconds", "0"))
    except ValueError:
        return 0.0
    return seconds if math.isfinite(seconds) and seconds >= 0 else 0.0
