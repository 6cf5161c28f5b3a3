"""Reading published recommendations: what an app server does, from S3 or from a local folder.

Importing this module does not import Surprise or numpy's training stack: an app server needs only
boto3 (for S3) and the standard library.

    recs = Recommendations.open("s3://bucket/prefix")   # or a folder with the same layout
    answer = recs.for_user("42")
    answer.items, answer.scores, answer.personal         # personal=False: the fallback list
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .sharding import decode_shard
from .storage import latest_key, sha256_hex


class RecommendationsError(RuntimeError):
    """The published output cannot be read as the manifest describes it."""


class ObjectReader(Protocol):
    def read(self, key: str) -> bytes: ...


@dataclass(frozen=True)
class FolderReader:
    root: Path

    def read(self, key: str) -> bytes:
        path = self.root / key
        if not path.is_file():
            raise RecommendationsError(f"{path} does not exist")
        return path.read_bytes()


@dataclass(frozen=True)
class S3Reader:
    s3: Any
    bucket: str
    prefix: str

    def read(self, key: str) -> bytes:
        full = f"{self.prefix}/{key}" if self.prefix else key
        try:
            body: bytes = self.s3.get_object(Bucket=self.bucket, Key=full)["Body"].read()
        except self.s3.exceptions.NoSuchKey:
            raise RecommendationsError(f"s3://{self.bucket}/{full} does not exist") from None
        return body


@dataclass(frozen=True)
class Answer:
    user: str
    items: list[str]
    scores: list[float]
    personal: bool  # False: the user is unknown to the model and this is the fallback list
    run_id: str


class Recommendations:
    """The recommendations of the run `latest.json` points to when this object was opened."""

    def __init__(self, reader: ObjectReader) -> None:
        self.reader = reader
        latest = json.loads(reader.read(latest_key("")))
        self.manifest: dict[str, Any] = json.loads(reader.read(latest["manifest"]))
        self.run_id: str = self.manifest["run_id"]
        self._shards = sorted(self.manifest["shards"], key=lambda s: _utf8(s["first_user"]))
        self._firsts = [_utf8(s["first_user"]) for s in self._shards]

    @classmethod
    def open(cls, location: str | Path, s3: Any = None) -> Recommendations:
        text = str(location)
        if text.startswith("s3://"):
            bucket, _, prefix = text[len("s3://") :].partition("/")
            if s3 is None:
                import boto3

                s3 = boto3.client("s3")
            return cls(S3Reader(s3, bucket, prefix.strip("/")))
        root = Path(text)
        if not (root / "latest.json").is_file():
            raise RecommendationsError(f"{root} has no latest.json: not a published output folder")
        return cls(FolderReader(root))

    def shard_for(self, user_id: str) -> dict[str, Any] | None:
        """The shard whose id range holds the user (binary search; no other shard is read)."""
        key = _utf8(user_id)
        position = bisect.bisect_right(self._firsts, key) - 1
        if position < 0:
            return None
        shard = self._shards[position]
        return shard if key <= _utf8(shard["last_user"]) else None

    def for_user(self, user_id: str, n: int | None = None) -> Answer:
        shard = self.shard_for(user_id)
        if shard is not None:
            data = self.reader.read(shard["key"])
            if sha256_hex(data) != shard["sha256"]:
                raise RecommendationsError(f"{shard['key']} does not match the manifest's checksum")
            for record in decode_shard(data):
                if record["user"] == user_id:
                    return Answer(user_id, record["items"][:n], record["scores"][:n], True, self.run_id)
        fallback = self.manifest["fallback"]
        return Answer(user_id, fallback["items"][:n], fallback["scores"][:n], False, self.run_id)


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")
