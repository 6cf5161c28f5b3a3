"""An unreachable database, run in the Lambda sandbox: retried, then a failed run that never shows
the database password (in the error, failure.json, the history or what the steps print). The same
through `recommender run`, and a malformed URL reaching Extract."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from recommender.cli import main
from recommender.local import LocalEngine
from tests.database_urls import MALFORMED, UNREACHABLE, leaks, leaks_in_files

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


def test_run_on_an_unreachable_database_shows_no_password_anywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """`recommender run` as a user runs it, the password holding @, : and / (percent-encoded, as
    a URL needs it): the progress lines, the failure, what the steps print and every file
    written, failure.json included, never hold it in any form."""
    monkeypatch.chdir(tmp_path)
    code = main(["run", "--database-url", UNREACHABLE["encoded @ : / password, unreachable"], "--out", "out"])
    printed = capfd.readouterr()
    assert code == 1, printed.err
    assert "DatabaseUnavailableError" in printed.err and "127.0.0.1" in printed.err
    assert list((tmp_path / "out").rglob("failure.json"))  # the failure was exported
    assert leaks(printed.out, printed.err) == []
    assert leaks_in_files(tmp_path) == {}


def test_a_malformed_url_fails_extract_at_once_without_the_password(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """The engine given a URL the CLI would refuse (what a malformed secret does on AWS): Extract
    refuses it as a ConfigError, not retried, and nothing records the password."""
    with LocalEngine(MALFORMED["password with @ : /"], prefix=PREFIX, sandbox=False) as engine:
        result = engine.run(RUN_INPUT, name="fault-malformed-url")
        assert result.status == "FAILED" and result.error == "ConfigError"
        assert failed_attempts(engine, result.execution_arn) == 1
        failure = get(engine, "runs/fault-malformed-url/failure.json").decode()
        events = engine.sfn.get_execution_history(executionArn=result.execution_arn)["events"]
    printed = capfd.readouterr()
    assert "database URL" in (result.cause or "")
    assert leaks(result.cause or "", failure, json.dumps(events, default=str), printed.out, printed.err) == []
