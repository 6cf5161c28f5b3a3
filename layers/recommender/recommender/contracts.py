"""What the steps hand each other and what a run records of itself, each field named once.

Step Functions carries JSON between the states, and the ASL picks fields out of it by path
(`$.Payload.model_key`, `$.train.shard_plan_key`, `$.config.top_n`): those paths are a contract
that no Python code reads. The definitions here are what both sides agree on. The steps build and
read their results through them (mypy checks every key), and tests/unit/test_template.py checks
every path the ASL reads against them, so renaming a field fails the tests, not a run on AWS.

They are TypedDicts: at run time each is the plain dict that JSON makes, so a step's result goes
to Step Functions, and a record to S3, as it is.

Words, one meaning each:
- a *shard* is a contiguous range of users that one predictor handles; the shard plan holds one
  `Shard` per shard, which is also the item the DISTRIBUTED Map hands each predictor;
- a *shard object* is the gzip JSON Lines a predictor writes for its shard (`RunPaths.shard_object`),
  listed in the manifest's `shards` as a `ManifestShard`;
- a *user part* is a shard's users cut out of a split model (`RunPaths.user_part`, `model.UserPart`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, NotRequired, TypedDict, cast

from .config import RunConfig

#: The run's configuration as Extract resolved it: `RunConfig.to_dict()` with the algorithm's
#: effective parameters and the run id filled in. Its fields are RunConfig's (the annotation says
#: so to the ASL test); Train and Merge parse it back with `RunConfig.from_input`.
ResolvedConfig = Annotated[dict[str, Any], RunConfig]


# --- Extract ------------------------------------------------------------------------------------


class DatasetFigures(TypedDict):
    """What Extract measured of the snapshot. The same figures are in the snapshot's metadata,
    Extract's result and the manifest's `dataset` section (see `dataset_figures`)."""

    rows: int
    bytes: int
    sha256: str
    extracted_at: str
    source_rows: int
    dropped: dict[str, int]
    invalid_rows: int
    duplicates_merged: int


class DatasetMetadata(DatasetFigures):
    """`dataset/metadata.json`, written once the snapshot is complete: a resumed run finds it and
    reuses the snapshot."""

    seconds: float
    columns: list[str]
    source: dict[str, Any]


class ExtractSummary(DatasetFigures):
    """Extract's `extract` section: where the snapshot is and what it holds. The state keeps it
    as `$.extract` and hands it to Merge."""

    dataset_key: str
    seconds: float  # 0.0 when the snapshot was reused
    reused: bool


class ExtractEvent(TypedDict):
    """What the ASL passes the Extract function."""

    execution_name: str
    input: Any  # the execution's input, checked by `steps.extract.validate_input`


class ExtractResult(TypedDict):
    """What Extract returns; its ResultPath is `$`, so this becomes the state's data."""

    run_id: str
    config: ResolvedConfig
    extract: ExtractSummary


def dataset_figures(source: Mapping[str, Any]) -> DatasetFigures:
    """The `DatasetFigures` fields of `source` (the snapshot's metadata, or Extract's summary)."""
    return cast(DatasetFigures, {name: source[name] for name in DatasetFigures.__annotations__})


# --- Train --------------------------------------------------------------------------------------


class TrainEvent(TypedDict):
    """What the ASL passes the Train function (and the Fargate task, as RUN_ID and RUN_CONFIG)."""

    run_id: str
    config: ResolvedConfig


class QualitySummary(TypedDict, total=False):
    """NDCG@top_n of the model and of the popularity baseline; empty when the run was not
    measured. The whole report is in the model's metadata (`quality`)."""

    ndcg: float | None
    popularity_ndcg: float | None


class TrainSummary(TypedDict):
    """What the state keeps of Train's result (its ResultSelector), as `$.train`: the plan's key
    for the Map's ItemReader, and the figures Merge records."""

    model_key: str
    shard_plan_key: str
    shards: int
    users: int
    items: int
    ratings: int
    seconds: float  # 0.0 when the model was reused
    reused: bool


class TrainResult(TrainSummary):
    """What Train returns: its summary, and what its handler turns into metrics."""

    fit_seconds: float  # the fit that wrote the model, also when it is reused (e.g. on Fargate)
    quality: QualitySummary


class ObjectRecord(TypedDict):
    """Size and SHA-256 of a model object, as Train wrote it: its readers check what they read."""

    bytes: int
    sha256: str


class UserPartRecord(ObjectRecord):
    index: int  # the shard whose users the part holds


