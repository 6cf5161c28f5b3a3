"""The definition's Fargate paths, rendered with the substitutions CloudFormation gives it: the
choice reaches the Fargate task for `fargate` and the Train or Extract function for `lambda`; each
task state passes what `recommender.task` reads, retries only ECS's transient errors and records
any other failure; the Extract function receives the execution's input unchanged either way; the
local engine fills every substitution. statelint and cfn-lint with TrainCompute and
ExtractCompute =fargate and =lambda are in tests/integration/test_deploy_tools.py; the e2e tests run the
definition's Lambda path on the local engine."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from recommender import local, task
from tests.conftest import LOCAL_FUNCTIONS
from tests.fargate import (
    ACCOUNT,
    CHOICE_STATE,
    EXTRACT_CHOICE_STATE,
    EXTRACT_FARGATE_STATE,
    EXTRACT_LOOKUP_STATE,
    EXTRACT_NAMES,
    EXTRACT_STATE,
    FARGATE_STATE,
    LOOKUP_STATE,
    NAMES,
    REGION,
    SUBNETS,
    TASK_DEFINITION,
    TRAIN_STATE,
)
from tests.unit.test_template import ASL, BUCKET, ROOT, load_template, states


def task_variables(source: str) -> set[str]:
    """The RUN_* environment variables task.py reads."""
    return set(re.findall(r'(?:env\.get\(|_json_variable\(env, )"(RUN_\w+)"', source))


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def asl() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(ASL.read_text())
    return loaded


def rendered(compute: str, extract_substitutions: dict[str, str] | None = None) -> dict[str, Any]:
    """The definition with the substitutions CloudFormation gives it for `compute`."""
    substitutions = {
        s: f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{n}" for n, (_p, s) in LOCAL_FUNCTIONS.items()
    }
    substitutions[local.BUCKET_SUBSTITUTION] = BUCKET
    substitutions.update(extract_substitutions or local.EXTRACT_ON_LAMBDA)
    if compute == "lambda":
        substitutions.update(local.TRAIN_ON_LAMBDA)
    else:
        substitutions.update(
            TrainCompute=compute,
            TrainClusterArn=NAMES["TrainCluster.Arn"],
            TrainTaskDefinitionArn=TASK_DEFINITION,
            TrainSubnetIds=",".join(SUBNETS),  # !Ref SubnetIds, comma-separated
            TrainSecurityGroupId=NAMES["TrainTaskSecurityGroup.GroupId"],
        )
    loaded: dict[str, Any] = json.loads(local.render_definition(ASL.read_text(), substitutions))
    return loaded


def next_after_choice(definition: dict[str, Any], state_input: dict[str, Any]) -> str:
    """Run the Pass and Choice states on an input, as Step Functions would."""
    machine = definition["States"]
    lookup = machine[LOOKUP_STATE]
    assert lookup["Type"] == "Pass" and lookup["ResultPath"] == "$.train_on"
    data = {**state_input, "train_on": lookup["Result"]}
    assert lookup["Next"] == CHOICE_STATE
    choice = machine[CHOICE_STATE]
    for rule in choice["Choices"]:
        assert rule["Variable"] == "$.train_on" and set(rule) == {"Variable", "StringEquals", "Next"}
        if data["train_on"] == rule["StringEquals"]:
            return str(rule["Next"])
    return str(choice["Default"])


@pytest.mark.parametrize("compute", ["lambda", "fargate"])
def test_the_choice_covers_both_values(template: dict[str, Any], compute: str) -> None:
    assert compute in template["Parameters"]["TrainCompute"]["AllowedValues"]
    definition = rendered(compute)
    machine = definition["States"]
    assert machine["Extract the ratings from PostgreSQL"]["Next"] == LOOKUP_STATE
    after = next_after_choice(definition, {"run_id": "r", "config": {}})
    if compute == "lambda":
        assert after == TRAIN_STATE  # the Lambda path, unchanged from here on
    else:
        assert after == FARGATE_STATE
        assert machine[FARGATE_STATE]["Next"] == TRAIN_STATE  # returns what the task stored
    assert machine[TRAIN_STATE]["Next"] == "Recommend for every shard of users"
    # Both values reach a different state: no value falls through to the other path by accident.
    choice = machine[CHOICE_STATE]
    assert [r["StringEquals"] for r in choice["Choices"]] == ["fargate"]
    assert choice["Default"] == TRAIN_STATE


def test_the_fargate_state(asl: dict[str, Any]) -> None:
    state = states(asl)[FARGATE_STATE]
    assert state["Resource"] == "arn:aws:states:::ecs:runTask.sync"  # waits for the task to stop
    parameters = state["Parameters"]
    assert parameters["Cluster"] == "${TrainClusterArn}"
    assert parameters["TaskDefinition"] == "${TrainTaskDefinitionArn}"
    assert parameters["LaunchType"] == "FARGATE"
    network = parameters["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert network == {
        "Subnets.$": "States.StringSplit('${TrainSubnetIds}', ',')",
        "SecurityGroups": ["${TrainSecurityGroupId}"],
        "AssignPublicIp": "DISABLED",
    }
    (override,) = parameters["Overrides"]["ContainerOverrides"]
    environment = {e["Name"]: e["Value.$"] for e in override["Environment"]}
    assert environment == {"RUN_ID": "$.run_id", "RUN_CONFIG": "States.JsonToString($.config)"}
    # What the container reads is what is passed; the Train function gets the same two fields.
    source = Path(task.__file__).read_text()
    # (RUN_INPUT is the extract command's: test_the_extract_fargate_state.)
    assert task_variables(source) - {"RUN_INPUT"} == set(environment)
    train_payload = states(asl)[TRAIN_STATE]["Parameters"]["Payload"]
    assert train_payload == {"run_id.$": "$.run_id", "config.$": "$.config"}
    # The task's description is not kept: the Train function's result becomes $.train.
    assert state["ResultPath"] is None
    assert 900 < state["TimeoutSeconds"] <= 24 * 3600
    # Only ECS's transient errors are retried; a task that stopped with an error is not (bad data,
    # out of memory or an image that cannot be pulled would fail the same way again).
    (retry,) = state["Retry"]
    assert "States.TaskFailed" not in retry["ErrorEquals"] and "States.ALL" not in retry["ErrorEquals"]
    assert set(retry["ErrorEquals"]) >= {"ECS.AmazonECSException", "AmazonECS.Unknown"}
    assert all(e.startswith(("ECS.", "AmazonECS.")) for e in retry["ErrorEquals"])
    assert retry["MaxAttempts"] <= 3
    # Any failure is recorded like the Train function's.
    assert state["Catch"] == states(asl)[TRAIN_STATE]["Catch"]
    assert state["Catch"] == [
        {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Record the failure"}
    ]


def test_the_subnets_reach_the_task_as_a_list() -> None:
    """States.StringSplit of the comma-separated SubnetIds gives back the list (as Step Functions splits)."""
    network = rendered("fargate")["States"][FARGATE_STATE]["Parameters"]["NetworkConfiguration"]
    call = network["AwsvpcConfiguration"]["Subnets.$"]
    match = re.fullmatch(r"States\.StringSplit\('([^']*)', '(.)'\)", call)
    assert match
    assert match.group(1).split(match.group(2)) == SUBNETS


# --- extracting on Fargate (ExtractCompute=fargate) -----------------------------------------------


def rendered_extract(compute: str) -> dict[str, Any]:
    substitutions = dict(local.EXTRACT_ON_LAMBDA)
    if compute == "fargate":
        substitutions.update(
            ExtractCompute="fargate",
            ExtractClusterArn=EXTRACT_NAMES["ExtractCluster.Arn"],
            ExtractTaskDefinitionArn=EXTRACT_NAMES["ExtractTaskDefinition"],
            ExtractSubnetIds=",".join(SUBNETS),
            ExtractSecurityGroupId=EXTRACT_NAMES["RecommendationFunctionSecurityGroup.GroupId"],
        )
    return rendered("lambda", substitutions)


def path_value(path: str, data: Any, context: dict[str, Any]) -> Any:
    """A JSONPath of the simple forms the definition uses ($, $.a.b, $$.Execution.Name)."""
    root, rest = (context, path[2:]) if path.startswith("$$") else (data, path[1:])
    for key in [k for k in rest.split(".") if k]:
        root = root[key]
    return root


def parameters_value(template: Any, data: Any, context: dict[str, Any]) -> Any:
    """A Parameters block evaluated as Step Functions does (JSONPath fields, no intrinsics)."""
    if isinstance(template, dict):
        return {
            (k[:-2] if k.endswith(".$") else k): (
                path_value(v, data, context) if k.endswith(".$") else parameters_value(v, data, context)
            )
            for k, v in template.items()
        }
    return template


def walk_to_extract(definition: dict[str, Any], execution_input: Any) -> tuple[list[str], Any]:
    """The states from StartAt to the Extract function, and the input that state receives."""
    machine, name, data, visited = definition["States"], definition["StartAt"], execution_input, []
    context = {"Execution": {"Name": "exec-1"}}
    while name != EXTRACT_STATE:
        visited.append(name)
        state = machine[name]
        assert "InputPath" not in state and "OutputPath" not in state
        if state["Type"] == "Pass":
            assert "ResultPath" not in state  # the Parameters' value becomes the output
            data = parameters_value(state["Parameters"], data, context)
            name = state["Next"]
        elif state["Type"] == "Choice":
            rules = [
                r for r in state["Choices"] if path_value(r["Variable"], data, context) == r["StringEquals"]
            ]
            name = rules[0]["Next"] if rules else state["Default"]
        else:
            assert state["Resource"] == "arn:aws:states:::ecs:runTask.sync"
            assert state["ResultPath"] is None  # the task's description is dropped: input passes through
            name = state["Next"]
    return visited, data


@pytest.mark.parametrize("compute", ["lambda", "fargate"])
@pytest.mark.parametrize(
    "execution_input",
    [
        json.loads((ROOT / "events" / "state_machine_input.json").read_text()),
        {"run_id": "resumed-1", "top_n": 3, "extract_on": "fargate", "input": {"nested": True}},
        {},
    ],
)
def test_the_extract_function_receives_the_original_input(compute: str, execution_input: Any) -> None:
    definition = rendered_extract(compute)
    visited, data = walk_to_extract(definition, execution_input)
    expected = [EXTRACT_LOOKUP_STATE, EXTRACT_CHOICE_STATE]
    assert visited == ([*expected, EXTRACT_FARGATE_STATE] if compute == "fargate" else expected)
    payload = definition["States"][EXTRACT_STATE]["Parameters"]["Payload"]
    context = {"Execution": {"Name": "exec-1"}}
    assert parameters_value(payload, data, context) == {"execution_name": "exec-1", "input": execution_input}
    # What the Fargate task gets is the same input (States.JsonToString of it) and the same name.
    if compute == "fargate":
        (override,) = definition["States"][EXTRACT_FARGATE_STATE]["Parameters"]["Overrides"][
            "ContainerOverrides"
        ]
        environment = {e["Name"]: e["Value.$"] for e in override["Environment"]}
        assert environment == {"RUN_ID": "$$.Execution.Name", "RUN_INPUT": "States.JsonToString($.input)"}
    # The Extract function's result replaces the state's data: the Train placement reads $.
    assert definition["States"][EXTRACT_STATE]["ResultPath"] == "$"
    assert definition["States"][EXTRACT_STATE]["Next"] == LOOKUP_STATE


def test_the_extract_fargate_state(asl: dict[str, Any]) -> None:
    machine = states(asl)
    state, train_state = machine[EXTRACT_FARGATE_STATE], machine[FARGATE_STATE]
    assert asl["StartAt"] == EXTRACT_LOOKUP_STATE
    parameters = state["Parameters"]
    assert parameters["Cluster"] == "${ExtractClusterArn}"
    assert parameters["TaskDefinition"] == "${ExtractTaskDefinitionArn}"
    assert parameters["LaunchType"] == "FARGATE"
    assert parameters["NetworkConfiguration"]["AwsvpcConfiguration"] == {
        "Subnets.$": "States.StringSplit('${ExtractSubnetIds}', ',')",
        "SecurityGroups": ["${ExtractSecurityGroupId}"],
        "AssignPublicIp": "DISABLED",
    }
    source = Path(task.__file__).read_text()
    assert {"RUN_ID", "RUN_INPUT"} <= task_variables(source)
    # The same Retry and Catch policy as the Fargate train task.
    for field in ("Retry", "Catch", "TimeoutSeconds", "ResultPath"):
        assert state[field] == train_state[field], field
    assert state["Next"] == EXTRACT_STATE
    choice = machine[EXTRACT_CHOICE_STATE]
    assert [r["StringEquals"] for r in choice["Choices"]] == ["fargate"]
    assert choice["Default"] == EXTRACT_STATE
