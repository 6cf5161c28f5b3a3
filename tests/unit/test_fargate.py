"""Training on Fargate (the template's TrainCompute=fargate), checked without AWS and without Docker.

- the template: the parameters and the rules that guard them (the task sizes Fargate allows, cross-
  checked with cfn-lint's own table), the conditional resources, the task definition, the task role
  (exactly the Train function's S3 grants), the execution role, and what the state machine may do;
- the definition: the choice reaches the Fargate task for `fargate` and the Train function for
  `lambda`, the task state passes what `recommender.task` reads, retries only ECS's transient
  errors and records any other failure; the local engine fills every substitution;
- `recommender.task`, the container's command: trains a run from a snapshot in (moto's) S3, prints
  its result, after which the Train function returns the stored model without fitting again; bad
  input and failures exit non-zero with a clear message;
- the image: the Dockerfile installs the dependencies layer's hash-locked requirements, which hold
  every package their packages need (the SDK's included), and copies the recommender layer its first
  stage builds; with a Python 3.13 on this machine, `python -m recommender.task` runs with only
  those on its path (the image's contents, built for this machine's architecture rather than
  ARM64), against S3 served by moto over HTTP.

Extracting on Fargate (ExtractCompute=fargate), the same way: the parameter, rule and conditional
resources, the task definition (the same image, command `extract`, the Extract function's
environment), the task role (exactly the Extract function's grants), what the state machine may do,
the choice for both values with the Extract function receiving the execution's input unchanged, and
`recommender.task extract` against moto's S3 and the test PostgreSQL, after which the Extract step
returns the stored snapshot without reading the database.

statelint and cfn-lint with TrainCompute and ExtractCompute =fargate and =lambda are in
tests/unit/test_deploy.py; the e2e tests run the definition's Lambda path on the local engine.
"""

from __future__ import annotations

import importlib.resources
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from email.parser import Parser
from pathlib import Path
from typing import Any

import boto3
import jsonschema
import numpy as np
import psycopg2
import pytest
from moto import mock_aws
from moto.server import ThreadedMotoServer
from packaging.markers import Marker
from packaging.requirements import Requirement

from recommender import local, task
from recommender.config import RunConfig, Settings, SourceTable
from recommender.sample_data import load_ratings
from recommender.steps import extract, train
from recommender.storage import RunPaths, get_json, object_exists
from tests.conftest import LOCAL_FUNCTIONS
from tests.publishing import write_snapshot
from tests.unit.test_deploy import read_lock
from tests.unit.test_template import (
    ASL,
    BUCKET,
    PREFIX,
    ROOT,
    RUN,
    S3_ACCESS,
    S3_DENIED,
    _resolve,
    allows,
    function_environment,
    function_statements,
    load_template,
    state_machine,
    states,
)

DOCKERFILE = ROOT / "containers" / "train" / "Dockerfile"
DOCKERIGNORE = DOCKERFILE.with_name("Dockerfile.dockerignore")
LAYER_LOCK = ROOT / "layers" / "dependencies" / "requirements.lock"
PACKAGE = ROOT / "layers" / "recommender"

FARGATE_STATE = "Train the model on Fargate"
TRAIN_STATE = "Train the model and plan the shards"
CHOICE_STATE = "Choose where to train"
LOOKUP_STATE = "Look up where to train"
CONTAINER = "train"
CONDITION = "TrainsOnFargate"
FARGATE_RESOURCES = {
    "TrainCluster",
    "TrainTaskLogGroup",
    "TrainTaskSecurityGroup",
    "TrainTaskExecutionRole",
    "TrainTaskRole",
    "TrainTaskDefinition",
}

# What the intrinsics of the Fargate resources resolve to in these tests.
ACCOUNT, REGION = "123456789012", "us-east-1"
CLUSTER = "recommender-TrainCluster-AbCdEf123456"
TASK_DEFINITION = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/recommender-train:3"
NAMES = {
    "TrainCluster": CLUSTER,
    "TrainCluster.Arn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{CLUSTER}",
    "TrainTaskDefinition": TASK_DEFINITION,
    "TrainTaskRole.Arn": f"arn:aws:iam::{ACCOUNT}:role/recommender-TrainTaskRole-1A2B3C",
    "TrainTaskExecutionRole.Arn": f"arn:aws:iam::{ACCOUNT}:role/recommender-TrainTaskExecutionRole-4D5E6F",
    "TrainTaskLogGroup": "/ecs/recommender-train",
    "TrainTaskLogGroup.Arn": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/ecs/recommender-train:*",
    "TrainTaskSecurityGroup.GroupId": "sg-0fedcba9876543210",
    "VpcId": "vpc-0abc12345678def90",
    "TrainImageUri": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/recommender-train:1.0",
}
SUBNETS = ["subnet-0aaa1111bbbb2222c", "subnet-0ddd3333eeee4444f"]


def resolve(value: Any) -> Any:
    return _resolve(value, NAMES)


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


def fargate_statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    """The state machine's statements that exist only with TrainCompute=fargate."""
    conditional = [
        p["Fn::If"] for p in state_machine(template)["Policies"] if isinstance(p, dict) and "Fn::If" in p
    ]
    (policy,) = [c for c in conditional if c[0] == CONDITION]
    _condition, document, otherwise = policy
    assert otherwise == {"Ref": "AWS::NoValue"}
    return [resolve(s) for s in document["Statement"]]


def role_statements(template: dict[str, Any], logical: str) -> list[dict[str, Any]]:
    role = template["Resources"][logical]["Properties"]
    return [resolve(s) for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]


# --- parameters and rules ------------------------------------------------------------------------