class ModelMetadata(TypedDict):
    """`model/metadata.json`, written after the model's objects and before the shard plan."""

    algorithm: str
    params: dict[str, Any]
    kind: str
    rating_scale: list[float]
    users: int
    items: int
    ratings: int
    global_mean: float
    fit_seconds: NotRequired[float]
    versions: dict[str, str]
    quality: NotRequired[dict[str, Any] | None]
    users_in_parts: bool
    # algorithm "auto": every candidate's figures and the choice (choice.Choice.record)
    choice: NotRequired[dict[str, Any]]
    # absent from a model Train wrote before it recorded its objects
    model_object: NotRequired[ObjectRecord]
    user_parts: NotRequired[list[UserPartRecord]]
    # who rated what (`similarity.Raters`), when the similar items are by co-occurrence
    raters_object: NotRequired[ObjectRecord]


class ItemShard(TypedDict):
    """The items whose similar items a predictor lists besides its users (`similarity`): items
    `start` to `end` in UTF-8 byte order of their ids (`model.utf8_order`), from `first_item` to
    `last_item`. `min_support` is the run's `similar_min_support`."""

    start: int
    end: int
    items: int
    first_item: str
    last_item: str
    min_support: int


class Shard(TypedDict):
    """One shard of the plan (`shards.json`, the Map's ItemReader): users `start` to `end` in
    `ModelArrays.user_order`, whose ids run from `first_user` to `last_user`."""

    index: int
    start: int
    end: int
    users: int
    first_user: str
    last_user: str
    # users who rated every item, whose list is empty by rule; absent from a plan written before
    # it was counted (a resumed run)
    users_without_unseen: NotRequired[int]
    # the item shard this predictor lists similar items for; absent when there are fewer item
    # shards than shards (and from a plan written before similar items were published)
    similar: NotRequired[ItemShard]


# --- Predict ------------------------------------------------------------------------------------


class PredictEvent(TypedDict):
    """What the Map's ItemSelector builds for each predictor."""

    run_id: str
    top_n: int
    shard: Shard


class PredictResult(TypedDict):
    """What a predictor returns. The Map keeps none of it (OutputPath null): its handler logs it
    and turns it into metrics."""

    index: int
    key: str  # the shard object's key
    users: int
    seconds: float  # 0.0 when a complete shard object was reused
    reused: bool
    similar_items: NotRequired[int]  # items of its item shard, when the plan gives it one


# --- Merge --------------------------------------------------------------------------------------


class MergeEvent(TypedDict):
    """What the ASL passes the Merge function."""

    run_id: str
    config: ResolvedConfig
    extract: ExtractSummary
    train: TrainSummary


class MergeResult(TypedDict):
    """What Merge returns; the state keeps it as `$.published`."""

    manifest_key: str
    latest_key: str
    published: bool  # whether latest.json now points to this run
    status: str  # the manifest's: "published" or "held"
    gate: str  # the quality gate's decision
    latest_run_id: str | None  # the run latest.json points to now; None when none is published
    users: int
    shards: int
    # the manifest's quality.below_popularity and the NDCG ratio to popularity's (for the metrics);
    # None when the run was not measured
    below_popularity: bool | None
    popularity_ratio: float | None


class ManifestDataset(DatasetFigures):
    """The manifest's `dataset` section (keys relative to the prefix)."""

    key: str
    metadata_key: str


class ManifestShard(TypedDict):
    """One entry of the manifest's `shards`: a shard and its verified shard object."""

    index: int
    key: str  # relative to the prefix
    users: int
    first_user: str
    last_user: str
    bytes: int
    sha256: str
    seconds: float  # the predictor's, as it recorded it on the object


class RecordFailureEvent(TypedDict):
    """What the ASL passes the function that records a failure: the failed state's whole data."""

    execution_name: str
    state: RunState  # as far as the run got, with the error under "error"


class RecordFailureResult(TypedDict):
    run_id: str
    failure_key: str


# --- The state machine's data ---------------------------------------------------------------------


class StateError(TypedDict):
    """What a Catch puts under `$.error`."""

    Error: str
    Cause: str


class RunState(TypedDict, total=False):
    """The execution's state data as the ASL builds it, state after state: the input under
    `input` with where to extract; then Extract's result replaces it all; Train's summary is added
    under `train`, Merge's result under `published`, and a caught error under `error`."""

    extract_on: str
    input: Any
    run_id: str
    config: ResolvedConfig
    extract: ExtractSummary
    train_on: str
    train: TrainSummary
    published: MergeResult
    error: StateError
    record_error: StateError  # when recording the failure failed too
