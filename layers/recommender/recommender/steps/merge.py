"""Step 4: verify every shard, write the fallback and the manifest, and only then move `latest`.

Step Functions may report a Map as successful with shards missing (moto drops failed iterations
silently, and on AWS a tolerated failure does the same), so the plan, not the Map's output, is the
truth: every planned shard must exist, match the checksum its predictor recorded, and hold the
planned number of users. Otherwise nothing is published and `latest.json` stays where it was.
"""

from __future__ import annotations

import gzip
import json
import math
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .. import gate, strict_json
from ..config import DEFAULT_QUALITY_GATE_MAX_DROP, Settings, check_run_id
from ..errors import (
    ConfigError,
    EmptyListsError,
    IncompleteRunError,
    ObjectExistsError,
    PublishConflictError,
    PublishedRunError,
    ShardError,
)
from ..manifest import build_latest, build_manifest
from ..model import ModelArrays, check_object
from ..scoring import fallback
from ..sharding import published_scores
from ..storage import (
    JSON_CONTENT,
    RunPaths,
    get_bytes,
    get_json,
    latest_key,
    listed_keys,
    object_exists,
    precondition_failed,
    put_json,
    relative_key,
    sha256_hex,
)
from ..versions import library_versions

VERIFY_THREADS = 8


PUBLISH_ATTEMPTS = 5


#: how an empty list reads in a shard record. Inside an id every `"` is escaped, so `items"` then
#: `:` can only end the key of a record's items: counting this counts the empty lists.
EMPTY_ITEMS = b'"items":[]'


def recorded_seconds(recorded: dict[str, str]) -> float:
    """The predictor's time for the shard; 0.0 when it recorded none (or nothing finite), since
    the manifest's figures must all be finite numbers."""
    try:
        seconds = float(recorded.get("seconds", "0"))
    except ValueError:
        return 0.0
    return seconds if math.isfinite(seconds) and seconds >= 0 else 0.0


def verify_shard(
    s3: Any, settings: Settings, paths: RunPaths, planned: dict[str, Any], existing: set[str]
) -> dict[str, Any]:
    """The manifest entry of one shard, or a ShardError saying what is wrong with it. `existing`
    is the listing of the run's shard objects: a missing one is never asked for (S3 may answer
    403, not 404; see storage.object_exists)."""
    key = paths.shard(int(planned["index"]))
    if key not in existing:
        raise ShardError(f"shard {planned['index']}: {key} is missing")
    response = s3.get_object(Bucket=settings.bucket, Key=key)
    data = response["Body"].read()
    recorded = response.get("Metadata", {})
    digest = sha256_hex(data)
    if recorded.get("sha256") != digest:
        raise ShardError(f"shard {planned['index']}: {key} does not match its recorded checksum")
    try:
        # One user per line. The checksum already ties the object to what its predictor wrote, so
        # counting lines is enough; parsing every record's JSON cost Merge most of its time.
        records = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as error:
        raise ShardError(f"shard {planned['index']}: {key} is unreadable ({error})") from None
    users = records.count(b"\n")
    if users != planned["users"]:
        raise ShardError(f"shard {planned['index']}: {key} holds {users} users, planned {planned['users']}")
    return {
        "index": planned["index"],
        "key": relative_key(settings.prefix, key),
        "users": users,
        "first_user": planned["first_user"],
        "last_user": planned["last_user"],
        "bytes": len(data),
        "sha256": digest,
        "seconds": recorded_seconds(recorded),
        "empty_lists": records.count(EMPTY_ITEMS),
    }


def verify_shards(s3: Any, settings: Settings, paths: RunPaths) -> list[dict[str, Any]]:
    plan = get_json(s3, settings.bucket, paths.shard_plan)
    existing = listed_keys(s3, settings.bucket, paths.shards_root)

    def check(planned: dict[str, Any]) -> dict[str, Any] | str:
        try:
            return verify_shard(s3, settings, paths, planned, existing)
        except ShardError as problem:
            return str(problem)

    with ThreadPoolExecutor(VERIFY_THREADS) as pool:
        results = list(pool.map(check, plan))
    problems = [r for r in results if isinstance(r, str)]
    if problems:
        raise IncompleteRunError(
            f"run {paths.run_id} not published: {len(problems)} of {len(plan)} shard(s) failed"
            f" verification: {_first_five(problems)}"
        )
    shards = [r for r in results if isinstance(r, dict)]
    emptied = [
        f"shard {planned['index']}: {entry['empty_lists'] - planned['users_without_unseen']} users"
        f" with unseen items have an empty list"
        for planned, entry in zip(plan, shards)
        # a plan written before it counted them (a resumed run) cannot be checked this way
        if "users_without_unseen" in planned and entry["empty_lists"] != planned["users_without_unseen"]
    ]
    if emptied:
        raise EmptyListsError(
            f"run {paths.run_id} not published: {_first_five(emptied)}. Every user with unseen"
            " items must get a list; an empty one means their scores were not finite (see the"
            " predictors' logs), and rating_scale (leaving outliers out as invalid rows) is the"
            " usual remedy"
        )
    for entry in shards:
        del entry["empty_lists"]
    return shards


