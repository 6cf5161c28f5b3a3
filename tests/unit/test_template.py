"""template.yaml and events/*.json against the code they deploy and feed.

The template is read with a YAML loader that turns CloudFormation's short tags (!Ref, !GetAtt,
!Sub, !If, ...) into their long JSON form, so the checks below (and SAM's own translator, when it
is installed) see what CloudFormation sees. Every expectation is derived from the ASL, the
handlers, `recommender.config` or `recommender.local` where possible, so drift on either side fails.
"""

from __future__ import annotations

import ast
import json
import re
import tomllib
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml

from recommender import local
from recommender.config import RunConfig, check_run_id
from recommender.steps import extract as extract_step
from recommender.storage import RunPaths, latest_key
from recommender.training import effective_params

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
ASL = ROOT / "statemachine" / "recommender.asl.json"
EVENTS = ROOT / "events"
STEPS = ROOT / "layers" / "recommender" / "recommender" / "steps"
STATE_MACHINE_INPUTS = ["state_machine_input.json", "schedule_input.json"]

# What each step does with the bucket (read: get objects; write: put objects).
S3_ACCESS = {
    "ExtractFunction": {"write"},
    "TrainFunction": {"read", "write"},
    "PredictFunction": {"read", "write"},
    "MergeFunction": {"read", "write"},
    "RecordFailureFunction": {"write"},
}
S3_POLICY_TEMPLATES = {
    "S3ReadPolicy": {"read"},
    "S3WritePolicy": {"write"},
    "S3CrudPolicy": {"read", "write"},
}


# --- loading -------------------------------------------------------------------------------------


