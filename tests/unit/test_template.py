"""template.yaml and events/*.json against the code they deploy and feed.

The template is read with a YAML loader that turns CloudFormation's short tags (!Ref, !GetAtt,
!Sub, !If, ...) into their long JSON form, so the checks below (and SAM's own translator, when it
is installed) see what CloudFormation sees. Every expectation is derived from the ASL, the
handlers, `recommender.config` or `recommender.local` where possible, so drift on either side fails.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import re
import tomllib
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from recommender import contracts, local
from recommender.config import MEMORY_VARIABLES, RunConfig, check_run_id
from recommender.local import template as local_template
from recommender.steps import extract as extract_step
from recommender.storage import RunPaths, latest_key
from tests.conftest import LOCAL_FUNCTIONS

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
ASL = ROOT / "statemachine" / "recommender.asl.json"
EVENTS = ROOT / "events"
STATE_MACHINE_INPUTS = ["state_machine_input.json", "schedule_input.json"]

RUNTIME = "python3.13"
ARCHITECTURE = "arm64"

# The values the policies are evaluated with (any bucket, the default prefix, one run, a name
# CloudFormation could give the state machine).
BUCKET = "my-bucket"
STACK = "recommender"
PREFIX = "recommender"
RUN = RunPaths(PREFIX, "run-1")
STATE_MACHINE = "RecommenderStateMachine"
MACHINE_NAME = "RecommenderStateMachine-Ab12Cd34Ef56"
MACHINE_ARN = f"arn:aws:states:us-east-1:123456789012:stateMachine:{MACHINE_NAME}"
EXECUTIONS = "arn:aws:states:us-east-1:123456789012:execution:"


def _s3(action: str, key: str) -> tuple[str, str]:
    return action, f"arn:aws:s3:::{BUCKET}/{key}"


LIST = ("s3:ListBucket", f"arn:aws:s3:::{BUCKET}")
# What each step does with the bucket: IAM action and object (reads of a key that may be missing
# also need s3:ListBucket, or S3 answers 403 instead of 404).
S3_ACCESS = {
    "ExtractFunction": [
        _s3("s3:PutObject", RUN.dataset),  # multipart: Create/UploadPart/Complete are PutObject
        _s3("s3:AbortMultipartUpload", RUN.dataset),
        _s3("s3:PutObject", RUN.dataset_meta),
        _s3("s3:GetObject", RUN.dataset_meta),  # a resumed run reuses its snapshot
        LIST,
    ],
    "TrainFunction": [
        _s3("s3:GetObject", RUN.dataset),
        _s3("s3:PutObject", RUN.model),
        _s3("s3:PutObject", RUN.model_meta),
        _s3("s3:PutObject", RUN.shard_plan),
    ],
    "PredictFunction": [
        _s3("s3:GetObject", RUN.model),
        _s3("s3:GetObject", RUN.dataset),
        _s3("s3:PutObject", RUN.shard_object(0)),
    ],
    "MergeFunction": [
        _s3("s3:GetObject", RUN.shard_object(0)),
        _s3("s3:GetObject", RUN.model),
        _s3("s3:PutObject", RUN.fallback),
        _s3("s3:PutObject", RUN.manifest),
        _s3("s3:PutObject", latest_key(PREFIX)),
        LIST,
    ],
    "RecordFailureFunction": [_s3("s3:PutObject", RUN.failure)],
}
# What no step may do.
S3_DENIED = {
    "ExtractFunction": [_s3("s3:PutObject", latest_key(PREFIX)), _s3("s3:DeleteObject", RUN.dataset)],
    "TrainFunction": [_s3("s3:PutObject", latest_key(PREFIX)), _s3("s3:DeleteObject", RUN.model)],
    "PredictFunction": [_s3("s3:PutObject", latest_key(PREFIX)), _s3("s3:PutObject", "elsewhere/x")],
    "MergeFunction": [_s3("s3:DeleteObject", RUN.shard_object(0)), _s3("s3:PutObject", "elsewhere/x")],
    "RecordFailureFunction": [
        _s3("s3:PutObject", latest_key(PREFIX)),
        _s3("s3:PutObject", RUN.manifest),
        _s3("s3:GetObject", RUN.dataset),
    ],
}


# --- loading -------------------------------------------------------------------------------------


def load_template() -> dict[str, Any]:
    """template.yaml with CloudFormation's short-form tags in their long form (as the engine reads it)."""
    return local_template.load(TEMPLATE)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def asl_text() -> str:
    return ASL.read_text()


@pytest.fixture(scope="module")
def asl(asl_text: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(asl_text)
    return loaded


def resources_of(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == resource_type}


def functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return resources_of(template, "AWS::Serverless::Function")


def state_machine(template: dict[str, Any]) -> dict[str, Any]:
    machines = resources_of(template, "AWS::Serverless::StateMachine")
    assert list(machines) == ["RecommenderStateMachine"]
    properties: dict[str, Any] = machines["RecommenderStateMachine"]["Properties"]
    return properties


def function_environment(template: dict[str, Any], name: str) -> dict[str, Any]:
    """The variables a function gets: Globals.Function merged with its own (as SAM merges them)."""
    merged = dict(template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {}))
    own = functions(template)[name]["Properties"].get("Environment", {}).get("Variables", {})
    merged.update(own)
    return merged


def function_property(template: dict[str, Any], name: str, prop: str) -> Any:
    own = functions(template)[name]["Properties"]
    if prop in own:
        return own[prop]
    return template.get("Globals", {}).get("Function", {}).get(prop)


