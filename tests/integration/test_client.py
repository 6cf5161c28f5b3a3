"""The app server's reader against S3 over real HTTP (moto's server mode on localhost) and against
a local folder with the same layout: runs published by the real steps."""

from __future__ import annotations

import gzip
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from recommender.client import FolderReader, Recommendations, S3Reader
from recommender.config import Settings
from recommender.errors import RecommendationsError
from recommender.sample_data import SyntheticSpec, synthetic_ratings
from recommender.sharding import decode_shard
from recommender.storage import latest_key
from tests.doubles import as_s3
from tests.publishing import publish

pytestmark = pytest.mark.slow  # S3 is moto's server, over HTTP on localhost

PREFIX = "recs"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="module")
def s3(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def rows(seed: int) -> list[tuple[str, str, float]]:
    spec = SyntheticSpec(users=90, items=50, ratings_per_user=8, seed=seed)
    return [(u, i, r) for u, i, r, _ in synthetic_ratings(spec)]


@dataclass
class Store:
    """Where a run is published and read back: the bucket itself, or a folder copied from it."""

    s3: Any
    bucket: str
    folder: Path | None

    def publish(self, run_id: str, seed: int, **run_input: Any) -> dict[str, Any]:
        settings = Settings(bucket=self.bucket, prefix=PREFIX)
        manifest = publish(
            self.s3, settings, run_id, rows(seed), {"users_per_shard": 20, "evaluate": False, **run_input}
        )
        if self.folder is not None:
            listed = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=f"{PREFIX}/runs/{run_id}/")[
                "Contents"
            ]
            for key in [o["Key"] for o in listed] + [f"{PREFIX}/latest.json"]:
                self.put(
                    key.removeprefix(f"{PREFIX}/"),
                    self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read(),
                )
        return manifest

    def put(self, key: str, data: bytes) -> None:
        if self.folder is None:
            self.s3.put_object(Bucket=self.bucket, Key=f"{PREFIX}/{key}", Body=data)
        else:
            (self.folder / key).parent.mkdir(parents=True, exist_ok=True)
            (self.folder / key).write_bytes(data)

    def get(self, key: str) -> bytes:
        if self.folder is None:
            body: bytes = self.s3.get_object(Bucket=self.bucket, Key=f"{PREFIX}/{key}")["Body"].read()
            return body
        return (self.folder / key).read_bytes()

    def delete(self, key: str) -> None:
        if self.folder is None:
            self.s3.delete_object(Bucket=self.bucket, Key=f"{PREFIX}/{key}")
        else:
            (self.folder / key).unlink()

    def open(self, **options: Any) -> Recommendations:
        if self.folder is None:
            return Recommendations.open(f"s3://{self.bucket}/{PREFIX}", s3=self.s3, **options)
        return Recommendations.open(self.folder, **options)

    def lists(self, manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {r["user"]: r for shard in manifest["shards"] for r in decode_shard(self.get(shard["key"]))}


@pytest.fixture(params=["s3-http", "folder"])
def store(request: pytest.FixtureRequest, s3: Any, tmp_path: Path) -> Store:
    bucket = f"b-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    return Store(s3, bucket, tmp_path / "out" if request.param == "folder" else None)


def test_known_user_unknown_user_and_exclude(store: Store) -> None:
    manifest = store.publish("run-a", seed=1)
    lists = store.lists(manifest)
    recs = store.open()
    user = sorted(lists)[len(lists) // 2]

    answer = recs.for_user(user)
    assert answer.personal and answer.source == "personal" and answer.run_id == "run-a"
    assert answer.items == lists[user]["items"] and answer.scores == lists[user]["scores"]

    stranger = recs.for_user("not-a-user", n=3)
    assert not stranger.personal and stranger.items == manifest["fallback"]["items"][:3]

    banned = set(lists[user]["items"][:2])
    trimmed = recs.for_user(user, n=4, exclude=banned)
    assert trimmed.items == [i for i in lists[user]["items"] if i not in banned][:4]


def test_a_corrupt_shard_fails_its_lookups_and_is_never_cached(store: Store) -> None:
    manifest = store.publish("run-a", seed=1)
    lists = store.lists(manifest)
    shard = manifest["shards"][1]
    victim = next(u for u in lists if recs_shard(manifest, u) == shard["index"])
    other = next(u for u in lists if recs_shard(manifest, u) != shard["index"])
    original = store.get(shard["key"])
    tampered = gzip.compress(gzip.decompress(original).replace(b'"scores":[', b'"scores":[9.9,', 1), mtime=0)
    store.put(shard["key"], tampered)

    recs = store.open()
    with pytest.raises(RecommendationsError, match="checksum"):
        recs.for_user(victim)
    assert recs.for_user(other).items == lists[other]["items"]  # other shards still serve
    store.put(shard["key"], original)
    assert recs.for_user(victim).items == lists[victim]["items"]  # the bad bytes were not cached


def recs_shard(manifest: dict[str, Any], user: str) -> int:
    key = user.encode()
    return int(
        next(
            s["index"]
            for s in manifest["shards"]
            if s["first_user"].encode() <= key <= s["last_user"].encode()
        )
    )


def test_a_missing_shard_object_is_a_clear_error(store: Store) -> None:
    manifest = store.publish("run-a", seed=1)
    shard = manifest["shards"][0]
    store.delete(shard["key"])
    with pytest.raises(RecommendationsError, match="does not exist"):
        store.open().for_user(shard["first_user"])


def test_latest_pointing_to_a_missing_manifest(store: Store) -> None:
    store.publish("run-a", seed=1)
    good_latest = store.get("latest.json")
    store.put("latest.json", good_latest.replace(b"runs/run-a/manifest.json", b"runs/run-x/manifest.json"))
    with pytest.raises(RecommendationsError, match=r"run-x/manifest\.json does not exist"):
        store.open()

    store.put("latest.json", good_latest)
    recs = store.open(refresh_seconds=0)
    store.put("latest.json", good_latest.replace(b"runs/run-a/manifest.json", b"runs/run-x/manifest.json"))
    assert recs.refresh() is False  # the previous run keeps serving
    assert recs.run_id == "run-a" and "run-x" in (recs.last_refresh_error or "")
    assert recs.for_user("not-a-user").run_id == "run-a"


class CountingReader:
    def __init__(self, inner: Any) -> None:
        self.inner, self.calls = inner, []  # type: ignore[var-annotated]

    def read(self, key: str, etag: str | None = None) -> tuple[bytes | None, str]:
        data, tag = self.inner.read(key, etag)
        self.calls.append((key, etag is not None, data is None))
        return data, tag

    def describe(self, key: str) -> str:
        return str(self.inner.describe(key))


def test_an_unchanged_latest_costs_one_conditional_request(store: Store) -> None:
    store.publish("run-a", seed=1)
    inner = S3Reader(store.s3, store.bucket, PREFIX) if store.folder is None else FolderReader(store.folder)
    reader = CountingReader(inner)
    recs = Recommendations(reader, refresh_seconds=0)
    reader.calls.clear()
    assert recs.refresh() is False
    assert reader.calls == [(latest_key(""), True, True)]  # conditional, answered "not modified"

    store.publish("run-b", seed=2)
    assert recs.refresh() is True and recs.run_id == "run-b"


def test_a_run_published_while_reading_never_mixes_answers(store: Store) -> None:
    first = store.lists(store.publish("run-a", seed=1))
    recs = store.open(refresh_seconds=0, cached_shards=2)
    users = sorted(first)
    answers: list[Any] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def read() -> None:
        try:
            while not stop.is_set():
                for user in users[::7]:
                    answers.append(recs.for_user(user))
        except BaseException as error:
            errors.append(error)
            raise

    threads = [threading.Thread(target=read) for _ in range(4)]
    for thread in threads:
        thread.start()
    second = store.lists(store.publish("run-b", seed=2, algorithm="BaselineOnly"))
    deadline = threading.Event()
    while not deadline.wait(0.05):
        if any(a.run_id == "run-b" for a in answers[-50:]):
            break
    stop.set()
    for thread in threads:
        thread.join()

    assert not errors
    by_run = {"run-a": first, "run-b": second}
    assert {a.run_id for a in answers} == {"run-a", "run-b"}
    for answer in answers:
        assert answer.items == by_run[answer.run_id][answer.user]["items"]
    assert len(recs._cache) <= 2


def test_many_threads_share_a_bounded_cache(store: Store) -> None:
    lists = store.lists(store.publish("run-a", seed=1))
    recs = store.open(cached_shards=2)
    users = sorted(lists)
    wrong: list[str] = []

    def read(offset: int) -> None:
        for user in users[offset::3]:
            if recs.for_user(user).items != lists[user]["items"]:
                wrong.append(user)

    threads = [threading.Thread(target=read, args=(k % 3,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []
    assert len(recs._cache) <= 2


def test_for_ratings_folds_in_and_says_when_it_fell_back(store: Store) -> None:
    manifest = store.publish("run-a", seed=1)
    recs = store.open()
    rated = {"item-00001": 5.0, "item-00002": 1.0}
    answer = recs.for_ratings(rated, n=5, exclude={"item-00003"})
    assert answer.personal and answer.run_id == "run-a" and len(answer.items) == 5
    assert not {"item-00001", "item-00002", "item-00003"} & set(answer.items)
    unknown = recs.for_ratings({"no-such-item": 4.0}, n=5)
    assert not unknown.personal and unknown.items == manifest["fallback"]["items"][:5]


def test_n_none_is_as_many_as_the_run_publishes_for_both_answers(store: Store) -> None:
    manifest = store.publish("run-a", seed=1, top_n=7)
    recs = store.open()
    user = manifest["shards"][0]["first_user"]
    assert len(recs.for_user(user, n=None).items) == 7
    assert len(recs.for_ratings({"item-00001": 5.0}, n=None).items) == 7
    assert recs.for_ratings({"item-00001": 5.0}, n=3).items == recs.for_ratings({"item-00001": 5.0}).items[:3]


class RecordingS3:
    """An S3 client that records the keys it is asked for, so a test sees what was never read."""

    def __init__(self, s3: Any) -> None:
        self._s3 = s3
        self.keys: list[str] = []

    def get_object(self, **request: Any) -> Any:
        self.keys.append(request["Key"])
        return self._s3.get_object(**request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s3, name)


HOSTILE_KEYS = [
    "../secret/{name}",
    "/secret/{name}",
    "runs/../../secret/{name}",
    "runs//run-a/{name}",
    "runs/./run-a/{name}",
    "runs\\..\\..\\secret\\{name}",
]


def test_hostile_keys_in_latest_and_the_manifest_are_refused_on_s3(s3: Any) -> None:
    """S3 keys are not paths, but an HTTP path with `..` segments may be normalised on its way:
    a key the product never writes is refused before any request is made for it."""
    bucket = f"b-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    store = Store(s3, bucket, None)
    manifest = store.publish("run-a", seed=1)
    latest = json.loads(store.get("latest.json"))
    for name in ("manifest.json", "shard.jsonl.gz", "model.npz", "metadata.json"):  # outside the prefix
        s3.put_object(Bucket=bucket, Key=f"secret/{name}", Body=b"{}")

    def open_with(latest_doc: dict[str, Any], manifest_doc: dict[str, Any]) -> tuple[RecordingS3, Any]:
        store.put("runs/run-a/manifest.json", json.dumps(manifest_doc).encode())
        store.put("latest.json", json.dumps(latest_doc).encode())
        recording = RecordingS3(s3)
        return recording, lambda: Recommendations.open(f"s3://{bucket}/{PREFIX}", s3=as_s3(recording))

    for pattern in HOSTILE_KEYS:
        key = pattern.format(name="manifest.json")
        recording, opener = open_with({**latest, "manifest": key}, manifest)
        with pytest.raises(RecommendationsError, match="manifest"):
            opener()
        assert recording.keys == [f"{PREFIX}/latest.json"], key

        shards = [dict(s) for s in manifest["shards"]]
        shards[0]["key"] = pattern.format(name="shard.jsonl.gz")
        recording, opener = open_with(latest, {**manifest, "shards": shards})
        with pytest.raises(RecommendationsError, match="shards"):
            opener().for_user(shards[0]["first_user"])
        assert not any("secret" in k or "\\" in k or "//" in k or "/./" in k for k in recording.keys)

        for field, name in (("key", "model.npz"), ("metadata_key", "metadata.json")):
            model = {**manifest["model"], field: pattern.format(name=name)}
            recording, opener = open_with(latest, {**manifest, "model": model})
            with pytest.raises(RecommendationsError, match="model"):
                opener().for_ratings({"item-00001": 5.0}, n=3)
            assert not any("secret" in k or "\\" in k or "//" in k or "/./" in k for k in recording.keys)
