"""Reading a published run the way an app server does: from a folder with the bucket's layout."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from jsonschema import Draft202012Validator

from recommender.client import Recommendations
from recommender.contracts import ManifestDataset, ManifestShard
from recommender.errors import RecommendationsError
from recommender.manifest import build_latest, build_manifest, load_schema
from recommender.model import ModelArrays
from recommender.scoring import fallback, recommend
from recommender.sharding import encode_shard, plan_shards, shard_users
from recommender.snapshot import ratings_from_rows
from recommender.storage import RunPaths, latest_key, relative_key, sha256_hex
from recommender.training import fit, model_from_fit
from recommender.versions import library_versions
from tests.doubles import as_s3

RUN_ID = "run-1"
PREFIX = "recs"  # keys in the manifest are relative to it; the folder is the prefix's content
TOP_N = 6


@dataclass
class Published:
    root: Path
    manifest: dict[str, Any]
    model: ModelArrays
    expected: dict[str, tuple[list[str], list[float]]]  # raw user -> (items, scores) as published


def _rows() -> list[tuple[str, str, str]]:
    rng = np.random.default_rng(21)
    users = [f"user{k:02d}" for k in range(20)] + ["line\nbreak", "sep\u2028arator", 'q"uote', "😀"]
    rows = []
    for u in users:
        for i in rng.choice(12, size=5, replace=False).tolist():
            rows.append((u, f"item {i}", str(int(rng.integers(1, 6)))))
    return [rows[k] for k in rng.permutation(len(rows)).tolist()]


def _publish(
    root: Path,
    rows: list[tuple[str, str, str]] | None = None,
    run_id: str = RUN_ID,
    similar: Callable[[Path, ModelArrays, RunPaths], dict[str, Any]] | None = None,
) -> Published:
    """A run published into `root`: users' shards, fallback, manifest, latest.json. `similar`, when
    given, writes the run's item shards and returns the manifest's `similar` section
    (test_client_similar.py)."""
    fitted = fit(ratings_from_rows(rows or _rows()), "SVD", {"n_factors": 4, "n_epochs": 10}, (1.0, 5.0))
    model = model_from_fit(fitted)
    paths = RunPaths(PREFIX, run_id)
    shards: list[ManifestShard] = []
    expected: dict[str, tuple[list[str], list[float]]] = {}
    for planned in plan_shards(model, 5):
        lists = list(recommend(model, shard_users(model, planned), TOP_N))
        data, count = encode_shard(model, lists)
        key = relative_key(PREFIX, paths.shard_object(planned["index"]))
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(data)
        for top in lists:
            expected[model.user_ids[top.user]] = (
                [model.item_ids[i] for i in top.items.tolist()],
                [round(s, 6) for s in top.scores.tolist()],
            )
        shards.append(
            ManifestShard(
                index=planned["index"],
                key=key,
                users=count,
                first_user=planned["first_user"],
                last_user=planned["last_user"],
                bytes=len(data),
                sha256=sha256_hex(data),
                seconds=0.01,
            )
        )
    top = fallback(model, TOP_N)
    fallback_doc = {
        "key": relative_key(PREFIX, paths.fallback),
        "items": [model.item_ids[i] for i in top.items.tolist()],
        "scores": [round(s, 6) for s in top.scores.tolist()],
    }
    manifest = build_manifest(
        run_id=run_id,
        config={"top_n": TOP_N, "algorithm": "SVD", "params": {}},
        dataset=ManifestDataset(
            key=relative_key(PREFIX, paths.dataset),
            metadata_key=relative_key(PREFIX, paths.dataset_meta),
            rows=fitted.trainset.n_ratings,
            extracted_at="2026-11-28T06:00:00.000Z",
            source_rows=13,
            dropped={"null_rating": 1},
            invalid_rows=1,
            duplicates_merged=0,
            bytes=1,
            sha256="0" * 64,
        ),
        model={
            "key": relative_key(PREFIX, paths.model),
            "metadata_key": relative_key(PREFIX, paths.model_meta),
            "algorithm": "SVD",
            "params": fitted.params,
            "kind": model.kind,
            "users": model.n_users,
            "items": model.n_items,
            "ratings": fitted.trainset.n_ratings,
            "rating_scale": list(model.rating_scale),
        },
        shards=shards,
        fallback=fallback_doc,
        timings={
            "extract_seconds": 0.1,
            "train_seconds": 0.1,
            "predict_seconds_total": 0.1,
            "predict_seconds_max_shard": 0.01,
            "merge_seconds": 0.1,
        },
        versions=library_versions(),
        similar=similar(root, model, paths) if similar is not None else None,
    )
    assert list(Draft202012Validator(load_schema("manifest")).iter_errors(manifest)) == []
    manifest_key = relative_key(PREFIX, paths.manifest)
    (root / manifest_key).write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")
    latest = build_latest(run_id, manifest_key, manifest["created_at"], "2026-11-28T06:00:00.000Z")
    (root / latest_key("")).write_text(json.dumps(latest), encoding="utf-8")
    return Published(root, manifest, model, expected)


@pytest.fixture
def published(tmp_path: Path) -> Published:
    return _publish(tmp_path)


def test_layout(published: Published) -> None:
    assert (published.root / "latest.json").is_file()
    assert len(published.manifest["shards"]) == 5  # 24 users, 5 a shard
    assert len(published.expected) == published.model.n_users


def test_every_user_gets_their_list(published: Published) -> None:
    recs = Recommendations.open(published.root)
    assert recs.run_id == RUN_ID
    for user, (items, scores) in published.expected.items():
        answer = recs.for_user(user)
        assert answer.personal is True
        assert answer.user == user and answer.run_id == RUN_ID
        assert answer.items == items and answer.scores == scores
        assert len(answer.items) == TOP_N


def test_first_middle_and_last_shard(published: Published) -> None:
    recs = Recommendations.open(str(published.root))
    shards = published.manifest["shards"]
    for shard in (shards[0], shards[len(shards) // 2], shards[-1]):
        for user in (shard["first_user"], shard["last_user"]):
            assert recs.shard_for(user) == shard
            answer = recs.for_user(user)
            assert answer.personal
            assert (answer.items, answer.scores) == published.expected[user]


def test_tricky_ids(published: Published) -> None:
    recs = Recommendations.open(published.root)
    for user in ("line\nbreak", "sep\u2028arator", 'q"uote', "😀"):
        answer = recs.for_user(user)
        assert answer.personal
        assert (answer.items, answer.scores) == published.expected[user]


def _fallback(manifest: dict[str, Any]) -> tuple[list[str], list[float]]:
    return manifest["fallback"]["items"], manifest["fallback"]["scores"]


def test_unknown_user_between_shards_gets_the_fallback(published: Published) -> None:
    recs = Recommendations.open(published.root)
    shards = published.manifest["shards"]
    between = shards[1]["last_user"] + "\x00"
    assert shards[1]["last_user"].encode() < between.encode() < shards[2]["first_user"].encode()
    assert between not in published.expected
    assert recs.shard_for(between) is None
    answer = recs.for_user(between)
    assert answer.personal is False
    assert (answer.items, answer.scores) == _fallback(published.manifest)
    assert answer.items  # not empty: the fallback is a real list
    assert answer.items != published.expected[shards[1]["last_user"]][0]


@pytest.mark.parametrize("user", ["", "\x00", "a", "user00x", "user99", "\U0010ffff", "USER01"])
def test_unknown_users_get_the_fallback(published: Published, user: str) -> None:
    assert user not in published.expected
    answer = Recommendations.open(published.root).for_user(user)
    assert answer.personal is False
    assert (answer.items, answer.scores) == _fallback(published.manifest)


# n below 1 is refused: test_a_bad_n_is_refused_by_for_user_and_for_ratings_alike
@pytest.mark.parametrize("n", [1, 3, TOP_N, 100])
def test_n_truncates(published: Published, n: int) -> None:
    recs = Recommendations.open(published.root)
    user = published.manifest["shards"][2]["first_user"]
    items, scores = published.expected[user]
    answer = recs.for_user(user, n=n)
    assert answer.items == items[:n] and answer.scores == scores[:n]
    assert len(answer.items) == min(n, TOP_N)
    unknown = recs.for_user("nobody", n=n)
    assert unknown.items == _fallback(published.manifest)[0][:n]
    assert len(unknown.scores) == min(n, TOP_N)


def test_altered_shard_is_refused(published: Published) -> None:
    shard = published.manifest["shards"][3]
    path = published.root / shard["key"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    recs = Recommendations.open(published.root)
    with pytest.raises(RecommendationsError, match="checksum"):
        recs.for_user(shard["first_user"])
    # the other shards are still served
    other = published.manifest["shards"][0]["first_user"]
    assert recs.for_user(other).items == published.expected[other][0]


def test_missing_shard_is_an_error(published: Published) -> None:
    shard = published.manifest["shards"][1]
    (published.root / shard["key"]).unlink()
    with pytest.raises(RecommendationsError, match="does not exist"):
        Recommendations.open(published.root).for_user(shard["last_user"])


def test_not_a_published_folder(tmp_path: Path) -> None:
    with pytest.raises(RecommendationsError, match=r"latest\.json"):
        Recommendations.open(tmp_path)


def test_latest_decides_which_run_is_read(published: Published) -> None:
    recs = Recommendations.open(published.root)
    assert recs.manifest == published.manifest
    # a second run published later: a new open() follows latest.json, the old object stays put
    fallback_doc = {**published.manifest["fallback"], "items": [], "scores": []}
    manifest = dict(published.manifest, run_id="run-2", fallback=fallback_doc)
    key = "runs/run-2/manifest.json"
    (published.root / key).parent.mkdir(parents=True)
    (published.root / key).write_text(json.dumps(manifest), encoding="utf-8")
    latest = build_latest("run-2", key, manifest["created_at"], "2026-11-28T06:00:00.000Z")
    (published.root / "latest.json").write_text(json.dumps(latest), encoding="utf-8")
    assert Recommendations.open(published.root).for_user("nobody").run_id == "run-2"
    assert Recommendations.open(published.root).for_user("nobody").items == []
    assert recs.for_user("nobody").run_id == RUN_ID


def test_a_403_on_a_missing_key_names_both_causes() -> None:
    """S3 answers 403, not 404, for a missing key to a reader that may not list the bucket: the
    error says so instead of surfacing a bare AccessDenied."""
    import boto3
    from botocore.stub import Stubber

    from recommender.client import S3Reader

    s3 = boto3.client("s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    with Stubber(s3) as stub:
        stub.add_client_error("get_object", service_error_code="AccessDenied", http_status_code=403)
        with pytest.raises(RecommendationsError, match=r"s3://b/p/latest.json does not exist or this role"):
            S3Reader(s3, "b", "p").read("latest.json")


# --- how many items, and which to leave out: one check for for_user, for_ratings and the CLI ---------

BAD_COUNTS: list[tuple[object, type[Exception]]] = [
    (-1, ValueError),
    (0, ValueError),
    (-100, ValueError),
    (True, TypeError),
    (False, TypeError),
]
BAD_COUNTS += [(2.0, TypeError), ("3", TypeError), (float("nan"), TypeError)]


@pytest.mark.parametrize(("n", "error"), BAD_COUNTS)
def test_a_bad_n_is_refused_by_for_user_and_for_ratings_alike(
    published: Published, n: Any, error: type[Exception]
) -> None:
    recs = Recommendations.open(published.root)
    user = published.manifest["shards"][2]["first_user"]
    with pytest.raises(error, match="n must be a whole number >= 1, or None"):
        recs.for_user(user, n=n)
    with pytest.raises(error, match="n must be a whole number >= 1, or None"):
        recs.for_user("nobody", n=n)
    # refused before the model is read (this folder has none: reading it would fail otherwise)
    with pytest.raises(error, match="n must be a whole number >= 1, or None"):
        recs.for_ratings({"item 1": 4.0}, n=n)


def test_n_none_is_every_published_item_and_numpy_integers_count(published: Published) -> None:
    recs = Recommendations.open(published.root)
    user = published.manifest["shards"][2]["first_user"]
    assert recs.for_user(user, n=None).items == published.expected[user][0]
    numpy_count: Any = np.int64(2)  # numpy integers count too
    assert recs.for_user(user, n=numpy_count).items == published.expected[user][0][:2]


@pytest.mark.parametrize("exclude", ["item 1", b"item 1", ["item 1", 7], {None}])
def test_exclude_must_be_a_collection_of_item_ids(published: Published, exclude: Any) -> None:
    recs = Recommendations.open(published.root)
    user = published.manifest["shards"][2]["first_user"]
    with pytest.raises(TypeError, match="exclude must be a collection of item ids"):
        recs.for_user(user, exclude=exclude)
    with pytest.raises(TypeError, match="exclude must be a collection of item ids"):
        recs.for_ratings({"item 1": 4.0}, exclude=exclude)


@pytest.mark.parametrize("value", ["-1", "0", "1.5", "all"])
def test_the_cli_refuses_a_bad_n(
    published: Published, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from recommender.cli import main

    user = published.manifest["shards"][2]["first_user"]
    for argv in (["recommend", user], ["recommend", "--rated", "item 1=4"]):
        with pytest.raises(SystemExit) as stopped:
            main([*argv, "--from", str(published.root), "-n", value])
        assert stopped.value.code == 2
        assert "argument -n: n must be a whole number >= 1" in capsys.readouterr().err


# --- keys stay inside the published folder ---------------------------------------------------------


@pytest.fixture
def site(tmp_path: Path) -> Published:
    """A published folder, with a folder beside it that no key may reach."""
    (tmp_path / "site").mkdir()
    (tmp_path / "outside").mkdir()
    return _publish(tmp_path / "site")


def _rewrite_manifest(published: Published, **changes: Any) -> None:
    manifest = {**published.manifest, **changes}
    key = json.loads((published.root / "latest.json").read_text())["manifest"]
    (published.root / key).write_text(json.dumps(manifest), encoding="utf-8")


def _point_latest_at(published: Published, manifest_key: str) -> None:
    latest = json.loads((published.root / "latest.json").read_text())
    (published.root / "latest.json").write_text(json.dumps({**latest, "manifest": manifest_key}))


def _outside(published: Published) -> Path:
    return published.root.parent / "outside"


def _hostile_manifest_keys(published: Published) -> list[str]:
    """The manifest copied outside the folder, and keys that reach it from latest.json."""
    key = json.loads((published.root / "latest.json").read_text())["manifest"]
    copy = _outside(published) / "manifest.json"
    copy.write_bytes((published.root / key).read_bytes())
    depth = "../" * (len(Path(key).parts) - 1)
    return [
        "../outside/manifest.json",
        str(copy),
        f"{depth}../outside/manifest.json",
        f"runs/{depth}../outside/manifest.json",
    ]


def test_a_manifest_key_outside_the_folder_is_refused(site: Published) -> None:
    for key in _hostile_manifest_keys(site):
        _point_latest_at(site, key)
        with pytest.raises(RecommendationsError, match="manifest"):
            Recommendations.open(site.root)


@pytest.mark.parametrize("how", ["dot-dot", "absolute", "backslash", "empty segment", "dot"])
def test_a_shard_key_outside_the_folder_is_refused(site: Published, how: str) -> None:
    shards = [dict(s) for s in site.manifest["shards"]]
    copy = _outside(site) / "shard.jsonl.gz"
    copy.write_bytes((site.root / shards[1]["key"]).read_bytes())  # same bytes: the checksum matches
    shards[1]["key"] = {
        "dot-dot": "runs/../../outside/shard.jsonl.gz",
        "absolute": str(copy),
        "backslash": "runs\\..\\..\\outside\\shard.jsonl.gz",
        "empty segment": "runs//" + shards[1]["key"].removeprefix("runs/"),
        "dot": "./" + shards[1]["key"],
    }[how]
    _rewrite_manifest(site, shards=shards)
    with pytest.raises(RecommendationsError, match="shards"):
        Recommendations.open(site.root).for_user(shards[1]["first_user"])


def test_a_symlink_out_of_the_folder_is_refused(site: Published) -> None:
    shard = site.manifest["shards"][1]
    path = site.root / shard["key"]
    copy = _outside(site) / "shard.jsonl.gz"
    copy.write_bytes(path.read_bytes())
    path.unlink()
    path.symlink_to(copy)
    recs = Recommendations.open(site.root)
    with pytest.raises(RecommendationsError, match="outside"):
        recs.for_user(shard["first_user"])
    # a symlink that stays inside the folder is followed
    other = site.manifest["shards"][2]
    inside = site.root / "elsewhere.jsonl.gz"
    (site.root / other["key"]).rename(inside)
    (site.root / other["key"]).symlink_to(inside)
    assert recs.for_user(other["first_user"]).items == site.expected[other["first_user"]][0]


def test_a_symlinked_folder_or_latest_out_of_the_root_is_refused(site: Published) -> None:
    (site.root / "runs").rename(_outside(site) / "runs")
    (site.root / "runs").symlink_to(_outside(site) / "runs")
    with pytest.raises(RecommendationsError, match="outside"):
        Recommendations.open(site.root)
    (site.root / "latest.json").rename(_outside(site) / "latest.json")
    (site.root / "latest.json").symlink_to(_outside(site) / "latest.json")
    with pytest.raises(RecommendationsError, match="outside"):
        Recommendations.open(site.root)


def test_a_root_reached_through_a_symlink_is_read(site: Published) -> None:
    link = site.root.parent / "current"
    link.symlink_to(site.root)
    user = site.manifest["shards"][0]["first_user"]
    assert Recommendations.open(link).for_user(user).items == site.expected[user][0]


@pytest.mark.parametrize("field", ["key", "metadata_key"])
def test_model_keys_outside_the_folder_are_refused_by_for_ratings(site: Published, field: str) -> None:
    outside = _outside(site)
    (outside / "model.npz").write_bytes(site.model.to_bytes())
    (outside / "metadata.json").write_text(json.dumps({"params": site.manifest["model"]["params"]}))
    model = dict(site.manifest["model"])
    for name, file in (("key", "model.npz"), ("metadata_key", "metadata.json")):
        inside = site.root / model[name]
        inside.parent.mkdir(parents=True, exist_ok=True)
        inside.write_bytes((outside / file).read_bytes())
    model[field] = f"../outside/{'model.npz' if field == 'key' else 'metadata.json'}"
    _rewrite_manifest(site, model=model)
    with pytest.raises(RecommendationsError, match="model"):
        Recommendations.open(site.root).for_ratings({"item 1": 5.0}, n=3)


UNSAFE_KEYS = ["../x", "/etc/passwd", "a//b", "a/./b", "a/../../b", "a\\b", "a/", "", "a\x00b"]


@pytest.mark.parametrize("key", UNSAFE_KEYS)
def test_both_readers_refuse_an_unsafe_key_before_reading(tmp_path: Path, key: str) -> None:
    from recommender.client import FolderReader, S3Reader

    class NoS3:
        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"S3 was asked ({name}) for {key!r}")

    (tmp_path / "x").write_text("outside")
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    with pytest.raises(RecommendationsError, match="refused key"):
        FolderReader(root).read(key)
    with pytest.raises(RecommendationsError, match="refused key"):
        S3Reader(as_s3(NoS3()), "bucket", "prefix").read(key)


# --- latest.json and the manifest are checked against their schemas ----------------------------------


def _broken(manifest: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of `manifest` with the field at `path` (dots, [k] for list items) set to
    `value`, or removed when value is DELETE."""
    doc: dict[str, Any] = json.loads(json.dumps(manifest))
    parts = [p if not p.isdigit() else int(p) for p in path.replace("[", ".").replace("]", "").split(".")]
    holder: Any = doc
    for part in parts[:-1]:
        holder = holder[part]
    if value is DELETE:
        del holder[parts[-1]]
    else:
        holder[parts[-1]] = value
    return doc


