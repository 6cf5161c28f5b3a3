"""The model's objects carry their size and SHA-256 from Train to the manifest, and every reader
checks them: the predictors and Merge against Train's metadata, the client (for_ratings) against
the manifest. Older runs, without them, are still read."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from recommender.client import Recommendations
from recommender.config import RunConfig, Settings
from recommender.errors import ModelIntegrityError, RecommendationsError
from recommender.manifest import load_schema
from recommender.steps import merge, predict, train
from recommender.storage import RunPaths, get_json, put_json, relative_key, sha256_hex
from tests.conftest import mocked_s3
from tests.publishing import publish, write_snapshot

BUCKET = "checksums"
SETTINGS = Settings(bucket=BUCKET, prefix="p")
SPLIT = {"algorithm": "SVD", "params": {"n_factors": 4, "n_epochs": 5}}  # users in one part per shard
WHOLE = {"algorithm": "KNNBasic", "params": {}}  # user-based: scoring needs every user, one model.npz


@pytest.fixture
def s3() -> Iterator[Any]:
    with mocked_s3(BUCKET) as client:
        yield client


def rows(users: int = 30, items: int = 12) -> list[tuple[str, str, float]]:
    return [
        (f"u{u:02d}", f"i{i:02d}", float(1 + (u * 7 + i * 3) % 5))
        for u in range(users)
        for i in range(items)
        if (u + i) % 3
    ]


def run_input(algorithm: dict[str, Any]) -> dict[str, Any]:
    return {**algorithm, "users_per_shard": 10, "evaluate": False, "top_n": 4}


def get(s3: Any, key: str) -> bytes:
    body: bytes = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    return body


def truncate(s3: Any, key: str) -> None:
    s3.put_object(Bucket=BUCKET, Key=key, Body=get(s3, key)[:-100])


def export(s3: Any, folder: Path) -> Path:
    """The bucket's prefix as an output folder, as `recommender run` exports it."""
    for entry in s3.list_objects_v2(Bucket=BUCKET, Prefix="p/")["Contents"]:
        path = folder / entry["Key"].removeprefix("p/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(get(s3, entry["Key"]))
    return folder


@pytest.mark.parametrize("algorithm", [SPLIT, WHOLE], ids=["split", "whole"])
def test_train_records_and_merge_publishes_every_model_object(s3: Any, algorithm: dict[str, Any]) -> None:
    manifest = publish(s3, SETTINGS, "r1", rows(), run_input(algorithm))
    paths = RunPaths("p", "r1")
    meta = get_json(s3, BUCKET, paths.model_meta)
    model = get(s3, paths.model)
    assert meta["model_object"] == {"bytes": len(model), "sha256": sha256_hex(model)}
    parts = [
        {"index": shard["index"], "bytes": len(data), "sha256": sha256_hex(data)}
        for shard in get_json(s3, BUCKET, paths.shard_plan)
        if algorithm is SPLIT
        for data in [get(s3, paths.user_part(shard["index"]))]
    ]
    assert len(parts) == (3 if algorithm is SPLIT else 0)
    assert meta["user_parts"] == parts
    assert meta["users_in_parts"] is (algorithm is SPLIT)

    assert manifest["model"]["bytes"] == len(model) and manifest["model"]["sha256"] == sha256_hex(model)
    expected = [{**part, "key": relative_key("p", paths.user_part(part["index"]))} for part in parts]
    assert manifest["model"]["user_parts"] == expected
    assert list(Draft202012Validator(load_schema("manifest")).iter_errors(manifest)) == []


@pytest.mark.parametrize("algorithm", [SPLIT, WHOLE], ids=["split", "whole"])
def test_a_predictor_refuses_a_model_that_is_not_the_one_train_wrote(
    s3: Any, algorithm: dict[str, Any]
) -> None:
    config = RunConfig.from_input(run_input(algorithm)).to_dict()
    write_snapshot(s3, SETTINGS, "r1", rows())
    trained = train.run(s3, SETTINGS, "r1", config)
    plan = get_json(s3, BUCKET, trained["shard_plan_key"])
    paths = RunPaths("p", "r1")
    original = get(s3, paths.model)
    truncate(s3, paths.model)
    with pytest.raises(ModelIntegrityError, match=r"model\.npz"):
        predict.run(s3, SETTINGS, "r1", plan[0], config["top_n"])
    if algorithm is SPLIT:  # the model intact again, one user part damaged
        s3.put_object(Bucket=BUCKET, Key=paths.model, Body=original)
        truncate(s3, paths.user_part(1))
        predict.run(s3, SETTINGS, "r1", plan[0], config["top_n"])  # its own part is intact
        with pytest.raises(ModelIntegrityError, match=r"users-00001\.npz"):
            predict.run(s3, SETTINGS, "r1", plan[1], config["top_n"])


def test_merge_refuses_a_model_that_is_not_the_one_train_wrote(s3: Any) -> None:
    config = RunConfig.from_input(run_input(SPLIT)).to_dict()
    extract = write_snapshot(s3, SETTINGS, "r1", rows())
    trained = train.run(s3, SETTINGS, "r1", config)
    for shard in get_json(s3, BUCKET, trained["shard_plan_key"]):
        predict.run(s3, SETTINGS, "r1", shard, config["top_n"])
    truncate(s3, RunPaths("p", "r1").model)
    with pytest.raises(ModelIntegrityError, match=r"model\.npz"):
        merge.run(s3, SETTINGS, "r1", config, extract, trained)
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="p/latest.json")


