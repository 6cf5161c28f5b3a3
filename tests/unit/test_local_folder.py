"""A local output folder kept as the bucket a local run stands for: published in S3's order, each
file whole, latest.json only moved to newer data, a published run's objects never overwritten."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
import pytest
from moto import mock_aws

from recommender.config import Settings
from recommender.local import folder
from recommender.storage import RunPaths, latest_key
from tests.conftest import mocked_s3
from tests.publishing import publish

BUCKET = "folder-tests"
PREFIX = "p"
SETTINGS = Settings(bucket=BUCKET, prefix=PREFIX)


@pytest.fixture
def s3() -> Iterator[Any]:
    with mocked_s3(BUCKET) as client:
        yield client


def rows(users: int = 20, items: int = 10) -> list[tuple[str, str, float]]:
    return [
        (f"u{u}", f"i{i}", float(1 + (u * 7 + i * 3) % 5))
        for u in range(users)
        for i in range(items)
        if (u + i) % 3
    ]


def set_extracted_at(s3: Any, run_id: str, when: str) -> None:
    """Make the bucket's latest.json (pointing at `run_id`) say its data was extracted `when`."""
    latest = json.loads(s3.get_object(Bucket=BUCKET, Key=latest_key(PREFIX))["Body"].read())
    assert latest["run_id"] == run_id
    latest["extracted_at"] = when
    s3.put_object(Bucket=BUCKET, Key=latest_key(PREFIX), Body=json.dumps(latest).encode())


def test_a_folder_is_published_in_the_order_s3_is(s3: Any, tmp_path: Path) -> None:
    publish(s3, SETTINGS, "run-1", rows(), {"users_per_shard": 5, "evaluate": False})
    renamed: list[str] = []
    real_replace = os.replace

    def record(source: Any, target: Any) -> None:
        renamed.append(Path(target).relative_to(tmp_path).as_posix())
        assert not Path(target).name.startswith(".") and folder.TEMPORARY in Path(source).name
        real_replace(source, target)

    with mock.patch("recommender.local.folder.os.replace", record):
        published = folder.publish(s3, BUCKET, PREFIX, tmp_path)
    assert published.latest_moved and published.latest_run_id == "run-1"
    # Every object of the run, then its manifest, then the pointer: a reader never sees a pointer
    # to a manifest that is not there, nor a manifest naming a shard that is not.
    assert renamed[-1] == "latest.json"
    assert renamed[-2] == "runs/run-1/manifest.json"
    assert all(not name.endswith("manifest.json") for name in renamed[:-2])
    assert len(renamed) == published.written
    assert not [p for p in tmp_path.rglob(f"*{folder.TEMPORARY}*")]  # no temporary file left


def test_latest_only_moves_to_newer_data(s3: Any, tmp_path: Path) -> None:
    publish(s3, SETTINGS, "newer-data", rows(), {"evaluate": False})
    set_extracted_at(s3, "newer-data", "2026-12-02T10:00:00.000Z")
    assert folder.publish(s3, BUCKET, PREFIX, tmp_path).latest_moved
    # A run with older data finishes last, from another bucket (another local run).
    with mock_aws():
        other = boto3.client("s3", region_name="us-east-1")
        other.create_bucket(Bucket=BUCKET)
        publish(other, SETTINGS, "older-data", rows(), {"evaluate": False})
        set_extracted_at(other, "older-data", "2026-12-02T09:00:00.000Z")
        late = folder.publish(other, BUCKET, PREFIX, tmp_path)
    assert not late.latest_moved and late.latest_run_id == "newer-data"
    assert json.loads((tmp_path / "latest.json").read_text())["run_id"] == "newer-data"
    assert (tmp_path / "runs" / "older-data" / "manifest.json").is_file()  # its objects are kept


def test_a_published_runs_objects_are_never_overwritten(s3: Any, tmp_path: Path) -> None:
    publish(s3, SETTINGS, "run-1", rows(), {"evaluate": False})
    folder.publish(s3, BUCKET, PREFIX, tmp_path)
    model = tmp_path / "runs" / "run-1" / "model" / "model.npz"
    before = model.read_bytes()
    key = RunPaths(PREFIX, "run-1").model
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"another model")
    with pytest.raises(folder.ImmutableObjectError, match="published run run-1"):
        folder.publish(s3, BUCKET, PREFIX, tmp_path)
    assert model.read_bytes() == before
    again = folder.publish(s3, BUCKET, PREFIX, tmp_path / "elsewhere")
    assert again.written > 0  # an empty folder takes it


def test_an_unpublished_runs_failure_record_may_be_replaced(s3: Any, tmp_path: Path) -> None:
    failure = RunPaths(PREFIX, "failed").failure
    s3.put_object(Bucket=BUCKET, Key=failure, Body=b'{"error": "first"}')
    folder.publish(s3, BUCKET, PREFIX, tmp_path)
    s3.put_object(Bucket=BUCKET, Key=failure, Body=b'{"error": "second"}')
    folder.publish(s3, BUCKET, PREFIX, tmp_path)
    assert json.loads((tmp_path / "runs" / "failed" / "failure.json").read_text()) == {"error": "second"}


def test_loading_a_folder_gives_the_bucket_what_s3_would_hold(s3: Any, tmp_path: Path) -> None:
    publish(s3, SETTINGS, "run-1", rows(), {"evaluate": False})
    folder.publish(s3, BUCKET, PREFIX, tmp_path)
    (tmp_path / folder.LOCK_NAME).touch()
    with mock_aws():
        fresh = boto3.client("s3", region_name="us-east-1")
        fresh.create_bucket(Bucket=BUCKET)
        loaded = folder.load(fresh, BUCKET, PREFIX, tmp_path)
        keys = {o["Key"] for o in fresh.list_objects_v2(Bucket=BUCKET)["Contents"]}
    expected = {f"{PREFIX}/{p.relative_to(tmp_path).as_posix()}" for p in tmp_path.rglob("*") if p.is_file()}
    expected.discard(f"{PREFIX}/{folder.LOCK_NAME}")
    assert keys == expected and loaded == len(expected)
    assert folder.load(fresh, BUCKET, PREFIX, tmp_path / "missing") == 0
