"""The ASL and the steps agree on recommender.contracts.

Every JSONPath the state machine reads (a Lambda's Payload, a ResultSelector, the Map's reader and
selector, a Choice, the ECS overrides, the Fail state) must name a field of the contract it reads
from, and every object the ASL builds for a step must be that step's event, field for field and
type for type. The steps then return their contracts at run time (mypy checks the code itself).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin, get_type_hints, is_typeddict

import numpy as np
import pytest

from recommender import contracts
from recommender.config import RunConfig, Settings
from recommender.contracts import (
    DatasetMetadata,
    ExtractEvent,
    ExtractResult,
    ExtractSummary,
    ItemShard,
    MergeEvent,
    MergeResult,
    PredictEvent,
    PredictResult,
    RecordFailureEvent,
    RecordFailureResult,
    RunState,
    Shard,
    TrainEvent,
    TrainResult,
)
from recommender.model import ModelArrays, utf8_order
from recommender.sharding import plan_shards
from recommender.steps import extract, merge, predict, train
from recommender.storage import RunPaths, get_json, put_json
from tests.conftest import mocked_s3
from tests.publishing import write_snapshot

ROOT = Path(__file__).resolve().parents[2]
ASL = ROOT / "statemachine" / "recommender.asl.json"
BUCKET = "contracts"

#: what each Lambda the ASL invokes receives and returns, by its DefinitionSubstitution
STEPS: dict[str, tuple[type, type]] = {
    "ExtractFunctionArn": (ExtractEvent, ExtractResult),
    "TrainFunctionArn": (TrainEvent, TrainResult),
    "PredictFunctionArn": (PredictEvent, PredictResult),
    "MergeFunctionArn": (MergeEvent, MergeResult),
    "RecordFailureFunctionArn": (RecordFailureEvent, RecordFailureResult),
}
#: the context object's paths the ASL reads: the execution's name, and the item the Map's
#: ItemReader read from the shard plan
CONTEXT: dict[str, Any] = {"$$.Execution.Name": str, "$$.Map.Item.Value": Shard}
LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
PATH_IN_TEXT = re.compile(r"\$\$?(?:\.\w+)*")


def load_asl() -> dict[str, Any]:
    asl: dict[str, Any] = json.loads(ASL.read_text())
    return asl


def fields(contract: Any) -> dict[str, Any]:
    """The fields of a contract and their types: a TypedDict's, or a dataclass's for a dict that
    `Annotated` ties to one (the resolved config is RunConfig's fields)."""
    if get_origin(contract) is Annotated:
        dataclass = next(m for m in get_args(contract)[1:] if dataclasses.is_dataclass(m))
        return get_type_hints(dataclass)
    assert is_typeddict(contract), f"{contract} is no contract with fields"
    return get_type_hints(contract, include_extras=True)


def resolve(path: str, root: Any) -> Any:
    """The type at `path` (`$`, `$.a.b`, a context path) when the state's data is a `root`."""
    if path.startswith("$$"):
        assert path in CONTEXT, f"the ASL reads {path} of the context object"
        return CONTEXT[path]
    assert path == "$" or path.startswith("$."), f"not a plain JSONPath: {path}"
    current = root
    for name in path.split(".")[1:]:
        known = fields(current)
        assert name in known, f"{path}: {name!r} is not a field of {getattr(current, '__name__', current)}"
        current = known[name]
    return current


def read_paths(template: Any) -> Iterator[tuple[str, str]]:
    """(field, path) of every `name.$` value in an ASL Parameters-like object, nested ones too;
    a path inside an intrinsic function (`States.JsonToString($.input)`) counts."""
    if isinstance(template, dict):
        for key, value in template.items():
            if key.endswith(".$"):
                for path in PATH_IN_TEXT.findall(value):
                    yield key.removesuffix(".$"), path
            else:
                yield from read_paths(value)
    elif isinstance(template, list):
        for value in template:
            yield from read_paths(value)


def all_states(asl: dict[str, Any], inside_map: bool = False) -> Iterator[tuple[str, dict[str, Any], bool]]:
    """(name, state, whether it runs inside the Map's ItemProcessor) of every state."""
    for name, state in asl["States"].items():
        yield name, state, inside_map
        if "ItemProcessor" in state:
            yield from all_states(state["ItemProcessor"], inside_map=True)


def invoked(state: dict[str, Any]) -> tuple[type, type]:
    function = state["Parameters"]["FunctionName"]
    substitution = function.removeprefix("${").removesuffix("}")
    assert substitution in STEPS, f"no contract for {function}"
    return STEPS[substitution]


def lambda_states(asl: dict[str, Any]) -> list[tuple[str, dict[str, Any], bool]]:
    return [s for s in all_states(asl) if s[1].get("Resource") == LAMBDA_INVOKE]


def test_every_path_the_asl_reads_is_a_field_of_a_contract() -> None:
    """Outside the Map, a state reads the execution's data (RunState); inside it, the item the
    ItemSelector built (PredictEvent); a ResultSelector reads the Lambda's answer, whose Payload
    is the step's result."""
    checked = 0
    for name, state, inside_map in all_states(load_asl()):
        data = PredictEvent if inside_map else RunState
        reads = list(read_paths(state.get("Parameters", {})))
        reads += list(read_paths(state.get("ItemSelector", {})))
        reads += list(read_paths(state.get("ItemReader", {}).get("Parameters", {})))
        reads += [("", c["Variable"]) for c in state.get("Choices", [])]
        reads += [("", state[k]) for k in ("MaxConcurrencyPath", "ErrorPath", "CausePath") if k in state]
        for _field, path in reads:
            resolve(path, data)
            checked += 1
        if "ResultSelector" in state:
            _event, result = invoked(state)
            for _field, path in read_paths(state["ResultSelector"]):
                assert path.startswith("$.Payload."), f"{name}: {path}"
                resolve("$." + path.removeprefix("$.Payload."), result)
                checked += 1
        # where a state or its Catch writes into the execution's data is a field of it too
        targets = [state.get("ResultPath")] + [c["ResultPath"] for c in state.get("Catch", [])]
        for target in targets:
            if target not in (None, "$"):
                resolve(target, data)
                checked += 1
    assert checked >= 30  # every state was walked


def test_each_step_receives_its_event_field_for_field() -> None:
    """What the ASL builds for a Lambda (its Payload, or for the predictor the Map's
    ItemSelector) has exactly the event's fields, each read from a field of the same type."""
    asl = load_asl()
    (map_state,) = [s for _n, s, _m in all_states(asl) if s["Type"] == "Map"]
    for name, state, inside_map in lambda_states(asl):
        event, _result = invoked(state)
        payload = state["Parameters"].get("Payload")
        data: type[Any]
        if payload is None:  # the whole input: inside the Map, the item the ItemSelector built
            assert inside_map and state["Parameters"]["Payload.$"] == "$", name
            payload, data = map_state["ItemSelector"], RunState
        else:
            data = PredictEvent if inside_map else RunState
        assert {k.removesuffix(".$") for k in payload} == set(event.__annotations__), name
        expected = fields(event)
        for field, path in read_paths(payload):
            assert resolve(path, data) == expected[field], f"{name}: {field} <- {path}"


def test_each_result_selector_keeps_what_the_state_holds() -> None:
    """A ResultSelector's fields are those of the contract its ResultPath puts in the execution's
    data, each taken from a field of the step's result of the same type."""
    for name, state, _inside_map in lambda_states(load_asl()):
        if "ResultSelector" not in state:
            continue
        _event, result = invoked(state)
        target = state["ResultPath"]
        kept = result if target == "$" else resolve(target, RunState)  # "$": the result is the state
        assert {k.removesuffix(".$") for k in state["ResultSelector"]} == set(kept.__annotations__), name
        for field, path in read_paths(state["ResultSelector"]):
            assert resolve("$." + path.removeprefix("$.Payload."), result) == fields(kept)[field], name


def test_the_resolved_config_is_run_configs_fields() -> None:
    assert get_args(contracts.ResolvedConfig)[1] is RunConfig
    assert set(RunConfig().to_dict()) == set(fields(contracts.ResolvedConfig))


def model(user_ids: list[str]) -> ModelArrays:
    n_items = 3
    return ModelArrays(
        kind="SVD",
        user_ids=user_ids,
        item_ids=[f"i{i}" for i in range(n_items)],
        seen_indptr=np.zeros(len(user_ids) + 1, dtype=np.int64),
        seen_indices=np.zeros(0, dtype=np.int32),
        item_counts=np.ones(n_items, dtype=np.int64),
        global_mean=3.0,
        rating_scale=(1.0, 5.0),
        unknown_user_scores=np.full(n_items, 3.0),
        user_order=utf8_order(user_ids),
    )


def test_the_plan_holds_shards() -> None:
    plan = plan_shards(model([f"u{k}" for k in range(7)]), 3)
    assert len(plan) == 3
    # a catalogue under MIN_ITEMS_PER_SHARD makes one item shard, on the first shard
    assert set(plan[0]) == set(Shard.__annotations__)
    assert set(plan[0]["similar"]) == set(ItemShard.__annotations__)
    assert all(set(shard) == set(Shard.__annotations__) - {"similar"} for shard in plan[1:])


@pytest.fixture
def s3() -> Iterator[Any]:
    with mocked_s3(BUCKET) as client:
        yield client


def never_connect() -> Any:
    raise AssertionError("the snapshot exists: Extract must not connect")


def test_the_steps_return_their_contracts(s3: Any) -> None:
    """Each step's result, fresh and reused, has exactly its contract's fields."""
    settings = Settings(bucket=BUCKET, prefix="p")
    rows = [(f"u{u}", f"i{i}", float(1 + (u + i) % 5)) for u in range(12) for i in range(6) if (u * i) % 4]
    summary = write_snapshot(s3, settings, "r1", rows)
    assert set(summary) == set(ExtractSummary.__annotations__)
    # Extract as a resumed run sees it: the snapshot and its metadata exist.
    paths = RunPaths("p", "r1")
    metadata = DatasetMetadata(
        **contracts.dataset_figures(summary), seconds=0.5, columns=["user", "item", "rating"], source={}
    )
    put_json(s3, BUCKET, paths.dataset_meta, metadata)
    extracted = extract.run(never_connect, s3, settings, "r1", extract.validate_input({"users_per_shard": 5}))
    assert set(extracted) == set(ExtractResult.__annotations__)
    assert set(extracted["extract"]) == set(ExtractSummary.__annotations__)
    assert contracts.dataset_figures(extracted["extract"]) == contracts.dataset_figures(summary)
    config = extracted["config"]
    for _attempt in range(2):  # fitted, then reused
        trained = train.run(s3, settings, "r1", config)
        assert set(trained) == set(TrainResult.__annotations__)
    for shard in get_json(s3, BUCKET, trained["shard_plan_key"]):
        for _attempt in range(2):  # written, then reused
            predicted = predict.run(s3, settings, "r1", shard, config["top_n"])
            # a shard with an item shard also says how many items it listed similar items for
            without = set() if "similar" in shard else {"similar_items"}
            assert set(predicted) == set(PredictResult.__annotations__) - without
    merged = merge.run(s3, settings, "r1", config, extracted["extract"], trained)
    assert set(merged) == set(MergeResult.__annotations__)
    manifest = get_json(s3, BUCKET, merged["manifest_key"])
    assert set(manifest["dataset"]) == set(contracts.ManifestDataset.__annotations__)
    assert all(set(entry) == set(contracts.ManifestShard.__annotations__) for entry in manifest["shards"])
