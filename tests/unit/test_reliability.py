"""Reliability of the steps on S3 (moto in-process): publishing never moves backwards, damaged
shards are refused, S3 throttling is retried, a predictor near its time limit stops cleanly,
tiny datasets work, and database errors never carry the password."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders
from moto import mock_aws

from recommender.aws import _RETRIES
from recommender.config import RunConfig, Settings
from recommender.contracts import ExtractSummary, RunState, TrainSummary
from recommender.database import connect, redact
from recommender.errors import ConfigError, DatabaseUnavailableError, IncompleteRunError, ShardTimeoutError
from recommender.manifest import build_latest
from recommender.sharding import decode_shard
from recommender.steps import merge, predict, train
from recommender.steps.merge import publish_latest
from recommender.storage import RunPaths, get_json, latest_key, put_json, sha256_hex
from tests.doubles import as_s3
from tests.publishing import publish, write_snapshot

BUCKET = "reliability"
SETTINGS = Settings(bucket=BUCKET, prefix="p")


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1", config=_RETRIES)
        client.create_bucket(Bucket=BUCKET)
        yield client


def rows(users: int = 30, items: int = 12) -> list[tuple[str, str, float]]:
    return [
        (f"u{u}", f"i{i}", float(1 + (u * 7 + i * 3) % 5))
        for u in range(users)
        for i in range(items)
        if (u + i) % 3
    ]


def latest(run_id: str, extracted_at: str) -> dict[str, Any]:
    return build_latest(run_id, f"runs/{run_id}/manifest.json", extracted_at, extracted_at)


def test_latest_never_moves_to_older_data(s3: Any) -> None:
    assert publish_latest(s3, SETTINGS, latest("new", "2026-11-28T10:00:00.000Z")) == (True, "new")
    assert publish_latest(s3, SETTINGS, latest("old", "2026-11-28T09:00:00.000Z")) == (False, "new")
    assert get_json(s3, BUCKET, latest_key("p"))["run_id"] == "new"
    assert publish_latest(s3, SETTINGS, latest("newer", "2026-11-28T11:00:00.000Z")) == (True, "newer")


class RacingS3:
    """Another run publishes between this run's read of latest.json and its conditional write."""

    def __init__(self, s3: Any, rival: dict[str, Any]) -> None:
        self.s3, self.rival, self.exceptions = s3, rival, s3.exceptions
        self.puts: list[str | None] = []

    def get_object(self, **kwargs: Any) -> Any:
        response = self.s3.get_object(**kwargs)
        if self.rival:
            put_json(self.s3, BUCKET, latest_key("p"), self.rival)
            self.rival = {}
        return response

    def list_objects_v2(self, **kwargs: Any) -> Any:
        return self.s3.list_objects_v2(**kwargs)

    def put_object(self, **kwargs: Any) -> Any:
        self.puts.append(kwargs.get("IfMatch") or kwargs.get("IfNoneMatch"))
        return self.s3.put_object(**kwargs)


def test_a_concurrent_writer_is_never_overwritten_blindly(s3: Any) -> None:
    publish_latest(s3, SETTINGS, latest("first", "2026-11-28T08:00:00.000Z"))
    racing = RacingS3(s3, latest("rival", "2026-11-28T10:00:00.000Z"))
    moved, newest = publish_latest(as_s3(racing), SETTINGS, latest("mine", "2026-11-28T09:00:00.000Z"))
    # The conditional write failed (the rival changed the ETag); reading again, the rival is newer.
    assert (moved, newest) == (False, "rival")
    assert len(racing.puts) == 1
    assert get_json(s3, BUCKET, latest_key("p"))["run_id"] == "rival"


def damaged_key(paths: RunPaths, objects: str) -> tuple[str, int]:
    """(key, shard index) of the object a test damages: a users' shard object, or the similar
    items of the one item shard (12 items make one, on shard 0)."""
    return (paths.shard_object(1), 1) if objects == "users" else (paths.similar_object(0), 0)


