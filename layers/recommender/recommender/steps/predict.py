"""Step 3, one invocation per shard: the top-N unseen items of every user of the shard."""

from __future__ import annotations

import threading
import time
from typing import Any

from ..config import Settings
from ..dataset import read_snapshot
from ..model import KIND_FACTORS, ModelArrays
from ..scoring import PairwiseScorer, recommend
from ..sharding import encode_shard, shard_users
from ..storage import RunPaths, get_bytes, get_json, put_bytes, sha256_hex
from ..training import fit

_cache_lock = threading.Lock()
_cache: dict[str, tuple[ModelArrays, PairwiseScorer | None]] = {}


class ShardError(RuntimeError):
    """A shard's output does not match its plan."""


def load_model(s3: Any, settings: Settings, paths: RunPaths) -> tuple[ModelArrays, PairwiseScorer | None]:
    """The run's model, kept for the next shard that a warm Lambda (or a local thread) handles."""
    with _cache_lock:
        if paths.model in _cache:
            return _cache[paths.model]
        model = ModelArrays.from_bytes(get_bytes(s3, settings.bucket, paths.model))
        scorer = None
        if model.kind != KIND_FACTORS:
            # No kernel yet for this algorithm: refit it exactly as Train did (same snapshot,
            # parameters and seed) and score pair by pair. Nothing is unpickled.
            meta = get_json(s3, settings.bucket, paths.model_meta)
            body = s3.get_object(Bucket=settings.bucket, Key=paths.dataset)["Body"]
            fitted = fit(read_snapshot(body), meta["algorithm"], meta["params"], tuple(meta["rating_scale"]))
            scorer = PairwiseScorer(fitted.algorithm)
        _cache.clear()
        _cache[paths.model] = (model, scorer)
        return model, scorer


def run(s3: Any, settings: Settings, run_id: str, shard: dict[str, Any], top_n: int) -> dict[str, Any]:
    started = time.perf_counter()
    paths = RunPaths(settings.prefix, run_id)
    model, scorer = load_model(s3, settings, paths)
    users = shard_users(model, shard)
    data, count = encode_shard(model, recommend(model, users, top_n, scorer))
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
