"""A local output folder, kept as the persistent bucket a local run stands for.

`recommender run --out DIR` publishes into DIR what a deployment publishes into S3, and later runs
into the same DIR behave as later runs into the same bucket:
- before a run, the folder's objects are loaded into the engine's bucket (`load`), so the run sees
  what S3 would hold: the published run is the quality gate's baseline, latest.json only moves to
  newer data, and a resume with `run_id` finds the finished work;
- after a run, the bucket is published into the folder (`publish`) in the order S3 publishes it:
  every run object, then the manifests, then latest.json, each written to a temporary file and
  renamed over its name, so that a reader polling the folder never sees a pointer to a manifest
  that is not there yet, nor half a file;
- latest.json moves only to a run whose data was extracted later than the folder's (the rule
  Merge applies on S3), under a lock, so that two runs finishing together cannot put the older
  one last;
- a published run's objects are never overwritten: an object of a run whose manifest is in the
  folder is written only when it is absent, and refused when it differs (`ImmutableObjectError`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..steps.merge import newer
from ..storage import latest_key

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

LOCK_NAME = ".recommender.lock"
TEMPORARY = ".tmp-"
MANIFEST = "manifest.json"
FAILURE = "failure.json"


class ImmutableObjectError(RuntimeError):
    """A run would overwrite an object of a published run with other content."""


@dataclass(frozen=True)
class Published:
    """What `publish` wrote."""

    written: int  # objects written (new, or replaced where allowed)
    unchanged: int  # objects the folder held already, byte for byte
    latest_moved: bool  # whether latest.json now points to a run of this bucket
    latest_run_id: str | None  # the run latest.json points to afterwards


def _files(folder: Path) -> Iterator[Path]:
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != LOCK_NAME and TEMPORARY not in path.name:
            yield path


def load(s3: S3Client, bucket: str, prefix: str, folder: Path) -> int:
    """Put every object of the folder into the bucket under the prefix; returns how many."""
    if not folder.is_dir():
        return 0
    count = 0
    for path in _files(folder):
        key = "/".join(filter(None, [prefix, path.relative_to(folder).as_posix()]))
        s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
        count += 1
    return count


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """One publisher at a time in a folder (what S3's conditional write gives Merge)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_NAME, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write(path: Path, data: bytes) -> None:
    """Whole or not at all: a temporary file in the same folder, renamed over the name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}{TEMPORARY}{uuid.uuid4().hex[:8]}")
    try:
        temporary.write_bytes(data)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _run_of(relative: str) -> str | None:
    """The run id of a key relative to the prefix ("runs/<id>/..."), or None."""
    parts = relative.split("/")
    return parts[1] if len(parts) > 2 and parts[0] == "runs" else None


def publish(s3: S3Client, bucket: str, prefix: str, folder: Path) -> Published:
    """Copy the bucket's objects under the prefix into the folder (see the module docstring)."""
    head = f"{prefix}/" if prefix else ""
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=head):
        keys.extend(entry["Key"][len(head) :] for entry in page.get("Contents", []))
    pointer = latest_key("")
    ordered = sorted(k for k in keys if k != pointer and not k.endswith(f"/{MANIFEST}"))
    ordered += sorted(k for k in keys if k.endswith(f"/{MANIFEST}"))
    written = unchanged = 0
    with _locked(folder):
        published = {path.parent.name for path in (folder / "runs").glob(f"*/{MANIFEST}")}
        for relative in ordered:
            data: bytes = s3.get_object(Bucket=bucket, Key=head + relative)["Body"].read()
            target = folder / relative
            if target.is_file():
                if target.read_bytes() == data:
                    unchanged += 1
                    continue
                run = _run_of(relative)
                if run in published and not relative.endswith(f"/{FAILURE}"):
                    raise ImmutableObjectError(
                        f"{target} belongs to the published run {run} and differs from what this run"
                        " wrote: published runs are never changed; start a new run instead"
                    )
            _write(target, data)
            written += 1
        moved, newest = False, None
        if pointer in keys:
            body: bytes = s3.get_object(Bucket=bucket, Key=head + pointer)["Body"].read()
            candidate = json.loads(body)
            current_path = folder / pointer
            current = json.loads(current_path.read_bytes()) if current_path.is_file() else None
            if current is None or newer(candidate, current):
                _write(current_path, body)
                written += 1
                moved, newest = True, str(candidate["run_id"])
            else:
                newest = str(current["run_id"])
                unchanged += current == candidate
    return Published(written, unchanged, moved, newest)
