"""No object the product writes may hold NaN or Infinity: every JSON writer is strict, and the
package has no other way to write JSON (checked on its source)."""

from __future__ import annotations

import ast
import io
import json
import math
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pytest

from recommender import strict_json
from recommender.config import RunConfig
from recommender.contracts import TrainSummary
from recommender.errors import ConfigError, NonFiniteNumberError
from recommender.model import ModelArrays, utf8_order
from recommender.observability import handler
from recommender.scoring import UserTopN
from recommender.sharding import encode_shard
from recommender.storage import put_json
from recommender.task import main as task_main
from tests.conftest import mocked_s3
from tests.doubles import as_s3

PACKAGE = Path(__file__).resolve().parents[2] / "layers" / "recommender" / "recommender"
BUCKET = "strict-json"
NON_FINITE = [math.nan, math.inf, -math.inf, np.float64("nan")]


def strict_loads(text: str | bytes) -> Any:
    """Parse as a strict reader does: the words NaN, Infinity and -Infinity are errors."""

    def refuse(word: str) -> Any:
        raise ValueError(f"not JSON: {word}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture
def s3() -> Iterator[Any]:
    with mocked_s3(BUCKET) as client:
        yield client


@pytest.mark.parametrize("value", NON_FINITE, ids=str)
def test_dumps_refuses_a_non_finite_number_and_says_where(value: float) -> None:
    document = {"ok": 1.5, "model": {"scores": [1.0, value]}}
    with pytest.raises(NonFiniteNumberError, match=r"the manifest would hold .* at \$\.model\.scores\[1\]"):
        strict_json.dumps(document, what="the manifest")


def test_dumps_writes_what_a_strict_reader_reads() -> None:
    document = {"a": [1, 2.5, -0.0, 1e308, 5e-324], "b": "NaN", "c": None, "d": True}
    assert strict_loads(strict_json.dumps(document)) == document
    assert strict_loads(strict_json.dump_bytes({"id": "naïve"})) == {"id": "naïve"}


def test_put_json_writes_nothing_with_nan(s3: Any) -> None:
    with pytest.raises(NonFiniteNumberError, match=r"key/fallback\.json would hold nan at \$\.scores\[0\]"):
        put_json(s3, BUCKET, "key/fallback.json", {"items": ["a"], "scores": [math.nan]})
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET)


def test_the_shard_encoder_refuses_a_nan_score() -> None:
    ids = ["u1", "u2"]
    model = ModelArrays(
        kind="SVD",
        user_ids=ids,
        item_ids=["a", "b"],
        seen_indptr=np.zeros(3, dtype=np.int64),
        seen_indices=np.zeros(0, dtype=np.int32),
        item_counts=np.ones(2, dtype=np.int64),
        global_mean=3.0,
        rating_scale=(1.0, 5.0),
        unknown_user_scores=np.full(2, 3.0),
        user_order=utf8_order(ids),
    )
    good = UserTopN(0, np.array([0, 1]), np.array([4.5, 3.0]))
    bad = UserTopN(1, np.array([1, 0]), np.array([math.nan, 3.0]))
    assert encode_shard(model, [good])[1] == 1
    with pytest.raises(NonFiniteNumberError, match=r"list of user 'u2' would hold nan at \$\.scores\[0\]"):
        encode_shard(model, [good, bad])


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_a_handler_never_returns_nan(monkeypatch: pytest.MonkeyPatch) -> None:
    """Step outputs travel through Step Functions into the manifest: they are JSON too."""
    from recommender.observability import metrics

    monkeypatch.setattr(metrics, "namespace", "Test")  # as the template sets it
    metrics.clear_metrics()

    @handler
    def step(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"quality": {"ndcg": event["ndcg"]}}

    context = SimpleNamespace(
        function_name="f", memory_limit_in_mb=128, invoked_function_arn="arn", aws_request_id="r"
    )
    assert step({"ndcg": 0.5}, context) == {"quality": {"ndcg": 0.5}}
    with pytest.raises(NonFiniteNumberError, match=r"the step's output would hold nan at \$\.quality\.ndcg"):
        step({"ndcg": math.nan}, context)


