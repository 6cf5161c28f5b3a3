"""Step Functions' and Lambda's limits, enforced by the local engine as AWS enforces them, on the real
ASL: what a DISTRIBUTED Map collects, terminal errors States.ALL does not catch, the execution
history, throttling. Limits are lowered so that a small run reaches them; the mechanism is the one
that applies the real limits."""

from __future__ import annotations

import json
from contextlib import closing
from types import SimpleNamespace
from typing import Any

import psycopg2
import pytest
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import FailureEventException

from recommender.config import SourceTable
from recommender.executions import history
from recommender.local import LocalEngine, ServiceLimits, seams
from recommender.local.engine import DEFINITION, project_root
from recommender.sample_data import SyntheticSpec, load_ratings, synthetic_ratings
from tests.conftest import Databases

pytestmark = pytest.mark.e2e

PREFIX = "recommender"
USERS = 100
# Above every state's data in these runs (about 1.3 KB), below what 100 predictor results make.
SMALL_LIMIT = 1600
RUN_INPUT = {"users_per_shard": 1, "max_concurrency": 10, "top_n": 3, "evaluate": False}


@pytest.fixture(scope="module")
def ratings_db(databases: Databases) -> str:
    url = databases.create()
    with closing(psycopg2.connect(url)) as conn:
        rows = synthetic_ratings(SyntheticSpec(users=USERS, items=30, ratings_per_user=6, seed=4))
        load_ratings(conn, rows, SourceTable())
    return url


def definition_keeping_predictor_results() -> str:
    """The Map as it was: each predictor's {index, users} kept, so the collected output grows
    with the number of shards."""
    asl = json.loads((project_root() / DEFINITION).read_text())
    inner = asl["States"]["Recommend for every shard of users"]["ItemProcessor"]["States"]
    task = inner["Recommend for the users of one shard"]
    del task["OutputPath"]
    task["ResultSelector"] = {"index.$": "$.Payload.index", "users.$": "$.Payload.users"}
    return json.dumps(asl)


def latest(engine: LocalEngine) -> Any:
    return json.loads(engine.s3.get_object(Bucket=engine.bucket, Key=f"{PREFIX}/latest.json")["Body"].read())


def states_entered(engine: LocalEngine, execution_arn: str) -> list[str]:
    return [
        e["stateEnteredEventDetails"]["name"]
        for e in history(engine.sfn, execution_arn)
        if e["type"].endswith("StateEntered")
    ]


def test_the_maps_output_does_not_grow_with_the_plan(ratings_db: str) -> None:
    limits = ServiceLimits(state_payload_bytes=SMALL_LIMIT)
    with LocalEngine(ratings_db, prefix=PREFIX, sandbox=False, limits=limits) as engine:
        result = engine.run(RUN_INPUT, name="one-shard-per-user")
        assert result.status == "SUCCEEDED", (result.error, result.cause)
        assert result.output is not None and result.output["published"]["shards"] == USERS
    with LocalEngine(
        ratings_db,
        prefix=PREFIX,
        sandbox=False,
        limits=limits,
        definition=definition_keeping_predictor_results(),
    ) as engine:
        first = engine.run({**RUN_INPUT, "users_per_shard": 50}, name="two-shards")
        assert first.status == "SUCCEEDED", (first.error, first.cause)
        grown = engine.run(RUN_INPUT, name="grown")
        assert grown.status == "FAILED"
        assert grown.error == "States.DataLimitExceeded"
        assert "collected" in (grown.cause or "")
        # A terminal error: the Map's Catch of States.ALL does not see it, so nothing after the Map
        # runs, failure.json included, and latest.json stays where it was.
        entered = states_entered(engine, grown.execution_arn)
        assert "Record the failure" not in entered
        assert "Merge the shards and publish the run" not in entered
        assert latest(engine)["run_id"] == "two-shards"


