"""Step 1: validate the run's input, then stream the ratings table into a dataset snapshot.

A run resumed under its earlier `run_id` reuses the snapshot it already has (its metadata is
written only after the snapshot is complete): the model and every shard then describe the same
data, and the database is not read again.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import closing
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .. import database
from ..choice import AUTO
from ..config import RunConfig, Settings
from ..contracts import DatasetMetadata, ExtractResult, ExtractSummary, dataset_figures
from ..dataset import extract_to_s3
from ..errors import ConfigError, PublishedRunError
from ..manifest import utc_now
from ..secrets import database_url
from ..storage import RunPaths, get_json, object_exists, put_json
from ..training import effective_params, make_algorithm

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def resolve(config: RunConfig, run_id: str) -> dict[str, Any]:
    """The config the ASL hands to Train and Merge: the run's id and every parameter spelled out
    (the algorithm's defaults included), so the manifest shows what was fitted. auto's candidates
    keep the product's own parameters, recorded with the choice."""
    resolved = config.to_dict()
    resolved["params"] = {} if config.algorithm == AUTO else effective_params(config.algorithm, config.params)
    resolved["run_id"] = run_id
    return resolved


def validate_input(raw_input: Any, predict_concurrency: int | None = None) -> RunConfig:
    """Everything that can be checked before touching the database, so typos fail in seconds.

    `predict_concurrency` is the predictor's reserved concurrency (Settings): the Map must not run
    more predictors at once than it reserves, or the extra ones are only throttled. An input that
    asks for more fails; the default pace is lowered to it."""
    config = RunConfig.from_input(raw_input)
    if config.algorithm != AUTO:  # auto's candidates are the product's own, with their defaults
        make_algorithm(config.algorithm, config.params)
    if predict_concurrency is not None and config.max_concurrency > predict_concurrency:
        if isinstance(raw_input, dict) and raw_input.get("max_concurrency") is not None:
            raise ConfigError(
                f"max_concurrency must be at most {predict_concurrency}, the predictor's reserved"
                f" concurrency (the stack's MaxConcurrency), got {config.max_concurrency}: lower it or"
                " raise MaxConcurrency"
            )
        config = replace(config, max_concurrency=predict_concurrency)
    return config


def connector(settings: Settings) -> Callable[[], Any]:
    """How Extract connects, for the function and the Fargate task alike: DATABASE_URL when set
    (the local engine), else the secret, read at connection time so that a rotated password is
    picked up. The URL is never logged. Not called when a resumed run reuses its snapshot."""
    return lambda: database.connect(database_url(settings), "recommender-extract")


def run(
    connect: Callable[[], Any],
    s3: S3Client,
    settings: Settings,
    execution_name: str,
    config: RunConfig,
) -> ExtractResult:
    """Snapshot the table (or reuse this run's snapshot); `config` comes from `validate_input`."""
    run_id = config.run_id or execution_name
    paths = RunPaths(settings.prefix, run_id)
    if object_exists(s3, settings.bucket, paths.manifest):
        raise PublishedRunError(
            f"run_id: run {run_id} is published already (runs/{run_id}/manifest.json exists), and a"
            " published run's objects are never changed: start a new run (no run_id) instead"
        )
    reused = object_exists(s3, settings.bucket, paths.dataset_meta)
    if reused:
        metadata: DatasetMetadata = get_json(s3, settings.bucket, paths.dataset_meta)
    else:
        metadata = snapshot(connect, s3, settings, paths, config)
    resolved = resolve(config, run_id)
    extract = ExtractSummary(
        **dataset_figures(metadata),
        dataset_key=paths.dataset,
        seconds=0.0 if reused else metadata["seconds"],
        reused=reused,
    )
    return ExtractResult(run_id=run_id, config=resolved, extract=extract)


def snapshot(
    connect: Callable[[], Any], s3: S3Client, settings: Settings, paths: RunPaths, config: RunConfig
) -> DatasetMetadata:
    """Stream the table into the run's snapshot, then write its metadata (last, so that its
    presence means the snapshot is complete)."""
    with closing(connect()) as conn:
        summary = extract_to_s3(
            conn,
            s3,
            settings.bucket,
            paths.dataset,
            config.source,
            config.rating_scale,
            config.max_invalid_fraction,
        )
        described = database.describe(conn)
    metadata = DatasetMetadata(
        rows=summary.rows,
        bytes=summary.bytes,
        sha256=summary.sha256,
        seconds=round(summary.seconds, 3),
        source_rows=summary.source_rows,
        dropped=summary.dropped,
        invalid_rows=summary.invalid_rows,
        duplicates_merged=summary.duplicates_merged,
        columns=["user", "item", "rating"] + (["timestamp"] if summary.has_timestamp else []),
        source={"database": described, **config.to_dict()["source"]},
        extracted_at=utc_now(),
    )
    put_json(s3, settings.bucket, paths.dataset_meta, metadata)
    return metadata
