"""Step 3, one invocation per shard: the top-N unseen items of every user of the shard."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from ..config import Settings
from ..contracts import ItemShard, ModelMetadata, PredictResult, Shard
from ..errors import ModelIntegrityError, ShardError, ShardTimeoutError
from ..kernels import Kernel
from ..model import KIND_REFIT, ModelArrays, UserPart, check_object
from ..scoring import kernel_for, recommend
from ..sharding import (
    encode_shard,
    encode_similar,
    item_shard_items,
    object_metadata,
    read_shard_object,
    shard_users,
)
from ..similarity import CO_OCCURRENCE, ItemSimilarity, Raters, measure_of
from ..storage import RunPaths, get_bytes, get_json, object_exists, put_bytes

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

T = TypeVar("T")

_cache_lock = threading.Lock()
_cache: dict[str, tuple[ModelArrays, Kernel | None]] = {}


TIME_RESERVE_MS = 20_000  # enough to encode and write a shard object after the last block
CHECK_EVERY_USERS = 500


def load_model(
    s3: S3Client, settings: Settings, paths: RunPaths, meta: ModelMetadata
) -> tuple[ModelArrays, Kernel | None]:
    """The run's model and, when the model is whole, its kernel; kept for the next shard a warm
    Lambda (or thread) handles. `meta` is Train's model metadata: model.npz must be the object it
    records (`model.check_object`) before it is loaded.

    Kept by key and ETag: a model object written again under the same key is never served stale.
    """
    tag = f"{paths.model}@{s3.head_object(Bucket=settings.bucket, Key=paths.model)['ETag']}"
    with _cache_lock:
        if tag in _cache:
            return _cache[tag]
        data = get_bytes(s3, settings.bucket, paths.model)
        model = ModelArrays.from_bytes(check_object(data, meta.get("model_object"), paths.model))
        kernel = None
        if model.kind == KIND_REFIT:
            # No kernel for this algorithm: refit it exactly as Train did (same snapshot,
            # parameters and seed) and score pair by pair. Nothing is unpickled. Imported here:
            # only this path needs Surprise, which a kernel never does.
            from ..snapshot import read_snapshot
            from ..training import fit

            body = s3.get_object(Bucket=settings.bucket, Key=paths.dataset)["Body"]
            low, high = meta["rating_scale"]
            fitted = fit(read_snapshot(body), meta["algorithm"], meta["params"], (low, high))
            kernel = kernel_for(model, fitted.algorithm)
        elif not model.users_in_parts:
            kernel = kernel_for(model)
        _cache.clear()
        _cache[tag] = (model, kernel)
        return model, kernel


def model_for_shard(
    s3: S3Client, settings: Settings, paths: RunPaths, shard: Shard
) -> tuple[ModelArrays, Kernel, np.ndarray]:
    """(model, kernel, inner ids of the shard's users): the item side joined with this shard's
    user part when the model is split, else the whole model. Both are checked against what Train
    recorded of them in its metadata, written after them: Merge and its manifest come later."""
    meta: ModelMetadata = get_json(s3, settings.bucket, paths.model_meta)
    model, kernel = load_model(s3, settings, paths, meta)
    if kernel is not None:
        return model, kernel, shard_users(model, shard)
    index = shard["index"]
    recorded = {p["index"]: p for p in meta["user_parts"]} if "user_parts" in meta else None
    if recorded is not None and index not in recorded:
        raise ModelIntegrityError(f"shard {index}: Train recorded no user part for it")
    key = paths.user_part(index)
    data = check_object(
        get_bytes(s3, settings.bucket, key), None if recorded is None else recorded[index], key
    )
    part = UserPart.from_bytes(data)
    if len(part.user_ids) != shard["users"]:
        raise ShardError(
            f"shard {index}: the model part holds {len(part.user_ids)} users, the plan has {shard['users']}"
        )
    joined = model.with_users(part)
    return joined, kernel_for(joined), joined.user_order


def finished_shard(s3: S3Client, settings: Settings, key: str, shard: Shard, noun: str = "users") -> bool:
    """Whether a complete shard object exists already (a resumed or redriven run): the check Merge
    applies before publishing."""
    if not object_exists(s3, settings.bucket, key):
        return False
    try:
        read_shard_object(s3, settings.bucket, key, shard, noun)
    except ShardError:
        return False
    return True


def run(
    s3: S3Client,
    settings: Settings,
    run_id: str,
    shard: Shard,
    top_n: int,
    remaining_ms: Callable[[], int] | None = None,
) -> PredictResult:
    """Write the shard's object, unless a complete one exists. With `remaining_ms` (the Lambda
    context's clock), give up cleanly, before writing anything, when too little time is left."""
    started = time.perf_counter()
    paths = RunPaths(settings.prefix, run_id)
    key = paths.shard_object(shard["index"])
    check_time = clock(shard, started, remaining_ms)
    reused = finished_shard(s3, settings, key, shard)
    model: ModelArrays | None = None
    if not reused:
        model, kernel, users = model_for_shard(s3, settings, paths, shard)
        data, count = encode_shard(model, checked(recommend(model, users, top_n, kernel), check_time))
        if count != shard["users"]:
            raise ShardError(f"shard {shard['index']}: wrote {count} users, the plan has {shard['users']}")
        check_time()
        metadata = object_metadata(data, count, time.perf_counter() - started)
        put_bytes(s3, settings.bucket, key, data, content_type="application/gzip", metadata=metadata)
    result = PredictResult(
        index=shard["index"],
        key=key,
        users=shard["users"],
        seconds=0.0 if reused else round(time.perf_counter() - started, 3),
        reused=reused,
    )
    if "similar" in shard:
        result["similar_items"] = write_similar(s3, settings, paths, shard, top_n, model, check_time)
    return result


def write_similar(
    s3: S3Client,
    settings: Settings,
    paths: RunPaths,
    shard: Shard,
    top_n: int,
    model: ModelArrays | None,
    check_time: Callable[[], None],
) -> int:
    """Write the similar items of the shard's item shard, unless a complete object exists;
    `model` is the one the users' lists used, if they were computed now. Returns the items."""
    item_shard: ItemShard = shard["similar"]
    key = paths.similar_object(shard["index"])
    if finished_shard(s3, settings, key, shard, "items"):
        return item_shard["items"]
    started = time.perf_counter()
    meta: ModelMetadata = get_json(s3, settings.bucket, paths.model_meta)
    if model is None:
        model, _ = load_model(s3, settings, paths, meta)
    raters = None
    if measure_of(model) == CO_OCCURRENCE:
        data = check_object(
            get_bytes(s3, settings.bucket, paths.raters), meta.get("raters_object"), paths.raters
        )
        raters = Raters.from_bytes(data, model.n_items)
    similarity = ItemSimilarity(model, item_shard["min_support"], raters)
    items = item_shard_items(model, item_shard)
    data, count = encode_similar(model, checked(similarity.lists(items, top_n), check_time))
    if count != item_shard["items"]:
        raise ShardError(f"shard {shard['index']}: wrote {count} items, the plan has {item_shard['items']}")
    check_time()
    metadata = object_metadata(data, count, time.perf_counter() - started, "items")
    put_bytes(s3, settings.bucket, key, data, content_type="application/gzip", metadata=metadata)
    return count


def clock(shard: Shard, started: float, remaining_ms: Callable[[], int] | None) -> Callable[[], None]:
    """A check that raises ShardTimeoutError when less than TIME_RESERVE_MS is left."""

    def check_time() -> None:
        if remaining_ms is not None and remaining_ms() < TIME_RESERVE_MS:
            raise ShardTimeoutError(
                f"shard {shard['index']}: less than {TIME_RESERVE_MS // 1000} s left after"
                f" {time.perf_counter() - started:.0f} s: lower users_per_shard or give the function"
                " more memory"
            )

    return check_time


def checked(lists: Iterable[T], check_time: Callable[[], None]) -> Iterator[T]:
    """`lists`, checking the time every CHECK_EVERY_USERS lists."""
    for done, top in enumerate(lists):
        if done % CHECK_EVERY_USERS == 0:
            check_time()
        yield top
