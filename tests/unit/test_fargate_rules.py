"""The template's parameters for training and extracting on Fargate (TrainCompute and
ExtractCompute =fargate), checked without AWS: the defaults, and the rules that guard the
parameters, evaluated here as CloudFormation would (the task sizes Fargate allows, cross-checked with
cfn-lint's own table; an image, a VPC and subnets with `fargate`)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from recommender import local
from tests.fargate import CONDITION, EXTRACT_CONDITION, NAMES, SUBNETS, fargate_memory_table
from tests.unit.test_template import load_template


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


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
    allowed = fargate_memory_table(cpu)
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


# --- extracting on Fargate (ExtractCompute=fargate) -----------------------------------------------


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
