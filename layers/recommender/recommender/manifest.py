"""The run manifest and the `latest.json` pointer: the contract with app servers.

Both are documented by JSON Schemas shipped in `recommender/schemas/`, which the tests validate
published objects against, so a reader in any language can rely on them. Keys inside are relative
to the bucket prefix, so a copied folder with the same layout resolves them too.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from .contracts import ManifestDataset, ManifestShard, ResolvedConfig

SCHEMA_VERSION = 1
TIE_RULE = (
    "higher unclipped estimate first; equal estimates: more ratings in the training data first,"
    " then earlier first appearance in the dataset snapshot"
)
SHARD_ORDER = "users sorted by the UTF-8 bytes of their ids; shard i holds first_user..last_user"


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def load_schema(name: str) -> dict[str, Any]:
    """`manifest`, `latest` or `shard-record`: the JSON Schema of that object."""
    text = resources.files("recommender.schemas").joinpath(f"{name}.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def build_manifest(
    *,
    run_id: str,
    config: ResolvedConfig,
    dataset: ManifestDataset,
    model: dict[str, Any],
    shards: list[ManifestShard],
    fallback: dict[str, Any],
    timings: dict[str, float],
    versions: dict[str, str],
    status: str = "published",
    quality: dict[str, Any] | None = None,
    gate: dict[str, Any] | None = None,
    similar: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "created_at": utc_now(),
        "top_n": config["top_n"],
        "config": config,
        "dataset": dataset,
        "model": model,
        "ranking": {"tie_rule": TIE_RULE, "score": "estimate clipped to the rating scale"},
        "shard_order": SHARD_ORDER,
        "users": sum(s["users"] for s in shards),
        "shards": shards,
        "fallback": fallback,
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "versions": versions,
        "status": status,
        "quality": quality,
        "gate": gate or {"decision": "not-evaluated"},
        **({"similar": similar} if similar is not None else {}),
    }


def build_latest(run_id: str, manifest_key: str, created_at: str, extracted_at: str) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "manifest": manifest_key,
        "created_at": created_at,
        "extracted_at": extracted_at,
        "published_at": utc_now(),
    }
