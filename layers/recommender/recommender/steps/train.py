"""Step 2: fit the algorithm on the snapshot, publish the model's arrays and the shard plan.

The plan is written last, so its presence means the model is complete: a resumed run reuses
them instead of fitting again (and every shard already written stays consistent with them).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .. import kernels
from ..choice import AUTO, choose
from ..config import RunConfig, Settings
from ..contracts import ModelMetadata, ObjectRecord, QualitySummary, Shard, TrainResult, UserPartRecord
from ..evaluation import evaluate, evaluation_split
from ..gate import metric_name
from ..model import ModelArrays, object_record
from ..sharding import check_shard_count, plan_shards, shard_users
from ..similarity import CO_OCCURRENCE, Raters, measure_of
from ..snapshot import read_snapshot
from ..storage import RunPaths, get_json, object_exists, put_bytes, put_json
from ..training import check_similarity, fit, model_from_fit
from ..versions import library_versions

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def run(s3: S3Client, settings: Settings, run_id: str, raw_config: Any) -> TrainResult:
    started = time.perf_counter()
    config = RunConfig.from_input(raw_config)
    paths = RunPaths(settings.prefix, run_id)
    reused = object_exists(s3, settings.bucket, paths.shard_plan)
    if reused:
        meta: ModelMetadata = get_json(s3, settings.bucket, paths.model_meta)
        shards = len(get_json(s3, settings.bucket, paths.shard_plan))
    else:
        meta, shards = fit_and_write(s3, settings, paths, config)
    return TrainResult(
        model_key=paths.model,
        shard_plan_key=paths.shard_plan,
        shards=shards,
        users=meta["users"],
        items=meta["items"],
        ratings=meta["ratings"],
        fit_seconds=meta.get("fit_seconds", 0.0),  # the fit that wrote them (e.g. on Fargate)
        seconds=0.0 if reused else round(time.perf_counter() - started, 3),
        reused=reused,
        quality=summary(meta.get("quality"), config.top_n),
    )


def fit_and_write(
    s3: S3Client, settings: Settings, paths: RunPaths, config: RunConfig
) -> tuple[ModelMetadata, int]:
    """Fit on the snapshot and write the model, its metadata and the shard plan, in that order.
    Returns the metadata and the number of shards."""
    body = s3.get_object(Bucket=settings.bucket, Key=paths.dataset)["Body"]
    ratings = read_snapshot(body)
    check_shard_count(len(ratings.user_ids), config.users_per_shard)  # before the expensive part
    # Measured on a holdout split first (the published model then sees every rating), unless the
    # data is too small to hold anything out. On large data the split is of a sample of users, so
    # that measuring costs one bounded extra fit rather than doubling Train.
    split = evaluation_split(ratings) if config.evaluate else None
    measure = None
    if split is not None and split.test.n_ratings > 0:

        def measure(algorithm: str, params: dict[str, Any]) -> dict[str, Any]:
            return evaluate(
                ratings,
                algorithm,
                params,
                config.rating_scale,
                k=config.top_n,
                split=split,
                similar_min_support=config.similar_min_support,
            )

    choice = None
    if config.algorithm == AUTO:
        choice = choose(
            len(ratings.item_ids), measure, values=ratings.ratings, memory_mb=settings.model_memory_mb
        )
        algorithm, params, quality = choice.algorithm, choice.params, choice.report
    else:
        algorithm, params = config.algorithm, config.params
        check_similarity(ratings, algorithm, params)
        quality = measure(algorithm, params) if measure is not None else None
    fitted = fit(ratings, algorithm, params, config.rating_scale)
    model = model_from_fit(fitted)
    plan = plan_shards(model, config.users_per_shard, config.similar_min_support)
    model_object, user_parts = write_model(s3, settings, paths, model, plan)
    raters_object = write_raters(s3, settings, paths, model)
    meta = ModelMetadata(
        algorithm=algorithm,
        params=fitted.params,
        kind=model.kind,
        rating_scale=list(model.rating_scale),
        users=model.n_users,
        items=model.n_items,
        ratings=ratings.n_ratings,
        global_mean=model.global_mean,
        fit_seconds=round(fitted.seconds, 3),
        versions=library_versions(),
        quality=quality,
        users_in_parts=bool(user_parts),
        # size and SHA-256 of each object written: the predictors and Merge check what they
        # read against them, and Merge copies them into the manifest for the client
        model_object=model_object,
        user_parts=user_parts,
    )
    if raters_object is not None:
        meta["raters_object"] = raters_object
    if choice is not None:
        meta["choice"] = choice.record()
    put_json(s3, settings.bucket, paths.model_meta, meta)
    put_json(s3, settings.bucket, paths.shard_plan, plan)
    return meta, len(plan)


def write_model(
    s3: S3Client, settings: Settings, paths: RunPaths, model: ModelArrays, plan: list[Shard]
) -> tuple[ObjectRecord, list[UserPartRecord]]:
    """Write the model, split into its item side and one part per shard when its kernel allows.
    A predictor then reads the item side and its own shard's users only, so its memory does not
    grow with the number of users. Returns the record (`model.object_record`) of model.npz and
    those of the user parts, by shard index: none when the model is whole."""
    layout = kernels.user_layout(model)
    if layout is None:
        data = model.to_bytes()
        put_bytes(s3, settings.bucket, paths.model, data)
        return object_record(data), []
    parts = []
    for shard in plan:
        data = model.user_part(shard_users(model, shard), layout).to_bytes()
        put_bytes(s3, settings.bucket, paths.user_part(shard["index"]), data)
        parts.append(UserPartRecord(index=shard["index"], **object_record(data)))
    data = model.item_side(layout).to_bytes()
    put_bytes(s3, settings.bucket, paths.model, data)
    return object_record(data), parts


def write_raters(
    s3: S3Client, settings: Settings, paths: RunPaths, model: ModelArrays
) -> ObjectRecord | None:
    """Who rated what, when the model's similar items are by co-occurrence: the item shards need
    every user's items, which a split model's item side does not hold. Returns its record."""
    if measure_of(model) != CO_OCCURRENCE:
        return None
    data = Raters.from_seen(model.seen_indptr, model.seen_indices, model.n_items).to_bytes()
    put_bytes(s3, settings.bucket, paths.raters, data)
    return object_record(data)


def summary(quality: dict[str, Any] | None, top_n: int) -> QualitySummary:
    """The figures worth a CloudWatch metric; the full report stays in the model metadata."""
    if quality is None:
        return QualitySummary()
    name = metric_name(top_n)
    return QualitySummary(ndcg=quality["model"].get(name), popularity_ndcg=quality["popularity"].get(name))
