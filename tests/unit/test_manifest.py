"""The manifest and latest.json against the JSON Schemas shipped with the package."""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import jsonschema
import pytest
from jsonschema import Draft202012Validator

from recommender.config import RunConfig
from recommender.contracts import ManifestDataset, ManifestShard
from recommender.manifest import SCHEMA_VERSION, build_latest, build_manifest, load_schema, utc_now
from recommender.versions import library_versions


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _manifest() -> dict[str, Any]:
    config = RunConfig.from_input(
        {"algorithm": "SVD", "top_n": 3, "users_per_shard": 2, "params": {"n_factors": 8}}
    ).to_dict()
    return build_manifest(
        run_id="run-2024-05-01_a",
        config=config,
        dataset=ManifestDataset(
            key="runs/run-2024-05-01_a/dataset/ratings.csv.gz",
            metadata_key="runs/run-2024-05-01_a/dataset/metadata.json",
            rows=12,
            extracted_at="2026-11-28T06:00:00.000Z",
            source_rows=13,
            dropped={"null_rating": 1},
            invalid_rows=1,
            duplicates_merged=0,
            bytes=345,
            sha256=_sha("dataset"),
        ),
        model={
            "key": "runs/run-2024-05-01_a/model/model.npz",
            "metadata_key": "runs/run-2024-05-01_a/model/metadata.json",
            "algorithm": "SVD",
            "params": {"n_factors": 8, "random_state": 0, "verbose": False},
            "kind": "SVD",
            "users": 3,
            "items": 5,
            "ratings": 12,
            "rating_scale": [1.0, 5.0],
        },
        shards=[
            ManifestShard(
                index=0,
                key="runs/run-2024-05-01_a/recommendations/shard-00000.jsonl.gz",
                users=2,
                first_user="a",
                last_user="b\n2",
                bytes=120,
                sha256=_sha("shard 0"),
                seconds=0.25,
            ),
            ManifestShard(
                index=1,
                key="runs/run-2024-05-01_a/recommendations/shard-00001.jsonl.gz",
                users=1,
                first_user="😀",
                last_user="😀",
                bytes=80,
                sha256=_sha("shard 1"),
                seconds=0.5,
            ),
        ],
        fallback={
            "key": "runs/run-2024-05-01_a/fallback.json",
            "items": ["i3", "i1", "i4"],
            "scores": [4.1, 3.9, 3.9],
        },
        timings={
            "extract_seconds": 1.23456,
            "train_seconds": 2.0,
            "predict_seconds_total": 0.75,
            "predict_seconds_max_shard": 0.5,
            "merge_seconds": 0.1,
        },
        versions=library_versions(),
    )


def _validator(name: str) -> Draft202012Validator:
    schema = load_schema(name)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _errors(name: str, document: dict[str, Any]) -> list[str]:
    return [error.message for error in _validator(name).iter_errors(document)]


def _is_utc_timestamp(text: str) -> bool:
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    offset = parsed.utcoffset()
    return text.endswith("Z") and offset is not None and offset.total_seconds() == 0


def test_manifest_is_valid() -> None:
    manifest = _manifest()
    assert _errors("manifest", manifest) == []
    assert manifest["schema_version"] == SCHEMA_VERSION == 1
    assert manifest["users"] == 3  # the sum over the shards
    assert manifest["top_n"] == 3
    assert manifest["timings"]["extract_seconds"] == 1.235
    assert _is_utc_timestamp(manifest["created_at"])
    # what is published is JSON: it survives a round trip unchanged and still validates
    again = json.loads(json.dumps(manifest, ensure_ascii=False))
    assert again == manifest
    assert _errors("manifest", again) == []


def test_latest_is_valid() -> None:
    manifest = _manifest()
    latest = build_latest(
        manifest["run_id"],
        "runs/run-2024-05-01_a/manifest.json",
        manifest["created_at"],
        "2026-11-28T06:00:00.000Z",
    )
    assert _errors("latest", latest) == []
    assert latest["created_at"] == manifest["created_at"]
    assert _is_utc_timestamp(latest["published_at"])
    assert latest["published_at"] >= latest["created_at"]


