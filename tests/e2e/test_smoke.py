"""`recommender smoke`, the first-deploy check, against moto's CloudFormation and Step Functions APIs:
a stack whose outputs name the local engine's state machine and bucket, as a deployed stack's do."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import boto3
import psycopg2
import pytest

from recommender.config import SourceTable
from recommender.errors import ConfigError
from recommender.local import REGION, LocalEngine
from recommender.sample_data import SyntheticSpec, load_ratings, synthetic_ratings
from recommender.smoke import read_stack, smoke
from tests.conftest import Databases

pytestmark = pytest.mark.e2e

PREFIX = "recommender"


@pytest.fixture(scope="module")
def ratings_db(databases: Databases) -> str:
    url = databases.create()
    with closing(psycopg2.connect(url)) as conn:
        rows = synthetic_ratings(SyntheticSpec(users=60, items=30, ratings_per_user=8, seed=6))
        load_ratings(conn, rows, SourceTable())
    return url


@pytest.fixture(scope="module")
def deployed(ratings_db: str) -> Iterator[tuple[LocalEngine, Any]]:
    """The engine's machine and bucket, behind a CloudFormation stack with the template's outputs."""
    with LocalEngine(ratings_db, prefix=PREFIX, sandbox=False) as engine:
        cloudformation = boto3.client("cloudformation", region_name=REGION)
        body = {
            "Resources": {"Placeholder": {"Type": "AWS::SQS::Queue"}},
            "Outputs": {
                "StateMachineArn": {"Value": engine.state_machine_arn},
                "BucketName": {"Value": engine.bucket},
                "LatestUri": {"Value": f"s3://{engine.bucket}/{PREFIX}/latest.json"},
            },
        }
        cloudformation.create_stack(StackName="recommender", TemplateBody=json.dumps(body))
        yield engine, cloudformation


def check(engine: LocalEngine, cloudformation: Any, run_input: dict[str, Any] | None) -> tuple[int, str]:
    out = io.StringIO()
    code = smoke(cloudformation, engine.sfn, engine.s3, "recommender", run_input, out=out, poll_seconds=0.1)
    return code, out.getvalue()


def test_a_deployed_stack_publishes_and_the_client_reads_it(deployed: tuple[LocalEngine, Any]) -> None:
    engine, cloudformation = deployed
    code, printed = check(engine, cloudformation, None)
    assert code == 0, printed
    assert "Extract the ratings from PostgreSQL ..." in printed
    assert "Merge the shards and publish the run ..." in printed
    latest = json.loads(
        engine.s3.get_object(Bucket=engine.bucket, Key=f"{PREFIX}/latest.json")["Body"].read()
    )
    assert f"OK: s3://{engine.bucket}/{PREFIX}/latest.json -> {latest['run_id']}" in printed
    assert "a new user (fallback): " in printed


def test_a_failed_run_prints_the_failed_state_and_its_failure_record(
    deployed: tuple[LocalEngine, Any],
) -> None:
    engine, cloudformation = deployed
    code, printed = check(engine, cloudformation, {"source": {"table": "no_such_table"}})
    assert code == 1
    assert "failed state: Extract the ratings from PostgreSQL" in printed
    assert "error: ConfigError" in printed
    assert "no_such_table" in printed
    assert '"error": "ConfigError"' in printed  # failure.json, read back from the bucket
    assert "latest.json was not moved" in printed


def test_a_stack_that_is_not_this_application_is_named(deployed: tuple[LocalEngine, Any]) -> None:
    _engine, cloudformation = deployed
    with pytest.raises(ConfigError, match="stack 'missing'"):
        read_stack(cloudformation, "missing")
    other = {"Resources": {"Queue": {"Type": "AWS::SQS::Queue"}}, "Outputs": {"BucketName": {"Value": "b"}}}
    cloudformation.create_stack(StackName="other", TemplateBody=json.dumps(other))
    with pytest.raises(ConfigError, match=r"no output\(s\) LatestUri, StateMachineArn"):
        read_stack(cloudformation, "other")
