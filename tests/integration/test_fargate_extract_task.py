"""`recommender.task extract`, the Fargate container's command, against moto's S3 and the test
PostgreSQL; after it, the Extract step returns the stored snapshot without reading the database."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import psycopg2
import pytest

from recommender.config import Settings, SourceTable
from recommender.sample_data import load_ratings
from recommender.steps import extract, train
from recommender.storage import RunPaths, object_exists
from tests.conftest import mocked_s3
from tests.fargate import EXTRACT_INPUT, extract_environment, ratings, run_extract_task
from tests.unit.test_template import BUCKET, PREFIX


@pytest.fixture
def s3() -> Iterator[Any]:
    with mocked_s3(BUCKET) as client:
        yield client


@pytest.fixture
def ratings_url(database_url: str) -> str:
    with closing(psycopg2.connect(database_url)) as conn:
        load_ratings(conn, [(u, i, r, 1.7e9) for u, i, r in ratings()], SourceTable(timestamp_column=None))
    return database_url


def never_connect() -> Any:
    raise AssertionError("the Extract step read the database again")


@pytest.mark.parametrize("run_id", [None, "resumed-run-7"])
def test_the_task_extracts_a_run_and_the_function_then_reuses_it(
    s3: Any, ratings_url: str, run_id: str | None
) -> None:
    raw_input = {**EXTRACT_INPUT, "run_id": run_id}
    environment = extract_environment(ratings_url, RUN_INPUT=json.dumps(raw_input))
    code, out, err = run_extract_task(s3, environment)
    assert (code, err) == (0, "")
    result = json.loads(out.strip().splitlines()[-1])
    expected_run = run_id or "exec-extract-1"  # the input's run_id wins, as in the function
    paths = RunPaths(PREFIX, expected_run)
    assert result["run_id"] == expected_run and result["config"]["run_id"] == expected_run
    assert result["extract"]["dataset_key"] == paths.dataset
    assert result["extract"]["rows"] == len(ratings()) and result["extract"]["reused"] is False
    assert object_exists(s3, BUCKET, paths.dataset) and object_exists(s3, BUCKET, paths.dataset_meta)
    # What the state machine does next: the Extract function (same steps) with the same execution
    # name and input finds the metadata and returns it without connecting to the database.
    settings = Settings(bucket=BUCKET, prefix=PREFIX)
    config = extract.validate_input(raw_input)
    reused = extract.run(never_connect, s3, settings, "exec-extract-1", config)
    assert reused["extract"]["reused"] is True and reused["extract"]["seconds"] == 0.0
    assert reused["run_id"] == result["run_id"] and reused["config"] == result["config"]
    for field in ("dataset_key", "rows", "bytes", "sha256", "source_rows", "dropped", "extracted_at"):
        assert reused["extract"][field] == result["extract"][field], field
    # The Train step reads the snapshot the task wrote.
    trained = train.run(s3, settings, expected_run, result["config"])
    assert trained["users"] == 60 and trained["ratings"] == len(ratings())