DELETE = object()
BROKEN_MANIFESTS = [
    ("fallback", DELETE, r"fallback: a required field is missing"),
    ("fallback.items", "item 1", r"fallback\.items: "),
    ("fallback.scores[1]", "x", r"fallback\.scores\[1\]: "),
    ("fallback.scores", DELETE, r"fallback\.scores: a required field is missing"),
    ("shards", {}, r"shards: "),
    ("shards", [], r"shards: "),
    ("shards[0].users", "5", r"shards\[0\]\.users: "),
    ("shards[0].sha256", 5, r"shards\[0\]\.sha256: "),
    ("shards[2].sha256", "ABC", r"shards\[2\]\.sha256: "),
    ("shards[1].first_user", DELETE, r"shards\[1\]\.first_user: a required field is missing"),
    ("shards[1].index", -1, r"shards\[1\]\.index: "),
    ("top_n", True, r"top_n: "),
    ("model", None, r"model: "),
    ("model.key", 3, r"model\.key: "),
    ("run_id", "../x", r"run_id: "),
    ("schema_version", 2, r"schema_version: .*2"),
    ("users", 1.5, r"users: "),
]


@pytest.mark.parametrize(("path", "value", "message"), BROKEN_MANIFESTS)
def test_a_malformed_manifest_is_refused_naming_the_field(
    published: Published, path: str, value: Any, message: str
) -> None:
    broken = _broken(published.manifest, path, value)
    # the schema itself says it is wrong: the client's check is the schema's, not another rule
    assert list(Draft202012Validator(load_schema("manifest")).iter_errors(broken))
    key = json.loads((published.root / "latest.json").read_text())["manifest"]
    (published.root / key).write_text(json.dumps(broken), encoding="utf-8")
    with pytest.raises(RecommendationsError, match=message) as refused:
        Recommendations.open(published.root)
    assert "manifest.json" in str(refused.value)


