"""The quality gate's decisions, and Merge holding a worse run (moto S3, the real steps)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from recommender import gate
from recommender.config import Settings
from recommender.storage import RunPaths, get_json, latest_key, put_json
from tests.conftest import mocked_s3
from tests.publishing import grid_rows, publish

SPLIT = {"method": "random", "fraction": 0.2, "seed": 0}


def quality(ndcg: float, **split: Any) -> dict[str, Any]:
    return {"split": {**SPLIT, **split}, "model": {"ndcg@10": ndcg}, "popularity": {"ndcg@10": 0.05}}


def published(ndcg: float, **split: Any) -> dict[str, Any]:
    return {"run_id": "before", "quality": quality(ndcg, **split)}


@pytest.mark.parametrize(
    ("new", "old", "force", "expected"),
    [
        (quality(0.30), published(0.30), False, "passed"),
        (quality(0.28), published(0.30), False, "passed"),  # within 10%
        (quality(0.26), published(0.30), False, "held"),
        (quality(0.26), published(0.30), True, "forced"),
        (quality(0.26), None, False, "no-baseline"),
        (quality(0.26), {"run_id": "before", "quality": None}, False, "no-baseline"),
        (quality(0.26), published(0.30, fraction=0.1), False, "no-baseline"),  # not comparable
        # a sampled evaluation (large data) is not compared with a full one, nor another budget's
        (quality(0.26, sample_max_ratings=2_000_000), published(0.30), False, "no-baseline"),
        (
            quality(0.26, sample_max_ratings=2_000_000),
            published(0.30, sample_max_ratings=1),
            False,
            "no-baseline",
        ),
        (
            quality(0.26, sample_max_ratings=2_000_000),
            published(0.30, sample_max_ratings=2_000_000),
            False,
            "held",
        ),
        (None, published(0.30), False, "not-evaluated"),
    ],
)
def test_decisions(
    new: dict[str, Any] | None, old: dict[str, Any] | None, force: bool, expected: str
) -> None:
    decision = gate.decide(new, old, top_n=10, max_drop=0.1, force=force)
    assert decision["decision"] == expected
    if expected in ("held", "forced", "passed"):
        assert decision["previous"] == 0.30 and decision["previous_run_id"] == "before"


BUCKET = "gate"
SETTINGS = Settings(bucket=BUCKET, prefix="p")


@pytest.fixture
def s3() -> Iterator[Any]:
    with mocked_s3(BUCKET) as client:
        yield client


def lower_quality(s3: Any, run_id: str, factor: float) -> None:
    """Make a finished run's measured NDCG worse, as a bad parameter change would."""
    key = RunPaths("p", run_id).model_meta
    meta = get_json(s3, BUCKET, key)
    meta["quality"]["model"]["ndcg@10"] *= factor
    put_json(s3, BUCKET, key, meta)


@pytest.mark.parametrize("force", [False, True])
def test_merge_holds_a_worse_run_unless_forced(s3: Any, force: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    first = publish(s3, SETTINGS, "first", grid_rows())
    assert first["status"] == "published" and first["gate"]["decision"] == "no-baseline"
    assert first["quality"]["model"]["ndcg@10"] > 0

    from recommender.steps import merge

    real_run = merge.run

    def worse_then_merge(s3_: Any, settings: Any, run_id: str, *args: Any) -> Any:
        lower_quality(s3_, run_id, 0.5)
        return real_run(s3_, settings, run_id, *args)

    monkeypatch.setattr(merge, "run", worse_then_merge)
    second = publish(s3, SETTINGS, "second", grid_rows(), {"force_publish": force})
    latest = get_json(s3, BUCKET, latest_key("p"))
    if force:
        assert second["status"] == "published" and second["gate"]["decision"] == "forced"
        assert latest["run_id"] == "second"
    else:
        assert second["status"] == "held" and second["gate"]["decision"] == "held"
        assert second["gate"]["previous_run_id"] == "first"
        assert latest["run_id"] == "first"