def test_a_run_whose_metadata_has_no_checksums_is_still_predicted_and_published(s3: Any) -> None:
    """A run trained before Train recorded them, resumed now: nothing to check against, so
    nothing is checked, and its manifest has no checksums either."""
    config = RunConfig.from_input(run_input(SPLIT)).to_dict()
    extract = write_snapshot(s3, SETTINGS, "r1", rows())
    trained = train.run(s3, SETTINGS, "r1", config)
    paths = RunPaths("p", "r1")
    meta = get_json(s3, BUCKET, paths.model_meta)
    del meta["model_object"], meta["user_parts"]
    put_json(s3, BUCKET, paths.model_meta, meta)
    for shard in get_json(s3, BUCKET, trained["shard_plan_key"]):
        predict.run(s3, SETTINGS, "r1", shard, config["top_n"])
    merge.run(s3, SETTINGS, "r1", config, extract, trained)
    manifest = get_json(s3, BUCKET, paths.manifest)
    assert not {"bytes", "sha256", "user_parts"} & set(manifest["model"])
    assert list(Draft202012Validator(load_schema("manifest")).iter_errors(manifest)) == []


@pytest.mark.parametrize("damage", ["truncated", "other bytes", "empty"])
def test_for_ratings_refuses_a_damaged_model_and_never_raises_badzipfile(
    s3: Any, tmp_path: Path, damage: str
) -> None:
    publish(s3, SETTINGS, "r1", rows(), run_input(SPLIT))
    folder = export(s3, tmp_path / "out")
    model = folder / relative_key("p", RunPaths("p", "r1").model)
    data = bytearray(model.read_bytes())
    if damage == "other bytes":  # one bit in the middle: zipfile would say "Bad CRC-32"
        data[len(data) // 2] ^= 0x01
    damaged = {"truncated": bytes(data[:-100]), "other bytes": bytes(data), "empty": b""}[damage]
    model.write_bytes(damaged)
    recs = Recommendations.open(folder)
    assert recs.for_user("u01").personal  # the shards are still served
    with pytest.raises(RecommendationsError, match=r"model\.npz does not match the manifest's"):
        recs.for_ratings({"i01": 5.0}, n=3)


def test_an_older_manifest_without_model_checksums_is_still_read(s3: Any, tmp_path: Path) -> None:
    publish(s3, SETTINGS, "r1", rows(), run_input(SPLIT))
    folder = export(s3, tmp_path / "out")
    key = json.loads((folder / "latest.json").read_text())["manifest"]
    manifest = json.loads((folder / key).read_text())
    for field in ("bytes", "sha256", "user_parts"):
        del manifest["model"][field]
    (folder / key).write_text(json.dumps(manifest))
    recs = Recommendations.open(folder)
    assert len(recs.for_ratings({"i01": 5.0}, n=3).items) == 3
    # unchecked, a damaged model is still a RecommendationsError, not BadZipFile
    model = folder / manifest["model"]["key"]
    model.write_bytes(model.read_bytes()[:-100])
    with pytest.raises(RecommendationsError, match=r"model\.npz is not a model this client reads"):
        Recommendations.open(folder).for_ratings({"i01": 5.0}, n=3)


def test_an_unreadable_model_metadata_is_a_recommendations_error(s3: Any, tmp_path: Path) -> None:
    publish(s3, SETTINGS, "r1", rows(), run_input(SPLIT))
    folder = export(s3, tmp_path / "out")
    meta = folder / relative_key("p", RunPaths("p", "r1").model_meta)
    for content in ("{", "[]", '{"no": "params"}'):
        meta.write_text(content)
        with pytest.raises(RecommendationsError, match=r"metadata\.json"):
            Recommendations.open(folder).for_ratings({"i01": 5.0}, n=3)
