"""Publishing a run into any S3 (moto in-process or over HTTP) with the real step functions,
without Step Functions or a database: the snapshot is written the way Extract writes it."""

from __future__ import annotations

import csv
import gzip
import io
from typing import Any

from recommender.config import RunConfig, Settings
from recommender.contracts import ExtractSummary
from recommender.manifest import utc_now
from recommender.steps import merge, predict, train
from recommender.storage import RunPaths, get_json, put_bytes, sha256_hex


def grid_rows(users: int = 40, items: int = 15) -> list[tuple[str, str, float]]:
    """Two thirds of a users x items grid, rated 1 to 5 in a fixed pattern: small, every user and
    item rated several times, and the same in every test that uses it."""
    return [
        (f"u{u}", f"i{i}", float(1 + (u * 7 + i * 3) % 5))
        for u in range(users)
        for i in range(items)
        if (u + i) % 3
    ]


def write_snapshot(
    s3: Any, settings: Settings, run_id: str, rows: list[tuple[str, str, float]]
) -> ExtractSummary:
    """Extract's summary of the snapshot written, as Merge receives it."""
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["user", "item", "rating"])
    writer.writerows(rows)
    data = gzip.compress(text.getvalue().encode("utf-8"), mtime=0)
    key = RunPaths(settings.prefix, run_id).dataset
    put_bytes(s3, settings.bucket, key, data)
    return ExtractSummary(
        dataset_key=key,
        rows=len(rows),
        bytes=len(data),
        sha256=sha256_hex(data),
        seconds=0.0,
        extracted_at=utc_now(),
        source_rows=len(rows),
        dropped={},
        invalid_rows=0,
        duplicates_merged=0,
        reused=False,
    )


def publish(
    s3: Any,
    settings: Settings,
    run_id: str,
    rows: list[tuple[str, str, float]],
    run_input: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Extract (as a snapshot), Train, Predict every shard, Merge; returns the manifest."""
    config = RunConfig.from_input(run_input or {}).to_dict()
    extract = write_snapshot(s3, settings, run_id, rows)
    trained = train.run(s3, settings, run_id, config)
    for shard in get_json(s3, settings.bucket, trained["shard_plan_key"]):
        predict.run(s3, settings, run_id, shard, config["top_n"])
    merged = merge.run(s3, settings, run_id, config, extract, trained)
    manifest: dict[str, Any] = get_json(s3, settings.bucket, merged["manifest_key"])
    return manifest
