"""The deploy tools, run on the definition and the template as they ship: statelint on the
definition and cfn-lint on the CloudFormation SAM makes of template.yaml, with TrainCompute and
ExtractCompute =lambda and =fargate (tests/unit/test_fargate_*.py check the rest); `sam validate` as
samconfig.toml configures it (cfn-lint, warnings included); and docs/deploy.md's deploy command, run
by bash, whose ScheduleInput SAM CLI's own parser receives whole. tests/unit/test_deploy.py checks
the rest."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from recommender import local
from tests.conftest import LOCAL_FUNCTIONS
from tests.unit.test_deploy import documented_block, sam_deploy_overrides
from tests.unit.test_template import (
    ASL,
    ROOT,
    compact,
    load_event,
    load_template,
    schedule_input_pattern,
    translated_template,
)

pytestmark = pytest.mark.slow  # statelint, SAM CLI and bash run as processes; cfn-lint runs long

# statelint 3.1 does not know ItemReader.ReaderConfig.InputType (valid ASL since 2024): that
# message, and only that one, is dropped.
STATELINT_FALSE_POSITIVE = re.compile(
    r'^Field "InputType" not allowed in State Machine\.States\.[^.]+(\.[^.]+)*\.ItemReader\.ReaderConfig$'
)


# TrainCompute=fargate with the parameters its rules require (cfn-lint checks the values it can).
FARGATE_PARAMETERS = {
    "TrainCompute": "fargate",
    "ExtractCompute": "fargate",
    "TrainImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/recommender-train:1.0",
    "VpcId": "vpc-0abc12345678def90",
    "SubnetIds": "subnet-0aaa1111bbbb2222c,subnet-0ddd3333eeee4444f",
    "DatabaseSecurityGroupId": "sg-0123456789abcdef0",
}


# --- the definition ------------------------------------------------------------------------------


def rendered_definition(
    text: str | None = None, train_compute: str = "lambda", extract_compute: str = "lambda"
) -> str:
    """The ASL with its substitutions filled as CloudFormation fills them."""
    substitutions = {
        substitution: f"arn:aws:lambda:us-east-1:123456789012:function:{logical}"
        for logical, (_path, substitution) in LOCAL_FUNCTIONS.items()
    }
    substitutions[local.BUCKET_SUBSTITUTION] = "my-bucket"
    substitutions.update(local.TRAIN_ON_LAMBDA)  # "none" for the Fargate task's settings
    substitutions.update(local.EXTRACT_ON_LAMBDA)
    if train_compute == "fargate":
        substitutions.update(
            TrainCompute="fargate",
            TrainClusterArn="arn:aws:ecs:us-east-1:123456789012:cluster/recommender-TrainCluster-AbC",
            TrainTaskDefinitionArn="arn:aws:ecs:us-east-1:123456789012:task-definition/recommender-train:1",
            TrainSubnetIds=FARGATE_PARAMETERS["SubnetIds"],
            TrainSecurityGroupId="sg-0fedcba9876543210",
        )
    if extract_compute == "fargate":
        substitutions.update(
            ExtractCompute="fargate",
            ExtractClusterArn="arn:aws:ecs:us-east-1:123456789012:cluster/recommender-ExtractCluster-AbC",
            ExtractTaskDefinitionArn="arn:aws:ecs:us-east-1:123456789012:task-definition/recommender-extract:1",
            ExtractSubnetIds=FARGATE_PARAMETERS["SubnetIds"],
            ExtractSecurityGroupId="sg-0a1b2c3d4e5f60718",
        )
    return local.render_definition(ASL.read_text() if text is None else text, substitutions)


def statelint(definition: str, tmp_path: Path) -> list[str]:
    executable = shutil.which("statelint", path=str(Path(sys.executable).parent))
    if executable is None:
        pytest.fail("statelint is not installed: pip install -e '.[dev]'")
    path = tmp_path / "definition.asl.json"
    path.write_text(definition)
    result = subprocess.run([executable, str(path)], capture_output=True, text=True)
    problems = [line.strip() for line in result.stdout.splitlines() if line.startswith(" ")]
    assert result.returncode == 0 or problems, result.stdout + result.stderr
    return [p for p in problems if not STATELINT_FALSE_POSITIVE.fullmatch(p)]


@pytest.mark.parametrize("extract_compute", ["lambda", "fargate"])
@pytest.mark.parametrize("train_compute", ["lambda", "fargate"])
def test_statelint_accepts_the_definition(tmp_path: Path, train_compute: str, extract_compute: str) -> None:
    definition = rendered_definition(train_compute=train_compute, extract_compute=extract_compute)
    assert statelint(definition, tmp_path) == []


def test_statelint_would_catch_a_broken_definition(tmp_path: Path) -> None:
    broken = ASL.read_text().replace('"Next": "Train the model and plan the shards"', '"Next": "Nowhere"')
    assert any("Nowhere" in problem for problem in statelint(rendered_definition(broken), tmp_path))


# --- the template, as CloudFormation will see it --------------------------------------------------


def cfn_lint(template: dict[str, Any]) -> list[tuple[str, str, str]]:
    from cfnlint.api import ManualArgs, lint

    matches = lint(json.dumps(template), config=ManualArgs(regions=["us-east-1"]))
    return [(m.rule.id, "/".join(map(str, m.path)), m.message) for m in matches]


def test_cfn_lint_finds_nothing_in_the_translated_template() -> None:
    """Warnings too: `sam validate --lint` (samconfig.toml sets lint = true) fails on any of them.
    The optional network parameters default to "", which cfn-lint would report (W1030) in every
    resource whose condition does not name them."""
    assert cfn_lint(translated_template()) == []


FARGATE_PLACEMENTS = [("fargate", "fargate"), ("fargate", "lambda"), ("lambda", "fargate")]


@pytest.mark.parametrize(("train_compute", "extract_compute"), FARGATE_PLACEMENTS)
def test_cfn_lint_finds_nothing_with_fargate(train_compute: str, extract_compute: str) -> None:
    """The same, with the parameters' defaults set to a Fargate deployment's values: cfn-lint then
    resolves them into the conditional resources (the task definitions, their roles and group)."""
    sam = load_template()
    parameters = {**FARGATE_PARAMETERS, "TrainCompute": train_compute, "ExtractCompute": extract_compute}
    for name, value in parameters.items():
        sam["Parameters"][name]["Default"] = value
    translated = translated_template(sam)
    assert {"TrainTaskDefinition", "TrainCluster", "TrainTaskRole"} <= set(translated["Resources"])
    assert {"ExtractTaskDefinition", "ExtractCluster", "ExtractTaskRole"} <= set(translated["Resources"])
    assert cfn_lint(translated) == []


def test_cfn_lint_would_catch_a_bad_template() -> None:
    sam = load_template()
    sam["Globals"]["Function"]["Runtime"] = "python2.7"
    sam["Resources"]["RunFailedAlarm"]["Properties"]["ComparisonOperator"] = "Bigger"
    rules = {rule for rule, _path, _message in cfn_lint(translated_template(sam))}
    assert {r for r in rules if r.startswith("E")}, rules


# --- `sam validate`, and the documented deploy command --------------------------------------------


def sam_cli(*args: str, home: Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """SAM CLI as a developer without an AWS account runs it: no credentials, no region, no
    instance metadata, no telemetry; its own home, where it writes ~/.aws-sam/metadata.json.
    It reads the samconfig.toml beside the template."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    environment.update(
        HOME=str(home),
        SAM_CLI_TELEMETRY="0",
        AWS_CONFIG_FILE=str(home / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(home / "no-aws-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    return subprocess.run(
        [sys.executable, "-m", "samcli", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_sam_validate_with_the_repositorys_samconfig_passes(tmp_path: Path) -> None:
    """`sam validate` as the repository configures it: samconfig.toml's lint = true makes it run
    cfn-lint on the template (SAM's transform included, no AWS call) instead of SAM's validation,
    which looks managed policies up in IAM. Any cfn-lint match, a warning too, exits 1."""
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    assert config["default"]["validate"]["parameters"]["lint"] is True
    result = sam_cli("validate", home=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    # The linting path's message (the IAM path's adds "according to basic SAM Validation").
    assert result.stdout.strip() == f"{ROOT / 'template.yaml'} is a valid SAM Template"


def test_sam_validate_would_fail_on_a_warning(tmp_path: Path) -> None:
    """The same run on a copy whose HasVpc names VpcId alone: cfn-lint's W1030 on the empty
    defaults of SubnetIds and DatabaseSecurityGroupId, and `sam validate` exits 1."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "samconfig.toml", project / "samconfig.toml")
    text = (ROOT / "template.yaml").read_text()
    condition = re.search(r"^  HasVpc: !And\n(    - .*\n)+", text, re.M)
    assert condition, "HasVpc is not where this test expects it"
    text = text.replace(condition.group(0), '  HasVpc: !Not [!Equals [!Ref VpcId, ""]]\n')
    (project / "template.yaml").write_text(text)
    result = sam_cli("validate", home=tmp_path, cwd=project)
    assert result.returncode == 1
    assert "W1030" in result.stdout and "Linting failed" in result.stderr


def test_the_documented_deploy_passes_the_schedule_input_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/deploy.md's deploy command, run by bash with a `sam` that records its arguments, then
    parsed by SAM CLI: ScheduleInput is events/schedule_input.json, whole."""
    if shutil.which("jq") is None:
        pytest.skip("jq is not installed (the documented command runs it)")
    recorded = tmp_path / "sam-calls.jsonl"
    stub = tmp_path / "bin" / "sam"
    stub.parent.mkdir()
    stub.write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"with open({str(recorded)!r}, 'a') as calls:\n    calls.write(json.dumps(sys.argv[1:]) + '\\n')\n"
    )
    stub.chmod(0o755)
    command = documented_block("bash", "ScheduleInput=")
    environment = {**os.environ, "PATH": f"{stub.parent}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(["bash", "-eu", "-c", command], cwd=ROOT, env=environment, check=True, timeout=60)
    calls = [json.loads(line) for line in recorded.read_text().splitlines()]
    assert [call[0] for call in calls] == ["build", "deploy"]
    monkeypatch.chdir(ROOT)
    overrides = sam_deploy_overrides(*calls[1][1:])
    expected = compact(load_event("schedule_input.json"))
    assert overrides["ScheduleInput"] == expected
    assert set(overrides) <= set(load_template()["Parameters"])
    assert schedule_input_pattern().fullmatch(overrides["ScheduleInput"])
    # The same value as the shell passed it before, without the inner single quotes: SAM CLI keeps
    # `{`, and the parameter's pattern refuses it.
    unquoted = sam_deploy_overrides("--parameter-overrides", f"ScheduleInput={expected}")
    assert unquoted["ScheduleInput"] == "{"
    assert not schedule_input_pattern().fullmatch(unquoted["ScheduleInput"])