def test_fallback_items_and_scores_must_pair_up(published: Published) -> None:
    broken = _broken(published.manifest, "fallback.scores", published.manifest["fallback"]["scores"][:-1])
    _rewrite_manifest(published, fallback=broken["fallback"])
    with pytest.raises(RecommendationsError, match=r"fallback: .*items.*scores"):
        Recommendations.open(published.root)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"manifest": DELETE}, r"latest\.json: manifest: a required field is missing"),
        ({"manifest": 7}, r"latest\.json: manifest: "),
        ({"schema_version": 2}, r"latest\.json: schema_version: .*2"),
        ({"run_id": "run-2"}, r"names run run-2 but its manifest is run run-1"),
    ],
)
def test_a_malformed_latest_is_refused_naming_the_field(
    published: Published, change: dict[str, Any], message: str
) -> None:
    latest = json.loads((published.root / "latest.json").read_text())
    for name, value in change.items():
        if value is DELETE:
            del latest[name]
        else:
            latest[name] = value
    (published.root / "latest.json").write_text(json.dumps(latest))
    with pytest.raises(RecommendationsError, match=message):
        Recommendations.open(published.root)


def test_a_list_instead_of_an_object_is_refused(published: Published) -> None:
    (published.root / "latest.json").write_text("[]")
    with pytest.raises(RecommendationsError, match=r"latest\.json: .*object"):
        Recommendations.open(published.root)


