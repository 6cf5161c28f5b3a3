"""Step 3, one invocation per shard: the top-N unseen items of every user of the shard."""

from __future__ import annotations

import threading
import time
from typing import Any

from ..config import Settings
from ..dataset import read_snapshot
from ..kernels import Kernel
from ..model import KIND_REFIT, ModelArrays
from ..scoring import recommend, scorer_for
from ..sharding import encode_shard, shard_users
from ..storage import RunPaths, get_bytes, get_json, put_bytes, sha256_hex
from ..training import fit

_cache_lock = threading.Lock()
_cache: dict[str, tuple[ModelArrays, Kernel]] = {}


class ShardError(RuntimeError):
    """A shard's output does not match its plan."""


def load_model(s3: Any, settings: Settings, paths: RunPaths) -> tuple[ModelArrays, Kernel]:
    """The run's model and its kernel, kept for the next shard a warm Lambda (or thread) handles."""
    with _cache_lock:
        if paths.model in _cache:
            return _cache[paths.model]
        model = ModelArrays.from_bytes(get_bytes(s3, settings.bucket, paths.model))
        algorithm = None
        if model.kind == KIND_REFIT:
            # No kernel for this algorithm: refit it exactly as Train did (same snapshot,
            # parameters and seed) and score pair by pair. Nothing is unpickled.
            meta = get_json(s3, settings.bucket, paths.model_meta)
            body = s3.get_object(Bucket=settings.bucket, Key=paths.dataset)["Body"]
            fitted = fit(read_snapshot(body), meta["algorithm"], meta["params"], tuple(meta["rating_scale"]))
            algorithm = fitted.algorithm
        kernel = scorer_for(model, algorithm)
        _cache.clear()
        _cache[paths.model] = (model, kernel)
        return model, kernel


def run(s3: Any, settings: Settings, run_id: str, shard: dict[str, Any], top_n: int) -> dict[str, Any]:
    started = time.perf_counter()
    paths = RunPaths(settings.prefix, run_id)
    model, kernel = load_model(s3, settings, paths)
    users = shard_users(model, shard)
    data, count = encode_shard(model, recommend(model, users, top_n, kernel))
    if count != shard["users"]:
        raise ShardError(f"shard {shard['index']}: wrote {count} users, the plan has {shard['users']}")
    seconds = time.perf_counter() - started
    key = paths.shard(int(shard["index"]))
    put_bytes(
        s3,
        settings.bucket,
        key,
        data,
        content_type="application/gzip",
        metadata={"users": str(count), "sha256": sha256_hex(data), "seconds": f"{seconds:.3f}"},
    )
    return {"index": shard["index"], "key": key, "users": count, "seconds": round(seconds, 3)}