def states(asl: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every state, nested ItemProcessor states included."""
    found: dict[str, dict[str, Any]] = {}

    def walk(machine: dict[str, Any]) -> None:
        for name, state in machine["States"].items():
            found[name] = state
            for key in ("ItemProcessor", "Iterator"):
                if key in state:
                    walk(state[key])
            for branch in state.get("Branches", []):
                walk(branch)

    walk(asl)
    return found


def state_invoking(asl: dict[str, Any], substitution: str) -> dict[str, Any]:
    matches = [
        s
        for s in states(asl).values()
        if s.get("Parameters", {}).get("FunctionName") == f"${{{substitution}}}"
    ]
    assert len(matches) == 1, f"expected one state invoking ${{{substitution}}}"
    return matches[0]


def payload_keys(template_obj: dict[str, Any]) -> set[str]:
    """Field names of an ASL Parameters/ItemSelector object (`name.$` -> `name`)."""
    return {key.removesuffix(".$") for key in template_obj}


def selected_payload_fields(state: dict[str, Any]) -> set[str]:
    """The `$.Payload.<field>` names a ResultSelector reads from the Lambda's return value."""
    fields = set()
    for path in state["ResultSelector"].values():
        match = re.fullmatch(r"\$\.Payload\.(\w+)", path)
        assert match, f"unexpected ResultSelector path {path}"
        fields.add(match.group(1))
    return fields


def function_def(path: Path, name: str) -> ast.FunctionDef:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    raise AssertionError(f"{path} defines no function {name}")


def contract_keys(contract: type) -> set[str]:
    """Every field of a TypedDict of recommender.contracts, optional ones included."""
    return set(contract.__annotations__)


def load_event(name: str) -> Any:
    return json.loads((EVENTS / name).read_text())


def compact(value: Any) -> str:
    """JSON as `jq -c .` writes it: no whitespace between tokens, keys in their order."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def schedule_input_pattern() -> re.Pattern[str]:
    return re.compile(load_template()["Parameters"]["ScheduleInput"]["AllowedPattern"])


# --- the ASL and the template --------------------------------------------------------------------


def test_definition_uri_is_the_asl_file(template: dict[str, Any]) -> None:
    assert (ROOT / state_machine(template)["DefinitionUri"]).resolve() == ASL.resolve()
    assert (ROOT / state_machine(template)["DefinitionUri"]) == ROOT / local.DEFINITION


def test_substitutions_are_exactly_those_the_asl_uses(template: dict[str, Any], asl_text: str) -> None:
    used = set(re.findall(r"\$\{(\w+)\}", asl_text))
    provided = set(state_machine(template)["DefinitionSubstitutions"])
    assert used, "the ASL uses no ${...} substitution at all"
    assert used - provided == set(), "used by the ASL but not provided by the template"
    assert provided - used == set(), "provided by the template but never used by the ASL"


def test_substitutions_resolve_to_the_right_resources(template: dict[str, Any]) -> None:
    substitutions = state_machine(template)["DefinitionSubstitutions"]
    lambdas = functions(template)
    for name, value in substitutions.items():
        if name.endswith("FunctionArn"):
            assert isinstance(value, dict) and "Fn::GetAtt" in value, name
            logical, attribute = value["Fn::GetAtt"]
            assert attribute == "Arn", name
            assert logical in lambdas, f"{name} names {logical}, not a function of the template"
    # The local engine fills the same placeholders: it must agree on which function is which.
    for logical, (_path, substitution) in LOCAL_FUNCTIONS.items():
        assert substitutions[substitution] == {"Fn::GetAtt": [logical, "Arn"]}
    bucket = substitutions[local.BUCKET_SUBSTITUTION]
    assert bucket == {"Ref": "RecommendationsBucket"}
    assert template["Resources"]["RecommendationsBucket"]["Type"] == "AWS::S3::Bucket"


def test_the_local_engine_runs_each_function_as_the_template_configures_it(template: dict[str, Any]) -> None:
    """The engine reads memory, timeout and environment from the template (local.template): the
    evaluation of its intrinsics must give what CloudFormation would with the defaults."""
    parameters = template["Parameters"]
    deployed = {f.logical_id: f for f in local_template.functions(ROOT).values()}
    assert set(deployed) == set(functions(template))
    for logical, resource in functions(template).items():
        properties, function = resource["Properties"], deployed[logical]
        memory = properties["MemorySize"]
        expected = parameters[memory["Ref"]]["Default"] if isinstance(memory, dict) else memory
        assert function.memory_mb == int(expected), logical
        assert function.timeout_seconds == properties["Timeout"], logical
        assert function.handler_file.is_file(), logical
        assert set(function.environment) == set(function_environment(template, logical)), logical
        assert function.environment["RECOMMENDER_PREFIX"] == parameters["OutputPrefix"]["Default"]
    reserved = local_template.functions(ROOT, {"MaxConcurrency": "7"})["recommender-predict"]
    assert reserved.reserved_concurrency == 7
    assert deployed["PredictFunction"].reserved_concurrency is None  # MaxConcurrency 0 reserves none


def test_every_handler_exists(template: dict[str, Any]) -> None:
    for logical, resource in functions(template).items():
        properties = resource["Properties"]
        module, function = properties["Handler"].rsplit(".", 1)
        source = ROOT / properties["CodeUri"] / (module.replace(".", "/") + ".py")
        assert source.is_file(), f"{logical}: {source} does not exist"
        function_def(source, function)  # raises when the handler function is missing
        assert function == "lambda_handler", logical


def test_limits_of_each_function(template: dict[str, Any]) -> None:
    parameters = template["Parameters"]
    expected = {
        "ExtractFunction": (900, ("ExtractMemorySize", 1024)),
        "TrainFunction": (900, ("TrainMemorySize", 3008)),
        "PredictFunction": (900, ("PredictMemorySize", 2048)),
        "MergeFunction": (300, ("MergeMemorySize", 2048)),
        "RecordFailureFunction": (60, 256),
    }
    for logical, (timeout, memory) in expected.items():
        assert function_property(template, logical, "Timeout") == timeout, logical
        assert function_property(template, logical, "Timeout") <= 900  # Lambda's hard limit
        if isinstance(memory, tuple):  # a parameter, with its default
            name, default = memory
            assert function_property(template, logical, "MemorySize") == {"Ref": name}, logical
            assert parameters[name]["Default"] == default
            assert parameters[name]["MinValue"] >= 128 and parameters[name]["MaxValue"] <= 10240
        else:
            assert function_property(template, logical, "MemorySize") == memory, logical
        # No step writes to /tmp: the default (free) 512 MB of ephemeral storage is never raised.
        assert function_property(template, logical, "EphemeralStorage") is None, logical
    assert function_property(template, "ExtractFunction", "Runtime") == RUNTIME
    assert function_property(template, "ExtractFunction", "Architectures") == [ARCHITECTURE]
    layers = function_property(template, "ExtractFunction", "Layers")
    assert {"Ref": "RecommenderLayer"} in layers and {"Ref": "DependenciesLayer"} in layers


def test_max_concurrency_caps_the_predictors(template: dict[str, Any]) -> None:
    parameter = template["Parameters"]["MaxConcurrency"]
    assert parameter["Default"] == 0  # no reservation unless asked: new accounts have little
    reserved = functions(template)["PredictFunction"]["Properties"]["ReservedConcurrentExecutions"]
    condition, when_set, otherwise = reserved["Fn::If"]
    assert when_set == {"Ref": "MaxConcurrency"} and otherwise == {"Ref": "AWS::NoValue"}
    assert template["Conditions"][condition] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "MaxConcurrency"}, "0"]}]
    }


def test_state_machine_may_invoke_exactly_its_functions(template: dict[str, Any]) -> None:
    invoked = {
        p["LambdaInvokePolicy"]["FunctionName"]["Ref"]
        for p in state_machine(template)["Policies"]
        if isinstance(p, dict) and "LambdaInvokePolicy" in p
    }
    named = {
        v["Fn::GetAtt"][0]
        for k, v in state_machine(template)["DefinitionSubstitutions"].items()
        if k.endswith("FunctionArn")
    }
    assert invoked == named == set(functions(template))


def test_state_machine_can_run_its_distributed_map(template: dict[str, Any], asl: dict[str, Any]) -> None:
    maps = [s for s in states(asl).values() if s["Type"] == "Map"]
    distributed = [m for m in maps if m["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"]
    assert distributed, "the design's predict step is a DISTRIBUTED Map"
    statements = policy_statements(state_machine(template)["Policies"])
    # The ItemReader reads the shard plan from the bucket: that object, nothing else.
    for state in distributed:
        assert state["ItemReader"]["Parameters"]["Bucket"] == f"${{{local.BUCKET_SUBSTITUTION}}}"
    assert allows(statements, *_s3("s3:GetObject", RUN.shard_plan))
    assert not allows(statements, *_s3("s3:GetObject", RUN.dataset))
    assert not allows(statements, *_s3("s3:PutObject", RUN.shard_plan))
    # CloudFormation names the machine: a fixed name would block any change that replaces it.
    assert "Name" not in state_machine(template)
    # Its grants on itself are in a policy of their own, on the role SAM makes from its Policies
    # (naming the machine in Policies would be a cycle); Policies grant nothing in Step Functions.
    assert not [a for s in statements for a in _listed(s["Action"]) if a.startswith("states:")]
    policy = template["Resources"]["RecommenderStateMachineSelfPolicy"]
    assert policy["Type"] == "AWS::IAM::Policy"
    assert policy["Properties"]["Roles"] == [{"Ref": f"{STATE_MACHINE}Role"}]
    own = self_policy_statements(template)
    # Exactly: start the machine; describe, stop and redrive its child executions
    # (<machine>/<map run label>:<id>). Not its other executions, nor another machine's.
    assert [(s["Effect"], sorted(_listed(s["Action"])), s["Resource"]) for s in own] == [
        ("Allow", ["states:StartExecution"], MACHINE_ARN),
        (
            "Allow",
            ["states:DescribeExecution", "states:RedriveExecution", "states:StopExecution"],
            f"{EXECUTIONS}{MACHINE_NAME}/*",
        ),
    ]
    child = f"{EXECUTIONS}{MACHINE_NAME}/map-run-label:child-1"
    statements += own
    assert allows(statements, "states:StartExecution", MACHINE_ARN)
    for action in ("states:DescribeExecution", "states:StopExecution", "states:RedriveExecution"):
        assert allows(statements, action, child), action
    other = "arn:aws:states:us-east-1:123456789012:stateMachine:another-machine"
    assert not allows(statements, "states:StartExecution", other)
    assert not allows(statements, "states:StopExecution", f"{EXECUTIONS}another-machine/label:x")
    assert not allows(statements, "states:StopExecution", f"{EXECUTIONS}{MACHINE_NAME}-2/label:x")
    assert not allows(statements, "states:StopExecution", f"{EXECUTIONS}{MACHINE_NAME}:a-run")
    assert not allows(statements, "states:StartExecution", child)
    assert not allows(statements, "states:DeleteStateMachine", MACHINE_ARN)


def test_schedule_event(template: dict[str, Any]) -> None:
    events = state_machine(template)["Events"]
    schedules = [e for e in events.values() if e["Type"] in ("Schedule", "ScheduleV2")]
    assert len(schedules) == 1
    properties = schedules[0]["Properties"]
    expression = properties.get("ScheduleExpression", properties.get("Schedule"))
    assert expression == {"Ref": "ScheduleExpression"}
    assert properties["Input"] == {"Ref": "ScheduleInput"}
    switch = properties.get("State", properties.get("Enabled"))
    assert isinstance(switch, dict) and "Fn::If" in switch
    condition = template["Conditions"][switch["Fn::If"][0]]
    assert condition == {"Fn::Equals": [{"Ref": "ScheduleEnabled"}, "true"]}
    # Its own group, whose dropped invocations raise an alarm; a bounded retry of a failed start.
    assert properties["GroupName"] == {"Ref": "ScheduleGroup"}
    assert template["Resources"]["ScheduleGroup"]["Type"] == "AWS::Scheduler::ScheduleGroup"
    dropped = template["Resources"]["ScheduleDroppedAlarm"]["Properties"]
    assert (dropped["Namespace"], dropped["MetricName"]) == ("AWS/Scheduler", "InvocationDroppedCount")
    assert dropped["Dimensions"] == [{"Name": "ScheduleGroup", "Value": {"Ref": "ScheduleGroup"}}]
    assert properties["RetryPolicy"]["MaximumRetryAttempts"] <= 5


def test_parameters(template: dict[str, Any]) -> None:
    parameters = template["Parameters"]
    # The database is reached through a secret: no password (nor URL) is ever a parameter.
    assert not {"DatabaseUrl", "DatabasePassword"} & set(parameters)
    secret = parameters["DatabaseSecretArn"]
    assert "Default" not in secret  # required
    pattern = re.compile(secret["AllowedPattern"])
    assert pattern.fullmatch("arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/recs-db-AbC123")
    assert not pattern.fullmatch("postgresql://user:password@host/db")
    assert not pattern.fullmatch("arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/recs-db")
    assert parameters["OutputPrefix"]["Default"] == "recommender"
    prefix = re.compile(parameters["OutputPrefix"]["AllowedPattern"])
    assert prefix.fullmatch("recommender") and prefix.fullmatch("team/recs")
    assert not prefix.match("") and not prefix.fullmatch("/recs") and not prefix.fullmatch("recs/")
    assert parameters["ScheduleExpression"]["Default"] == "rate(1 day)"
    assert parameters["ScheduleEnabled"]["Default"] == "true"
    # The default schedule input is events/schedule_input.json, compact, and a valid run input.
    default_input = json.loads(parameters["ScheduleInput"]["Default"])
    assert default_input == load_event("schedule_input.json")
    assert parameters["ScheduleInput"]["Default"] == json.dumps(default_input, separators=(",", ":"))
    RunConfig.from_input(default_input)
    # A String (Fn::Equals in HasVpc compares strings), split where a list is needed.
    assert parameters["SubnetIds"]["Type"] == "String"
    subnets = re.compile(parameters["SubnetIds"]["AllowedPattern"])
    assert subnets.fullmatch("") and subnets.fullmatch("subnet-0aaa1111bbbb2222c")
    assert subnets.fullmatch("subnet-0aaa1111bbbb2222c,subnet-0ddd3333eeee4444f")
    assert not subnets.fullmatch("subnet-0aaa1111bbbb2222c, subnet-0ddd3333eeee4444f")
    assert not subnets.fullmatch("subnet-0aaa1111bbbb2222c,") and not subnets.fullmatch("sg-0123")
    for name in ("VpcId", "SubnetIds", "DatabaseSecurityGroupId", "AlarmEmail", "DatabaseSecretKmsKeyArn"):
        assert parameters[name]["Default"] == "", f"{name} is optional"
    email = re.compile(parameters["AlarmEmail"]["AllowedPattern"])
    assert email.fullmatch("") and email.fullmatch("ops@example.com") and not email.fullmatch("ops")
    assert parameters["RunRetentionDays"]["Default"] >= 7


# Values that --parameter-overrides makes of a mis-quoted JSON input, and other non-objects.
NOT_A_JSON_OBJECT = ["", "{", "[]", '"x"', "{}x", '{"a":1}{"b":2}', '{"a":"}', '{"a":"}"', "}{", "null"]


def test_schedule_input_pattern_accepts_objects_and_refuses_the_rest() -> None:
    """CloudFormation checks AllowedPattern (Java regex, whole value) before it changes anything;
    this pattern uses only what Java and Python read alike."""
    pattern = schedule_input_pattern()
    inputs = sorted(EVENTS.glob("*input*.json"))
    assert {p.name for p in inputs} >= set(STATE_MACHINE_INPUTS)
    for path in inputs:
        value = compact(json.loads(path.read_text()))
        assert pattern.fullmatch(value), path.name
        # Every truncation, wherever the split fell: an open object or an open string.
        for end in range(len(value)):
            assert not pattern.fullmatch(value[:end]), (path.name, value[:end])
        # Pretty-printed: one line only (CloudFormation and the scheduler take it as it is).
        assert not pattern.fullmatch(json.dumps(json.loads(path.read_text()), indent=2))
    for value in NOT_A_JSON_OBJECT:
        assert not pattern.fullmatch(value), value
    # Strings may hold braces, quotes (escaped) and spaces; objects nest 4 deep.
    for value in ('{"schema":"a {b}","t":"x\\"y"}', '{"params":{"bsl_options":{"method":{"n":1}}}}'):
        assert pattern.fullmatch(value), value
    assert not pattern.fullmatch('{"a":{"b":{"c":{"d":{"e":1}}}}}')


def test_every_parameter_is_used(template: dict[str, Any]) -> None:
    text = json.dumps({k: v for k, v in template.items() if k != "Parameters"})
    for name in template["Parameters"]:
        assert f'{{"Ref": "{name}"}}' in text or f"${{{name}}}" in text, f"{name} is never used"


def test_vpc_is_optional_and_only_for_extract(template: dict[str, Any]) -> None:
    vpc = functions(template)["ExtractFunction"]["Properties"]["VpcConfig"]
    condition, when_given, otherwise = vpc["Fn::If"]
    group = {"Fn::GetAtt": ["RecommendationFunctionSecurityGroup", "GroupId"]}
    assert when_given == {
        "SubnetIds": {"Fn::Split": [",", {"Ref": "SubnetIds"}]},
        "SecurityGroupIds": [group],
    }
    assert otherwise == {"Ref": "AWS::NoValue"}
    # The condition names every network parameter the VPC resources read (cfn-lint relates a
    # parameter's empty default to a resource only through its condition).
    assert template["Conditions"][condition] == {
        "Fn::And": [
            {"Fn::Not": [{"Fn::Equals": [{"Ref": name}, ""]}]}
            for name in ("VpcId", "SubnetIds", "DatabaseSecurityGroupId")
        ]
    }
    others = [n for n, f in functions(template).items() if "VpcConfig" in f["Properties"]]
    assert others == ["ExtractFunction"]
    assert "VpcConfig" not in template["Globals"]["Function"]
    # With a VPC, subnets and the database's group are required (a template Rule says so): a VpcId
    # alone fails the deployment rather than leaving Extract outside the VPC.
    rule = template["Rules"]["VpcNeedsSubnetsAndTheDatabaseGroup"]
    assert rule["RuleCondition"] == template["Conditions"][condition]["Fn::And"][0]
    asserted = json.dumps(rule["Assertions"])
    assert "SubnetIds" in asserted and "DatabaseSecurityGroupId" in asserted


def test_only_extract_in_a_vpc_may_manage_network_interfaces(template: dict[str, Any]) -> None:
    role = template["Resources"]["ExtractFunctionRole"]["Properties"]
    condition, with_vpc, without = role["ManagedPolicyArns"]["Fn::If"]
    assert condition == "HasVpc"
    names = [arn["Fn::Sub"].rsplit("/", 1)[1] for arn in with_vpc]
    assert names == [
        "AWSLambdaBasicExecutionRole",
        "AWSXrayWriteOnlyAccess",
        "AWSLambdaVPCAccessExecutionRole",
    ]
    assert without == with_vpc[:2]
    assert role["AssumeRolePolicyDocument"]["Statement"] == [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ]
    others = [n for n, f in functions(template).items() if "Role" in f["Properties"]]
    assert others == ["ExtractFunction"]


def test_the_function_group_is_the_only_way_into_the_database(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    group = resources["RecommendationFunctionSecurityGroup"]
    ingress = resources["DatabaseIngressFromRecommender"]
    assert group["Condition"] == ingress["Condition"] == "HasVpc"
    port = {"Ref": "DatabasePort"}
    # Into the database: the database port, from the function's group only.
    assert ingress["Properties"]["GroupId"] == {"Ref": "DatabaseSecurityGroupId"}
    assert ingress["Properties"]["SourceSecurityGroupId"] == {
        "Fn::GetAtt": ["RecommendationFunctionSecurityGroup", "GroupId"]
    }
    assert ingress["Properties"]["FromPort"] == ingress["Properties"]["ToPort"] == port
    assert "CidrIp" not in ingress["Properties"]
    # Out of the function: the database, and HTTPS for the AWS APIs; nothing else.
    egress = group["Properties"]["SecurityGroupEgress"]
    assert {(e["FromPort"] if isinstance(e["FromPort"], int) else "db", e["IpProtocol"]) for e in egress} == {
        ("db", "tcp"),
        (443, "tcp"),
    }
    (to_database,) = [e for e in egress if e["FromPort"] == port]
    assert to_database["DestinationSecurityGroupId"] == {"Ref": "DatabaseSecurityGroupId"}
    assert "SecurityGroupIngress" not in group["Properties"]


# --- environment and permissions ---------------------------------------------------------------


def settings_variables() -> set[str]:
    """The variables Settings.from_env reads (env.get("NAME")..., and the memory sizes it compares)."""
    source = (ROOT / "layers/recommender/recommender/config.py").read_text()
    node = function_def(ROOT / "layers/recommender/recommender/config.py", "from_env")
    body = ast.get_source_segment(source, node) or ""
    return set(re.findall(r'env\.get\("([A-Z_]+)"', body)) | set(MEMORY_VARIABLES)


def test_environment_matches_what_the_handlers_read(template: dict[str, Any]) -> None:
    variables = settings_variables()
    assert {"RECOMMENDER_BUCKET", "RECOMMENDER_PREFIX", "DATABASE_URL", "DATABASE_SECRET_ARN"} <= variables
    for logical, resource in functions(template).items():
        handler = (ROOT / resource["Properties"]["CodeUri"] / "app.py").read_text()
        environment = function_environment(template, logical)
        assert "Settings.from_env()" in handler, logical
        assert environment["RECOMMENDER_BUCKET"] == {"Ref": "RecommendationsBucket"}, logical
        assert environment["RECOMMENDER_PREFIX"] == {"Ref": "OutputPrefix"}, logical
        # On AWS the database is reached through the secret; DATABASE_URL is the local engine's.
        assert "DATABASE_URL" not in environment, logical
        # the secret is read by recommender.secrets.database_url, or by the step's connector that calls it
        needs_database = any(
            call in handler
            for call in ("recommender.secrets import database_url", "extract.connector(settings)")
        )
        assert ("DATABASE_SECRET_ARN" in environment) == needs_database, (
            f"{logical}: DATABASE_SECRET_ARN must be set exactly where the handler reads the secret"
        )
        if needs_database:
            assert environment["DATABASE_SECRET_ARN"] == {"Ref": "DatabaseSecretArn"}
        # Every variable given to a function is one something reads (no typos that silently default).
        known = variables | {
            "POWERTOOLS_SERVICE_NAME",
            "POWERTOOLS_METRICS_NAMESPACE",
            "POWERTOOLS_LOG_LEVEL",
            "SURPRISE_DATA_FOLDER",  # read by Surprise when imported (tests/integration/test_layers.py)
            "JOBLIB_MULTIPROCESSING",  # read by joblib when Surprise imports it
            "OPENBLAS_NUM_THREADS",  # read by OpenBLAS as numpy loads it, and by scoring.scoring_threads
        }
        assert set(environment) <= known, f"{logical}: unknown variable(s) {set(environment) - known}"
    assert function_environment(template, "ExtractFunction")["DATABASE_SECRET_ARN"] == {
        "Ref": "DatabaseSecretArn"
    }
    globals_env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert globals_env["POWERTOOLS_SERVICE_NAME"] == "recommender"
    assert globals_env["POWERTOOLS_METRICS_NAMESPACE"] == "Recommender"
    assert globals_env["SURPRISE_DATA_FOLDER"].startswith("/tmp/")  # Lambda's only writable folder
    assert globals_env["JOBLIB_MULTIPROCESSING"] == "0"
    # the predictors rank blocks on threads, which BLAS's own threads would contend with
    assert function_environment(template, "PredictFunction")["OPENBLAS_NUM_THREADS"] == "1"


# --- a small IAM evaluator: enough for the statements this template writes -----------------------


def _resolve(value: Any, extra: dict[str, str] | None = None) -> Any:
    """Intrinsics of the policies with this test's values (bucket, default prefix, stack)."""
    names = {
        "RecommendationsBucket": BUCKET,
        "RecommendationsBucket.Arn": f"arn:aws:s3:::{BUCKET}",
        "OutputPrefix": PREFIX,
        "AWS::Partition": "aws",
        "AWS::Region": "us-east-1",
        "AWS::AccountId": "123456789012",
        "AWS::StackName": STACK,
        STATE_MACHINE: MACHINE_ARN,
        f"{STATE_MACHINE}.Name": MACHINE_NAME,
        "DatabaseSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbC123",
        "DatabaseSecretKmsKeyArn": "arn:aws:kms:us-east-1:123456789012:key/1234abcd-5678-90ef",
        **(extra or {}),
    }
    if isinstance(value, list):
        return [_resolve(v, extra) for v in value]
    if isinstance(value, dict):
        if set(value) == {"Fn::Sub"}:
            return re.sub(r"\$\{([\w:.]+)\}", lambda m: names[m.group(1)], value["Fn::Sub"])
        if set(value) == {"Ref"}:
            return names[value["Ref"]]
        if set(value) == {"Fn::GetAtt"}:
            return names[".".join(value["Fn::GetAtt"])]
        return {k: _resolve(v, extra) for k, v in value.items()}
    return value


def policy_statements(policies: list[Any]) -> list[dict[str, Any]]:
    """The inline statements of a SAM Policies list (conditional ones included as written)."""
    found = []
    for policy in policies:
        if isinstance(policy, dict) and "Statement" in policy:
            for statement in policy["Statement"]:
                if isinstance(statement, dict) and "Fn::If" in statement:
                    statement = statement["Fn::If"][1]
                found.append(_resolve(statement))
    return found


def self_policy_statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    """The state machine's grants on itself and its executions (a policy on its role)."""
    document = template["Resources"]["RecommenderStateMachineSelfPolicy"]["Properties"]["PolicyDocument"]
    return [_resolve(s) for s in document["Statement"]]


def _listed(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def allows(statements: list[dict[str, Any]], action: str, resource: str, s3_prefix: str = "") -> bool:
    """Whether an Allow statement grants `action` on `resource` (s3:ListBucket: under `s3_prefix`)."""
    for statement in statements:
        if statement["Effect"] != "Allow":
            continue
        if not any(fnmatch.fnmatchcase(action, a) for a in _listed(statement["Action"])):
            continue
        if not any(fnmatch.fnmatchcase(resource, r) for r in _listed(statement["Resource"])):
            continue
        like = statement.get("Condition", {}).get("StringLike", {}).get("s3:prefix")
        if like is not None and not fnmatch.fnmatchcase(s3_prefix, like):
            continue
        return True
    return False


def function_policies(template: dict[str, Any], logical: str) -> list[Any]:
    """The Policies of a function: its own (SAM makes the role), or those of the role it names."""
    properties = functions(template)[logical]["Properties"]
    if "Role" not in properties:
        policies: list[Any] = properties["Policies"]
        return policies
    assert "Policies" not in properties, f"{logical}: SAM ignores Policies when Role is given"
    role = template["Resources"][properties["Role"]["Fn::GetAtt"][0]]
    assert role["Type"] == "AWS::IAM::Role"
    return [p["PolicyDocument"] for p in role["Properties"]["Policies"]]


def function_statements(template: dict[str, Any], logical: str) -> list[dict[str, Any]]:
    return policy_statements(function_policies(template, logical))


def test_bucket_policies_match_what_each_step_does(template: dict[str, Any]) -> None:
    assert set(S3_ACCESS) == set(S3_DENIED) == set(functions(template))
    for logical in functions(template):
        statements = function_statements(template, logical)
        for action, resource in S3_ACCESS[logical]:
            assert allows(statements, action, resource, s3_prefix=RUN.dataset), (logical, action, resource)
        for action, resource in S3_DENIED[logical]:
            assert not allows(statements, action, resource, s3_prefix="elsewhere/"), (
                logical,
                action,
                resource,
            )
        # No SAM policy template (they grant whole buckets); every S3 grant names the prefix.
        policies = function_policies(template, logical)
        assert all(isinstance(p, dict) and "Statement" in p for p in policies), logical
        for statement in statements:
            for resource in _listed(statement["Resource"]):
                if resource.startswith("arn:aws:s3:::"):
                    bucket_only = resource == f"arn:aws:s3:::{BUCKET}"
                    assert bucket_only or resource.startswith(f"arn:aws:s3:::{BUCKET}/{PREFIX}/"), resource
                    if bucket_only:  # only listing, only under the prefix
                        assert statement["Action"] == "s3:ListBucket", logical
                        assert statement["Condition"]["StringLike"]["s3:prefix"].startswith(f"{PREFIX}/")
            assert "*" not in _listed(statement["Resource"]), logical


def test_only_extract_reads_the_secret(template: dict[str, Any]) -> None:
    secret = _resolve({"Ref": "DatabaseSecretArn"})
    for logical in functions(template):
        statements = function_statements(template, logical)
        assert allows(statements, "secretsmanager:GetSecretValue", secret) == (logical == "ExtractFunction")
        assert not allows(statements, "secretsmanager:GetSecretValue", secret + "-other"), logical
    (kms,) = [
        s["Fn::If"] for s in function_policies(template, "ExtractFunction")[0]["Statement"] if "Fn::If" in s
    ]
    condition, statement, otherwise = kms
    assert condition == "HasSecretKmsKey" and otherwise == {"Ref": "AWS::NoValue"}
    assert statement["Action"] == "kms:Decrypt" and statement["Resource"] == {
        "Ref": "DatabaseSecretKmsKeyArn"
    }
    assert statement["Condition"]["StringEquals"]["kms:ViaService"] == {
        "Fn::Sub": "secretsmanager.${AWS::Region}.amazonaws.com"
    }


def test_bucket_is_private_and_encrypted(template: dict[str, Any]) -> None:
    bucket = template["Resources"]["RecommendationsBucket"]
    assert bucket["DeletionPolicy"] == bucket["UpdateReplacePolicy"] == "Retain"
    properties = bucket["Properties"]
    rule = properties["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    block = properties["PublicAccessBlockConfiguration"]
    assert block == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }


def test_bucket_refuses_requests_without_tls(template: dict[str, Any]) -> None:
    policy = template["Resources"]["RecommendationsBucketPolicy"]["Properties"]
    assert policy["Bucket"] == {"Ref": "RecommendationsBucket"}
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny" and statement["Principal"] == "*" and statement["Action"] == "s3:*"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert _resolve(statement["Resource"]) == [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"]


def test_old_runs_expire_and_versioning_is_a_documented_choice(template: dict[str, Any]) -> None:
    properties = template["Resources"]["RecommendationsBucket"]["Properties"]
    rules = {rule["Id"]: rule for rule in properties["LifecycleConfiguration"]["Rules"]}
    expire = rules["ExpireOldRuns"]
    assert expire["Status"] == "Enabled"
    assert expire["ExpirationInDays"] == {"Ref": "RunRetentionDays"}
    # Only runs expire, never latest.json (the app server's entry point).
    assert _resolve(expire["Prefix"]) == RUN.root.removesuffix(RUN.run_id)
    assert not latest_key(PREFIX).startswith(_resolve(expire["Prefix"]))
    assert rules["AbortIncompleteMultipartUploads"]["AbortIncompleteMultipartUpload"] == {
        "DaysAfterInitiation": 1
    }
    assert "VersioningConfiguration" not in properties
    assert "Versioning stays off" in TEMPLATE.read_text()


def test_alarm_on_failed_runs(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    alarms = resources_of(template, "AWS::CloudWatch::Alarm")
    failed = alarms["RunFailedAlarm"]["Properties"]
    assert (failed["Namespace"], failed["MetricName"]) == ("AWS/States", "ExecutionsFailed")
    assert failed["Dimensions"] == [{"Name": "StateMachineArn", "Value": {"Ref": "RecommenderStateMachine"}}]
    assert failed["Threshold"] == 1 and failed["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert failed["TreatMissingData"] == "notBreaching"
    topic = resources["AlarmTopic"]
    assert topic["Condition"] == "HasAlarmEmail"
    assert topic["Properties"]["Subscription"] == [{"Protocol": "email", "Endpoint": {"Ref": "AlarmEmail"}}]
    for name, alarm in alarms.items():
        actions = alarm["Properties"]["AlarmActions"]
        assert actions == {"Fn::If": ["HasAlarmEmail", [{"Ref": "AlarmTopic"}], {"Ref": "AWS::NoValue"}]}, (
            name
        )
    assert template["Conditions"]["HasAlarmEmail"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]
    }


def test_alarm_on_runs_below_popularity(template: dict[str, Any]) -> None:
    """Merge sends BelowPopularity (1 or 0, nothing when the run was not measured) through
    Powertools, under the functions' namespace with their service as the one dimension: the alarm
    watches exactly that metric (tests/unit/test_popularity_floor.py checks what Merge prints)."""
    alarm = resources_of(template, "AWS::CloudWatch::Alarm")["BelowPopularityAlarm"]["Properties"]
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert (alarm["Namespace"], alarm["MetricName"]) == (
        variables["POWERTOOLS_METRICS_NAMESPACE"],
        "BelowPopularity",
    )
    assert alarm["Dimensions"] == [{"Name": "service", "Value": variables["POWERTOOLS_SERVICE_NAME"]}]
    assert "BelowPopularity" in (ROOT / "functions" / "merge" / "app.py").read_text()
    assert (alarm["Statistic"], alarm["Threshold"], alarm["ComparisonOperator"]) == (
        "Maximum",
        1,
        "GreaterThanOrEqualToThreshold",
    )
    assert alarm["TreatMissingData"] == "notBreaching"


def test_alarm_on_timed_out_runs(template: dict[str, Any]) -> None:
    """A STANDARD execution that reaches the definition's TimeoutSeconds ends TIMED_OUT, counted
    by AWS/States ExecutionsTimedOut (not ExecutionsFailed) under the machine's ARN: what !Ref of
    the machine gives, whatever name CloudFormation generated."""
    alarms = resources_of(template, "AWS::CloudWatch::Alarm")
    timed_out = alarms["RunTimedOutAlarm"]["Properties"]
    failed = alarms["RunFailedAlarm"]["Properties"]
    assert (timed_out["Namespace"], timed_out["MetricName"]) == ("AWS/States", "ExecutionsTimedOut")
    assert timed_out["Dimensions"] == failed["Dimensions"]
    assert failed["Dimensions"] == [{"Name": "StateMachineArn", "Value": {"Ref": STATE_MACHINE}}]
    for key in ("Statistic", "Period", "EvaluationPeriods", "Threshold", "ComparisonOperator"):
        assert timed_out[key] == failed[key], key
    assert timed_out["TreatMissingData"] == "notBreaching"
    assert "failed or timed out" not in failed["AlarmDescription"], "ExecutionsFailed counts no timeout"


# Errors a full-length attempt of a state ends with: a retrier matching one of them runs the state's
# whole time limit again. (Sandbox.Timedout: a Lambda function that reached its own timeout.)
TIMEOUT_ERRORS = {"States.ALL", "States.Timeout", "States.TaskFailed", "Sandbox.Timedout"}


def function_timeouts(template: dict[str, Any]) -> dict[str, int]:
    """Each ${...FunctionArn} substitution of the ASL -> that function's Timeout in seconds."""
    substitutions = state_machine(template)["DefinitionSubstitutions"]
    return {
        name: int(function_property(template, value["Fn::GetAtt"][0], "Timeout"))
        for name, value in substitutions.items()
        if name.endswith("FunctionArn")
    }


def state_limit(state: dict[str, Any], timeouts: dict[str, int]) -> tuple[int, str]:
    """The longest one state can run, and why: its TimeoutSeconds, else the Lambda function's own
    Timeout (a lambda:invoke state without one waits for the function), a Map's processor once (one
    wave of items: a Map with more items than its concurrency takes longer), times every attempt of
    a retrier that catches a timeout, plus those retries' waits."""
    state_type = state["Type"]
    assert "TimeoutSecondsPath" not in state, "a timeout read from the input has no fixed bound"
    if state_type in ("Pass", "Choice", "Succeed", "Fail"):
        return 0, state_type
    if state_type == "Map":
        seconds, path = longest_chain(state["ItemProcessor"], timeouts)
        once = (seconds, f"one wave of [{path}]")
    elif "TimeoutSeconds" in state:
        once = (int(state["TimeoutSeconds"]), f"TimeoutSeconds {state['TimeoutSeconds']}")
    else:
        assert state.get("Resource") == "arn:aws:states:::lambda:invoke", (
            f"{state.get('Resource')}: no TimeoutSeconds, so no bound (Step Functions waits a year)"
        )
        function = re.fullmatch(r"\$\{(\w+)\}", state["Parameters"]["FunctionName"])
        assert function, state["Parameters"]["FunctionName"]
        once = (timeouts[function.group(1)], f"{function.group(1)} Timeout")
    attempts, waits = 1, 0.0
    for retrier in state.get("Retry", []):
        if not TIMEOUT_ERRORS & set(retrier["ErrorEquals"]):
            continue
        for attempt in range(retrier.get("MaxAttempts", 3)):
            delay = retrier.get("IntervalSeconds", 1) * retrier.get("BackoffRate", 2.0) ** attempt
            waits += min(delay, retrier.get("MaxDelaySeconds", delay))
            attempts += 1
    return once[0] * attempts + int(waits), f"{once[1]} x {attempts}" if attempts > 1 else once[1]


def longest_chain(machine: dict[str, Any], timeouts: dict[str, int]) -> tuple[int, str]:
    """The longest path through a machine's states (Next, Choice branches and defaults, Catch) by the
    sum of their limits, and that path."""
    machine_states = machine["States"]

    def longest(name: str, visiting: frozenset[str]) -> tuple[int, str]:
        assert name not in visiting, f"a loop through {name}: no bound"
        state = machine_states[name]
        seconds, why = state_limit(state, timeouts)
        following = [c["Next"] for c in state.get("Choices", [])] + [
            c["Next"] for c in state.get("Catch", [])
        ]
        following += [state[key] for key in ("Next", "Default") if key in state]
        rest = max((longest(n, visiting | {name}) for n in following), default=(0, ""))
        step = f"{name} ({why})" if seconds else name
        return seconds + rest[0], f"{step} -> {rest[1]}" if rest[1] else step

    return longest(machine["StartAt"], frozenset())


def test_the_run_times_out_after_its_longest_chain_of_state_timeouts(
    template: dict[str, Any], asl: dict[str, Any]
) -> None:
    """Without a top-level TimeoutSeconds a STANDARD execution may run for a year, so
    RunTimedOutAlarm (ExecutionsTimedOut) could never fire. It must not cut short a run whose
    every state stays within its own limit: at least the longest chain of those limits."""
    seconds, path = longest_chain(asl, function_timeouts(template))
    assert "TimeoutSeconds" in asl, f"no top-level TimeoutSeconds; the longest chain is {seconds} s: {path}"
    assert asl["TimeoutSeconds"] >= seconds, f"{asl['TimeoutSeconds']} s < {seconds} s: {path}"


def test_chain_of_state_timeouts_is_what_the_definition_says(
    template: dict[str, Any], asl: dict[str, Any]
) -> None:
    """The bound above, by hand, so that a change to a limit shows up here too: both placements on
    Fargate (12 h each), then the two functions that reuse their output, one wave of predictors (a
    timed-out predictor is retried once, 1 s later), Merge, and recording Merge's failure."""
    timeouts = function_timeouts(template)
    seconds, path = longest_chain(asl, timeouts)
    fargate = 43200
    expected = (
        fargate
        + timeouts["ExtractFunctionArn"]
        + fargate
        + timeouts["TrainFunctionArn"]
        + 2 * timeouts["PredictFunctionArn"]
        + 1
        + timeouts["MergeFunctionArn"]
        + timeouts["RecordFailureFunctionArn"]
    )
    assert seconds == expected, path
    assert path.startswith(
        "Look up where to extract -> Choose where to extract -> Extract the ratings on Fargate"
    )


def test_logs_and_tracing(template: dict[str, Any]) -> None:
    machine = state_machine(template)
    assert machine["Tracing"] == {"Enabled": True}
    logging = machine["Logging"]
    assert logging["Level"] in ("ERROR", "ALL")
    (destination,) = logging["Destinations"]
    assert destination["CloudWatchLogsLogGroup"]["LogGroupArn"] == {
        "Fn::GetAtt": ["StateMachineLogGroup", "Arn"]
    }
    assert template["Globals"]["Function"]["Tracing"] == "Active"
    groups = resources_of(template, "AWS::Logs::LogGroup")
    for logical in functions(template):
        group = groups[logical.removesuffix("Function") + "LogGroup"]["Properties"]
        assert group["LogGroupName"] == {"Fn::Sub": f"/aws/lambda/${{{logical}}}"}
    for group in groups.values():
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_LOG_LEVEL"} <= set(
        variables
    )


def test_reader_policy_reads_the_prefix_only(template: dict[str, Any]) -> None:
    document = template["Resources"]["RecommendationsReaderPolicy"]["Properties"]["PolicyDocument"]
    statements = [_resolve(s) for s in document["Statement"]]
    assert allows(statements, *_s3("s3:GetObject", latest_key(PREFIX)))
    assert allows(statements, *_s3("s3:GetObject", RUN.shard_object(3)))
    assert not allows(statements, *_s3("s3:PutObject", latest_key(PREFIX)))
    assert not allows(statements, *_s3("s3:GetObject", "elsewhere/secret"))
    assert template["Outputs"]["ReaderPolicyArn"]["Value"] == {"Ref": "RecommendationsReaderPolicy"}


def test_outputs(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    assert outputs["BucketName"]["Value"] == {"Ref": "RecommendationsBucket"}
    assert outputs["StateMachineArn"]["Value"] == {"Ref": "RecommenderStateMachine"}
    # The same key the merge step writes the pointer to.
    assert outputs["LatestUri"]["Value"] == {
        "Fn::Sub": "s3://${RecommendationsBucket}/" + latest_key("${OutputPrefix}")
    }


def test_layers(template: dict[str, Any]) -> None:
    layers = resources_of(template, "AWS::Serverless::LayerVersion")
    assert set(layers) == {"RecommenderLayer", "DependenciesLayer", "TrainLayer"}
    # The train layer is built by the dependencies layer's Makefile, from its own lock.
    assert (
        layers["TrainLayer"]["Properties"]["ContentUri"]
        == layers["DependenciesLayer"]["Properties"]["ContentUri"]
    )
    for resource in layers.values():
        assert (ROOT / resource["Properties"]["ContentUri"]).is_dir()
        assert resource["Properties"]["CompatibleRuntimes"] == [RUNTIME]
        assert resource["Properties"]["CompatibleArchitectures"] == [ARCHITECTURE]
        assert resource["Metadata"]["BuildArchitecture"] == ARCHITECTURE
    # Each built by its folder's Makefile, target build-<LogicalId> (tests/unit/test_deploy.py).
    for name, resource in layers.items():
        assert resource["Metadata"]["BuildMethod"] == "makefile", name
        assert (ROOT / resource["Properties"]["ContentUri"] / "Makefile").is_file(), name
    package = ROOT / layers["RecommenderLayer"]["Properties"]["ContentUri"] / "recommender" / "__init__.py"
    assert package.is_file()


def requirement_name(line: str) -> str:
    return re.split(r"[\[<>=!~;\s]", line, maxsplit=1)[0].lower()


def test_dependencies_layer_pins_the_project_dependencies() -> None:
    lines = (ROOT / "layers/dependencies/requirements.txt").read_text().splitlines()
    layer = {line.replace(" ", "") for line in lines if line.strip() and not line.startswith("#")}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    # The same requirements, same ranges: boto3 and botocore too, pinned (the layer bundles the SDK).
    expected = {d.replace(" ", "") for d in project}
    assert {requirement_name(r) for r in layer} == {requirement_name(r) for r in expected}
    assert {_normalised(r) for r in layer} == {_normalised(r) for r in expected}


def _normalised(requirement: str) -> tuple[str, frozenset[str]]:
    name_part = re.split(r"[<>=!~]", requirement, maxsplit=1)[0]
    specifiers = requirement[len(name_part) :]
    return name_part.lower(), frozenset(s for s in specifiers.split(",") if s)


# --- events --------------------------------------------------------------------------------------


def test_every_event_parses() -> None:
    names = sorted(p.name for p in EVENTS.glob("*.json"))
    expected = {"state_machine_input.json", "schedule_input.json", "extract.json", "train.json"}
    assert expected | {"predict.json", "merge.json"} <= set(names)
    for name in names:
        assert isinstance(load_event(name), dict), name


@pytest.mark.parametrize("name", STATE_MACHINE_INPUTS)
def test_state_machine_inputs_are_valid(name: str) -> None:
    raw = load_event(name)
    RunConfig.from_input(raw)
    extract_step.validate_input(raw)  # what Extract checks first, algorithm and params included


def test_state_machine_input_shows_every_field() -> None:
    raw = load_event("state_machine_input.json")
    assert set(raw) == set(RunConfig.__dataclass_fields__)
    assert set(raw["source"]) >= {"table", "user_column", "item_column", "rating_column", "timestamp_column"}
    config = RunConfig.from_input(raw)
    defaults = RunConfig()
    for name in ("algorithm", "params", "top_n", "users_per_shard", "max_concurrency"):
        assert getattr(config, name) == getattr(defaults, name), name


def test_extract_event_is_what_the_asl_passes(asl: dict[str, Any]) -> None:
    event = load_event("extract.json")
    state = state_invoking(asl, "ExtractFunctionArn")
    assert set(event) == payload_keys(state["Parameters"]["Payload"])
    check_run_id(event["execution_name"])
    assert event["input"] == load_event("state_machine_input.json")
    # Whatever Extract returns, the ResultSelector only picks fields that exist.
    assert selected_payload_fields(state) <= contract_keys(contracts.ExtractResult)


def resolved_config(raw_input: dict[str, Any]) -> dict[str, Any]:
    """The `config` Extract returns for an input (and the ASL hands to Train and Merge)."""
    config = extract_step.validate_input(raw_input)
    return extract_step.resolve(config, config.run_id or load_event("extract.json")["execution_name"])


def test_train_event_is_what_the_asl_passes(asl: dict[str, Any]) -> None:
    event = load_event("train.json")
    state = state_invoking(asl, "TrainFunctionArn")
    assert set(event) == payload_keys(state["Parameters"]["Payload"])
    assert event["run_id"] == load_event("extract.json")["execution_name"]
    assert event["config"] == resolved_config(load_event("extract.json")["input"])
    RunConfig.from_input(event["config"])  # what Train parses it with
    assert selected_payload_fields(state) <= contract_keys(contracts.TrainResult)


def test_predict_event_is_what_the_map_passes(asl: dict[str, Any]) -> None:
    event = load_event("predict.json")
    (map_state,) = [s for s in states(asl).values() if s["Type"] == "Map"]
    assert set(event) == payload_keys(map_state["ItemSelector"])
    state = state_invoking(asl, "PredictFunctionArn")
    assert state["Parameters"]["Payload.$"] == "$"  # the item, as ItemSelector built it
    # The shard is one item of the plan Train writes (test_contracts checks plan_shards writes them).
    assert set(event["shard"]) == contract_keys(contracts.Shard)
    shard = event["shard"]
    assert shard["end"] - shard["start"] == shard["users"]
    assert 1 <= event["top_n"] <= 1000
    # The Map keeps nothing of a predictor's result: what it collects must not grow with the plan.
    assert "OutputPath" in state and state["OutputPath"] is None
    assert "ResultSelector" not in state and "ResultPath" not in state


def test_record_failure_event_is_what_the_asl_passes(asl: dict[str, Any]) -> None:
    event = load_event("record_failure.json")
    (state,) = [s for name, s in states(asl).items() if name == "Record the failure"]
    assert state_invoking(asl, "RecordFailureFunctionArn") is state
    assert state["Parameters"]["Payload"] == {"execution_name.$": "$$.Execution.Name", "state.$": "$"}
    assert set(event) == payload_keys(state["Parameters"]["Payload"])
    # Every Catch that leads here puts the error where the function reads it.
    catches = [
        c for s in states(asl).values() for c in s.get("Catch", []) if c["Next"] == "Record the failure"
    ]
    assert catches and all(c["ResultPath"] == "$.error" for c in catches)
    assert set(event["state"]["error"]) == {"Error", "Cause"}


def test_merge_event_is_what_the_asl_passes(asl: dict[str, Any]) -> None:
    event = load_event("merge.json")
    state = state_invoking(asl, "MergeFunctionArn")
    assert set(event) == payload_keys(state["Parameters"]["Payload"])
    assert event["config"] == resolved_config(load_event("extract.json")["input"])
    # $.extract is Extract's `extract` dict; $.train is what Train's ResultSelector kept.
    assert set(event["extract"]) == contract_keys(contracts.ExtractSummary)
    train_state = state_invoking(asl, "TrainFunctionArn")
    assert set(event["train"]) == payload_keys(train_state["ResultSelector"])
    assert train_state["ResultPath"] == "$.train"
    # The keys are those of the run the event names, under the default prefix.
    paths = RunPaths(template_default_prefix(), event["run_id"])
    assert event["extract"]["dataset_key"] == paths.dataset
    assert event["train"]["model_key"] == paths.model
    assert event["train"]["shard_plan_key"] == paths.shard_plan
    assert selected_payload_fields(state) <= contract_keys(contracts.MergeResult)


def template_default_prefix() -> str:
    prefix: str = load_template()["Parameters"]["OutputPrefix"]["Default"]
    return prefix


# --- SAM's own translation ---------------------------------------------------------------------


def translated_template(sam: dict[str, Any] | None = None) -> dict[str, Any]:
    """The CloudFormation template SAM makes of template.yaml (what `sam deploy` submits), with
    placeholder S3 locations for the code and the real definition inlined."""
    pytest.importorskip(
        "samtranslator", reason="aws-sam-translator is not installed (pip install -e '.[dev]')"
    )
    from samtranslator.translator.transform import transform

    sam = load_template() if sam is None else sam
    for resource in sam["Resources"].values():
        properties = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):  # local folders are uploaded by `sam package`
            if key in properties:
                assert (ROOT / properties[key]).is_dir()
                properties[key] = f"s3://placeholder-bucket/{properties[key].strip('/')}.zip"
        if "DefinitionUri" in properties:  # inline the real definition, as `sam package` would
            properties["Definition"] = json.loads((ROOT / properties.pop("DefinitionUri")).read_text())
    policy_loader = mock.Mock()
    policy_loader.load.return_value = {}  # no AWS managed policy is named in Policies
    with mock.patch.dict("os.environ", {"AWS_DEFAULT_REGION": "us-east-1"}):  # it needs a region
        output: dict[str, Any] = transform(sam, {}, policy_loader)
    return output


def test_sam_translates_the_template() -> None:
    output = translated_template()
    resources = output["Resources"]
    types = [r["Type"] for r in resources.values()]
    assert types.count("AWS::StepFunctions::StateMachine") == 1
    assert types.count("AWS::Lambda::Function") == 5
    assert types.count("AWS::Lambda::LayerVersion") == 3
    assert types.count("AWS::Scheduler::Schedule") + types.count("AWS::Events::Rule") == 1
    (machine,) = [r for r in resources.values() if r["Type"] == "AWS::StepFunctions::StateMachine"]
    # The role the machine's own policy is attached to is the one SAM made for the machine.
    assert machine is resources[STATE_MACHINE]
    assert machine["Properties"]["RoleArn"] == {"Fn::GetAtt": [f"{STATE_MACHINE}Role", "Arn"]}
    assert resources[f"{STATE_MACHINE}Role"]["Type"] == "AWS::IAM::Role"
    assert resources["RecommenderStateMachineSelfPolicy"]["Properties"]["Roles"] == [
        {"Ref": f"{STATE_MACHINE}Role"}
    ]
    assert "DependsOn" not in machine and "DependsOn" not in resources[f"{STATE_MACHINE}Role"]
    assert set(machine["Properties"]["DefinitionSubstitutions"]) == set(
        re.findall(r"\$\{(\w+)\}", ASL.read_text())
    )
    for logical in LOCAL_FUNCTIONS:
        function = resources[logical]["Properties"]
        assert function["Runtime"] == RUNTIME
        assert function["Architectures"] == [ARCHITECTURE]
        assert function["TracingConfig"] == {"Mode": "Active"}
        variables = function["Environment"]["Variables"]
        assert variables["RECOMMENDER_BUCKET"] == {"Ref": "RecommendationsBucket"}
        assert ("DATABASE_SECRET_ARN" in variables) == (logical == "ExtractFunction")
        assert "DATABASE_URL" not in variables
        assert len(function["Layers"]) == len(FUNCTION_LAYERS[logical])


# Each function's layers, in order: Globals' two, then the train layer for Train alone (implicit and
# scipy, which no other step imports, would take about half of every function's 250 MB).
FUNCTION_LAYERS = {
    logical: [
        "RecommenderLayer",
        "DependenciesLayer",
        *(["TrainLayer"] if logical == "TrainFunction" else []),
    ]
    for logical in LOCAL_FUNCTIONS
}


def test_only_train_carries_the_train_layer() -> None:
    """Checked on SAM's own translation, which appends a function's Layers to Globals' (SAM names
    each layer version by its logical id and a hash), and on the local engine's reading of the
    template, which gives each sandboxed function only these layers."""
    resources = translated_template()["Resources"]
    versions = {name for name, r in resources.items() if r["Type"] == "AWS::Lambda::LayerVersion"}
    logical_of = {
        name: layer
        for name in versions
        for layer in FUNCTION_LAYERS["TrainFunction"]
        if re.fullmatch(rf"{layer}[0-9a-f]{{10}}", name)
    }
    assert set(logical_of) == versions
    for logical, layers in FUNCTION_LAYERS.items():
        attached = [logical_of[ref["Ref"]] for ref in resources[logical]["Properties"]["Layers"]]
        assert attached == layers, logical
    engine = {f.logical_id: list(f.layers) for f in local_template.functions(ROOT).values()}
    assert engine == FUNCTION_LAYERS


def test_throttling_has_its_own_patient_retrier(asl: dict[str, Any]) -> None:
    """A new account's concurrency (10) or a low reserved concurrency throttles predictors: each
    Lambda task waits it out with its own retrier (minutes, with jitter so that the Map's
    throttled items do not all come back at once) instead of the transient errors' three tries."""
    lambda_tasks = [s for s in states(asl).values() if s.get("Resource") == "arn:aws:states:::lambda:invoke"]
    assert len(lambda_tasks) == 5
    for state in lambda_tasks:
        (retrier,) = [r for r in state["Retry"] if "Lambda.TooManyRequestsException" in r["ErrorEquals"]]
        assert retrier["ErrorEquals"] == ["Lambda.TooManyRequestsException"]
        assert retrier["JitterStrategy"] == "FULL"
        delays = [
            min(retrier["IntervalSeconds"] * retrier["BackoffRate"] ** n, retrier["MaxDelaySeconds"])
            for n in range(retrier["MaxAttempts"])
        ]
        assert retrier["MaxAttempts"] >= 10 and sum(delays) >= 300, delays
        earlier = state["Retry"][: state["Retry"].index(retrier)]
        assert all(r["ErrorEquals"] != ["States.ALL"] for r in earlier)
