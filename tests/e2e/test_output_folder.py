"""Local runs into one output folder behave as runs into one bucket: the published run is the
quality gate's baseline, a resume finds the finished work, and a published run is never changed."""

from __future__ import annotations

import json
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from recommender.cli import main
from recommender.config import SourceTable
from recommender.local import LocalEngine
from recommender.sample_data import SyntheticSpec, load_ratings, synthetic_ratings
from tests.conftest import Databases

pytestmark = pytest.mark.e2e

PREFIX = "recommender"
RUN_INPUT = {"users_per_shard": 40, "max_concurrency": 2, "top_n": 5, "evaluate": False}


@pytest.fixture(scope="module")
def ratings_db(databases: Databases) -> str:
    url = databases.create()
    with closing(psycopg2.connect(url)) as conn:
        rows = synthetic_ratings(SyntheticSpec(users=120, items=50, ratings_per_user=8, seed=4))
        load_ratings(conn, rows, SourceTable(timestamp_column="rated_at"))
    return url


def files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_resume_finds_the_finished_work_in_the_folder(ratings_db: str, tmp_path: Path) -> None:
    with LocalEngine(ratings_db, prefix=PREFIX, sandbox=False) as engine:
        engine.inject(
            "recommender-predict", "RuntimeError", times=100, when=lambda e: e["shard"]["index"] == 2
        )
        failed = engine.run(RUN_INPUT, name="interrupted")
        assert failed.status == "FAILED"
        engine.export(tmp_path)
    finished = files(tmp_path / "runs" / "interrupted" / "recommendations")
    assert sorted(finished) == ["shard-00000.jsonl.gz", "shard-00001.jsonl.gz"]

    with LocalEngine(ratings_db, prefix=PREFIX, sandbox=False) as engine:  # a new process, later
        assert engine.load_folder(tmp_path) > 0
        resumed = engine.run({**RUN_INPUT, "run_id": "interrupted"}, name="resume")
        assert resumed.status == "SUCCEEDED", (resumed.error, resumed.cause)
        assert resumed.output is not None
        assert resumed.output["extract"]["reused"] and resumed.output["train"]["reused"]
        published = engine.export(tmp_path)
    assert published.latest_moved and published.latest_run_id == "interrupted"
    after = files(tmp_path / "runs" / "interrupted" / "recommendations")
    assert {k: after[k] for k in finished} == finished and "shard-00002.jsonl.gz" in after


def test_a_rerun_of_a_published_run_is_refused_and_changes_nothing(ratings_db: str) -> None:
    with LocalEngine(ratings_db, prefix=PREFIX, sandbox=False) as engine:
        assert engine.run(RUN_INPUT, name="published").status == "SUCCEEDED"

        def objects() -> dict[str, Any]:
            listed = engine.s3.list_objects_v2(Bucket=engine.bucket, Prefix=f"{PREFIX}/runs/published/")
            return {o["Key"]: o["ETag"] for o in listed["Contents"]}

        before = objects()
        rerun = engine.run({**RUN_INPUT, "algorithm": "BaselineOnly", "run_id": "published"}, name="rerun")
        assert rerun.status == "FAILED"
        assert rerun.error == "PublishedRunError"
        assert "start a new run" in (rerun.cause or "")
        assert objects() == before  # not even a failure.json in the published run's folder
        failure = engine.s3.get_object(Bucket=engine.bucket, Key=f"{PREFIX}/runs/rerun/failure.json")
        assert json.loads(failure["Body"].read())["error"] == "PublishedRunError"


def test_the_folders_published_run_is_the_quality_gates_baseline(
    ratings_db: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The second run into the same folder is much worse (random scores): the gate compares it
    with the run the folder publishes, holds it, and latest.json stays."""
    out = tmp_path / "out"
    common = ["--database-url", ratings_db, "--out", str(out), "--timestamp-column", "rated_at"]
    assert main(["run", *common, "--users-per-shard", "60"]) == 0
    first = json.loads((out / "latest.json").read_text())["run_id"]
    capfd.readouterr()
    assert main(["run", *common, "--algorithm", "NormalPredictor", "--users-per-shard", "60"]) == 0
    printed = capfd.readouterr().out
    assert json.loads((out / "latest.json").read_text())["run_id"] == first
    assert f"latest.json still points to {first}" in printed
    (held,) = [m for m in out.glob("runs/*/manifest.json") if json.loads(m.read_text())["run_id"] != first]
    manifest = json.loads(held.read_text())
    assert manifest["status"] == "held" and manifest["gate"]["previous_run_id"] == first
