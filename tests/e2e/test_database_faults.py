"""An unreachable database, run in the Lambda sandbox: retried, then a failed run that never shows
the database password (in the error, failure.json, the history or what the steps print)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from recommender.local import LocalEngine

pytestmark = pytest.mark.e2e

PREFIX = "recommender"
PASSWORD = "S3cr3t-Pa55w0rd"
RUN_INPUT = {"users_per_shard": 40, "max_concurrency": 2, "top_n": 5}


def failed_attempts(engine: LocalEngine, execution_arn: str) -> int:
    events = engine.sfn.get_execution_history(executionArn=execution_arn)["events"]
    return sum(1 for e in events if e["type"] in ("TaskFailed", "LambdaFunctionFailed"))


def get(engine: LocalEngine, key: str) -> Any:
    return engine.s3.get_object(Bucket=engine.bucket, Key=f"{PREFIX}/{key}")["Body"].read()


def keys(engine: LocalEngine, run_id: str) -> set[str]:
    listed = engine.s3.list_objects_v2(Bucket=engine.bucket, Prefix=f"{PREFIX}/runs/{run_id}/")
    return {o["Key"].removeprefix(f"{PREFIX}/runs/{run_id}/") for o in listed.get("Contents", [])}


def test_an_unreachable_database_is_retried_then_fails_without_the_password(
    capfd: pytest.CaptureFixture[str],
) -> None:
    url = f"postgresql://app:{PASSWORD}@127.0.0.1:1/ratings"
    with LocalEngine(url, prefix=PREFIX) as engine:
        result = engine.run(RUN_INPUT, name="fault-no-database")
        assert result.status == "FAILED"
        assert result.error == "DatabaseUnavailableError"
        assert failed_attempts(engine, result.execution_arn) == 3  # MaxAttempts 2: two retries, then failed
        failure = get(engine, "runs/fault-no-database/failure.json").decode()
        assert keys(engine, "fault-no-database") == {"failure.json"}  # no partial dataset
        events = engine.sfn.get_execution_history(executionArn=result.execution_arn)["events"]
    printed = capfd.readouterr()  # the sandboxed steps write to this process's file descriptors
    for text in (result.cause or "", failure, json.dumps(events, default=str), printed.out, printed.err):
        assert PASSWORD not in text
    assert "127.0.0.1" in (result.cause or "")  # the error still says where it could not connect