def test_train_compute_defaults_to_the_lambda(template: dict[str, Any]) -> None:
    parameters = template["Parameters"]
    compute = parameters["TrainCompute"]
    assert compute["Default"] == "lambda" and compute["AllowedValues"] == ["lambda", "fargate"]
    # With HasVpc, which the rules require with fargate anyway (cfn-lint sees VpcId's empty default
    # in the train task's group otherwise).
    assert template["Conditions"][CONDITION] == {
        "Fn::And": [{"Fn::Equals": [{"Ref": "TrainCompute"}, "fargate"]}, {"Condition": "HasVpc"}]
    }
    assert parameters["TrainImageUri"]["Default"] == ""  # required only with fargate (a rule)
    assert (parameters["TrainTaskCpu"]["Default"], parameters["TrainTaskMemory"]["Default"]) == (
        "2048",
        "16384",
    )
    groups = template["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
    (fargate_group,) = [g for g in groups if "Fargate" in g["Label"]["default"]]
    assert fargate_group["Parameters"] == [
        "TrainCompute",
        "ExtractCompute",
        "TrainImageUri",
        "TrainTaskCpu",
        "TrainTaskMemory",
    ]


def test_image_uri_is_an_ecr_image(template: dict[str, Any]) -> None:
    pattern = re.compile(template["Parameters"]["TrainImageUri"]["AllowedPattern"])
    for good in (
        "",
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com/recommender-train:1.0",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/recommender-train",
        "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/recommender-train:v2",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/recommender-train@sha256:" + "a" * 64,
    ):
        assert pattern.fullmatch(good), good
    for bad in (
        "python:3.13-slim",  # Docker Hub: the execution role only pulls from this account's ECR
        "public.ecr.aws/docker/library/python:3.13",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/Recommender:1",
    ):
        assert not pattern.fullmatch(bad), bad


def _fargate_memory_table(cpu: str) -> list[int]:
    """The memory (MiB) Fargate allows with `cpu` units, from cfn-lint's own table (rule E3047)."""
    import cfnlint.data.schemas.extensions.aws_ecs_taskdefinition as schemas

    schema = json.loads(importlib.resources.files(schemas).joinpath("fargate_cpu_memory.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    return [
        memory
        for memory in range(512, 131072 + 1, 512)
        if validator.is_valid({"RequiresCompatibilities": ["FARGATE"], "Cpu": cpu, "Memory": memory})
    ]


def _rule_value(value: Any, parameters: dict[str, str]) -> Any:
    """Evaluate the rule functions this template uses, with the given parameter values."""
    if isinstance(value, dict):
        ((name, arguments),) = value.items()
        if name == "Ref":
            return parameters[arguments]
        evaluated = [_rule_value(a, parameters) for a in arguments]
        if name == "Fn::Equals":
            return evaluated[0] == evaluated[1]
        if name == "Fn::Not":
            return not evaluated[0]
        if name == "Fn::And":
            return all(evaluated)
        if name == "Fn::Contains":
            return evaluated[1] in evaluated[0]
        raise AssertionError(f"rule function {name} is not evaluated here")
    if isinstance(value, list):
        return [_rule_value(v, parameters) for v in value]
    return value


def rule_failures(template: dict[str, Any], **given: str) -> list[str]:
    """The AssertDescriptions CloudFormation would stop a deployment with, for these parameters."""
    parameters = {name: str(p.get("Default", "")) for name, p in template["Parameters"].items()}
    parameters.update(given)
    failures = []
    for rule in template["Rules"].values():
        if "RuleCondition" in rule and not _rule_value(rule["RuleCondition"], parameters):
            continue
        for assertion in rule["Assertions"]:
            if not _rule_value(assertion["Assert"], parameters):
                failures.append(assertion["AssertDescription"])
    return failures


FARGATE_READY = {
    "TrainCompute": "fargate",
    "TrainImageUri": NAMES["TrainImageUri"],
    "VpcId": NAMES["VpcId"],
    "SubnetIds": ",".join(SUBNETS),
    "DatabaseSecurityGroupId": "sg-0123456789abcdef0",
}


def test_rules_require_an_image_and_subnets_with_fargate(template: dict[str, Any]) -> None:
    assert rule_failures(template) == []  # the defaults: Lambda, no VPC
    assert rule_failures(template, **FARGATE_READY) == []
    missing = rule_failures(template, TrainCompute="fargate")
    assert len(missing) == 3
    assert any("TrainImageUri" in m for m in missing)
    assert any("VpcId" in m for m in missing) and any("SubnetIds" in m for m in missing)
    # With Lambda, a wrong task size does not matter (and is not checked).
    assert rule_failures(template, TrainTaskCpu="1024", TrainTaskMemory="122880") == []


@pytest.mark.parametrize("cpu", ["1024", "2048", "4096", "8192", "16384"])
def test_rules_allow_exactly_the_task_sizes_fargate_allows(template: dict[str, Any], cpu: str) -> None:
    assert cpu in template["Parameters"]["TrainTaskCpu"]["AllowedValues"]
    allowed = _fargate_memory_table(cpu)
    assert allowed, cpu
    accepted = [
        memory
        for memory in range(512, 131072 + 1, 512)
        if rule_failures(template, **FARGATE_READY, TrainTaskCpu=cpu, TrainTaskMemory=str(memory)) == []
    ]
    assert accepted == allowed
    step = allowed[1] - allowed[0]
    assert allowed == list(range(allowed[0], allowed[-1] + 1, step))
    failing = rule_failures(
        template, **FARGATE_READY, TrainTaskCpu=cpu, TrainTaskMemory=str(allowed[-1] + step)
    )
    assert len(failing) == 1 and f"TrainTaskCpu={cpu}" in failing[0]
    # The parameter's description quotes the same range and step.
    description = " ".join(template["Parameters"]["TrainTaskMemory"]["Description"].split())
    quoted = {
        c: (int(low), int(high), int(by))
        for c, low, high, by in re.findall(
            r"(\d+): (\d+)-(\d+)(?: MiB)? (?:in steps of|by) (\d+)", description
        )
    }
    assert quoted[cpu] == (allowed[0], allowed[-1], step)
    if cpu == template["Parameters"]["TrainTaskCpu"]["Default"]:
        assert int(template["Parameters"]["TrainTaskMemory"]["Default"]) in allowed


# --- the resources --------------------------------------------------------------------------------


def references_outside_the_condition(value: Any, inside: bool = False) -> list[str]:
    """Fargate resources named by Ref, GetAtt or Sub where TrainsOnFargate may be false."""
    found: list[str] = []
    if isinstance(value, list):
        for item in value:
            found += references_outside_the_condition(item, inside)
    elif isinstance(value, dict):
        if set(value) == {"Fn::If"} and value["Fn::If"][0] == CONDITION:
            _condition, when_true, when_false = value["Fn::If"]
            return references_outside_the_condition(when_true, True) + references_outside_the_condition(
                when_false, inside
            )
        if not inside:
            named = []
            if set(value) == {"Ref"}:
                named = [value["Ref"]]
            elif set(value) == {"Fn::GetAtt"}:
                named = [value["Fn::GetAtt"][0]]
            elif set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
                named = [n.split(".")[0] for n in re.findall(r"\$\{([\w.:]+)\}", value["Fn::Sub"])]
            found += [n for n in named if n in FARGATE_RESOURCES]
        for item in value.values():
            found += references_outside_the_condition(item, inside)
    return found


def test_fargate_resources_exist_only_with_fargate(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    conditional = {name for name, r in resources.items() if r.get("Condition") == CONDITION}
    assert conditional == FARGATE_RESOURCES
    # Everything else names them only inside !If [TrainsOnFargate, ...].
    others = {n: r for n, r in resources.items() if n not in FARGATE_RESOURCES}
    assert references_outside_the_condition([others, template["Outputs"]]) == []
    control = [
        {"Ref": "TrainCluster"},
        {"Fn::If": ["HasVpc", {"Ref": "TrainTaskRole"}, "none"]},
        {"Fn::If": [CONDITION, {"Fn::Sub": "${TrainCluster}"}, "none"]},
    ]
    assert references_outside_the_condition(control) == ["TrainCluster", "TrainTaskRole"]
    substitutions = state_machine(template)["DefinitionSubstitutions"]
    for name in set(local.TRAIN_ON_LAMBDA) - {"TrainCompute"}:
        condition, when_fargate, otherwise = substitutions[name]["Fn::If"]
        assert condition == CONDITION and otherwise == local.TRAIN_ON_LAMBDA[name] == "none", name
        assert when_fargate
    assert substitutions["TrainCompute"] == {"Ref": "TrainCompute"}


def test_substitutions_of_the_local_engine_and_the_template_agree(template: dict[str, Any]) -> None:
    substitutions = state_machine(template)["DefinitionSubstitutions"]
    local_names = {s for _path, s in LOCAL_FUNCTIONS.values()} | {local.BUCKET_SUBSTITUTION}
    assert local_names | set(local.TRAIN_ON_LAMBDA) | set(local.EXTRACT_ON_LAMBDA) == set(substitutions)
    assert not local_names & set(local.TRAIN_ON_LAMBDA)
    assert not (local_names | set(local.TRAIN_ON_LAMBDA)) & set(local.EXTRACT_ON_LAMBDA)
    # The local engine always trains in the function: the template's default.
    assert local.TRAIN_ON_LAMBDA["TrainCompute"] == template["Parameters"]["TrainCompute"]["Default"]
    # What the Fargate state reads, resolved with TrainCompute=fargate.
    when_fargate = {
        name: substitutions[name]["Fn::If"][1] for name in set(local.TRAIN_ON_LAMBDA) - {"TrainCompute"}
    }
    assert when_fargate == {
        "TrainClusterArn": {"Fn::GetAtt": ["TrainCluster", "Arn"]},
        "TrainTaskDefinitionArn": {"Ref": "TrainTaskDefinition"},
        "TrainSubnetIds": {"Ref": "SubnetIds"},
        "TrainSecurityGroupId": {"Fn::GetAtt": ["TrainTaskSecurityGroup", "GroupId"]},
    }


def test_task_definition(template: dict[str, Any], asl: dict[str, Any]) -> None:
    properties = template["Resources"]["TrainTaskDefinition"]["Properties"]
    assert properties["RequiresCompatibilities"] == ["FARGATE"]
    assert properties["NetworkMode"] == "awsvpc"  # the only mode Fargate has
    assert properties["RuntimePlatform"] == {"CpuArchitecture": "ARM64", "OperatingSystemFamily": "LINUX"}
    assert properties["Cpu"] == {"Ref": "TrainTaskCpu"} and properties["Memory"] == {"Ref": "TrainTaskMemory"}
    assert properties["ExecutionRoleArn"] == {"Fn::GetAtt": ["TrainTaskExecutionRole", "Arn"]}
    assert properties["TaskRoleArn"] == {"Fn::GetAtt": ["TrainTaskRole", "Arn"]}
    (container,) = properties["ContainerDefinitions"]
    assert container["Name"] == CONTAINER and container["Essential"] is True
    assert container["Image"] == {"Ref": "TrainImageUri"}
    # The Train function's environment (Globals merged with its own), and the region for boto3.
    environment = {v["Name"]: v["Value"] for v in container["Environment"]}
    assert environment == {
        **function_environment(template, "TrainFunction"),
        "AWS_DEFAULT_REGION": {"Ref": "AWS::Region"},
    }
    assert not {"RUN_ID", "RUN_CONFIG"} & set(environment)  # per run, from the state machine
    logs = container["LogConfiguration"]
    assert logs["LogDriver"] == "awslogs"
    assert logs["Options"]["awslogs-group"] == {"Ref": "TrainTaskLogGroup"}
    assert logs["Options"]["awslogs-region"] == {"Ref": "AWS::Region"}
    group = template["Resources"]["TrainTaskLogGroup"]["Properties"]
    assert group["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    # The container the definition's overrides name is this one.
    overrides = states(asl)[FARGATE_STATE]["Parameters"]["Overrides"]["ContainerOverrides"]
    assert [o["Name"] for o in overrides] == [CONTAINER]
    cluster = template["Resources"]["TrainCluster"]["Properties"]
    assert cluster["ClusterSettings"] == [{"Name": "containerInsights", "Value": "disabled"}]


def test_task_role_has_exactly_the_train_functions_s3_grants(template: dict[str, Any]) -> None:
    task = role_statements(template, "TrainTaskRole")
    function = [resolve(s) for s in function_statements(template, "TrainFunction")]
    assert task == function
    for action, resource in S3_ACCESS["TrainFunction"]:
        assert allows(task, action, resource, s3_prefix=RUN.dataset), (action, resource)
    for action, resource in S3_DENIED["TrainFunction"]:
        assert not allows(task, action, resource, s3_prefix="elsewhere/"), (action, resource)
    (trust,) = template["Resources"]["TrainTaskRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
    assert trust["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    assert "ManagedPolicyArns" not in template["Resources"]["TrainTaskRole"]["Properties"]


def test_execution_role_pulls_the_image_and_writes_the_logs_only(template: dict[str, Any]) -> None:
    statements = role_statements(template, "TrainTaskExecutionRole")
    repository = f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/recommender-train"
    for action in ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"):
        assert allows(statements, action, repository), action
        assert not allows(statements, action, "arn:aws:ecr:us-east-1:999999999999:repository/x"), action
    assert allows(statements, "ecr:GetAuthorizationToken", "*")
    stream = NAMES["TrainTaskLogGroup.Arn"].removesuffix("*") + "log-stream:train/train/abc"
    assert allows(statements, "logs:PutLogEvents", stream) and allows(
        statements, "logs:CreateLogStream", stream
    )
    assert not allows(statements, "logs:PutLogEvents", f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:other:*")
    actions = [
        a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    ]
    assert not [a for a in actions if not a.startswith(("ecr:", "logs:"))]
    wildcard = [s for s in statements if s["Resource"] == "*"]
    assert [s["Action"] for s in wildcard] == ["ecr:GetAuthorizationToken"]  # it takes no resource


def test_security_group_allows_https_out_only(template: dict[str, Any]) -> None:
    group = template["Resources"]["TrainTaskSecurityGroup"]["Properties"]
    assert group["VpcId"] == {"Ref": "VpcId"}
    (egress,) = group["SecurityGroupEgress"]
    assert (egress["IpProtocol"], egress["FromPort"], egress["ToPort"]) == ("tcp", 443, 443)
    assert "SecurityGroupIngress" not in group


def test_state_machine_may_run_and_watch_only_the_train_task(template: dict[str, Any]) -> None:
    statements = fargate_statements(template)
    cluster_arn = NAMES["TrainCluster.Arn"]
    assert allows(statements, "ecs:RunTask", TASK_DEFINITION)
    assert not allows(statements, "ecs:RunTask", TASK_DEFINITION.replace("recommender-train", "other"))
    (run,) = [s for s in statements if s["Action"] == "ecs:RunTask"]
    assert run["Condition"] == {"ArnEquals": {"ecs:cluster": cluster_arn}}
    task = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/{CLUSTER}/0123456789abcdef0123456789abcdef"
    for action in ("ecs:StopTask", "ecs:DescribeTasks"):
        assert allows(statements, action, task), action
        assert not allows(statements, action, task.replace(CLUSTER, "another-cluster")), action
    rule = f"arn:aws:events:{REGION}:{ACCOUNT}:rule/StepFunctionsGetEventsForECSTaskRule"
    for action in ("events:PutTargets", "events:PutRule", "events:DescribeRule"):
        assert allows(statements, action, rule), action
        assert not allows(statements, action, rule.replace("ECSTask", "Batch")), action
    for role in ("TrainTaskRole.Arn", "TrainTaskExecutionRole.Arn"):
        assert allows(statements, "iam:PassRole", NAMES[role])
    assert not allows(statements, "iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/admin")
    (passing,) = [s for s in statements if s["Action"] == "iam:PassRole"]
    assert passing["Condition"] == {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}
    assert all(s["Resource"] != "*" for s in statements)
    # The bucket stays out of reach: the task role, not the state machine, touches S3.
    assert not allows(statements, "s3:GetObject", f"arn:aws:s3:::{BUCKET}/{RUN.dataset}")


# --- the definition -------------------------------------------------------------------------------


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


# --- the container's command ---------------------------------------------------------------------


def ratings(users: int = 60, items: int = 30, per_user: int = 8) -> list[tuple[str, str, float]]:
    rng = np.random.default_rng(11)
    rows = []
    for user in range(users):
        for item in rng.choice(items, size=per_user, replace=False):
            rows.append((f"u{user}", f"i{item}", float(rng.integers(1, 6))))
    return rows


RUN_ID = "fargate-run-1"
CONFIG = RunConfig.from_input({"users_per_shard": 25, "top_n": 5}).to_dict()


def task_environment(**overrides: str) -> dict[str, str]:
    environment = {
        "RECOMMENDER_BUCKET": BUCKET,
        "RECOMMENDER_PREFIX": PREFIX,
        "POWERTOOLS_SERVICE_NAME": "recommender",
        "RUN_ID": RUN_ID,
        "RUN_CONFIG": json.dumps(CONFIG),
    }
    environment.update(overrides)
    return {k: v for k, v in environment.items() if v is not None}


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name=REGION)
        client.create_bucket(Bucket=BUCKET)
        yield client


def run_task(s3: Any, environment: dict[str, str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = task.main(environment, s3=s3, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_the_task_trains_a_run_and_the_function_then_reuses_it(s3: Any) -> None:
    settings = Settings(bucket=BUCKET, prefix=PREFIX)
    write_snapshot(s3, settings, RUN_ID, ratings())
    code, out, err = run_task(s3, task_environment())
    assert (code, err) == (0, "")
    result = json.loads(out.strip().splitlines()[-1])
    paths = RunPaths(PREFIX, RUN_ID)
    assert result["model_key"] == paths.model and result["shard_plan_key"] == paths.shard_plan
    assert result["reused"] is False and result["users"] == 60 and result["shards"] == 3
    for key in (paths.model, paths.model_meta, paths.shard_plan):
        assert object_exists(s3, BUCKET, key), key
    assert len(get_json(s3, BUCKET, paths.shard_plan)) == result["shards"]
    # What the state machine does next: the Train function, same run id and config, finds the
    # model and returns the stored result with the fit's own seconds, without fitting again.
    reused = train.run(s3, settings, RUN_ID, CONFIG)
    assert reused["reused"] is True
    assert (
        reused["fit_seconds"]
        == result["fit_seconds"]
        == get_json(s3, BUCKET, paths.model_meta)["fit_seconds"]
    )
    assert reused["fit_seconds"] > 0
    for field in ("model_key", "shard_plan_key", "shards", "users", "items", "ratings", "quality"):
        assert reused[field] == result[field], field


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"RUN_ID": None}, "RUN_ID is not set"),
        ({"RUN_ID": "../escape"}, "RUN_ID: run_id must be"),
        ({"RUN_CONFIG": None}, "RUN_CONFIG is not set"),
        ({"RUN_CONFIG": "{not json"}, "RUN_CONFIG is not JSON"),
        ({"RUN_CONFIG": "[1, 2]"}, "RUN_CONFIG must be a JSON object"),
        ({"RECOMMENDER_BUCKET": None}, "RECOMMENDER_BUCKET is not set"),
        ({"RUN_CONFIG": json.dumps({**CONFIG, "algorithm": "NoSuchAlgorithm"})}, "NoSuchAlgorithm"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(s3: Any, overrides: dict[str, Any], message: str) -> None:
    write_snapshot(s3, Settings(bucket=BUCKET, prefix=PREFIX), RUN_ID, ratings())
    code, out, err = run_task(s3, task_environment(**overrides))
    assert code == task.EXIT_BAD_INPUT == 2
    assert message in err and err.startswith("recommender.task: ")
    assert out == ""
    assert not object_exists(s3, BUCKET, RunPaths(PREFIX, RUN_ID).shard_plan)


def test_a_failed_training_exits_1_naming_the_error(s3: Any) -> None:
    code, out, err = run_task(s3, task_environment())  # no snapshot was extracted
    assert code == task.EXIT_FAILED == 1
    assert f"run {RUN_ID} failed" in err and "NoSuchKey" in err
    assert out == ""


# --- the image ------------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, arguments = line.partition(" ")
            found.append((instruction.upper(), arguments.strip()))
    return found


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions, one list per stage (each starts with its FROM)."""
    stages: list[list[tuple[str, str]]] = []
    for instruction in dockerfile_instructions():
        if instruction[0] == "FROM":
            stages.append([])
        stages[-1].append(instruction)
    return stages


def stage_copies(stage: list[tuple[str, str]]) -> dict[str, tuple[str, str]]:
    """destination -> (the stage copied from, or "" for the build context; source)."""
    copies = {}
    for instruction, arguments in stage:
        if instruction == "COPY":
            *options, source, destination = arguments.split()
            origin = next((o.removeprefix("--from=") for o in options if o.startswith("--from=")), "")
            copies[destination] = (origin, source)
    return copies


def test_dockerfile_installs_the_locks_and_the_package() -> None:
    builder, image = dockerfile_stages()
    # The functions' Python (template Runtime) in both stages.
    assert builder[0] == ("FROM", "python:3.13-slim AS recommender-layer")
    assert image[0] == ("FROM", "python:3.13-slim")
    assert load_template()["Globals"]["Function"]["Runtime"] == "python3.13"
    runs = [arguments for instruction, arguments in image if instruction == "RUN"]
    assert any('"$(uname -m)" = aarch64' in r for r in runs), "the image must refuse to build for x86"
    (install,) = [r for r in runs if "pip install" in r]
    for flag in ("--no-deps", "--require-hashes", "--only-binary=:all:"):
        assert flag in install, flag
    copies = stage_copies(image)
    # The dependencies layer's lock alone: it holds the SDK too.
    assert copies["/tmp/requirements.lock"] == ("", LAYER_LOCK.relative_to(ROOT).as_posix())
    assert re.findall(r"--requirement (\S+)", install) == ["/tmp/requirements.lock"]
    assert ("ENV", "PYTHONPATH=/opt/recommender") in image
    # Surprise's data folder where the image's user (no home) can create it, as the functions have it.
    variables = dict(
        pair.split("=", 1)
        for instruction, arguments in image
        if instruction == "ENV"
        for pair in arguments.split()
    )
    globals_env = load_template()["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["SURPRISE_DATA_FOLDER"] == globals_env["SURPRISE_DATA_FOLDER"]
    assert image[-1] == ("ENTRYPOINT", '["python", "-m", "recommender.task"]')
    assert any(instruction == "USER" and arguments != "root" for instruction, arguments in image)
    # The Dockerfile's own ignore file lets exactly the copied paths into the build context.
    ignored = DOCKERIGNORE.read_text().splitlines()
    assert "*" in ignored
    for _origin, source in [*stage_copies(builder).values(), *(c for c in copies.values() if not c[0])]:
        assert f"!{source}" in ignored or f"!{source}/" in ignored, source


def test_the_image_holds_the_recommender_layer_not_the_package() -> None:
    """The image's package is the recommender layer's build, by the same command as
    layers/recommender/Makefile's build-RecommenderLayer: only the modules the steps import."""
    builder, image = dockerfile_stages()
    assert stage_copies(builder) == {"/src/": ("", "layers/recommender/")}
    assert ("WORKDIR", "/src") in builder
    makefile = (PACKAGE / "Makefile").read_text()
    (recipe,) = re.findall(r"^build-RecommenderLayer:\n\t@?(.+)$", makefile, re.M)
    expected = recipe.replace("$(PYTHON)", "python").replace("$(ARTIFACTS_DIR)", "/layer")
    assert [a for i, a in builder if i == "RUN"] == [expected]
    # The image takes the build's output, and nothing else of layers/recommender/.
    copies = stage_copies(image)
    assert copies["/opt/recommender"] == ("recommender-layer", "/layer/python")
    assert not [source for _origin, source in copies.values() if source.startswith("layers/recommender")]


def _build_layer() -> Any:
    """scripts/build_layer.py, which builds both layers as `sam build` does."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import build_layer
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    return build_layer


@pytest.fixture(scope="module")
def image_site() -> tuple[Path, Path]:
    """The image's packages, built for this machine: the dependencies layer's lock (the same
    Makefile, cached by tests/unit/test_deploy.py's build), which the image installs, and the
    recommender layer, which it copies."""
    build_layer = _build_layer()
    machine = os.uname().machine
    if machine not in ("x86_64", "aarch64"):
        pytest.skip(f"no Lambda architecture here ({machine})")
    dependencies = Path(build_layer.build(build_layer.template_target(), machine)) / "python"
    return dependencies, Path(build_layer.build_recommender()) / "python"


def test_the_lock_holds_everything_the_images_packages_need(image_site: tuple[Path, Path]) -> None:
    """The image installs the layer's lock alone, with --no-deps: so the lock must hold every package
    its packages need, boto3's included (Fargate has no runtime that provides it)."""
    dependencies, _package = image_site
    installed: dict[str, tuple[str, Any]] = {}
    for metadata in dependencies.glob("*.dist-info/METADATA"):
        message = Parser().parsestr(metadata.read_text())
        installed[re.sub(r"[-_.]+", "-", message["Name"]).lower()] = (message["Version"], message)
    assert {n: v for n, (v, _m) in installed.items()} == {
        n: v for n, (v, _h) in read_lock(LAYER_LOCK).items()
    }
    assert {"boto3", "botocore", "s3transfer", "urllib3"} <= set(installed)
    environment = {
        "python_version": "3.13",
        "sys_platform": "linux",
        "platform_python_implementation": "CPython",
    }
    extras = {"aws-lambda-powertools": {"tracer"}}
    for name, (_version, message) in installed.items():
        for line in message.get_all("Requires-Dist") or []:
            requirement = Requirement(line)
            if requirement.marker is not None:
                wanted = extras.get(name, set()) or {""}
                if not any(
                    Marker(str(requirement.marker)).evaluate({**environment, "extra": e}) for e in wanted
                ):
                    continue
            needed = re.sub(r"[-_.]+", "-", requirement.name).lower()
            if (name, needed) == ("scikit-surprise", "scipy"):  # declared, never imported
                continue
            assert needed in installed, f"{name} needs {needed}, which the lock lacks"
            assert requirement.specifier.contains(installed[needed][0], prereleases=True), (name, line)


@pytest.fixture(scope="module")
def python313() -> str:
    python = _build_layer().find_python("3.13")
    if python is None:
        pytest.skip("no Python 3.13 here: the image's command is not run")
    return str(python)


@pytest.fixture(scope="module")
def s3_server() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def test_the_images_command_runs_with_only_the_images_packages(
    python313: str, image_site: tuple[Path, Path], s3_server: str
) -> None:
    """`python -m recommender.task` in a Python 3.13 whose path is the image's: the standard library
    (-S: no site-packages), the lock's packages and the built recommender layer; S3 over HTTP."""
    client = boto3.client(
        "s3",
        endpoint_url=s3_server,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    bucket = "image-bucket"
    client.create_bucket(Bucket=bucket)
    settings = Settings(bucket=bucket, prefix=PREFIX)
    write_snapshot(client, settings, RUN_ID, ratings())
    dependencies, package = image_site
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": os.pathsep.join([str(package), str(dependencies)]),
        "AWS_ENDPOINT_URL_S3": s3_server,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        **{k: v for k, v in task_environment(RECOMMENDER_BUCKET=bucket).items()},
        "AWS_DEFAULT_REGION": REGION,  # as the task definition sets it
        "POWERTOOLS_LOG_LEVEL": "INFO",
        # The image's user has no home folder; the Dockerfile's ENV gives Surprise one under /tmp.
        "HOME": "/proc",
        "SURPRISE_DATA_FOLDER": "/tmp/surprise_data",
    }
    command = [python313, "-S", "-B", "-m", "recommender.task"]
    result = subprocess.run(command, capture_output=True, text=True, env=environment, cwd="/", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    printed = json.loads(lines[-1])
    assert printed["reused"] is False and printed["users"] == 60
    assert any(json.loads(line).get("message") == "trained" for line in lines[:-1])  # Powertools JSON
    assert object_exists(client, bucket, RunPaths(PREFIX, RUN_ID).shard_plan)
    # The same command with bad input fails before touching S3.
    bad = subprocess.run(
        command, capture_output=True, text=True, env={**environment, "RUN_CONFIG": "{"}, cwd="/", timeout=600
    )
    assert bad.returncode == 2 and "RUN_CONFIG is not JSON" in bad.stderr


# --- extracting on Fargate (ExtractCompute=fargate) ----------------------------------------------

EXTRACT_CONDITION = "ExtractsOnFargate"
EXTRACT_FARGATE_STATE = "Extract the ratings on Fargate"
EXTRACT_STATE = "Extract the ratings from PostgreSQL"
EXTRACT_CHOICE_STATE = "Choose where to extract"
EXTRACT_LOOKUP_STATE = "Look up where to extract"
EXTRACT_CONTAINER = "extract"
EXTRACT_RESOURCES = {
    "ExtractCluster",
    "ExtractTaskLogGroup",
    "ExtractTaskExecutionRole",
    "ExtractTaskRole",
    "ExtractTaskDefinition",
}
EXTRACT_NAMES = {
    "ExtractCluster": "recommender-ExtractCluster-GhIjKl789012",
    "ExtractCluster.Arn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/recommender-ExtractCluster-GhIjKl789012",
    "ExtractTaskDefinition": f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/recommender-extract:2",
    "ExtractTaskRole.Arn": f"arn:aws:iam::{ACCOUNT}:role/recommender-ExtractTaskRole-7G8H9I",
    "ExtractTaskExecutionRole.Arn": f"arn:aws:iam::{ACCOUNT}:role/recommender-ExtractTaskExecRole-0J1K2L",
    "RecommendationFunctionSecurityGroup.GroupId": "sg-0a1b2c3d4e5f60718",
}


def test_extract_compute_defaults_to_the_lambda(template: dict[str, Any]) -> None:
    compute = template["Parameters"]["ExtractCompute"]
    assert compute["Default"] == "lambda" and compute["AllowedValues"] == ["lambda", "fargate"]
    assert template["Conditions"][EXTRACT_CONDITION] == {
        "Fn::And": [{"Fn::Equals": [{"Ref": "ExtractCompute"}, "fargate"]}, {"Condition": "HasVpc"}]
    }
    assert local.EXTRACT_ON_LAMBDA["ExtractCompute"] == compute["Default"]


def test_rules_require_an_image_and_the_databases_network_to_extract_on_fargate(
    template: dict[str, Any],
) -> None:
    ready = {**FARGATE_READY, "TrainCompute": "lambda", "ExtractCompute": "fargate"}
    assert rule_failures(template, **ready) == []
    assert rule_failures(template, **{**FARGATE_READY, "ExtractCompute": "fargate"}) == []
    missing = rule_failures(template, ExtractCompute="fargate")
    assert len(missing) == 3
    assert any("TrainImageUri" in m for m in missing)
    assert any("VpcId" in m for m in missing) and any("SubnetIds" in m for m in missing)
    # With a VPC, the existing rule also requires the database's security group.
    without_group = {**ready, "DatabaseSecurityGroupId": ""}
    assert any("DatabaseSecurityGroupId" in m for m in rule_failures(template, **without_group))


def test_extract_resources_exist_only_with_fargate(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    conditional = {name for name, r in resources.items() if r.get("Condition") == EXTRACT_CONDITION}
    assert conditional == EXTRACT_RESOURCES
    substitutions = state_machine(template)["DefinitionSubstitutions"]
    for name in set(local.EXTRACT_ON_LAMBDA) - {"ExtractCompute"}:
        condition, when_fargate, otherwise = substitutions[name]["Fn::If"]
        assert condition == EXTRACT_CONDITION and otherwise == local.EXTRACT_ON_LAMBDA[name] == "none", name
        assert when_fargate
    assert substitutions["ExtractCompute"] == {"Ref": "ExtractCompute"}
    when_fargate = {
        name: substitutions[name]["Fn::If"][1] for name in set(local.EXTRACT_ON_LAMBDA) - {"ExtractCompute"}
    }
    # The Extract function's network placement: its subnets and its security group.
    assert when_fargate == {
        "ExtractClusterArn": {"Fn::GetAtt": ["ExtractCluster", "Arn"]},
        "ExtractTaskDefinitionArn": {"Ref": "ExtractTaskDefinition"},
        "ExtractSubnetIds": {"Ref": "SubnetIds"},
        "ExtractSecurityGroupId": {"Fn::GetAtt": ["RecommendationFunctionSecurityGroup", "GroupId"]},
    }
    vpc = resources["ExtractFunction"]["Properties"]["VpcConfig"]["Fn::If"][1]
    assert vpc == {
        "SubnetIds": {"Fn::Split": [",", {"Ref": "SubnetIds"}]},
        "SecurityGroupIds": [{"Fn::GetAtt": ["RecommendationFunctionSecurityGroup", "GroupId"]}],
    }
    # The Train resources stay as they were.
    assert {n for n, r in resources.items() if r.get("Condition") == CONDITION} == FARGATE_RESOURCES


def test_extract_task_definition(template: dict[str, Any], asl: dict[str, Any]) -> None:
    properties = template["Resources"]["ExtractTaskDefinition"]["Properties"]
    assert properties["RequiresCompatibilities"] == ["FARGATE"] and properties["NetworkMode"] == "awsvpc"
    assert properties["RuntimePlatform"] == {"CpuArchitecture": "ARM64", "OperatingSystemFamily": "LINUX"}
    assert (properties["Cpu"], properties["Memory"]) == ("1024", "2048")
    assert 2048 in _fargate_memory_table("1024")  # a size Fargate allows
    assert properties["ExecutionRoleArn"] == {"Fn::GetAtt": ["ExtractTaskExecutionRole", "Arn"]}
    assert properties["TaskRoleArn"] == {"Fn::GetAtt": ["ExtractTaskRole", "Arn"]}
    (container,) = properties["ContainerDefinitions"]
    assert container["Name"] == EXTRACT_CONTAINER and container["Essential"] is True
    # The one image serves both steps: its entry point is `python -m recommender.task`.
    assert container["Image"] == {"Ref": "TrainImageUri"}
    assert container["Command"] == ["extract"]
    assert dict(dockerfile_instructions())["ENTRYPOINT"] == '["python", "-m", "recommender.task"]'
    environment = {v["Name"]: v["Value"] for v in container["Environment"]}
    assert environment == {
        **function_environment(template, "ExtractFunction"),
        "AWS_DEFAULT_REGION": {"Ref": "AWS::Region"},
    }
    assert "DATABASE_SECRET_ARN" in environment and "DATABASE_URL" not in environment
    assert container["LogConfiguration"]["Options"]["awslogs-group"] == {"Ref": "ExtractTaskLogGroup"}
    overrides = states(asl)[EXTRACT_FARGATE_STATE]["Parameters"]["Overrides"]["ContainerOverrides"]
    assert [o["Name"] for o in overrides] == [EXTRACT_CONTAINER]
    resources = template["Resources"]
    (execution,) = resources["ExtractTaskExecutionRole"]["Properties"]["Policies"]
    (train_execution,) = resources["TrainTaskExecutionRole"]["Properties"]["Policies"]
    statements = execution["PolicyDocument"]["Statement"]
    train_statements = train_execution["PolicyDocument"]["Statement"]
    assert [s["Action"] for s in statements] == [s["Action"] for s in train_statements]
    assert statements[:-1] == train_statements[:-1]  # this account's ECR
    assert statements[-1]["Resource"] == {"Fn::GetAtt": ["ExtractTaskLogGroup", "Arn"]}


def test_extract_task_role_has_exactly_the_extract_functions_grants(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    task_policies = resources["ExtractTaskRole"]["Properties"]["Policies"]
    function_role = resources["ExtractFunction"]["Properties"]["Role"]["Fn::GetAtt"][0]
    function_policies = resources[function_role]["Properties"]["Policies"]
    # The very statements, the secret's KMS key under the same condition included.
    assert [p["PolicyDocument"] for p in task_policies] == [p["PolicyDocument"] for p in function_policies]
    statements = function_statements(template, "ExtractFunction")
    for action, resource in S3_ACCESS["ExtractFunction"]:
        assert allows(statements, action, resource, s3_prefix=RUN.dataset), (action, resource)
    (trust,) = resources["ExtractTaskRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
    assert trust["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    assert "ManagedPolicyArns" not in resources["ExtractTaskRole"]["Properties"]


def extract_statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    conditional = [
        p["Fn::If"] for p in state_machine(template)["Policies"] if isinstance(p, dict) and "Fn::If" in p
    ]
    (policy,) = [c for c in conditional if c[0] == EXTRACT_CONDITION]
    _condition, document, otherwise = policy
    assert otherwise == {"Ref": "AWS::NoValue"}
    return [_resolve(s, {**NAMES, **EXTRACT_NAMES}) for s in document["Statement"]]


def test_state_machine_may_run_and_watch_only_the_extract_task(template: dict[str, Any]) -> None:
    statements = extract_statements(template)
    definition = EXTRACT_NAMES["ExtractTaskDefinition"]
    assert allows(statements, "ecs:RunTask", definition)
    assert not allows(statements, "ecs:RunTask", TASK_DEFINITION)  # not the train task
    (run,) = [s for s in statements if s["Action"] == "ecs:RunTask"]
    assert run["Condition"] == {"ArnEquals": {"ecs:cluster": EXTRACT_NAMES["ExtractCluster.Arn"]}}
    cluster = EXTRACT_NAMES["ExtractCluster"]
    task_arn = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/{cluster}/0123456789abcdef0123456789abcdef"
    for action in ("ecs:StopTask", "ecs:DescribeTasks"):
        assert allows(statements, action, task_arn), action
        assert not allows(statements, action, task_arn.replace(cluster, CLUSTER)), action
    for role in ("ExtractTaskRole.Arn", "ExtractTaskExecutionRole.Arn"):
        assert allows(statements, "iam:PassRole", EXTRACT_NAMES[role])
    assert not allows(statements, "iam:PassRole", NAMES["TrainTaskRole.Arn"])
    (passing,) = [s for s in statements if s["Action"] == "iam:PassRole"]
    assert passing["Condition"] == {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}
    assert all(s["Resource"] != "*" for s in statements)
    assert not allows(statements, "secretsmanager:GetSecretValue", "*")  # the task role reads it


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


# --- `python -m recommender.task extract` ---------------------------------------------------------

EXTRACT_INPUT = {"users_per_shard": 25, "top_n": 5, "source": {"timestamp_column": None}}


def extract_environment(database_url: str, **overrides: str | None) -> dict[str, str]:
    environment: dict[str, str | None] = {
        "RECOMMENDER_BUCKET": BUCKET,
        "RECOMMENDER_PREFIX": PREFIX,
        "POWERTOOLS_SERVICE_NAME": "recommender",
        "DATABASE_URL": database_url,
        "RUN_ID": "exec-extract-1",
        "RUN_INPUT": json.dumps(EXTRACT_INPUT),
    }
    environment.update(overrides)
    return {k: v for k, v in environment.items() if v is not None}


def run_extract_task(s3: Any, environment: dict[str, str], *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = task.main(environment, s3=s3, stdout=out, stderr=err, argv=argv or ("extract",))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def ratings_url(database_url: str) -> str:
    with closing(psycopg2.connect(database_url)) as conn:
        load_ratings(conn, [(u, i, r, 1.7e9) for u, i, r in ratings()], SourceTable(timestamp_column=None))
    return database_url


def never_connect() -> Any:
    raise AssertionError("the Extract step read the database again")


@pytest.mark.parametrize("run_id", [None, "resumed-run-7"])
def test_the_task_extracts_a_run_and_the_function_then_reuses_it(
    s3: Any, ratings_url: str, run_id: str | None
) -> None:
    raw_input = {**EXTRACT_INPUT, "run_id": run_id}
    environment = extract_environment(ratings_url, RUN_INPUT=json.dumps(raw_input))
    code, out, err = run_extract_task(s3, environment)
    assert (code, err) == (0, "")
    result = json.loads(out.strip().splitlines()[-1])
    expected_run = run_id or "exec-extract-1"  # the input's run_id wins, as in the function
    paths = RunPaths(PREFIX, expected_run)
    assert result["run_id"] == expected_run and result["config"]["run_id"] == expected_run
    assert result["extract"]["dataset_key"] == paths.dataset
    assert result["extract"]["rows"] == len(ratings()) and result["extract"]["reused"] is False
    assert object_exists(s3, BUCKET, paths.dataset) and object_exists(s3, BUCKET, paths.dataset_meta)
    # What the state machine does next: the Extract function (same steps) with the same execution
    # name and input finds the metadata and returns it without connecting to the database.
    settings = Settings(bucket=BUCKET, prefix=PREFIX)
    config = extract.validate_input(raw_input)
    reused = extract.run(never_connect, s3, settings, "exec-extract-1", config)
    assert reused["extract"]["reused"] is True and reused["extract"]["seconds"] == 0.0
    assert reused["run_id"] == result["run_id"] and reused["config"] == result["config"]
    for field in ("dataset_key", "rows", "bytes", "sha256", "source_rows", "dropped", "extracted_at"):
        assert reused["extract"][field] == result["extract"][field], field
    # The Train step reads the snapshot the task wrote.
    trained = train.run(s3, settings, expected_run, result["config"])
    assert trained["users"] == 60 and trained["ratings"] == len(ratings())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"RUN_ID": None}, "RUN_ID is not set"),
        ({"RUN_ID": "../escape"}, "RUN_ID: run_id must be"),
        ({"RUN_INPUT": None}, "RUN_INPUT is not set"),
        ({"RUN_INPUT": "{not json"}, "RUN_INPUT is not JSON"),
        ({"RUN_INPUT": json.dumps({"algorithm": "NoSuchAlgorithm"})}, "NoSuchAlgorithm"),
        ({"RUN_INPUT": json.dumps({"top_n": -1})}, "top_n"),
        ({"DATABASE_URL": None}, "neither DATABASE_URL nor DATABASE_SECRET_ARN is set"),
    ],
)
def test_extract_bad_input_exits_2(s3: Any, overrides: dict[str, Any], message: str) -> None:
    environment = extract_environment("postgresql://nobody@127.0.0.1:9/none", **overrides)
    code, out, err = run_extract_task(s3, environment)
    assert code == task.EXIT_BAD_INPUT == 2
    assert message in err and err.startswith("recommender.task: ")
    assert out == ""


def test_a_failed_extract_exits_1(s3: Any) -> None:
    code, out, err = run_extract_task(s3, extract_environment("postgresql://nobody@127.0.0.1:9/none"))
    assert code == task.EXIT_FAILED == 1
    assert "run exec-extract-1 failed" in err and "DatabaseUnavailableError" in err
    assert out == ""


def test_the_command_names_the_step(s3: Any) -> None:
    code, _out, err = run_extract_task(s3, task_environment(), "predict")
    assert code == 2 and "usage: python -m recommender.task [train|extract]" in err
    code, _out, err = run_extract_task(s3, task_environment(), "train", "extra")
    assert code == 2
    # No argument trains, as the command always did (the train task definition has no Command).
    assert "Command" not in train_container()
    code, _out, err = run_extract_task(s3, task_environment(), "train")
    assert code == task.EXIT_FAILED and "NoSuchKey" in err  # train ran: no snapshot here


def train_container() -> dict[str, Any]:
    (container,) = load_template()["Resources"]["TrainTaskDefinition"]["Properties"]["ContainerDefinitions"]
    return dict(container)