def test_utc_now() -> None:
    text = utc_now()
    assert _is_utc_timestamp(text)
    assert abs(datetime.fromisoformat(text).timestamp() - datetime.now(UTC).timestamp()) < 60


@pytest.mark.parametrize(
    "field",
    [
        "schema_version",
        "run_id",
        "created_at",
        "top_n",
        "dataset",
        "model",
        "shards",
        "fallback",
        "timings",
        "versions",
        "users",
    ],
)
def test_manifest_missing_field_fails(field: str) -> None:
    manifest = _manifest()
    del manifest[field]
    assert any(field in message for message in _errors("manifest", manifest))


@pytest.mark.parametrize(
    "path",
    [
        ("dataset", "sha256"),
        ("model", "kind"),
        ("shards", 0, "sha256"),
        ("shards", 1, "first_user"),
        ("fallback", "key"),
        ("fallback", "items"),
        ("timings", "merge_seconds"),
    ],
)
def test_manifest_missing_nested_field_fails(path: tuple[Any, ...]) -> None:
    manifest = _manifest()
    target: Any = manifest
    for step in path[:-1]:
        target = target[step]
    del target[path[-1]]
    assert _errors("manifest", manifest)


@pytest.mark.parametrize(
    "bad", ["", "abc", "A" * 64, "g" * 64, _sha("x") + "0", _sha("x")[:-1], _sha("x").upper()]
)
def test_bad_sha256_fails(bad: str) -> None:
    for where in ("dataset", "shard"):
        manifest = _manifest()
        if where == "dataset":
            manifest["dataset"]["sha256"] = bad
        else:
            manifest["shards"][1]["sha256"] = bad
        assert _errors("manifest", manifest), (where, bad)


@pytest.mark.parametrize(
    ("change", "value"),
    [
        (("run_id",), "a/b"),
        (("schema_version",), 2),
        (("model", "kind"), ""),
        (("model", "rating_scale"), [1.0]),
        (("shards",), []),
        (("shards", 0, "users"), 0),
        (("shards", 0, "start"), 0),  # the plan's internal fields stay out of the manifest
        (("timings", "merge_seconds"), -1),
        (("top_n",), 0),
        (("unexpected",), True),
    ],
)
def test_manifest_invalid_values_fail(change: tuple[Any, ...], value: Any) -> None:
    manifest = _manifest()
    target: Any = manifest
    for step in change[:-1]:
        target = target[step]
    target[change[-1]] = value
    assert _errors("manifest", manifest)


def test_manifest_accepts_unchanged_copy() -> None:
    """The mutation tests above fail because of their change, not because the base is invalid."""
    assert _errors("manifest", copy.deepcopy(_manifest())) == []


@pytest.mark.parametrize("field", ["schema_version", "run_id", "manifest", "created_at", "published_at"])
def test_latest_missing_field_fails(field: str) -> None:
    latest = build_latest("r1", "runs/r1/manifest.json", utc_now(), "2026-11-28T06:00:00.000Z")
    del latest[field]
    assert any(field in message for message in _errors("latest", latest))


def test_latest_bad_values_fail() -> None:
    latest = build_latest("r1", "runs/r1/manifest.json", utc_now(), "2026-11-28T06:00:00.000Z")
    assert _errors("latest", {**latest, "run_id": "r 1"})
    assert _errors("latest", {**latest, "extra": 1})
    assert _errors("latest", {**latest, "manifest": 3})


def test_schemas_are_loadable() -> None:
    for name in ("manifest", "latest"):
        schema = load_schema(name)
        assert schema["$schema"].endswith("2020-12/schema")
        jsonschema.validators.validator_for(schema).check_schema(schema)
    with pytest.raises(FileNotFoundError):
        load_schema("nope")


def test_library_versions_are_what_the_libraries_say() -> None:
    """Read from the distributions' metadata, so that Merge records them without importing
    Surprise; they are what the libraries report of themselves."""
    import platform
    import sys

    import numpy
    import surprise

    assert library_versions() == {
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "scikit-surprise": surprise.__version__,
        "platform": sys.platform,
    }


# --- the client's own schema check (recommender.validation) gives jsonschema's verdicts -----------------