class CloudFormationLoader(yaml.SafeLoader):
    """SafeLoader that accepts CloudFormation's short-form intrinsic function tags."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "GetAtt" and isinstance(value, str):  # !GetAtt Resource.Attribute
        value = value.split(".", 1)
    name = suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}"
    return {name: value}


CloudFormationLoader.add_multi_constructor("!", _intrinsic)


def load_template() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.load(TEMPLATE.read_text(), Loader=CloudFormationLoader)
    return loaded


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


def resources_of(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return resources_of(template, "AWS::Serverless::Function")


def state_machine(template: dict[str, Any]) -> dict[str, Any]:
    machines = resources_of(template, "AWS::Serverless::StateMachine")
    assert list(machines) == ["RecommenderStateMachine"]
    return machines["RecommenderStateMachine"]["Properties"]


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


def dict_literal_keys(node: ast.AST) -> set[str]:
    assert isinstance(node, ast.Dict), f"expected a dict literal, got {ast.dump(node)[:80]}"
    return {k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}


def returned_dict(path: Path, name: str) -> ast.Dict:
    """The dict literal a step function returns (each step returns one)."""
    returns = [
        n for n in ast.walk(function_def(path, name)) if isinstance(n, ast.Return) and n.value is not None
    ]
    assert len(returns) == 1 and isinstance(returns[0].value, ast.Dict), f"{path}:{name} return shape"
    return returns[0].value


def nested_dict(node: ast.Dict, key: str) -> ast.Dict:
    for k, v in zip(node.keys, node.values):
        if isinstance(k, ast.Constant) and k.value == key:
            assert isinstance(v, ast.Dict)
            return v
    raise AssertionError(f"no key {key!r}")


def load_event(name: str) -> Any:
    return json.loads((EVENTS / name).read_text())


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
    for logical, (_path, substitution) in local.FUNCTIONS.items():
        assert substitutions[substitution] == {"Fn::GetAtt": [logical, "Arn"]}
    bucket = substitutions[local.BUCKET_SUBSTITUTION]
    assert bucket == {"Ref": "RecommendationsBucket"}
    assert template["Resources"]["RecommendationsBucket"]["Type"] == "AWS::S3::Bucket"


def test_functions_are_those_of_the_local_engine(template: dict[str, Any]) -> None:
    assert set(functions(template)) == set(local.FUNCTIONS)
    for logical, (path, _substitution) in local.FUNCTIONS.items():
        properties = functions(template)[logical]["Properties"]
        module, _ = properties["Handler"].split(".")
        assert (ROOT / properties["CodeUri"] / f"{module}.py").resolve() == (ROOT / path).resolve()


def test_every_handler_exists(template: dict[str, Any]) -> None:
    for logical, resource in functions(template).items():
        properties = resource["Properties"]
        module, function = properties["Handler"].rsplit(".", 1)
        source = ROOT / properties["CodeUri"] / (module.replace(".", "/") + ".py")
        assert source.is_file(), f"{logical}: {source} does not exist"
        function_def(source, function)  # raises when the handler function is missing
        assert function == "lambda_handler", logical


def test_limits_of_each_function(template: dict[str, Any]) -> None:
    expected = {
        "ExtractFunction": (900, 1024),
        "TrainFunction": (900, 3008),
        "PredictFunction": (900, 2048),
        "MergeFunction": (300, 1024),
        "RecordFailureFunction": (60, 256),
    }
    for logical, (timeout, memory) in expected.items():
        assert function_property(template, logical, "Timeout") == timeout, logical
        assert function_property(template, logical, "MemorySize") == memory, logical
        assert function_property(template, logical, "Timeout") <= 900  # Lambda's hard limit
    assert function_property(template, "ExtractFunction", "Runtime") == "python3.12"
    layers = function_property(template, "ExtractFunction", "Layers")
    assert {"Ref": "RecommenderLayer"} in layers and {"Ref": "DependenciesLayer"} in layers


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
    policies = state_machine(template)["Policies"]
    # The ItemReader reads the shard plan from the bucket.
    for state in distributed:
        assert state["ItemReader"]["Parameters"]["Bucket"] == f"${{{local.BUCKET_SUBSTITUTION}}}"
    assert {"S3ReadPolicy": {"BucketName": {"Ref": "RecommendationsBucket"}}} in policies
    # Child executions: start, describe and stop them.
    allowed = {
        action
        for p in policies
        if isinstance(p, dict) and "Statement" in p
        for statement in p["Statement"]
        if statement["Effect"] == "Allow"
        for action in ([statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"])
    }
    assert {"states:StartExecution", "states:DescribeExecution", "states:StopExecution"} <= allowed


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


def test_parameters(template: dict[str, Any]) -> None:
    parameters = template["Parameters"]
    assert parameters["DatabaseUrl"]["NoEcho"] is True
    assert parameters["OutputPrefix"]["Default"] == "recommender"
    assert parameters["ScheduleExpression"]["Default"] == "rate(1 day)"
    assert parameters["ScheduleEnabled"]["Default"] == "true"
    # The default schedule input is a valid run input.
    RunConfig.from_input(json.loads(parameters["ScheduleInput"]["Default"]))
    for name in ("SubnetIds", "SecurityGroupIds"):
        assert parameters[name]["Type"] == "CommaDelimitedList"
        assert parameters[name]["Default"] == ""
    assert "MaxConcurrency" not in parameters  # it comes from the execution input


def test_vpc_is_optional_and_only_for_extract(template: dict[str, Any]) -> None:
    vpc = functions(template)["ExtractFunction"]["Properties"]["VpcConfig"]
    condition, when_given, otherwise = vpc["Fn::If"]
    assert when_given == {"SubnetIds": {"Ref": "SubnetIds"}, "SecurityGroupIds": {"Ref": "SecurityGroupIds"}}
    assert otherwise == {"Ref": "AWS::NoValue"}
    assert "SubnetIds" in json.dumps(template["Conditions"][condition])
    others = [n for n, f in functions(template).items() if "VpcConfig" in f["Properties"]]
    assert others == ["ExtractFunction"]
    assert "VpcConfig" not in template["Globals"]["Function"]


# --- environment and permissions ---------------------------------------------------------------


def settings_variables() -> set[str]:
    """The variables Settings.from_env reads (env.get("NAME")...)."""
    source = (ROOT / "layers/recommender/recommender/config.py").read_text()
    node = function_def(ROOT / "layers/recommender/recommender/config.py", "from_env")
    body = ast.get_source_segment(source, node) or ""
    return set(re.findall(r'env\.get\("([A-Z_]+)"', body))


def test_environment_matches_what_the_handlers_read(template: dict[str, Any]) -> None:
    variables = settings_variables()
    assert {"RECOMMENDER_BUCKET", "RECOMMENDER_PREFIX", "DATABASE_URL"} <= variables
    for logical, resource in functions(template).items():
        handler = (ROOT / resource["Properties"]["CodeUri"] / "app.py").read_text()
        environment = function_environment(template, logical)
        assert "Settings.from_env()" in handler, logical
        assert environment["RECOMMENDER_BUCKET"] == {"Ref": "RecommendationsBucket"}, logical
        assert environment["RECOMMENDER_PREFIX"] == {"Ref": "OutputPrefix"}, logical
        needs_database = "database_url" in handler
        assert ("DATABASE_URL" in environment) == needs_database, (
            f"{logical}: DATABASE_URL must be set exactly where the handler uses it"
        )
        if needs_database:
            assert environment["DATABASE_URL"] == {"Ref": "DatabaseUrl"}
        # Every variable given to a function is one something reads (no typos that silently default).
        known = variables | {
            "POWERTOOLS_SERVICE_NAME",
            "POWERTOOLS_METRICS_NAMESPACE",
            "POWERTOOLS_LOG_LEVEL",
        }
        assert set(environment) <= known, f"{logical}: unknown variable(s) {set(environment) - known}"
    assert function_environment(template, "ExtractFunction")["DATABASE_URL"] == {"Ref": "DatabaseUrl"}
    globals_env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert globals_env["POWERTOOLS_SERVICE_NAME"] == "recommender"
    assert globals_env["POWERTOOLS_METRICS_NAMESPACE"] == "Recommender"


def test_bucket_policies_match_what_each_step_does(template: dict[str, Any]) -> None:
    assert set(S3_ACCESS) == set(functions(template))
    for logical, resource in functions(template).items():
        granted: set[str] = set()
        for policy in resource["Properties"]["Policies"]:
            for name, arguments in policy.items() if isinstance(policy, dict) else []:
                if name in S3_POLICY_TEMPLATES:
                    assert arguments == {"BucketName": {"Ref": "RecommendationsBucket"}}, logical
                    granted |= S3_POLICY_TEMPLATES[name]
        assert S3_ACCESS[logical] <= granted, f"{logical} needs {S3_ACCESS[logical]}, has {granted}"


def test_bucket_is_private_and_encrypted(template: dict[str, Any]) -> None:
    properties = template["Resources"]["RecommendationsBucket"]["Properties"]
    rule = properties["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    block = properties["PublicAccessBlockConfiguration"]
    assert block == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }


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
    assert set(layers) == {"RecommenderLayer", "DependenciesLayer"}
    for resource in layers.values():
        assert (ROOT / resource["Properties"]["ContentUri"]).is_dir()
        assert resource["Metadata"]["BuildMethod"] == "python3.12"
    package = ROOT / layers["RecommenderLayer"]["Properties"]["ContentUri"] / "recommender" / "__init__.py"
    assert package.is_file()


def requirement_name(line: str) -> str:
    return re.split(r"[\[<>=!~;\s]", line, maxsplit=1)[0].lower()


def test_dependencies_layer_pins_the_project_dependencies() -> None:
    lines = (ROOT / "layers/dependencies/requirements.txt").read_text().splitlines()
    layer = {line.replace(" ", "") for line in lines if line.strip() and not line.startswith("#")}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    # boto3 comes with the Lambda runtime; everything else is the same requirement, same range.
    expected = {d.replace(" ", "") for d in project if requirement_name(d) != "boto3"}
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
    returned = dict_literal_keys(returned_dict(STEPS / "extract.py", "run"))
    assert selected_payload_fields(state) <= returned


def resolved_config(raw_input: dict[str, Any]) -> dict[str, Any]:
    """The `config` Extract returns for an input (and the ASL hands to Train and Merge)."""
    config = extract_step.validate_input(raw_input)
    resolved = config.to_dict()
    resolved["params"] = effective_params(config.algorithm, config.params)
    resolved["run_id"] = config.run_id or load_event("extract.json")["execution_name"]
    return resolved


def test_train_event_is_what_the_asl_passes(asl: dict[str, Any]) -> None:
    event = load_event("train.json")
    state = state_invoking(asl, "TrainFunctionArn")
    assert set(event) == payload_keys(state["Parameters"]["Payload"])
    assert event["run_id"] == load_event("extract.json")["execution_name"]
    assert event["config"] == resolved_config(load_event("extract.json")["input"])
    RunConfig.from_input(event["config"])  # what Train parses it with
    returned = dict_literal_keys(returned_dict(STEPS / "train.py", "run"))
    assert selected_payload_fields(state) <= returned


def test_predict_event_is_what_the_map_passes(asl: dict[str, Any]) -> None:
    event = load_event("predict.json")
    (map_state,) = [s for s in states(asl).values() if s["Type"] == "Map"]
    assert set(event) == payload_keys(map_state["ItemSelector"])
    state = state_invoking(asl, "PredictFunctionArn")
    assert state["Parameters"]["Payload.$"] == "$"  # the item, as ItemSelector built it
    # The shard is one item of the plan Train writes.
    plan_item = function_def(ROOT / "layers/recommender/recommender/sharding.py", "plan_shards")
    (item,) = [n for n in ast.walk(plan_item) if isinstance(n, ast.Dict)]
    assert set(event["shard"]) == dict_literal_keys(item)
    shard = event["shard"]
    assert shard["end"] - shard["start"] == shard["users"]
    assert 1 <= event["top_n"] <= 1000
    returned = dict_literal_keys(returned_dict(STEPS / "predict.py", "run"))
    assert selected_payload_fields(state) <= returned


def test_merge_event_is_what_the_asl_passes(asl: dict[str, Any]) -> None:
    event = load_event("merge.json")
    state = state_invoking(asl, "MergeFunctionArn")
    assert set(event) == payload_keys(state["Parameters"]["Payload"])
    assert event["config"] == resolved_config(load_event("extract.json")["input"])
    # $.extract is Extract's `extract` dict; $.train is what Train's ResultSelector kept.
    extract_returned = returned_dict(STEPS / "extract.py", "run")
    assert set(event["extract"]) == dict_literal_keys(nested_dict(extract_returned, "extract"))
    train_state = state_invoking(asl, "TrainFunctionArn")
    assert set(event["train"]) == payload_keys(train_state["ResultSelector"])
    assert train_state["ResultPath"] == "$.train"
    # The keys are those of the run the event names, under the default prefix.
    paths = RunPaths(template_default_prefix(), event["run_id"])
    assert event["extract"]["dataset_key"] == paths.dataset
    assert event["train"]["model_key"] == paths.model
    assert event["train"]["shard_plan_key"] == paths.shard_plan
    returned = dict_literal_keys(returned_dict(STEPS / "merge.py", "run"))
    assert selected_payload_fields(state) <= returned


def template_default_prefix() -> str:
    prefix: str = load_template()["Parameters"]["OutputPrefix"]["Default"]
    return prefix


# --- SAM's own translation ---------------------------------------------------------------------


def test_sam_translates_the_template(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip(
        "samtranslator", reason="aws-sam-translator is not installed (pip install -e '.[dev]')"
    )
    from samtranslator.translator.transform import transform

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")  # the translator needs a region
    sam = load_template()
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
    output = transform(sam, {}, policy_loader)

    resources = output["Resources"]
    kinds = [r["Type"] for r in resources.values()]
    assert kinds.count("AWS::StepFunctions::StateMachine") == 1
    assert kinds.count("AWS::Lambda::Function") == 5
    assert kinds.count("AWS::Lambda::LayerVersion") == 2
    assert kinds.count("AWS::Scheduler::Schedule") + kinds.count("AWS::Events::Rule") == 1
    (machine,) = [r for r in resources.values() if r["Type"] == "AWS::StepFunctions::StateMachine"]
    assert set(machine["Properties"]["DefinitionSubstitutions"]) == set(
        re.findall(r"\$\{(\w+)\}", ASL.read_text())
    )
    for logical in local.FUNCTIONS:
        function = resources[logical]["Properties"]
        assert function["Runtime"] == "python3.12"
        assert function["TracingConfig"] == {"Mode": "Active"}
        variables = function["Environment"]["Variables"]
        assert variables["RECOMMENDER_BUCKET"] == {"Ref": "RecommendationsBucket"}
        assert ("DATABASE_URL" in variables) == (logical == "ExtractFunction")
        assert len(function["Layers"]) == 2
