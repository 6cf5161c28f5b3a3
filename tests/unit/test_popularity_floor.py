"""The popularity floor: a run whose lists rank below the most-popular list says so (the manifest,
Merge's metric, the CLI summary), and `quality_gate_below_popularity: "hold"` holds it."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from recommender import gate
from recommender.cli import floor_lines, quality_line
from recommender.config import Settings
from recommender.contracts import MergeResult
from recommender.manifest import load_schema
from recommender.storage import RunPaths, get_json, latest_key, object_exists, put_json
from tests.conftest import mocked_s3
from tests.publishing import grid_rows, publish

ROOT = Path(__file__).resolve().parents[2]
SPLIT = {"method": "random", "fraction": 0.2, "seed": 0}


def quality(ndcg: float, popularity: float = 0.05) -> dict[str, Any]:
    return {"split": SPLIT, "model": {"ndcg@10": ndcg}, "popularity": {"ndcg@10": popularity}}


@pytest.mark.parametrize(
    ("ndcg", "popularity", "below", "ratio"),
    [
        (0.04, 0.05, True, 0.8),
        (0.05, 0.05, False, 1.0),  # a tie is no worse than the fallback
        (0.06, 0.05, False, 1.2),
        (0.0, 0.0, False, None),  # no ratio to a popularity that scored nothing
    ],
)
def test_against_popularity(ndcg: float, popularity: float, below: bool, ratio: float | None) -> None:
    floor = gate.against_popularity(quality(ndcg, popularity), top_n=10)
    assert floor is not None
    assert floor["below"] is below
    assert (floor["metric"], floor["model"], floor["popularity"]) == ("ndcg@10", ndcg, popularity)
    assert floor["ratio"] == pytest.approx(ratio) if ratio is not None else floor["ratio"] is None


def test_a_run_not_measured_has_no_floor() -> None:
    assert gate.against_popularity(None, top_n=10) is None


def published(ndcg: float) -> dict[str, Any]:
    return {"run_id": "before", "quality": quality(ndcg)}


@pytest.mark.parametrize(
    ("new", "old", "action", "force", "expected"),
    [
        (quality(0.04), None, "warn", False, "no-baseline"),  # below, and published all the same
        (quality(0.04), None, "hold", False, "held"),  # even the first run
        (quality(0.04), None, "hold", True, "forced"),
        (quality(0.05), None, "hold", False, "no-baseline"),  # equal
        (quality(0.06), None, "hold", False, "no-baseline"),  # above
        (None, None, "hold", False, "not-evaluated"),  # nothing to judge by
        (quality(0.04), published(0.04), "warn", False, "passed"),
        (quality(0.04), published(0.04), "hold", False, "held"),
        (quality(0.04), published(0.10), "hold", False, "held"),  # both reasons
        (quality(0.06), published(0.06), "hold", False, "passed"),
    ],
)
def test_decisions(
    new: dict[str, Any] | None, old: dict[str, Any] | None, action: str, force: bool, expected: str
) -> None:
    decision = gate.decide(new, old, top_n=10, max_drop=0.1, force=force, below_popularity=action)
    assert decision["decision"] == expected
    assert decision["on_below_popularity"] == action
    below = new is not None and new["model"]["ndcg@10"] < 0.05
    assert ("below the popularity baseline" in decision.get("reason", "")) is (below and action == "hold")


def test_the_default_warns() -> None:
    assert (
        gate.decide(quality(0.04), None, top_n=10, max_drop=0.1, force=False)["on_below_popularity"] == "warn"
    )


# --- Merge, the manifest and its schema (moto S3, the real steps) -------------------------------

BUCKET = "floor"
SETTINGS = Settings(bucket=BUCKET, prefix="p")


@pytest.fixture
def s3() -> Iterator[Any]:
    with mocked_s3(BUCKET) as client:
        yield client


def below_popularity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every run merged from now on measure half the popularity baseline's NDCG, as SVD does
    on data where popularity wins."""
    from recommender.steps import merge

    real_run = merge.run

    def worse_then_merge(s3_: Any, settings: Settings, run_id: str, *args: Any) -> MergeResult:
        key = RunPaths(settings.prefix, run_id).model_meta
        meta = get_json(s3_, settings.bucket, key)
        meta["quality"]["model"]["ndcg@10"] = meta["quality"]["popularity"]["ndcg@10"] / 2
        put_json(s3_, settings.bucket, key, meta)
        return real_run(s3_, settings, run_id, *args)

    monkeypatch.setattr(merge, "run", worse_then_merge)