def _first_five(problems: list[str]) -> str:
    return "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")


def run(
    s3: Any,
    settings: Settings,
    run_id: str,
    config: dict[str, Any],
    extract: dict[str, Any],
    train: dict[str, Any],
) -> dict[str, Any]:
    paths = RunPaths(settings.prefix, run_id)
    if object_exists(s3, settings.bucket, paths.manifest):  # an earlier attempt wrote it: a retry
        manifest: dict[str, Any] = get_json(s3, settings.bucket, paths.manifest)
    else:
        manifest = write_manifest(s3, settings, paths, config, extract, train)
    if manifest["status"] == "held":  # the quality gate keeps the published run
        published, newest = False, str(manifest["gate"]["previous_run_id"])
    else:
        latest = build_latest(
            run_id,
            relative_key(settings.prefix, paths.manifest),
            manifest["created_at"],
            manifest["dataset"]["extracted_at"],
        )
        published, newest = publish_latest(s3, settings, latest)
    return {
        "manifest_key": paths.manifest,
        "latest_key": latest_key(settings.prefix),
        "published": published,
        "status": manifest["status"],
        "gate": manifest["gate"]["decision"],
        "latest_run_id": newest,
        "users": manifest["users"],
        "shards": len(manifest["shards"]),
    }


def write_manifest(
    s3: Any,
    settings: Settings,
    paths: RunPaths,
    config: dict[str, Any],
    extract: dict[str, Any],
    train: dict[str, Any],
) -> dict[str, Any]:
    """Verify the shards, write the fallback list, decide the quality gate, write the manifest
    once. Returns the manifest as it is in S3 (another execution's, if it wrote first)."""
    started = time.perf_counter()
    run_id = paths.run_id
    shards = verify_shards(s3, settings, paths)

    model_meta = get_json(s3, settings.bucket, paths.model_meta)
    recorded = model_meta.get("model_object")
    model_data = check_object(get_bytes(s3, settings.bucket, paths.model), recorded, paths.model)
    model = ModelArrays.from_bytes(model_data)
    top = fallback(model, config["top_n"])
    fallback_doc = {
        "items": [model.item_ids[i] for i in top.items.tolist()],
        "scores": published_scores(top.scores, model.rating_scale),
    }
    put_json(s3, settings.bucket, paths.fallback, fallback_doc)

    quality = model_meta.get("quality")
    decision = gate.decide(
        quality,
        published_manifest(s3, settings),
        config["top_n"],
        config.get("quality_gate_max_drop", DEFAULT_QUALITY_GATE_MAX_DROP),
        bool(config.get("force_publish", False)),
    )
    shard_seconds = [s["seconds"] for s in shards]
    manifest = build_manifest(
        run_id=run_id,
        config=config,
        dataset={
            "key": relative_key(settings.prefix, paths.dataset),
            "metadata_key": relative_key(settings.prefix, paths.dataset_meta),
            "rows": extract["rows"],
            "bytes": extract["bytes"],
            "sha256": extract["sha256"],
            "extracted_at": extract["extracted_at"],
            "source_rows": extract["source_rows"],
            "dropped": extract["dropped"],
            "invalid_rows": extract["invalid_rows"],
            "duplicates_merged": extract["duplicates_merged"],
        },
        model={
            "key": relative_key(settings.prefix, paths.model),
            "metadata_key": relative_key(settings.prefix, paths.model_meta),
            "algorithm": config["algorithm"],
            "params": config["params"],
            "kind": model.kind,
            "users": model_meta["users"],
            "items": model.n_items,
            "ratings": train["ratings"],
            "rating_scale": list(model.rating_scale),
            **model_objects(settings, paths, model_meta),
        },
        shards=shards,
        fallback={"key": relative_key(settings.prefix, paths.fallback), **fallback_doc},
        timings={
            "extract_seconds": extract["seconds"],
            "train_seconds": train["seconds"],
            "predict_seconds_total": sum(shard_seconds),
            "predict_seconds_max_shard": max(shard_seconds),
            "merge_seconds": time.perf_counter() - started,
        },
        versions=library_versions(),
        status="held" if decision["decision"] == "held" else "published",
        quality=quality,
        gate=decision,
    )
    try:  # a run is published once: its manifest is never replaced
        put_json(s3, settings.bucket, paths.manifest, manifest, if_absent=True)
    except ObjectExistsError:
        manifest = get_json(s3, settings.bucket, paths.manifest)
    return manifest


