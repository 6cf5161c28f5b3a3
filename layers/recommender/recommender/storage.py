"""The storage layout of a run in S3, and the few S3 operations the steps need.

Every key is built here, so the layout in the README and in the design has one source. Objects are
always written whole (PutObject, or a multipart upload that is completed only at the end), so no
reader ever sees half an object.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import strict_json
from .aws import error_code
from .config import check_run_id
from .errors import ObjectExistsError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef, PutObjectRequestTypeDef

JSON_CONTENT = "application/json"
MULTIPART_PART_SIZE = 8 * 1024 * 1024  # S3's minimum is 5 MiB for every part but the last


def _join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


@dataclass(frozen=True)
class RunPaths:
    """The keys of one run: `<prefix>/runs/<run_id>/...`."""

    prefix: str
    run_id: str

    def __post_init__(self) -> None:
        check_run_id(self.run_id)

    @property
    def root(self) -> str:
        return _join(self.prefix, "runs", self.run_id)

    @property
    def dataset(self) -> str:
        return _join(self.root, "dataset", "ratings.csv.gz")

    @property
    def dataset_meta(self) -> str:
        return _join(self.root, "dataset", "metadata.json")

    @property
    def model(self) -> str:
        return _join(self.root, "model", "model.npz")

    def user_part(self, index: int) -> str:
        """The user part of shard `index`, when the model is split (see `model.UserPart`)."""
        return _join(self.root, "model", "users", f"users-{index:05d}.npz")

    @property
    def raters(self) -> str:
        """Who rated what, for similar items by co-occurrence (see `similarity.Raters`)."""
        return _join(self.root, "model", "raters.npz")

    @property
    def similar_objects_root(self) -> str:
        return _join(self.root, "similar") + "/"

    def similar_object(self, index: int) -> str:
        """The similar items of shard `index`'s items (see `sharding.encode_similar`)."""
        return _join(self.root, "similar", f"shard-{index:05d}.jsonl.gz")

    @property
    def model_meta(self) -> str:
        return _join(self.root, "model", "metadata.json")

    @property
    def shard_plan(self) -> str:
        return _join(self.root, "shards.json")

    @property
    def shard_objects_root(self) -> str:
        return _join(self.root, "recommendations") + "/"

    def shard_object(self, index: int) -> str:
        """The shard object of shard `index`: its users' lists (see `sharding`)."""
        return _join(self.root, "recommendations", f"shard-{index:05d}.jsonl.gz")

    @property
    def fallback(self) -> str:
        return _join(self.root, "fallback.json")

    @property
    def manifest(self) -> str:
        return _join(self.root, "manifest.json")

    @property
    def failure(self) -> str:
        return _join(self.root, "failure.json")


def latest_key(prefix: str) -> str:
    return _join(prefix, "latest.json")


def relative_key(prefix: str, key: str) -> str:
    """Keys in the manifest are relative to the prefix, so a copied folder still resolves them."""
    head = _join(prefix) + "/" if _join(prefix) else ""
    return key[len(head) :] if head and key.startswith(head) else key


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# What S3 answers a conditional write whose condition does not hold (If-None-Match, If-Match).
PRECONDITION_CODES = ("PreconditionFailed", "412", "ConditionalRequestConflict")


def precondition_failed(error: Exception) -> bool:
    """Whether an S3 error is a conditional write's condition failing."""
    return error_code(error) in PRECONDITION_CODES


def put_bytes(
    s3: S3Client,
    bucket: str,
    key: str,
    data: bytes,
    content_type: str = "application/octet-stream",
    metadata: dict[str, str] | None = None,
    if_absent: bool = False,
) -> None:
    """Write an object whole. With `if_absent` the write is conditional (If-None-Match: *): it
    creates the object or fails with ObjectExistsError, never replacing one."""
    request: PutObjectRequestTypeDef = {
        "Bucket": bucket,
        "Key": key,
        "Body": data,
        "ContentType": content_type,
        "Metadata": metadata or {},
    }
    if if_absent:
        request["IfNoneMatch"] = "*"
    try:
        s3.put_object(**request)
    except s3.exceptions.ClientError as error:
        if if_absent and precondition_failed(error):
            raise ObjectExistsError(f"s3://{bucket}/{key} exists already") from None
        raise


