"""Step 1: validate the run's input, then stream the ratings table into a dataset snapshot."""

from __future__ import annotations

from typing import Any

from ..config import RunConfig, Settings
from ..database import describe
from ..dataset import DatasetError, extract_to_s3
from ..manifest import utc_now
from ..storage import RunPaths, put_json
from ..training import effective_params, make_algorithm


def validate_input(raw_input: Any) -> RunConfig:
    """Everything that can be checked before touching the database, so typos fail in seconds."""
    config = RunConfig.from_input(raw_input)
    make_algorithm(config.algorithm, config.params)
    return config


def run(conn: Any, s3: Any, settings: Settings, run_id: str, config: RunConfig) -> dict[str, Any]:
    """Stream the table into the snapshot; `config` comes from `validate_input`."""
    paths = RunPaths(settings.prefix, run_id)
    summary = extract_to_s3(conn, s3, settings.bucket, paths.dataset, config.source)
    if summary.rows == 0:
        raise DatasetError(f"table {config.source.table!r} has no rating with a user, an item and a rating")
    put_json(
        s3,
        settings.bucket,
        paths.dataset_meta,
        {
            "rows": summary.rows,
            "bytes": summary.bytes,
            "sha256": summary.sha256,
            "columns": ["user", "item", "rating"] + (["timestamp"] if summary.has_timestamp else []),
            "source": {"database": describe(conn), **config.to_dict()["source"]},
            "extracted_at": utc_now(),
        },
    )
    resolved = config.to_dict()
    resolved["params"] = effective_params(config.algorithm, config.params)
    return {
        "run_id": run_id,
        "config": resolved,
        "extract": {
            "dataset_key": paths.dataset,
            "rows": summary.rows,
            "bytes": summary.bytes,
            "sha256": summary.sha256,
            "seconds": round(summary.seconds, 3),
        },
    }
