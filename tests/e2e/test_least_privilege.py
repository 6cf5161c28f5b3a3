"""Least privilege, against what real runs do: every request a step makes is held to its role's
statements in the template."""

from __future__ import annotations

from contextlib import closing

import psycopg2.extensions
import pytest

from recommender.config import SourceTable
from recommender.local import LocalEngine
from recommender.sample_data import SyntheticSpec, load_ratings, synthetic_ratings
from tests.conftest import Databases
from tests.unit.test_template import BUCKET, PREFIX


@pytest.mark.e2e
def test_real_runs_need_nothing_their_roles_do_not_grant(databases: Databases) -> None:
    """Run the real definition in the sandbox (an interrupted run, its resumption, a refused rerun
    of it once published, a failing run): every S3 and
    Secrets Manager request a step makes goes through the local IAM check, which holds it to that
    function's statements in the template and answers a missing object 403 as S3 answers these
    roles. A step that starts touching a new key or calling a new API fails here, not on AWS."""
    url = databases.create()
    with closing(psycopg2.connect(url)) as conn:
        rows = synthetic_ratings(SyntheticSpec(users=90, items=40, ratings_per_user=12, seed=5))
        load_ratings(conn, rows, SourceTable())
    run_input = {"users_per_shard": 30, "max_concurrency": 2}
    with LocalEngine(url, bucket=BUCKET, prefix=PREFIX) as engine:
        engine.inject(
            "recommender-predict", "RuntimeError", times=100, when=lambda e: e["shard"]["index"] == 1
        )
        interrupted = engine.run(run_input)
        assert interrupted.status == "FAILED", (interrupted.cause, engine.denials)
        engine.clear_faults()
        resumed = engine.run({**run_input, "run_id": interrupted.name})
        assert resumed.status == "SUCCEEDED", (resumed.cause, engine.denials)
        again = engine.run({**run_input, "run_id": interrupted.name})  # published: refused
        assert again.status == "FAILED" and again.error == "PublishedRunError"
        failed = engine.run({"source": {"table": "no_such_table"}})
        assert failed.status == "FAILED" and failed.error == "ConfigError"
        assert engine.denials == []
        requests = engine.granted
    assert {who for who, _request in requests} == set(engine.functions)
    assert any(r.action == "secretsmanager:GetSecretValue" for who, r in requests if who.endswith("extract"))
    assert all(r.action.startswith("s3:") for who, r in requests if not who.endswith("extract"))
