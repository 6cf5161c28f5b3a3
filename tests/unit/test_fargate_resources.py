"""The template's resources for training and extracting on Fargate, checked without AWS: they
exist only with `fargate`, and nothing else names them outside their condition; the task
definitions (the Train or Extract function's environment, the one image); the task roles (exactly
the Train or Extract function's grants); the execution roles; the security group; and what the
state machine may do with each task."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from recommender import local
from tests.conftest import LOCAL_FUNCTIONS
from tests.fargate import (
    ACCOUNT,
    CLUSTER,
    CONDITION,
    CONTAINER,
    EXTRACT_CONDITION,
    EXTRACT_CONTAINER,
    EXTRACT_FARGATE_STATE,
    EXTRACT_NAMES,
    EXTRACT_RESOURCES,
    FARGATE_RESOURCES,
    FARGATE_STATE,
    NAMES,
    REGION,
    TASK_DEFINITION,
    dockerfile_instructions,
    fargate_memory_table,
)
from tests.unit.test_template import (
    ASL,
    BUCKET,
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


def resolve(value: Any) -> Any:
    return _resolve(value, NAMES)


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
    # The Train function's environment (Globals merged with its own), the region for boto3, and the
    # task's own memory, which Lambda gives the function as AWS_LAMBDA_FUNCTION_MEMORY_SIZE.
    environment = {v["Name"]: v["Value"] for v in container["Environment"]}
    assert environment == {
        **function_environment(template, "TrainFunction"),
        "AWS_DEFAULT_REGION": {"Ref": "AWS::Region"},
        "TRAIN_MEMORY_MB": {"Ref": "TrainTaskMemory"},
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


# --- extracting on Fargate (ExtractCompute=fargate) -----------------------------------------------


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
    assert 2048 in fargate_memory_table("1024")  # a size Fargate allows
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