def test_an_execution_whose_history_reaches_the_limit_fails(ratings_db: str) -> None:
    with LocalEngine(
        ratings_db, prefix=PREFIX, sandbox=False, limits=ServiceLimits(history_events=12)
    ) as engine:
        result = engine.run({**RUN_INPUT, "users_per_shard": 50}, name="long-history")
    assert result.status == "FAILED"
    assert result.error == "States.Runtime"
    assert "maximum number of history events (12)" in (result.cause or "")
    with LocalEngine(ratings_db, prefix=PREFIX, sandbox=False) as engine:
        events = history(engine.sfn, engine.run({**RUN_INPUT, "users_per_shard": 50}).execution_arn)
    assert 12 < len(events) < 100  # the same run fits the real limit by far


def test_a_throttled_predictor_is_retried_until_it_runs(ratings_db: str) -> None:
    with LocalEngine(ratings_db, prefix=PREFIX, sandbox=False) as engine:
        fault = engine.inject(
            "recommender-predict",
            "TooManyRequestsException",
            "Rate Exceeded.",
            times=2,
            when=lambda event: event["shard"]["index"] == 0,
            by_service=True,
        )
        result = engine.run({**RUN_INPUT, "users_per_shard": 50}, name="throttled")
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    assert len(fault.seen) == 2


def test_the_default_pace_stays_within_the_predictors_reserved_concurrency(ratings_db: str) -> None:
    with LocalEngine(ratings_db, prefix=PREFIX, sandbox=False, parameters={"MaxConcurrency": "2"}) as engine:
        assert engine.functions["recommender-predict"].reserved_concurrency == 2
        paced = {k: v for k, v in RUN_INPUT.items() if k != "max_concurrency"}
        result = engine.run({**paced, "users_per_shard": 20}, name="reserved")
        assert result.status == "SUCCEEDED", (result.error, result.cause)
        assert result.output is not None and result.output["config"]["max_concurrency"] == 2
        assert max(i.concurrent for i in engine.invocations if i.function == "recommender-predict") <= 2
        refused = engine.run({**RUN_INPUT, "max_concurrency": 3}, name="above-reserved")
    assert refused.status == "FAILED"
    assert refused.error == "ConfigError"
    assert "max_concurrency must be at most 2" in (refused.cause or "")


def test_an_invocation_past_the_reserved_concurrency_is_throttled(ratings_db: str) -> None:
    with LocalEngine(ratings_db, prefix=PREFIX, sandbox=False, parameters={"MaxConcurrency": "1"}) as engine:
        predict = engine.functions["recommender-predict"]
        engine._admit(predict)
        try:
            with pytest.raises(Exception, match="reserved concurrency") as raised:
                engine._admit(predict)
            assert type(raised.value).__name__ == "_Throttled"
        finally:
            engine._release(predict)
        engine._admit(predict)  # free again
        engine._release(predict)


def test_a_tasks_input_after_parameters_is_held_to_the_limit() -> None:
    calls: list[Any] = []
    execute = seams._lambda_integration(lambda *args, **kwargs: calls.append(args), lambda: 100)
    env = SimpleNamespace(next_state_name="Task", event_history_context=SimpleNamespace(source_event_id=0))
    execute(env, {"FunctionName": "f", "Payload": b"x" * 100})
    assert len(calls) == 1
    with pytest.raises(FailureEventException) as raised:
        execute(env, {"FunctionName": "f", "Payload": b"x" * 101})
    assert raised.value.extract_error_cause_pair()[0] == "States.DataLimitExceeded"  # type: ignore[index]
    assert len(calls) == 1


def test_an_input_too_large_to_carry_between_states_fails_in_the_first_step(ratings_db: str) -> None:
    """Near Step Functions' own limit a run would fail where States.ALL cannot catch it, with no
    failure.json; Extract refuses it first, so the run fails with its reason recorded."""
    with LocalEngine(ratings_db, prefix=PREFIX, sandbox=False) as engine:
        result = engine.run({**RUN_INPUT, "params": {"verbose": "x" * 200_000}}, name="huge-input")
        assert result.status == "FAILED"
        assert result.error == "ConfigError" and "execution input is" in (result.cause or "")
        failure = json.loads(
            engine.s3.get_object(Bucket=engine.bucket, Key=f"{PREFIX}/runs/huge-input/failure.json")[
                "Body"
            ].read()
        )
    assert failure["error"] == "ConfigError"