def get_bytes(s3: S3Client, bucket: str, key: str) -> bytes:
    body: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return body


def put_json(s3: S3Client, bucket: str, key: str, obj: Any, if_absent: bool = False) -> None:
    data = strict_json.dump_bytes(obj, what=key, indent=1, sort_keys=True)
    put_bytes(s3, bucket, key, data, content_type=JSON_CONTENT, if_absent=if_absent)


def get_json(s3: S3Client, bucket: str, key: str) -> Any:
    return json.loads(get_bytes(s3, bucket, key))


def object_exists(s3: S3Client, bucket: str, key: str) -> bool:
    """Whether `key` exists, asked by listing it.

    S3 answers a GET or HEAD of a missing key with 404 only to a caller allowed to list the
    bucket, and with 403 otherwise. The roles may list only under the output prefix (an s3:prefix
    condition), and whether that condition is met for this answer is not documented, so no step
    learns that an object is missing from a GET or HEAD: it lists exactly that key, which the
    conditioned grant covers."""
    response = s3.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
    return any(entry["Key"] == key for entry in response.get("Contents", []))


def listed_keys(s3: S3Client, bucket: str, prefix: str) -> set[str]:
    """Every key under `prefix` (one request per 1,000 keys); see `object_exists` for why a
    listing, not a GET, says what is missing."""
    found: set[str] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        found.update(entry["Key"] for entry in page.get("Contents", []))
    return found


class S3Writer(io.RawIOBase):
    """A write-only file that streams into one S3 object and hashes what it writes.

    Parts of MULTIPART_PART_SIZE are uploaded as they fill, so memory stays bounded whatever the
    size of the object and nothing touches /tmp. The object appears only when `close()` completes
    the upload; `abort()` (or an exception inside a `with` block) leaves nothing behind.
    """

    def __init__(self, s3: S3Client, bucket: str, key: str, content_type: str) -> None:
        super().__init__()
        self._s3, self._bucket, self._key, self._content_type = s3, bucket, key, content_type
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[CompletedPartTypeDef] = []
        self._hash = hashlib.sha256()
        self.bytes_written = 0
        self.sha256 = ""

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._buffer += chunk
        self._hash.update(chunk)
        self.bytes_written += len(chunk)
        if len(self._buffer) >= MULTIPART_PART_SIZE:
            self._upload_part()
        return len(chunk)

    def _upload_part(self) -> None:
        if self._upload_id is None:
            created = self._s3.create_multipart_upload(
                Bucket=self._bucket, Key=self._key, ContentType=self._content_type
            )
            self._upload_id = created["UploadId"]
        number = len(self._parts) + 1
        response = self._s3.upload_part(
            Bucket=self._bucket,
            Key=self._key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=bytes(self._buffer),
        )
        self._parts.append({"PartNumber": number, "ETag": response["ETag"]})
        self._buffer.clear()

    def close(self) -> None:
        if self.closed:
            return
        if self._upload_id is None:
            put_bytes(self._s3, self._bucket, self._key, bytes(self._buffer), self._content_type)
        else:
            if self._buffer:
                self._upload_part()
            self._s3.complete_multipart_upload(
                Bucket=self._bucket,
                Key=self._key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )
        self.sha256 = self._hash.hexdigest()
        self._buffer.clear()
        super().close()

    def abort(self) -> None:
        if self._upload_id is not None:
            self._s3.abort_multipart_upload(Bucket=self._bucket, Key=self._key, UploadId=self._upload_id)
            self._upload_id = None
        self._buffer.clear()
        super().close()

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.close()
