"""`recommender.task`, the Fargate container's command, called in this process against moto's
S3: it trains a run from a snapshot and prints its result, after which the Train function returns
the stored model without fitting again; `extract` checks its input; bad input and failures exit
non-zero with a clear message. tests/integration/test_fargate_extract_task.py extracts from the
test PostgreSQL; tests/integration/test_fargate_image.py runs the command in the image's Python."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest

from recommender import task
from recommender.config import Settings
from recommender.steps import train
from recommender.storage import RunPaths, get_json, object_exists
from tests.conftest import mocked_s3
from tests.fargate import CONFIG, RUN_ID, extract_environment, ratings, run_extract_task, task_environment
from tests.publishing import write_snapshot
from tests.unit.test_template import BUCKET, PREFIX, load_template


@pytest.fixture
def s3() -> Iterator[Any]:
    with mocked_s3(BUCKET) as client:
        yield client


def run_task(s3: Any, environment: dict[str, str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = task.main(environment, s3=s3, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_the_task_trains_a_run_and_the_function_then_reuses_it(s3: Any) -> None:
    settings = Settings(bucket=BUCKET, prefix=PREFIX)
    write_snapshot(s3, settings, RUN_ID, ratings())
    code, out, err = run_task(s3, task_environment())
    assert (code, err) == (0, "")
    result = json.loads(out.strip().splitlines()[-1])
    paths = RunPaths(PREFIX, RUN_ID)
    assert result["model_key"] == paths.model and result["shard_plan_key"] == paths.shard_plan
    assert result["reused"] is False and result["users"] == 60 and result["shards"] == 3
    for key in (paths.model, paths.model_meta, paths.shard_plan):
        assert object_exists(s3, BUCKET, key), key
    assert len(get_json(s3, BUCKET, paths.shard_plan)) == result["shards"]
    # What the state machine does next: the Train function, same run id and config, finds the
    # model and returns the stored result with the fit's own seconds, without fitting again.
    reused = train.run(s3, settings, RUN_ID, CONFIG)
    assert reused["reused"] is True
    assert (
        reused["fit_seconds"]
        == result["fit_seconds"]
        == get_json(s3, BUCKET, paths.model_meta)["fit_seconds"]
    )
    assert reused["fit_seconds"] > 0
    for field in ("model_key", "shard_plan_key", "shards", "users", "items", "ratings", "quality"):
        assert reused[field] == result[field], field


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"RUN_ID": None}, "RUN_ID is not set"),
        ({"RUN_ID": "../escape"}, "RUN_ID: run_id must be"),
        ({"RUN_CONFIG": None}, "RUN_CONFIG is not set"),
        ({"RUN_CONFIG": "{not json"}, "RUN_CONFIG is not JSON"),
        ({"RUN_CONFIG": "[1, 2]"}, "RUN_CONFIG must be a JSON object"),
        ({"RECOMMENDER_BUCKET": None}, "RECOMMENDER_BUCKET is not set"),
        ({"RUN_CONFIG": json.dumps({**CONFIG, "algorithm": "NoSuchAlgorithm"})}, "NoSuchAlgorithm"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(s3: Any, overrides: dict[str, Any], message: str) -> None:
    write_snapshot(s3, Settings(bucket=BUCKET, prefix=PREFIX), RUN_ID, ratings())
    code, out, err = run_task(s3, task_environment(**overrides))
    assert code == task.EXIT_BAD_INPUT == 2
    assert message in err and err.startswith("recommender.task: ")
    assert out == ""
    assert not object_exists(s3, BUCKET, RunPaths(PREFIX, RUN_ID).shard_plan)


def test_a_failed_training_exits_1_naming_the_error(s3: Any) -> None:
    code, out, err = run_task(s3, task_environment())  # no snapshot was extracted
    assert code == task.EXIT_FAILED == 1
    assert f"run {RUN_ID} failed" in err and "NoSuchKey" in err
    assert out == ""


# --- `python -m recommender.task extract` ---------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"RUN_ID": None}, "RUN_ID is not set"),
        ({"RUN_ID": "../escape"}, "RUN_ID: run_id must be"),
        ({"RUN_INPUT": None}, "RUN_INPUT is not set"),
        ({"RUN_INPUT": "{not json"}, "RUN_INPUT is not JSON"),
        ({"RUN_INPUT": json.dumps({"algorithm": "NoSuchAlgorithm"})}, "NoSuchAlgorithm"),
        ({"RUN_INPUT": json.dumps({"top_n": -1})}, "top_n"),
        ({"DATABASE_URL": None}, "neither DATABASE_URL nor DATABASE_SECRET_ARN is set"),
    ],
)
def test_extract_bad_input_exits_2(s3: Any, overrides: dict[str, Any], message: str) -> None:
    environment = extract_environment("postgresql://nobody@127.0.0.1:9/none", **overrides)
    code, out, err = run_extract_task(s3, environment)
    assert code == task.EXIT_BAD_INPUT == 2
    assert message in err and err.startswith("recommender.task: ")
    assert out == ""


def test_a_failed_extract_exits_1(s3: Any) -> None:
    code, out, err = run_extract_task(s3, extract_environment("postgresql://nobody@127.0.0.1:9/none"))
    assert code == task.EXIT_FAILED == 1
    assert "run exec-extract-1 failed" in err and "DatabaseUnavailableError" in err
    assert out == ""


def test_the_command_names_the_step(s3: Any) -> None:
    code, _out, err = run_extract_task(s3, task_environment(), "predict")
    assert code == 2 and "usage: python -m recommender.task [train|extract]" in err
    code, _out, err = run_extract_task(s3, task_environment(), "train", "extra")
    assert code == 2
    # No argument trains, as the command always did (the train task definition has no Command).
    assert "Command" not in train_container()
    code, _out, err = run_extract_task(s3, task_environment(), "train")
    assert code == task.EXIT_FAILED and "NoSuchKey" in err  # train ran: no snapshot here


def train_container() -> dict[str, Any]:
    (container,) = load_template()["Resources"]["TrainTaskDefinition"]["Properties"]["ContainerDefinitions"]
    return dict(container)