def valid(manifest: dict[str, Any]) -> None:
    errors = [e.message for e in Draft202012Validator(load_schema("manifest")).iter_errors(manifest)]
    assert not errors


def test_a_run_above_popularity_says_so(s3: Any) -> None:
    manifest = publish(s3, SETTINGS, "above", grid_rows())  # SVD ranks these ratings better
    floor = manifest["quality"]["against_popularity"]
    assert manifest["quality"]["below_popularity"] is False and floor["ratio"] > 1
    assert floor["metric"] == "ndcg@10"
    assert floor["model"] == manifest["quality"]["model"]["ndcg@10"]
    assert floor["popularity"] == manifest["quality"]["popularity"]["ndcg@10"]
    valid(manifest)


def test_a_run_below_popularity_is_published_and_flagged_by_default(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    below_popularity(monkeypatch)
    manifest = publish(s3, SETTINGS, "below", grid_rows())
    assert manifest["status"] == "published"
    assert manifest["quality"]["below_popularity"] is True
    floor = manifest["quality"]["against_popularity"]
    assert floor["ratio"] == pytest.approx(0.5)
    assert manifest["gate"]["on_below_popularity"] == "warn"
    assert get_json(s3, BUCKET, latest_key("p"))["run_id"] == "below"
    valid(manifest)


def test_hold_keeps_the_published_run(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    publish(s3, SETTINGS, "first", grid_rows())
    below_popularity(monkeypatch)
    manifest = publish(s3, SETTINGS, "second", grid_rows(), {"quality_gate_below_popularity": "hold"})
    assert manifest["status"] == "held" and manifest["gate"]["decision"] == "held"
    assert "below the popularity baseline" in manifest["gate"]["reason"]
    assert get_json(s3, BUCKET, latest_key("p"))["run_id"] == "first"
    assert object_exists(s3, BUCKET, RunPaths("p", "second").shard_object(0))  # the run's objects stay
    valid(manifest)


def test_hold_of_a_first_run_publishes_nothing(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from recommender.steps import merge

    results: list[MergeResult] = []
    real_run = merge.run

    def recorded(*args: Any) -> MergeResult:
        results.append(real_run(*args))
        return results[-1]

    monkeypatch.setattr(merge, "run", recorded)
    below_popularity(monkeypatch)
    manifest = publish(s3, SETTINGS, "first", grid_rows(), {"quality_gate_below_popularity": "hold"})
    assert manifest["status"] == "held" and "previous_run_id" not in manifest["gate"]
    assert not object_exists(s3, BUCKET, latest_key("p"))
    (result,) = results
    assert result["published"] is False and result["latest_run_id"] is None
    assert result["below_popularity"] is True and result["popularity_ratio"] == pytest.approx(0.5)
    valid(manifest)


def test_force_publish_overrides_hold(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    below_popularity(monkeypatch)
    run_input = {"quality_gate_below_popularity": "hold", "force_publish": True}
    manifest = publish(s3, SETTINGS, "forced", grid_rows(), run_input)
    assert manifest["status"] == "published" and manifest["gate"]["decision"] == "forced"
    assert get_json(s3, BUCKET, latest_key("p"))["run_id"] == "forced"


def test_a_run_not_measured_has_no_flag(s3: Any) -> None:
    manifest = publish(s3, SETTINGS, "unmeasured", grid_rows(), {"evaluate": False})
    assert manifest["quality"] is None and manifest["gate"]["decision"] == "not-evaluated"
    valid(manifest)


# --- the metric Merge sends ---------------------------------------------------------------------


def merge_handler(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("RECOMMENDER_BUCKET", BUCKET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    spec = importlib.util.spec_from_file_location("merge_app", ROOT / "functions/merge/app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def template_alarm() -> tuple[dict[str, Any], dict[str, str]]:
    """BelowPopularityAlarm's properties and the functions' Powertools environment (Globals)."""
    from tests.unit.test_template import load_template

    template = load_template()
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    return template["Resources"]["BelowPopularityAlarm"]["Properties"], variables


def emitted(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    below: bool | None,
    ratio: float | None,
) -> dict[str, Any]:
    """The EMF document the Merge handler prints for a result with these figures."""
    from recommender.observability import metrics
    from recommender.steps import merge

    _alarm, variables = template_alarm()
    # Powertools reads its namespace and service when the process imports it; Lambda sets them
    # from the template before that.
    monkeypatch.setattr(metrics.provider, "namespace", variables["POWERTOOLS_METRICS_NAMESPACE"])
    monkeypatch.setattr(metrics.provider, "service", variables["POWERTOOLS_SERVICE_NAME"])
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    metrics.clear_metrics()  # what earlier handlers in this process added and did not flush
    result = MergeResult(
        manifest_key="p/runs/r/manifest.json",
        latest_key="p/latest.json",
        published=True,
        status="published",
        gate="no-baseline",
        latest_run_id="r",
        users=3,
        shards=1,
        below_popularity=below,
        popularity_ratio=ratio,
    )
    monkeypatch.setattr(merge, "run", lambda *args: result)
    handler = merge_handler(monkeypatch)
    context = SimpleNamespace(
        function_name="merge",
        memory_limit_in_mb=1024,
        invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:merge",
        aws_request_id="request",
    )
    capsys.readouterr()
    handler.lambda_handler({"run_id": "r", "config": {}, "extract": {}, "train": {}}, context)
    documents: list[dict[str, Any]] = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line
    ]
    (document,) = documents
    return document


@pytest.mark.parametrize(("below", "ratio"), [(True, 0.6), (False, 1.4)])
def test_merge_sends_the_metric_the_alarm_watches(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], below: bool, ratio: float
) -> None:
    document = emitted(monkeypatch, capsys, below, ratio)
    assert document["BelowPopularity"] == [float(below)]  # EMF keeps each metric's values as a list
    assert document["NdcgToPopularity"] == [ratio]
    alarm, _variables = template_alarm()
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == alarm["Namespace"]
    assert alarm["MetricName"] in {m["Name"] for m in directive["Metrics"]}
    # the alarm's dimensions are exactly one of the metric's dimension sets, with the same values
    assert [sorted(d["Name"] for d in alarm["Dimensions"])] == [sorted(s) for s in directive["Dimensions"]]
    assert all(document[d["Name"]] == d["Value"] for d in alarm["Dimensions"])


def test_a_run_not_measured_sends_no_floor_metric(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    document = emitted(monkeypatch, capsys, None, None)
    assert "BelowPopularity" not in document and "NdcgToPopularity" not in document
    assert document["UsersPublished"] == [3.0]


# --- the CLI summary ----------------------------------------------------------------------------


def summary_manifest(status: str, action: str, ndcg: float | None) -> dict[str, Any]:
    if ndcg is None:
        return {"status": status, "quality": None, "gate": {"decision": "not-evaluated"}}
    floor = gate.against_popularity(quality(ndcg), top_n=10)
    assert floor is not None
    below = floor.pop("below")
    measured = {**quality(ndcg), "below_popularity": below, "against_popularity": floor}
    return {"status": status, "quality": measured, "gate": {"on_below_popularity": action}}


def test_the_summary_is_loud_below_popularity() -> None:
    text = "\n".join(floor_lines(summary_manifest("published", "warn", 0.04)))
    assert "BELOW POPULARITY" in text and "0.040" in text and "0.050" in text and "(0.80x)" in text
    assert "PUBLISHED all the same" in text
    held = "\n".join(floor_lines(summary_manifest("held", "hold", 0.04)))
    assert "HELD by the quality gate (quality_gate_below_popularity: hold)" in held
    forced = "\n".join(floor_lines(summary_manifest("published", "hold", 0.04)))
    assert "force_publish overrode" in forced


def test_the_summary_is_quiet_at_or_above_popularity() -> None:
    assert floor_lines(summary_manifest("published", "warn", 0.05)) == []
    assert floor_lines(summary_manifest("published", "warn", 0.06)) == []


def test_the_summary_says_when_the_run_was_not_measured() -> None:
    (line,) = floor_lines(summary_manifest("published", "warn", None))
    assert "not measured" in line and "unknown" in line


@pytest.mark.parametrize(("algorithm", "shows_rmse"), [("SVD", True), ("EASE", False), ("ALS", False)])
def test_the_summary_shows_rmse_only_for_models_that_predict_ratings(
    algorithm: str, shows_rmse: bool
) -> None:
    manifest = summary_manifest("published", "warn", 0.06)
    manifest["quality"] = {**manifest["quality"], "k": 10}
    manifest["quality"]["model"] = {**manifest["quality"]["model"], "rmse": 0.9}
    line = quality_line({**manifest, "model": {"algorithm": algorithm}, "gate": {"decision": "passed"}})
    assert line is not None and "NDCG@10 0.060 (popularity 0.050)" in line
    assert ("RMSE 0.900;" in line) is shows_rmse
    assert quality_line({"quality": None}) is None
