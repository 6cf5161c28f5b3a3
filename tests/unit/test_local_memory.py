"""The local engine's invocation records: seconds, errors and, on request, each call's peak memory.

Handlers are swapped for small test functions and called through `lambda.invoke`, which goes
through the engine's one seam like the state machine's tasks do. The last test runs the real ASL.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
import numpy as np
import psycopg2
import pytest

from recommender.config import SourceTable
from recommender.local import Invocation, LocalEngine
from recommender.local import engine as local
from recommender.sample_data import SyntheticSpec, load_ratings, synthetic_ratings

MB = 1_000_000
ALLOCATED = 200 * MB  # what the peak must rise by at least
ALLOCATE = 210 * MB  # some of it may land on pages already resident
FUNCTION_A, FUNCTION_B = "recommender-extract", "recommender-train"

needs_proc = pytest.mark.skipif(
    not local.peak_counter_available(), reason="no /proc/self/clear_refs: peak memory is not measured"
)


def allocate(event: dict[str, Any], context: Any) -> dict[str, Any]:
    block = np.ones(ALLOCATE // 8)  # every page written, so all of it is resident
    total = float(block.sum())
    del block
    return {"sum": total}


def quiet(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"ok": True}


def invoke(name: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = boto3.client("lambda", region_name=local.REGION).invoke(
        FunctionName=name, Payload=json.dumps(payload or {}).encode()
    )
    return response


@pytest.fixture
def engine_with(request: pytest.FixtureRequest) -> Iterator[Callable[..., LocalEngine]]:
    """Starts an engine (no database) whose handlers are the given functions."""
    stack: list[Any] = []

    def start(handlers: dict[str, local.Handler], **options: Any) -> LocalEngine:
        engine = LocalEngine(None, **options).__enter__()
        stack.append(engine)
        patch = mock.patch.dict(local._handlers, handlers)
        patch.start()
        stack.append(patch)
        return engine

    yield start
    for item in reversed(stack):
        if isinstance(item, LocalEngine):
            item.__exit__(None, None, None)
        else:
            item.stop()


@needs_proc
def test_a_call_shows_its_own_peak_and_the_next_call_starts_afresh(
    engine_with: Callable[..., LocalEngine],
) -> None:
    seen: list[Invocation] = []
    handlers = {FUNCTION_A: allocate, FUNCTION_B: quiet}
    engine = engine_with(handlers, measure_memory=True, on_invoke=seen.append)
    assert engine.memory_measured
    invoke(FUNCTION_A)
    invoke(FUNCTION_B)
    first, second = engine.invocations
    assert seen == [first, second]
    assert (first.function, second.function) == (FUNCTION_A, FUNCTION_B)
    assert first.error is None and first.concurrent == 1 and first.seconds > 0
    assert first.rss_start_bytes is not None and first.peak_bytes is not None
    assert first.growth_bytes is not None and first.growth_bytes >= ALLOCATED
    # The counter was reset when the second call started: the first call's peak is not its peak.
    assert second.growth_bytes is not None and second.growth_bytes < 50 * MB
    assert second.peak_bytes is not None and second.peak_bytes < first.peak_bytes - 100 * MB
    assert second.started >= first.started + first.seconds


@needs_proc
def test_a_call_keeps_its_peak_when_an_overlapping_call_resets_the_counter(
    engine_with: Callable[..., LocalEngine],
) -> None:
    freed, b_running, b_done = threading.Event(), threading.Event(), threading.Event()

    def first(event: dict[str, Any], context: Any) -> dict[str, Any]:
        allocate(event, context)
        freed.set()
        assert b_done.wait(30)  # still running while the second call starts and ends
        return {}

    def second(event: dict[str, Any], context: Any) -> dict[str, Any]:
        b_running.set()
        return {}

    engine = engine_with({FUNCTION_A: first, FUNCTION_B: second}, measure_memory=True)
    thread = threading.Thread(target=invoke, args=(FUNCTION_A,))
    thread.start()
    assert freed.wait(30)
    invoke(FUNCTION_B)
    assert b_running.is_set()
    b_done.set()
    thread.join(30)
    by_name = {record.function: record for record in engine.invocations}
    a, b = by_name[FUNCTION_A], by_name[FUNCTION_B]
    assert a.concurrent == 2 and b.concurrent == 2
    assert a.growth_bytes is not None and a.growth_bytes >= ALLOCATED
    assert b.growth_bytes is not None and b.growth_bytes < 50 * MB


def test_errors_are_recorded_and_reported_like_lambda(engine_with: Callable[..., LocalEngine]) -> None:
    def failing(event: dict[str, Any], context: Any) -> dict[str, Any]:
        raise ValueError("boom")

    engine = engine_with({FUNCTION_A: failing})
    response = invoke(FUNCTION_A)
    assert response["FunctionError"] == "Unhandled"
    assert json.loads(response["Payload"].read())["errorType"] == "ValueError"
    (record,) = engine.invocations
    assert record.error == "ValueError" and record.function == FUNCTION_A


def test_memory_is_off_by_default(engine_with: Callable[..., LocalEngine]) -> None:
    engine = engine_with({FUNCTION_A: quiet})
    invoke(FUNCTION_A)
    (record,) = engine.invocations
    assert not engine.memory_measured
    assert record.rss_start_bytes is None and record.peak_bytes is None and record.growth_bytes is None
    assert record.seconds >= 0 and record.concurrent == 1


def test_without_proc_memory_is_none(engine_with: Callable[..., LocalEngine], tmp_path: Path) -> None:
    with mock.patch.object(local, "PROC_CLEAR_REFS", tmp_path / "missing" / "clear_refs"):
        engine = engine_with({FUNCTION_A: quiet}, measure_memory=True)
        invoke(FUNCTION_A)
    assert not engine.memory_measured
    assert engine.invocations[0].peak_bytes is None


def test_an_observer_that_raises_does_not_fail_the_call(engine_with: Callable[..., LocalEngine]) -> None:
    def observer(record: Invocation) -> None:
        raise RuntimeError("observer bug")

    engine = engine_with({FUNCTION_A: quiet}, on_invoke=observer)
    with pytest.warns(RuntimeWarning, match="observer bug"):
        response = invoke(FUNCTION_A)
    assert "FunctionError" not in response
    assert len(engine.invocations) == 1


@pytest.mark.e2e
@needs_proc
def test_every_step_of_a_real_run_is_measured(database_url: str) -> None:
    with closing(psycopg2.connect(database_url)) as conn:
        spec = SyntheticSpec(users=120, items=60, ratings_per_user=10, seed=1)
        load_ratings(conn, synthetic_ratings(spec), SourceTable())
    with LocalEngine(database_url, measure_memory=True) as engine:
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
def test_isolated_invocations_publish_the_same_run_and_measure_each_process(database_url: str) -> None:
    """Each invocation in its own process (S3 over moto's server): the run publishes exactly what
    an in-process run publishes, and every record carries that process's own memory."""
    with closing(psycopg2.connect(database_url)) as conn:
        spec = SyntheticSpec(users=120, items=60, ratings_per_user=10, seed=1)
        load_ratings(conn, synthetic_ratings(spec), SourceTable())
    run_input = {"users_per_shard": 30, "max_concurrency": 2}
    with LocalEngine(database_url) as engine:
        assert engine.run(run_input).status == "SUCCEEDED"
        in_process = published_lists(engine)
    held = np.ones(ALLOCATE // 8)  # this process grows; the invocations' own figures must not
    with LocalEngine(database_url, isolate=True) as engine:
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
def test_an_isolated_failure_reaches_the_state_machine_like_lambdas(database_url: str) -> None:
    with LocalEngine(database_url, isolate=True) as engine:
        result = engine.run({"source": {"table": "no_such_table"}})
    assert result.status == "FAILED"
    assert result.error == "ConfigError" and "no_such_table" in (result.cause or "")
    assert engine.invocations[0].error == "ConfigError"