def _mutations() -> list[tuple[str, Any]]:
    """(schema name, document): valid documents and documents broken in every way tested above."""
    manifest = _manifest()
    latest = build_latest("r1", "runs/r1/manifest.json", utc_now(), "2026-11-28T06:00:00.000Z")
    documents: list[tuple[str, Any]] = [("manifest", manifest), ("latest", latest)]

    def changed(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
        document = copy.deepcopy(manifest)
        target: Any = document
        for step in path[:-1]:
            target = target[step]
        if value is _DELETE:
            del target[path[-1]]
        else:
            target[path[-1]] = value
        return document

    paths = [(f,) for f in manifest] + [
        ("dataset", "sha256"),
        ("model", "kind"),
        ("model", "key"),
        ("shards", 0, "sha256"),
        ("shards", 1, "first_user"),
        ("fallback", "key"),
        ("fallback", "items"),
        ("fallback", "scores"),
        ("timings", "merge_seconds"),
        ("gate", "decision"),
        ("model", "rating_scale"),
    ]
    values = [
        _DELETE,
        None,
        True,
        0,
        -1,
        1.5,
        "",
        "x",
        "../x",
        "a//b",
        [],
        [1],
        [1, 2, 3],
        ["x"],
        {},
        {"x": 1},
    ]
    documents += [("manifest", changed(path, value)) for path in paths for value in values]
    documents += [("manifest", changed(("shards", 0, "key"), key)) for key in UNSAFE_KEYS]
    documents += [("latest", {**latest, "manifest": key}) for key in UNSAFE_KEYS]
    documents += [("latest", {**latest, field: value}) for field in latest for value in values]
    documents += [("manifest", []), ("latest", "x"), ("latest", None)]
    documents += [("manifest", changed(("unexpected",), 1)), ("latest", {**latest, "unexpected": 1})]
    documents += [("manifest", changed(("shards", 0, "start"), 0)), ("manifest", changed(("model", "x"), 0))]
    record = {"user": "u", "items": ["a", "b"], "scores": [2.0, 1.0]}
    documents += [("shard-record", record), ("shard-record", {**record, "items": ["a", "a"]})]
    documents += [("shard-record", {**record, field: value}) for field in record for value in values]
    return documents


_DELETE = object()
UNSAFE_KEYS = ["../x", "/etc/passwd", "a//b", "a/./b", "a/../../b", "a\\b", "a/", "", "a\x00b", ".", ".."]
SAFE_KEYS = [
    "latest.json",
    "runs/r1/manifest.json",
    "a/.b/..c/...",
    "x",
    "runs/r1/recommendations/shard-00001",
]


def test_the_client_check_agrees_with_jsonschema() -> None:
    """Closed (additionalProperties enforced) it finds a problem exactly where jsonschema finds one.
    Formats are annotations in draft 2020-12 unless a format checker is asked for: neither checks
    them here."""
    from recommender.validation import problems

    for name, document in _mutations():
        schema = load_schema(name)
        expected = bool(list(Draft202012Validator(schema).iter_errors(document)))
        assert bool(list(problems(document, schema, closed=True))) == expected, (name, document)


def test_open_the_client_check_accepts_fields_it_does_not_know() -> None:
    from recommender.validation import problems

    manifest = _manifest()
    manifest["added_later"] = 1
    manifest["shards"][0]["added_later"] = {"x": [1]}
    assert list(problems(manifest, load_schema("manifest"))) == []
    assert list(problems(manifest, load_schema("manifest"), closed=True)) != []


def test_a_schema_keyword_the_check_does_not_know_fails_loudly() -> None:
    from recommender.errors import UnsupportedSchemaError
    from recommender.validation import problems

    with pytest.raises(UnsupportedSchemaError, match="oneOf"):
        list(problems(1, {"oneOf": [{"type": "integer"}]}))


def test_the_schemas_key_rule_is_the_clients() -> None:
    from recommender.client import check_key
    from recommender.errors import RecommendationsError

    pattern = load_schema("manifest")["$defs"]["key"]
    assert pattern == load_schema("latest")["$defs"]["key"]
    validator = Draft202012Validator(pattern)
    for key in UNSAFE_KEYS:
        assert not validator.is_valid(key), key
        with pytest.raises(RecommendationsError):
            check_key(key)
    for key in SAFE_KEYS:
        assert validator.is_valid(key), key
        assert check_key(key) == key