@pytest.mark.parametrize("objects", ["users", "similar items"])
@pytest.mark.parametrize("damage", ["missing", "truncated", "fewer users"])
def test_merge_refuses_a_damaged_shard(s3: Any, damage: str, objects: str) -> None:
    publish(s3, SETTINGS, "good", rows(), {"users_per_shard": 10})
    before = get_json(s3, BUCKET, latest_key("p"))
    settings = SETTINGS
    config = {"top_n": 10, "algorithm": "SVD", "params": {}}
    extract = ExtractSummary(
        dataset_key=RunPaths("p", "bad").dataset,
        rows=1,
        bytes=1,
        sha256="0" * 64,
        seconds=0.0,
        extracted_at="2099-01-01T00:00:00.000Z",
        source_rows=1,
        dropped={},
        invalid_rows=0,
        duplicates_merged=0,
        reused=False,
    )
    publish(s3, settings, "bad", rows(), {"users_per_shard": 10})  # a complete run, then damaged
    s3.put_object(Bucket=BUCKET, Key=latest_key("p"), Body=json.dumps(before).encode())
    s3.delete_object(Bucket=BUCKET, Key=RunPaths("p", "bad").manifest)  # as before its Merge ran
    key, index = damaged_key(RunPaths("p", "bad"), objects)
    data = s3.get_object(Bucket=BUCKET, Key=key)
    body, metadata = data["Body"].read(), data["Metadata"]
    if damage == "missing":
        s3.delete_object(Bucket=BUCKET, Key=key)
    elif damage == "truncated":
        s3.put_object(Bucket=BUCKET, Key=key, Body=body[: len(body) // 2], Metadata=metadata)
    else:  # consistent checksum, but a user short of the plan
        lines = gzip.decompress(body).split(b"\n")
        short = gzip.compress(b"\n".join(lines[1:]))
        s3.put_object(
            Bucket=BUCKET,
            Key=key,
            Body=short,
            Metadata={**metadata, "sha256": __import__("hashlib").sha256(short).hexdigest()},
        )
    trained = TrainSummary(
        ratings=1, seconds=0.0, model_key="", shard_plan_key="", shards=3, users=30, items=12, reused=False
    )
    with pytest.raises(IncompleteRunError, match=f"shard {index}"):
        merge.run(s3, SETTINGS, "bad", config, extract, trained)
    assert get_json(s3, BUCKET, latest_key("p")) == before


@pytest.mark.parametrize("objects", ["users", "similar items"])
@pytest.mark.parametrize("damage", [None, "truncated", "fewer users"])
def test_a_rerun_predictor_reuses_only_a_complete_shard_object(
    s3: Any, damage: str | None, objects: str
) -> None:
    """A redriven or resumed predictor keeps a shard object that passes Merge's check, and writes
    a damaged one again (the same bytes: the lists are deterministic)."""
    publish(s3, SETTINGS, "redo", rows(), {"users_per_shard": 10})
    paths = RunPaths("p", "redo")
    key, index = damaged_key(paths, objects)
    written = s3.get_object(Bucket=BUCKET, Key=key)
    body, metadata = written["Body"].read(), written["Metadata"]
    if damage == "truncated":
        s3.put_object(Bucket=BUCKET, Key=key, Body=body[: len(body) // 2], Metadata=metadata)
    elif damage == "fewer users":  # a consistent checksum, but a user short of the plan
        short = gzip.compress(b"\n".join(gzip.decompress(body).split(b"\n")[1:]))
        s3.put_object(Bucket=BUCKET, Key=key, Body=short, Metadata={**metadata, "sha256": sha256_hex(short)})
    shard = get_json(s3, BUCKET, paths.shard_plan)[index]
    result = predict.run(s3, SETTINGS, "redo", shard, 10)
    assert result["reused"] is (damage is None or objects != "users")
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == body


@pytest.mark.slow  # botocore's backoff between attempts really sleeps
def test_s3_throttling_is_retried(s3: Any) -> None:
    """The steps' S3 client retries 5xx and throttling (botocore standard mode, 5 attempts)."""
    attempts = []

    def slow_down(request: Any, **kwargs: Any) -> AWSResponse | None:
        attempts.append(request.url)
        if len(attempts) <= 2:
            return AWSResponse(request.url, 503, HTTPHeaders(), _Raw(b"<Error><Code>SlowDown</Code></Error>"))
        return None

    s3.meta.events.register_first("before-send.s3.PutObject", slow_down)
    put_json(s3, BUCKET, "throttled.json", {"ok": True})
    assert len(attempts) == 3  # two 503 SlowDown answers, then the write went through
    assert get_json(s3, BUCKET, "throttled.json") == {"ok": True}


class _Raw:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **kwargs: Any) -> Iterator[bytes]:
        yield self.data

    def read(self, *args: Any) -> bytes:
        return self.data


def test_a_predictor_near_its_time_limit_stops_before_writing(s3: Any) -> None:
    publish(s3, SETTINGS, "timed", rows(), {"users_per_shard": 10})
    plan = get_json(s3, BUCKET, RunPaths("p", "timed").shard_plan)
    key = RunPaths("p", "timed").shard_object(0)
    s3.delete_object(Bucket=BUCKET, Key=key)
    with pytest.raises(ShardTimeoutError, match="less than 20 s left"):
        predict.run(s3, SETTINGS, "timed", plan[0], 5, remaining_ms=lambda: 5_000)
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix=key).get("KeyCount", 0) == 0
    assert (
        predict.run(s3, SETTINGS, "timed", plan[0], 5, remaining_ms=lambda: 600_000)["users"]
        == plan[0]["users"]
    )


@pytest.mark.parametrize(
    ("table", "lists"),
    [
        (
            [("only-user", f"i{i}", float(1 + i % 5)) for i in range(6)] + [("only-user", "i0", 2.0)],
            {"only-user": []},
        ),
        ([(f"u{u}", "only-item", float(1 + u % 5)) for u in range(5)], {f"u{u}": [] for u in range(5)}),
    ],
    ids=["one user", "one item"],
)
def test_one_user_or_one_item_gives_empty_lists_not_errors(
    s3: Any, table: list[tuple[str, str, float]], lists: dict[str, list[str]]
) -> None:
    manifest = publish(s3, SETTINGS, "tiny", table)
    got = {
        r["user"]: r["items"]
        for s in manifest["shards"]
        for r in decode_shard(s3.get_object(Bucket=BUCKET, Key=f"p/{s['key']}")["Body"].read())
    }
    assert got == lists
    assert manifest["fallback"]["items"]  # a new user still gets the catalogue's best


def test_database_errors_never_carry_the_password() -> None:
    secret = "pa:ss@w0rd/x"
    quoted = "pa%3Ass%40w0rd%2Fx"
    with pytest.raises(DatabaseUnavailableError) as unreachable:
        connect(f"postgresql://app:{quoted}@127.0.0.1:1/db")
    with pytest.raises((ConfigError, DatabaseUnavailableError)) as malformed:
        connect(f"postgresql://app:{quoted}@127.0.0.1:notaport/db")
    with pytest.raises((ConfigError, DatabaseUnavailableError)) as keyword:
        connect(f"host=127.0.0.1 port=1 user=app password={secret} dbname=db connect_timeout=1")
    for error in (unreachable.value, malformed.value, keyword.value):
        assert secret not in str(error) and quoted not in str(error)
        assert error.__cause__ is None and error.__suppress_context__
    assert (
        redact(f"bad dsn postgresql://app:{quoted}@h/db", f"postgresql://app:{quoted}@h/db")
        == "bad dsn postgresql://app:***@h/db"
    )


def test_a_model_holding_pickled_objects_is_refused(s3: Any) -> None:
    import io

    import numpy as np

    from recommender.model import ModelArrays

    publish(s3, SETTINGS, "pickled", rows())
    original = s3.get_object(Bucket=BUCKET, Key=RunPaths("p", "pickled").model)["Body"].read()
    with np.load(io.BytesIO(original)) as npz:
        arrays = {name: npz[name] for name in npz.files}
    arrays["kernel_pu"] = np.array([{"would run": "on unpickling"}], dtype=object)
    tampered = io.BytesIO()
    np.savez(tampered, **arrays)
    with pytest.raises(ValueError, match="allow_pickle"):
        ModelArrays.from_bytes(tampered.getvalue())


# --- where a failure is recorded -------------------------------------------------------------------

EVENTS = Path(__file__).resolve().parents[2] / "events"


def test_a_resumed_run_failing_in_extract_records_its_failure_under_the_resumed_run(s3: Any) -> None:
    """The sample event is a resumed run (input run_id "run-1") whose Extract failed: the failure
    belongs next to run-1's objects, not under the new execution's name."""
    event = json.loads((EVENTS / "record_failure.json").read_text())
    result = merge.record_failure(s3, SETTINGS, event["execution_name"], event["state"])
    assert result["run_id"] == "run-1"
    failure = get_json(s3, BUCKET, RunPaths("p", "run-1").failure)
    assert failure["error"] == "DatabaseUnavailableError"
    assert failure["execution_name"] == "resume-run-2"
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="p/runs/resume-run-2/")
    assert listed["KeyCount"] == 0


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ({"run_id": "run-1", "config": {}, "error": {}}, "run-1"),  # failed after Extract
        ({"input": {"run_id": "run-1"}, "error": {}}, "run-1"),  # a resumed run failed in Extract
        ({"input": {"algorithm": "SVD"}, "error": {}}, "exec-9"),  # a new run failed in Extract
        ({"input": {"run_id": "../../latest"}, "error": {}}, "exec-9"),  # the run_id itself was bad
        ({"input": {"run_id": 5}, "error": {}}, "exec-9"),
        ({"input": "not an object", "error": {}}, "exec-9"),
        ({}, "exec-9"),
    ],
)
def test_the_failed_run_is_resolved_as_extract_resolves_it(state: RunState, expected: str) -> None:
    assert merge.failed_run_id(state, "exec-9") == expected


def test_train_refuses_a_plan_with_too_many_shards_before_fitting(s3: Any) -> None:
    write_snapshot(s3, SETTINGS, "many", rows(users=30))
    config = RunConfig.from_input({"users_per_shard": 1}).to_dict()
    with (
        mock.patch("recommender.sharding.MAX_SHARDS", 29),
        mock.patch("recommender.steps.train.fit", side_effect=AssertionError("fitted")),
        pytest.raises(ConfigError, match="users_per_shard: 30 users at 1 per shard make 30 shards"),
    ):
        train.run(s3, SETTINGS, "many", config)
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="p/runs/many/")
    assert [o["Key"] for o in listed["Contents"]] == [RunPaths("p", "many").dataset]