def test_the_train_task_prints_strict_json(monkeypatch: pytest.MonkeyPatch) -> None:
    from recommender.steps import train

    monkeypatch.setattr(train, "run", lambda *args: {"quality": {"ndcg": math.inf}})
    out, err = io.StringIO(), io.StringIO()
    env = {"RUN_ID": "r1", "RUN_CONFIG": "{}", "RECOMMENDER_BUCKET": BUCKET}
    assert task_main(env, s3=as_s3(object()), stdout=out, stderr=err) == 1
    assert "NonFiniteNumberError" in err.getvalue() and out.getvalue() == ""


def test_an_input_holding_nan_is_a_configuration_error() -> None:
    """`json.loads` accepts NaN, so a file given to `recommender run --input` may hold it."""
    with pytest.raises(ConfigError, match=r"^params\.reg_all must be a finite number, got nan"):
        RunConfig.from_input(json.loads('{"algorithm": "SVD", "params": {"reg_all": NaN}}'))
    with pytest.raises(
        ConfigError, match=r"^params\.sim_options\.shrinkage must be a finite number, got inf"
    ):
        RunConfig.from_input(
            json.loads('{"algorithm": "KNNBaseline", "params": {"sim_options": {"shrinkage": Infinity}}}')
        )
    with pytest.raises(ConfigError, match=r"max_invalid_fraction must be a number from 0 to 1, got nan"):
        RunConfig.from_input(json.loads('{"max_invalid_fraction": NaN}'))


def _json_writes(tree: ast.AST) -> Iterator[ast.Call]:
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("dump", "dumps")
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "json"
        ):
            yield node


def test_no_json_is_written_but_through_the_strict_writer() -> None:
    """By construction: the package (but the local engine's own protocol with moto and the
    sandbox, which publishes nothing) has no json.dump(s) outside strict_json."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative == "strict_json.py" or relative.startswith("local/"):
            continue
        for call in _json_writes(ast.parse(path.read_text(), str(path))):
            offenders.append(f"{relative}:{call.lineno}")
    handlers = sorted((PACKAGE.parents[2] / "functions").glob("*/app.py"))
    assert handlers
    for path in handlers:
        offenders += [f"{path}:{call.lineno}" for call in _json_writes(ast.parse(path.read_text()))]
    assert offenders == []


def test_a_shard_without_its_recorded_time_still_makes_a_strict_manifest(s3: Any) -> None:
    """Merge read a missing `seconds` as NaN, which went into the manifest."""
    from recommender.config import Settings
    from recommender.steps import merge
    from recommender.storage import RunPaths, get_bytes, get_json, latest_key
    from tests.publishing import publish, write_snapshot

    settings = Settings(bucket=BUCKET, prefix="p")
    rows = [
        (f"u{u}", f"i{i}", float(1 + (u * 7 + i * 3) % 5)) for u in range(20) for i in range(8) if (u + i) % 3
    ]
    run_input = {"evaluate": False, "users_per_shard": 10}
    publish(s3, settings, "r1", rows, run_input)
    paths = RunPaths("p", "r1")
    key = paths.shard_object(0)
    recorded = s3.head_object(Bucket=BUCKET, Key=key)["Metadata"]
    s3.put_object(
        Bucket=BUCKET,
        Key=key,
        Body=get_bytes(s3, BUCKET, key),
        Metadata={name: value for name, value in recorded.items() if name != "seconds"},
    )
    config = RunConfig.from_input(run_input).to_dict()
    extract = write_snapshot(s3, settings, "r1", rows)
    train = cast(TrainSummary, {"ratings": len(rows), "seconds": 0.0})  # what Merge reads of it
    for written in (paths.manifest, latest_key("p")):  # as before its Merge ran
        s3.delete_object(Bucket=BUCKET, Key=written)
    merge.run(s3, settings, "r1", config, extract, train)
    manifest = strict_loads(get_bytes(s3, BUCKET, paths.manifest))
    assert manifest["shards"][0]["seconds"] == 0.0
    assert get_json(s3, BUCKET, paths.manifest)["users"] == 20