def model_objects(settings: Settings, paths: RunPaths, model_meta: dict[str, Any]) -> dict[str, Any]:
    """The manifest's record of model.npz (bytes, sha256) and of the user parts (with their keys),
    copied from Train's metadata: nothing for a run trained before Train recorded them."""
    if "model_object" not in model_meta:
        return {}
    parts = [
        {
            "index": part["index"],
            "key": relative_key(settings.prefix, paths.model_users(int(part["index"]))),
            "bytes": part["bytes"],
            "sha256": part["sha256"],
        }
        for part in model_meta.get("user_parts", [])
    ]
    recorded = model_meta["model_object"]
    return {"bytes": recorded["bytes"], "sha256": recorded["sha256"], "user_parts": parts}


def published_manifest(s3: Any, settings: Settings) -> dict[str, Any] | None:
    """The manifest latest.json points to now, or None before the first run."""
    key = latest_key(settings.prefix)
    if not object_exists(s3, settings.bucket, key):
        return None
    latest = get_json(s3, settings.bucket, key)
    manifest: dict[str, Any] = get_json(
        s3, settings.bucket, f"{settings.prefix}/{latest['manifest']}".lstrip("/")
    )
    return manifest


def newer(candidate: dict[str, Any], current: dict[str, Any]) -> bool:
    """Runs are ordered by when their data was extracted (then by run id, for a total order)."""
    return (candidate["extracted_at"], candidate["run_id"]) > (
        current.get("extracted_at", ""),
        current["run_id"],
    )


def publish_latest(s3: Any, settings: Settings, latest: dict[str, Any]) -> tuple[bool, str]:
    """Point latest.json at this run unless a run with newer data is already published.

    The write is conditional on the pointer read just before (If-Match on its ETag, or
    If-None-Match for the first run), so two runs finishing together cannot overwrite each other
    blindly: the loser reads the pointer again and decides again. Returns (moved, run now latest).
    """
    key = latest_key(settings.prefix)
    body = strict_json.dump_bytes(latest, what=key, indent=1, sort_keys=True)
    for _ in range(PUBLISH_ATTEMPTS):
        if object_exists(s3, settings.bucket, key):
            response = s3.get_object(Bucket=settings.bucket, Key=key)
            current, condition = json.loads(response["Body"].read()), {"IfMatch": response["ETag"]}
        else:  # the first run: the write fails if another run creates the pointer meanwhile
            current, condition = None, {"IfNoneMatch": "*"}
        if current is not None and not newer(latest, current):
            return False, str(current["run_id"])
        try:
            s3.put_object(Bucket=settings.bucket, Key=key, Body=body, ContentType=JSON_CONTENT, **condition)
        except s3.exceptions.ClientError as error:
            if precondition_failed(error):
                continue  # another run wrote meanwhile: compare with what it wrote
            raise
        return True, str(latest["run_id"])
    raise PublishConflictError(f"latest.json kept changing while run {latest['run_id']} tried to publish")


def failed_run_id(state: dict[str, Any], execution_name: str) -> str:
    """The run a failure belongs to, resolved as Extract resolves it: the run id Extract returned
    (in the state from Extract on), else the input's `run_id` when it is a valid one (a resumed run
    failing in Extract), else the execution's name."""
    raw_input = state.get("input")
    asked = raw_input.get("run_id") if isinstance(raw_input, dict) else None
    for candidate in (state.get("run_id"), asked):
        if candidate is None:
            continue
        try:
            return check_run_id(candidate)
        except ConfigError:
            continue  # an invalid run_id is what failed: the execution's name stands in
    return check_run_id(execution_name)


def record_failure(s3: Any, settings: Settings, execution_name: str, state: dict[str, Any]) -> dict[str, Any]:
    """Leave the reason a run failed next to its objects; `latest.json` is not touched.

    `state` is the failed state's data, with the error under "error" (the ASL's Catch)."""
    error = state.get("error") or {}
    # A rerun refused because its run is published must leave that run's folder as it was.
    published = error.get("Error") == PublishedRunError.__name__
    run_id = check_run_id(execution_name) if published else failed_run_id(state, execution_name)
    paths = RunPaths(settings.prefix, run_id)
    document = {
        "run_id": run_id,
        "execution_name": execution_name,
        "error": error.get("Error"),
        "cause": error.get("Cause"),
    }
    put_json(s3, settings.bucket, paths.failure, document)
    return {"run_id": run_id, "failure_key": paths.failure}
