"""The local engine's invocation records: seconds, errors and, on request, each call's peak memory.

Handlers are swapped for small test functions and called through `lambda.invoke`, which goes
through the engine's one seam like the state machine's tasks do. tests/e2e/test_invocation_records.py
runs the real ASL.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
import numpy as np
import pytest

from recommender.local import REGION, Handler, Invocation, LocalEngine, recording
from recommender.local import engine as local

MB = 1_000_000
ALLOCATED = 200 * MB  # what the peak must rise by at least
ALLOCATE = 210 * MB  # some of it may land on pages already resident
FUNCTION_A, FUNCTION_B = "recommender-extract", "recommender-train"

needs_proc = pytest.mark.skipif(
    not recording.peak_counter_available(), reason="no /proc/self/clear_refs: peak memory is not measured"
)


def allocate(event: dict[str, Any], context: Any) -> dict[str, Any]:
    block = np.ones(ALLOCATE // 8)  # every page written, so all of it is resident
    total = float(block.sum())
    del block
    return {"sum": total}


def quiet(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"ok": True}


def invoke(name: str, payload: dict[str, Any] | None = None) -> Any:
    response = boto3.client("lambda", region_name=REGION).invoke(
        FunctionName=name, Payload=json.dumps(payload or {}).encode()
    )
    return response


@pytest.fixture
def engine_with(request: pytest.FixtureRequest) -> Iterator[Callable[..., LocalEngine]]:
    """Starts an engine (no database) whose handlers are the given functions."""
    stack: list[Any] = []

    def start(handlers: dict[str, Handler], **options: Any) -> LocalEngine:
        engine = LocalEngine(None, sandbox=False, **options).__enter__()
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


@pytest.mark.slow  # writes 210 MB, and reads the peak from /proc
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


@pytest.mark.slow  # writes 210 MB, and reads the peak from /proc
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
    with mock.patch.object(recording, "PROC_CLEAR_REFS", tmp_path / "missing" / "clear_refs"):
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