def test_fields_the_client_does_not_know_are_accepted(published: Published) -> None:
    """A writer may add an optional field within schema version 1: the client reads on."""
    shards = [{**s, "added_later": 1} for s in published.manifest["shards"]]
    model = {**published.manifest["model"], "added_later": {"x": 1}}
    _rewrite_manifest(published, shards=shards, model=model, added_later=[1])
    user = published.manifest["shards"][0]["first_user"]
    assert Recommendations.open(published.root).for_user(user).items == published.expected[user][0]


def test_a_malformed_new_run_keeps_the_old_one_serving(published: Published) -> None:
    recs = Recommendations.open(published.root, refresh_seconds=0)
    broken = _broken(published.manifest, "fallback.items", None)
    broken["run_id"] = "run-2"
    key = "runs/run-2/manifest.json"
    (published.root / key).parent.mkdir(parents=True)
    (published.root / key).write_text(json.dumps(broken), encoding="utf-8")
    latest = build_latest("run-2", key, broken["created_at"], "2026-11-29T06:00:00.000Z")
    (published.root / "latest.json").write_text(json.dumps(latest), encoding="utf-8")
    assert recs.refresh() is False
    assert recs.for_user("nobody").run_id == RUN_ID
    assert "fallback.items" in (recs.last_refresh_error or "")


@pytest.mark.parametrize(
    "content",
    [b"not gzip", gzip.compress(b"not json\n"), gzip.compress(b'{"user": "u"}\n'), gzip.compress(b"[1]\n")],
    ids=["not gzip", "not json", "a record without items", "not a record"],
)
def test_a_shard_that_matches_its_checksum_but_not_the_format_is_refused(
    published: Published, content: bytes
) -> None:
    shards = [dict(s) for s in published.manifest["shards"]]
    (published.root / shards[1]["key"]).write_bytes(content)
    shards[1]["sha256"] = sha256_hex(content)
    _rewrite_manifest(published, shards=shards)
    with pytest.raises(RecommendationsError, match="shard-00001"):
        Recommendations.open(published.root).for_user(shards[1]["first_user"])
