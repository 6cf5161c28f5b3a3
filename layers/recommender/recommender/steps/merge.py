"""Step 4: verify every shard, write the fallback and the manifest, and only then move `latest`.

Step Functions may report a Map as successful with shards missing (moto drops failed iterations
silently, and on AWS a tolerated failure does the same), so the plan, not the Map's output, is the
truth: every planned shard must exist, match the checksum its predictor recorded, and hold the
planned number of users. Otherwise nothing is published and `latest.json` stays where it was.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from .. import gate, strict_json
from ..config import RunConfig, Settings, check_run_id
from ..contracts import (
    ExtractSummary,
    ManifestDataset,
    ManifestShard,
    MergeResult,
    ModelMetadata,
    RecordFailureResult,
    ResolvedConfig,
    RunState,
    Shard,
    TrainSummary,
    dataset_figures,
)
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
from ..sharding import CheckedShardObject, published_scores, read_shard_object
from ..similarity import MEASURES, SIMILAR_RULE, measure_of
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
)
from ..versions import library_versions

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import PutObjectRequestTypeDef

VERIFY_THREADS = 8


PUBLISH_ATTEMPTS = 5


def verify_shards(
    s3: S3Client, settings: Settings, paths: RunPaths, plan: list[Shard]
) -> list[ManifestShard]:
    """The manifest's entry of every planned shard, once every shard object passed
    `sharding.check_shard_object` and holds no unexpected empty list; IncompleteRunError or
    EmptyListsError naming the shards otherwise."""
    checked = check_shard_objects(s3, settings, paths, plan)
    check_empty_lists(paths.run_id, plan, checked)
    return [
        ManifestShard(
            index=shard["index"],
            key=relative_key(settings.prefix, paths.shard_object(shard["index"])),
            users=found.records,
            first_user=shard["first_user"],
            last_user=shard["last_user"],
            bytes=found.bytes,
            sha256=found.sha256,
            seconds=found.seconds,
        )
        for shard, found in zip(plan, checked)
    ]


def verify_similar(
    s3: S3Client, settings: Settings, paths: RunPaths, plan: list[Shard], model: ModelArrays
) -> dict[str, Any] | None:
    """The manifest's `similar` section, once every planned item shard's object passed
    `sharding.check_shard_object`; IncompleteRunError naming the shards otherwise. None for a plan
    written before similar items were published (a resumed run)."""
    planned = [shard for shard in plan if "similar" in shard]
    if not planned:
        return None
    checked = check_shard_objects(s3, settings, paths, planned, "items")
    shards = [
        {
            "index": shard["index"],
            "key": relative_key(settings.prefix, paths.similar_object(shard["index"])),
            "items": found.records,
            "first_item": shard["similar"]["first_item"],
            "last_item": shard["similar"]["last_item"],
            "bytes": found.bytes,
            "sha256": found.sha256,
            "seconds": found.seconds,
        }
        for shard, found in zip(planned, checked)
    ]
    measure = measure_of(model)
    return {
        "measure": measure,
        "definition": MEASURES[measure],
        "min_support": planned[0]["similar"]["min_support"],
        "ranking": SIMILAR_RULE,
        "items": sum(s["items"] for s in shards),
        "items_without_list": sum(found.empty_lists for found in checked),
        "shards": shards,
    }


def check_shard_objects(
    s3: S3Client, settings: Settings, paths: RunPaths, plan: list[Shard], noun: str = "users"
) -> list[CheckedShardObject]:
    """Every planned shard's object (its users' lists, or with `noun` "items" its items' similar
    items), checked, in plan order; IncompleteRunError naming the shards that failed."""
    users = noun == "users"
    root = paths.shard_objects_root if users else paths.similar_objects_root
    # A missing object is never asked for: S3 may answer 403, not 404 (see storage.object_exists).
    existing = listed_keys(s3, settings.bucket, root)

    def check(shard: Shard) -> CheckedShardObject | str:
        key = paths.shard_object(shard["index"]) if users else paths.similar_object(shard["index"])
        if key not in existing:
            return f"shard {shard['index']}: {key} is missing"
        try:
            return read_shard_object(s3, settings.bucket, key, shard, noun)
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
    return [r for r in results if isinstance(r, CheckedShardObject)]


def check_empty_lists(run_id: str, plan: list[Shard], checked: list[CheckedShardObject]) -> None:
    """EmptyListsError unless each shard object has as many empty lists as its shard has users
    who rated every item."""
    emptied = [
        f"shard {shard['index']}: {found.empty_lists - shard['users_without_unseen']} users"
        f" with unseen items have an empty list"
        for shard, found in zip(plan, checked)
        # a plan written before it counted them (a resumed run) cannot be checked this way
        if "users_without_unseen" in shard and found.empty_lists != shard["users_without_unseen"]
    ]
    if emptied:
        raise EmptyListsError(
            f"run {run_id} not published: {_first_five(emptied)}. Every user with unseen"
            " items must get a list; an empty one means their scores were not finite (see the"
            " predictors' logs), and rating_scale (leaving outliers out as invalid rows) is the"
            " usual remedy"
        )


def _first_five(problems: list[str]) -> str:
    return "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")


def run(
    s3: S3Client,
    settings: Settings,
    run_id: str,
    config: ResolvedConfig,
    extract: ExtractSummary,
    train: TrainSummary,
) -> MergeResult:
    paths = RunPaths(settings.prefix, run_id)
    if object_exists(s3, settings.bucket, paths.manifest):  # an earlier attempt wrote it: a retry
        manifest: dict[str, Any] = get_json(s3, settings.bucket, paths.manifest)
    else:
        manifest = write_manifest(s3, settings, paths, config, extract, train)
    if manifest["status"] == "held":  # the quality gate keeps the published run, if there is one
        published, newest = False, manifest["gate"].get("previous_run_id") or latest_run_id(s3, settings)
    else:
        latest = build_latest(
            run_id,
            relative_key(settings.prefix, paths.manifest),
            manifest["created_at"],
            manifest["dataset"]["extracted_at"],
        )
        published, newest = publish_latest(s3, settings, latest)
    quality = manifest.get("quality") or {}
    return MergeResult(
        manifest_key=paths.manifest,
        latest_key=latest_key(settings.prefix),
        published=published,
        status=manifest["status"],
        gate=manifest["gate"]["decision"],
        latest_run_id=newest,
        users=manifest["users"],
        shards=len(manifest["shards"]),
        below_popularity=quality.get("below_popularity"),
        popularity_ratio=(quality.get("against_popularity") or {}).get("ratio"),
    )


def write_manifest(
    s3: S3Client,
    settings: Settings,
    paths: RunPaths,
    config: ResolvedConfig,
    extract: ExtractSummary,
    train: TrainSummary,
) -> dict[str, Any]:
    """Verify the shards, write the fallback list, decide the quality gate, write the manifest
    once. Returns the manifest as it is in S3 (another execution's, if it wrote first)."""
    started = time.perf_counter()
    decided = RunConfig.from_input(config)  # as Train parsed it: its defaults, its checks
    plan: list[Shard] = get_json(s3, settings.bucket, paths.shard_plan)
    shards = verify_shards(s3, settings, paths, plan)
    model_meta: ModelMetadata = get_json(s3, settings.bucket, paths.model_meta)
    model_data = check_object(
        get_bytes(s3, settings.bucket, paths.model), model_meta.get("model_object"), paths.model
    )
    model = ModelArrays.from_bytes(model_data)
    similar = verify_similar(s3, settings, paths, plan, model)
    fallback_doc = write_fallback(s3, settings, paths, model, decided.top_n)
    quality = model_meta.get("quality")
    decision = gate.decide(
        quality,
        published_manifest(s3, settings),
        decided.top_n,
        decided.quality_gate_max_drop,
        decided.force_publish,
        decided.quality_gate_below_popularity,
    )
    floor = gate.against_popularity(quality, decided.top_n)
    if quality is not None and floor is not None:
        below = floor.pop("below")
        quality = {**quality, "below_popularity": below, "against_popularity": floor}
    shard_seconds = [s["seconds"] for s in shards]
    manifest = build_manifest(
        run_id=paths.run_id,
        config=config,
        dataset=ManifestDataset(
            key=relative_key(settings.prefix, paths.dataset),
            metadata_key=relative_key(settings.prefix, paths.dataset_meta),
            **dataset_figures(extract),
        ),
        model=manifest_model(settings, paths, config, model, model_meta, train["ratings"]),
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
        similar=similar,
    )
    try:  # a run is published once: its manifest is never replaced
        put_json(s3, settings.bucket, paths.manifest, manifest, if_absent=True)
    except ObjectExistsError:
        manifest = get_json(s3, settings.bucket, paths.manifest)
    return manifest


def manifest_model(
    settings: Settings,
    paths: RunPaths,
    config: ResolvedConfig,
    model: ModelArrays,
    model_meta: ModelMetadata,
    ratings: int,
) -> dict[str, Any]:
    """The manifest's `model` section: where the model is, what fitted it and on how much. With
    algorithm "auto" it is the chosen algorithm, its parameters and every candidate's figures."""
    chosen = {"choice": model_meta["choice"]} if "choice" in model_meta else {}
    return {
        "key": relative_key(settings.prefix, paths.model),
        "metadata_key": relative_key(settings.prefix, paths.model_meta),
        "algorithm": model_meta["algorithm"] if chosen else config["algorithm"],
        "params": model_meta["params"] if chosen else config["params"],
        **chosen,
        "kind": model.kind,
        "users": model_meta["users"],
        "items": model.n_items,
        "ratings": ratings,
        "rating_scale": list(model.rating_scale),
        **model_objects(settings, paths, model_meta),
    }


def write_fallback(
    s3: S3Client, settings: Settings, paths: RunPaths, model: ModelArrays, top_n: int
) -> dict[str, Any]:
    """The list for users the model does not know, written as fallback.json and returned."""
    top = fallback(model, top_n)
    document = {
        "items": [model.item_ids[i] for i in top.items.tolist()],
        "scores": published_scores(top.scores, model.rating_scale),
    }
    put_json(s3, settings.bucket, paths.fallback, document)
    return document


def model_objects(settings: Settings, paths: RunPaths, model_meta: ModelMetadata) -> dict[str, Any]:
    """The manifest's record of model.npz (bytes, sha256) and of the user parts (with their keys),
    copied from Train's metadata: nothing for a run trained before Train recorded them."""
    if "model_object" not in model_meta:
        return {}
    parts = [
        {
            "index": part["index"],
            "key": relative_key(settings.prefix, paths.user_part(part["index"])),
            "bytes": part["bytes"],
            "sha256": part["sha256"],
        }
        for part in model_meta.get("user_parts", [])
    ]
    recorded = model_meta["model_object"]
    return {"bytes": recorded["bytes"], "sha256": recorded["sha256"], "user_parts": parts}


def published_manifest(s3: S3Client, settings: Settings) -> dict[str, Any] | None:
    """The manifest latest.json points to now, or None before the first run."""
    key = latest_key(settings.prefix)
    if not object_exists(s3, settings.bucket, key):
        return None
    latest = get_json(s3, settings.bucket, key)
    manifest: dict[str, Any] = get_json(
        s3, settings.bucket, f"{settings.prefix}/{latest['manifest']}".lstrip("/")
    )
    return manifest


def latest_run_id(s3: S3Client, settings: Settings) -> str | None:
    """The run latest.json points to now, or None before the first published run."""
    key = latest_key(settings.prefix)
    if not object_exists(s3, settings.bucket, key):
        return None
    return str(get_json(s3, settings.bucket, key)["run_id"])


def newer(candidate: dict[str, Any], current: dict[str, Any]) -> bool:
    """Runs are ordered by when their data was extracted (then by run id, for a total order)."""
    return (candidate["extracted_at"], candidate["run_id"]) > (
        current.get("extracted_at", ""),
        current["run_id"],
    )


def publish_latest(s3: S3Client, settings: Settings, latest: dict[str, Any]) -> tuple[bool, str]:
    """Point latest.json at this run unless a run with newer data is already published.

    The write is conditional on the pointer read just before (If-Match on its ETag, or
    If-None-Match for the first run), so two runs finishing together cannot overwrite each other
    blindly: the loser reads the pointer again and decides again. Returns (moved, run now latest).
    """
    key = latest_key(settings.prefix)
    body = strict_json.dump_bytes(latest, what=key, indent=1, sort_keys=True)
    for _ in range(PUBLISH_ATTEMPTS):
        request: PutObjectRequestTypeDef = {
            "Bucket": settings.bucket,
            "Key": key,
            "Body": body,
            "ContentType": JSON_CONTENT,
        }
        if object_exists(s3, settings.bucket, key):
            response = s3.get_object(Bucket=settings.bucket, Key=key)
            current = json.loads(response["Body"].read())
            request["IfMatch"] = response["ETag"]
        else:  # the first run: the write fails if another run creates the pointer meanwhile
            current = None
            request["IfNoneMatch"] = "*"
        if current is not None and not newer(latest, current):
            return False, str(current["run_id"])
        try:
            s3.put_object(**request)
        except s3.exceptions.ClientError as error:
            if precondition_failed(error):
                continue  # another run wrote meanwhile: compare with what it wrote
            raise
        return True, str(latest["run_id"])
    raise PublishConflictError(f"latest.json kept changing while run {latest['run_id']} tried to publish")


def failed_run_id(state: RunState, execution_name: str) -> str:
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


def record_failure(
    s3: S3Client, settings: Settings, execution_name: str, state: RunState
) -> RecordFailureResult:
    """Leave the reason a run failed next to its objects; `latest.json` is not touched.

    `state` is the failed state's data, with the error under "error" (the ASL's Catch)."""
    error: Mapping[str, Any] = state.get("error") or {}
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
    return RecordFailureResult(run_id=run_id, failure_key=paths.failure)
