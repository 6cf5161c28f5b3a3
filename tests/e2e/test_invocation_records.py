"""The local engine's invocation records over real runs of the ASL: every step measured, in one
process and in the sandbox (each invocation its own process), and a sandboxed failure reaching the
state machine as Lambda's does."""

from __future__ import annotations

import json
from contextlib import closing

import numpy as np
import psycopg2
import pytest

from recommender.config import SourceTable
from recommender.local import LocalEngine
from recommender.sample_data import SyntheticSpec, load_ratings, synthetic_ratings
from tests.unit.test_local_memory import ALLOCATE, ALLOCATED, MB, needs_proc


@pytest.mark.e2e
@needs_proc
def test_every_step_of_a_real_run_is_measured(database_url: str) -> None:
    with closing(psycopg2.connect(database_url)) as conn:
        spec = SyntheticSpec(users=120, items=60, ratings_per_user=10, seed=1)
        load_ratings(conn, synthetic_ratings(spec), SourceTable())
    with LocalEngine(database_url, measure_memory=True, sandbox=False) as engine:
        result = engine.run({"users_per_shard": 30, "max_concurrency": 2})
    assert result.status == "SUCCEEDED", result.cause
    names = [record.function for record in engine.invocations]
    assert names[0] == "recommender-extract" and names[1] == "recommender-train"
    assert names[-1] == "recommender-merge"
    assert names.count("recommender-predict") == 4
    for record in engine.invocations:
        assert record.error is None
        assert record.peak_bytes is not None and record.rss_start_bytes is not None
        assert record.peak_bytes >= record.rss_start_bytes > 0
        assert 1 <= record.concurrent <= 2


def published_lists(engine: LocalEngine) -> dict[str, list[str]]:
    """Every user's published items, read back from the run's shards."""
    from recommender.sharding import decode_shard

    latest = json.loads(
        engine.s3.get_object(Bucket=engine.bucket, Key=f"{engine.prefix}/latest.json")["Body"].read()
    )
    manifest_key = f"{engine.prefix}/{latest['manifest']}"
    manifest = json.loads(engine.s3.get_object(Bucket=engine.bucket, Key=manifest_key)["Body"].read())
    lists: dict[str, list[str]] = {}
    for shard in manifest["shards"]:
        data = engine.s3.get_object(Bucket=engine.bucket, Key=f"{engine.prefix}/{shard['key']}")[
            "Body"
        ].read()
        lists.update({record["user"]: record["items"] for record in decode_shard(data)})
    return lists


@pytest.mark.e2e
def test_sandboxed_invocations_publish_the_same_run_and_measure_each_process(database_url: str) -> None:
    """Each invocation in its own sandboxed process (S3 over moto's server): the run publishes
    exactly what an in-process run publishes, and every record carries that process's own memory."""
    with closing(psycopg2.connect(database_url)) as conn:
        spec = SyntheticSpec(users=120, items=60, ratings_per_user=10, seed=1)
        load_ratings(conn, synthetic_ratings(spec), SourceTable())
    run_input = {"users_per_shard": 30, "max_concurrency": 2}
    with LocalEngine(database_url, sandbox=False) as engine:
        assert engine.run(run_input).status == "SUCCEEDED"
        in_process = published_lists(engine)
    held = np.ones(ALLOCATE // 8)  # this process grows; the invocations' own figures must not
    with LocalEngine(database_url) as engine:
        result = engine.run(run_input)
        assert result.status == "SUCCEEDED", result.cause
        assert published_lists(engine) == in_process
        assert engine.memory_measured
        names = [record.function for record in engine.invocations]
        assert names.count("recommender-predict") == 4 and names[-1] == "recommender-merge"
        for record in engine.invocations:
            assert record.error is None
            assert record.rss_start_bytes is not None and record.peak_bytes is not None
            # a fresh interpreter with numpy imported holds tens of MB; its peak is at least that
            assert record.peak_bytes >= record.rss_start_bytes > 20 * MB
            assert record.peak_bytes < ALLOCATED, "the parent's memory counted as the child's"
            assert record.cpu_seconds is not None and record.cpu_seconds > 0.1  # its imports at least
    del held


@pytest.mark.e2e
def test_a_sandboxed_failure_reaches_the_state_machine_like_lambdas(database_url: str) -> None:
    with LocalEngine(database_url) as engine:
        result = engine.run({"source": {"table": "no_such_table"}})
    assert result.status == "FAILED"
    assert result.error == "ConfigError" and "no_such_table" in (result.cause or "")
    assert engine.invocations[0].error == "ConfigError"
