"""Everything about deploying to AWS that can be checked without an AWS account.

- the definition passes statelint and the CloudFormation SAM makes of template.yaml passes cfn-lint,
  with TrainCompute=lambda (the default) and =fargate (tests/unit/test_fargate.py checks the rest);
- every function and ${Substitution} the definition names comes from the template;
- the dependencies layer, built by the same Makefile target `sam build` runs (pip --platform,
  hash-locked wheels), fits Lambda's 250 MB with a margin, is for the right machine and glibc,
  holds no scipy or pandas, and the handlers import with only the layers on sys.path;
- the database secret is resolved into a URL without the password ever reaching a message;
- samconfig.toml and docs/deploy.md agree with the template.

The layer is built once into build/layer/<hash of Makefile and lock>/ (about 15 s with a warm pip
cache; it downloads the wheels from PyPI the first time) and reused while neither file changes.
"""

from __future__ import annotations

import ast
import gzip
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from contextlib import closing
from email.parser import Parser
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
import psycopg2.extensions
import pytest
from moto import mock_aws
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from recommender import local
from recommender.config import Settings, SourceTable
from recommender.errors import ConfigError, SecretError
from recommender.local import LocalEngine
from recommender.sample_data import SyntheticSpec, load_ratings, synthetic_ratings
from recommender.secrets import database_url, url_from_secret, url_from_secret_string
from tests.conftest import LOCAL_FUNCTIONS, Databases
from tests.unit.test_template import (
    ARCHITECTURE,
    ASL,
    BUCKET,
    EVENTS,
    PREFIX,
    ROOT,
    RUNTIME,
    compact,
    functions,
    load_event,
    load_template,
    schedule_input_pattern,
    state_machine,
    states,
    translated_template,
)

SCRIPT = ROOT / "scripts" / "build_layer.py"
BUILDER = ROOT / "layers" / "recommender" / "build_closure.py"
RECOMMENDER_MAKEFILE = ROOT / "layers" / "recommender" / "Makefile"
MAKEFILE = ROOT / "layers" / "dependencies" / "Makefile"
LOCK = ROOT / "layers" / "dependencies" / "requirements.lock"
REQUIREMENTS = ROOT / "layers" / "dependencies" / "requirements.txt"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"

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


def load_module(name: str, path: Path) -> Any:
    """A script or builder that is not a package's module, imported from its file."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


build_layer = load_module("build_layer", SCRIPT)


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


def test_every_function_the_definition_invokes_is_in_the_template() -> None:
    template = load_template()
    substitutions = state_machine(template)["DefinitionSubstitutions"]
    used = set(re.findall(r"\$\{(\w+)\}", ASL.read_text()))
    assert used <= set(substitutions), f"not provided by the template: {used - set(substitutions)}"
    tasks = [s for s in states(json.loads(ASL.read_text())).values() if s["Type"] == "Task"]
    # Every task invokes a function, except the Fargate extract and train tasks
    # (tests/unit/test_fargate.py).
    assert [t["Resource"] for t in tasks if t["Resource"] != "arn:aws:states:::lambda:invoke"] == [
        "arn:aws:states:::ecs:runTask.sync"
    ] * 2
    tasks = [t for t in tasks if t["Resource"] == "arn:aws:states:::lambda:invoke"]
    assert tasks
    for task in tasks:
        name = re.fullmatch(r"\$\{(\w+)\}", task["Parameters"]["FunctionName"])
        assert name, f"{task['Parameters']['FunctionName']} is not a substitution"
        value = substitutions[name.group(1)]
        logical, attribute = value["Fn::GetAtt"]
        assert attribute == "Arn"
        properties = functions(template)[logical]["Properties"]
        module, _handler = properties["Handler"].split(".")
        assert (ROOT / properties["CodeUri"] / f"{module}.py").is_file(), logical


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


# --- least privilege, against what a real run does -------------------------------------------------


@pytest.mark.e2e
def test_real_runs_need_nothing_their_roles_do_not_grant(databases: Databases) -> None:
    """Run the real definition in the sandbox (an interrupted run, its resumption, a refused rerun
    of it once published, a failing run): every S3 and
    Secrets Manager request a step makes goes through the local IAM check, which holds it to that
    function's statements in the template and answers a missing object 403 as S3 answers these
    roles. A step that starts touching a new key or calling a new API fails here, not on AWS."""
    url = databases.create()
    with closing(psycopg2.connect(url)) as conn:
        rows = synthetic_ratings(SyntheticSpec(users=90, items=40, ratings_per_user=12, seed=5))
        load_ratings(conn, rows, SourceTable())
    run_input = {"users_per_shard": 30, "max_concurrency": 2}
    with LocalEngine(url, bucket=BUCKET, prefix=PREFIX) as engine:
        engine.inject(
            "recommender-predict", "RuntimeError", times=100, when=lambda e: e["shard"]["index"] == 1
        )
        interrupted = engine.run(run_input)
        assert interrupted.status == "FAILED", (interrupted.cause, engine.denials)
        engine.clear_faults()
        resumed = engine.run({**run_input, "run_id": interrupted.name})
        assert resumed.status == "SUCCEEDED", (resumed.cause, engine.denials)
        again = engine.run({**run_input, "run_id": interrupted.name})  # published: refused
        assert again.status == "FAILED" and again.error == "PublishedRunError"
        failed = engine.run({"source": {"table": "no_such_table"}})
        assert failed.status == "FAILED" and failed.error == "ConfigError"
        assert engine.denials == []
        requests = engine.granted
    assert {who for who, _request in requests} == set(engine.functions)
    assert any(r.action == "secretsmanager:GetSecretValue" for who, r in requests if who.endswith("extract"))
    assert all(r.action.startswith("s3:") for who, r in requests if not who.endswith("extract"))


# --- the dependencies layer -----------------------------------------------------------------------


def test_makefile_builds_for_the_template_runtime_and_architecture() -> None:
    text = MAKEFILE.read_text()
    target = build_layer.template_target()
    assert (target.runtime, target.architecture) == (RUNTIME, ARCHITECTURE)
    assert re.search(rf"^PYTHON_VERSION \?= {re.escape(target.python_version)}$", text, re.M)
    assert re.search(rf"^ARCH \?= {target.machine}$", text, re.M)
    # The glibc of the runtime's image bounds the manylinux tags accepted.
    major, minor = build_layer.RUNTIME_GLIBC[RUNTIME]
    assert re.search(rf"^GLIBC_MINOR \?= {minor}$", text, re.M) and major == 2
    # SAM runs `make build-<LogicalId>` for BuildMethod: makefile.
    assert re.search(r"^build-DependenciesLayer:", text, re.M)
    for flag in ("--only-binary=:all:", "--no-deps", "--require-hashes", "--platform", "--target"):
        assert flag in text, flag


def read_lock(lock: Path = LOCK) -> dict[str, tuple[str, list[str]]]:
    """A hash-locked requirements file as {name: (version, [sha256, ...])}."""
    pins: dict[str, tuple[str, list[str]]] = {}
    current = ""
    for line in lock.read_text().splitlines():
        line = line.strip().rstrip("\\").strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("--hash=sha256:"):
            pins[current][1].append(line.removeprefix("--hash=sha256:"))
        else:
            name, version = line.split("==")
            current = build_layer._canonical(name)
            pins[current] = (version, [])
    return pins


def test_lock_pins_within_the_declared_ranges() -> None:
    pins = read_lock()
    assert pins, "requirements.lock has no pin"
    for name, (_version, hashes) in pins.items():
        assert hashes, f"{name} has no hash"
    declared = [
        Requirement(line)
        for line in REQUIREMENTS.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for requirement in declared:
        name = build_layer._canonical(requirement.name)
        assert name in pins, f"{name} is declared but not locked"
        assert SpecifierSet(str(requirement.specifier)).contains(pins[name][0]), name
    for forbidden in build_layer.FORBIDDEN:
        assert build_layer._canonical(forbidden) not in pins, forbidden


@pytest.fixture(scope="session")
def target_layer() -> Path:
    """The layer for the template's architecture, built by the Makefile (cached while unchanged)."""
    return Path(build_layer.build(build_layer.template_target()))


def test_layer_fits_lambda_with_a_margin(target_layer: Path, recommender_layer: Path) -> None:
    report = build_layer.layer_report(
        build_layer.template_target(), target_layer, recommender_layer, zipped=False
    )
    assert report["largest_function_total_bytes"] <= build_layer.SIZE_BUDGET, report
    assert build_layer.SIZE_BUDGET <= build_layer.LAMBDA_UNZIPPED_LIMIT // 2
    # Each extension module is for the target machine and needs no newer glibc than the runtime's.
    assert report["machines"] == [build_layer.MACHINES[ARCHITECTURE]], report["machines"]
    assert build_layer.glibc_tuple(report["glibc_max"]) <= build_layer.RUNTIME_GLIBC[RUNTIME], report
    assert report["forbidden_present"] == [] and report["sdk_missing"] == []


def test_layer_is_stripped_of_tests_and_holds_the_runtimes_bytecode(target_layer: Path) -> None:
    """No tests, no console scripts; bytecode for the runtime's Python only, compiled once by the
    build (Lambda cannot write it to /opt, so a cold start would compile every import) as
    unchecked-hash .pyc files (PEP 552), which hold no timestamp: the layer is the same from build
    to build."""
    python = target_layer / "python"
    tag = f"cpython-{RUNTIME.removeprefix('python').replace('.', '')}"
    sources = {p for p in python.rglob("*.py")}
    compiled = set()
    for path in python.rglob("*"):
        assert path.name != "tests", path
        assert path.suffix != ".pyo", path
        if path.suffix == ".pyc":
            assert path.parent.name == "__pycache__" and path.name.endswith(f".{tag}.pyc"), path
            flags = int.from_bytes(path.read_bytes()[4:8], "little")
            assert flags == 0b01, f"{path}: not an unchecked-hash pyc (flags {flags:#b})"
            compiled.add(path.parent.parent / (path.name.split(".")[0] + ".py"))
    assert not (python / "bin").exists()
    if build_layer.find_python(RUNTIME.removeprefix("python")) is not None:
        assert compiled == sources, sorted(map(str, sources - compiled))[:5]
    assert {"surprise", "numpy", "psycopg2", "aws_lambda_powertools", "aws_xray_sdk", "joblib"} <= (
        build_layer.top_level_names(target_layer)
    )


def test_layer_holds_what_its_packages_need(target_layer: Path) -> None:
    """Closed set: every dependency of a locked package is locked, the SDK's included (nothing is
    left to the Lambda runtime). The one exception is on purpose: scikit-surprise declares scipy,
    which it never imports."""
    pins = read_lock()
    installed = {}
    for metadata in (target_layer / "python").glob("*.dist-info/METADATA"):
        message = Parser().parsestr(metadata.read_text())
        installed[build_layer._canonical(message["Name"])] = (message["Version"], message)
    assert {name: version for name, (version, _) in installed.items()} == {
        name: version for name, (version, _hashes) in pins.items()
    }
    environment = {"python_version": RUNTIME.removeprefix("python"), "sys_platform": "linux"}
    extras = {"aws-lambda-powertools": {"tracer"}}
    allowed_missing = {("scikit-surprise", "scipy")}
    for name, (_version, message) in installed.items():
        for line in message.get_all("Requires-Dist") or []:
            requirement = Requirement(line)
            if requirement.marker is not None:
                wanted = extras.get(name, set()) or {""}
                if not any(
                    Marker(str(requirement.marker)).evaluate({**environment, "extra": e}) for e in wanted
                ):
                    continue
            needed = build_layer._canonical(requirement.name)
            if (name, needed) in allowed_missing:
                continue
            assert needed in installed, f"{name} needs {needed}, which the layer lacks"
            assert requirement.specifier.contains(installed[needed][0], prereleases=True), (name, line)


def test_the_layer_ships_the_sdk_the_tests_use(target_layer: Path) -> None:
    """boto3 is bundled, not taken from the Lambda runtime, whose version AWS changes when it likes:
    Merge's conditional put_object(IfMatch=...) needs botocore 1.35.72 or newer, for one. The lock
    pins boto3 and botocore to exactly what pyproject.toml pins, which is what these tests run."""
    pins = read_lock()
    project = [
        Requirement(r)
        for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    ]
    for name in ("boto3", "botocore"):
        assert name in pins, f"{name} is not in the dependencies layer's lock"
        version = pins[name][0]
        assert importlib.metadata.version(name) == version, (
            f"the tests run {name} {importlib.metadata.version(name)}"
        )
        (declared,) = [r for r in project if r.name == name]
        assert str(declared.specifier) == f"=={version}", f"pyproject.toml must pin {name}=={version}"
    names = build_layer.top_level_names(target_layer)
    assert set(build_layer.SDK) <= names, set(build_layer.SDK) - names
    # The layer's botocore knows S3's conditional write that Merge relies on.
    (model,) = (target_layer / "python" / "botocore" / "data" / "s3").glob("*/service-2.json*")
    text = gzip.decompress(model.read_bytes()) if model.suffix == ".gz" else model.read_bytes()
    assert "IfMatch" in json.loads(text)["shapes"]["PutObjectRequest"]["members"]


@pytest.fixture(scope="session")
def host_python() -> str:
    python = build_layer.find_python(RUNTIME.removeprefix("python"))
    if python is None:
        pytest.skip(f"no {RUNTIME} interpreter on this machine: the handlers' import check needs one")
    return str(python)


def test_handlers_import_with_only_the_layers(host_python: str) -> None:
    """A fresh interpreter of the runtime's version, -I -S, with sys.path = the function's folder,
    the two built layers (the dependencies built for this machine, same lock; boto3 among them) and
    the standard library."""
    report = build_layer.import_report(build_layer.template_target())
    assert isinstance(report, dict), report
    assert report["handlers"] == sorted(functions(load_template()))
    assert report["forbidden_imported"] == [], "Surprise must not pull in scipy or pandas"
    # The package came from the built layer, never from layers/recommender/ itself.
    assert report["from_source"] == []
    assert all(report["recommender_modules"].values())


# Heavy third-party packages a handler may load when it is imported, by step. Every one loads numpy,
# boto3 and Powertools. Extract checks the algorithm's parameters with Surprise (which loads joblib)
# and connects with psycopg2; Train fits with Surprise. Predict needs Surprise only to refit a
# custom algorithm (a `refit` model), and imports it then; Merge and RecordFailure never need it.
HEAVY = ("surprise", "psycopg2", "joblib", "scipy", "pandas")
MAY_IMPORT = {
    "ExtractFunction": {"surprise", "joblib", "psycopg2"},
    "TrainFunction": {"surprise", "joblib"},
    "PredictFunction": set(),
    "MergeFunction": set(),
    "RecordFailureFunction": set(),
}


def test_each_handler_imports_only_what_its_step_needs(host_python: str) -> None:
    """In a fresh interpreter with only the built layers: what each handler's import loads."""
    report = build_layer.import_report(build_layer.template_target())
    assert isinstance(report, dict), report
    loaded = {name: set(modules) & set(HEAVY) for name, modules in report["top_level_modules"].items()}
    assert loaded == MAY_IMPORT


def test_the_import_check_fails_without_the_layer(host_python: str, tmp_path: Path) -> None:
    empty = tmp_path / "empty-layer"
    (empty / "python").mkdir(parents=True)
    with pytest.raises(RuntimeError, match="No module named"):
        build_layer.import_handler(host_python, ROOT / "functions/train/app.py", [empty])


# The steps whose handlers import Surprise when they are loaded.
SURPRISE_HANDLERS = ("ExtractFunction", "TrainFunction")


def test_handlers_import_on_a_read_only_home(host_python: str) -> None:
    """`import surprise` creates its data folder, ~/.surprise_data unless SURPRISE_DATA_FOLDER says
    otherwise. Lambda's home folder is read-only and the train image's user has none: with the
    template's environment (which sends it under /tmp) every handler imports with a read-only
    home; without that variable, the handlers that load Surprise fail in os.makedirs."""
    environment = build_layer.lambda_environment()
    assert environment["HOME"] == build_layer.READ_ONLY_HOME
    assert environment["SURPRISE_DATA_FOLDER"].startswith("/tmp/")
    layers = [
        build_layer.build(build_layer.template_target(), build_layer.host_machine()),
        build_layer.build_recommender(),
    ]
    for name, code in build_layer.function_code_dirs().items():
        report = build_layer.import_handler(host_python, code / "app.py", layers, environment)
        assert report["modules"], name
    without = {k: v for k, v in environment.items() if k != "SURPRISE_DATA_FOLDER"}
    for name in SURPRISE_HANDLERS:
        handler = build_layer.function_code_dirs()[name] / "app.py"
        with pytest.raises(RuntimeError, match=r"(?s)surprise.*makedirs"):
            build_layer.import_handler(host_python, handler, layers, without)


def test_the_script_reports_the_size(target_layer: Path) -> None:
    """The command docs/deploy.md quotes (its import check is the test below): each function's
    unzipped size, its code and its layers, against Lambda's 250 MB."""
    command = [sys.executable, str(SCRIPT), "--no-imports"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"unzipped \d+\.\d MB \([\d,]+ bytes\)", result.stdout), result.stdout
    assert re.search(r"zipped +\d+\.\d MB", result.stdout), result.stdout
    assert "(its code + its layers) of Lambda's 250.0 MB" in result.stdout
    report = build_layer.layer_report(
        build_layer.template_target(), target_layer, build_layer.build_recommender(), zipped=False
    )
    for name in functions(load_template()):
        size = report["function_total_bytes"][name]
        code = build_layer.unzipped_size(build_layer.function_code_dirs()[name])
        assert size == code + report["layer_unzipped_bytes"] + report["recommender_layer_bytes"]
        assert re.search(rf"^  {name} +\d+\.\d MB \({size:,} bytes, \d+%\)$", result.stdout, re.M), name


def test_the_script_reports_each_handlers_cold_import(host_python: str) -> None:
    command = [sys.executable, str(SCRIPT), "--repeat", "1"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "cold import of each handler: fresh interpreter, the layers' bytecode (best of 1)" in result.stdout
    for name in functions(load_template()):
        assert re.search(rf"^  {name} +\d+\.\d\d s$", result.stdout, re.M), name


# --- the recommender layer: what the steps import, nothing else ----------------------------------

# What a person runs, never a step: the command, the local engine, the synthetic generator and the
# evaluate report. None of it may reach the layer or the image.
NOT_SHIPPED = ("recommender.cli", "recommender.local", "recommender.sample_data", "recommender.report")


build_closure = load_module("build_closure", BUILDER)


@pytest.fixture(scope="session")
def recommender_layer() -> Path:
    """The recommender layer, built by its Makefile in a copy of layers/recommender/ (cached)."""
    return Path(build_layer.build_recommender())


def not_shipped(modules: Any) -> list[str]:
    return sorted(m for m in modules if any(m == x or m.startswith(x + ".") for x in NOT_SHIPPED))


def handler_imports() -> set[str]:
    """The package's modules that functions/*/app.py import, read from their source."""
    found: set[str] = set()
    for code in build_layer.function_code_dirs().values():
        for node in ast.walk(ast.parse((code / "app.py").read_text())):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.split(".")[0] == "recommender"
            ):
                found.add(node.module)
                found.update(
                    f"{node.module}.{alias.name}"
                    for alias in node.names
                    if build_closure.module_file(f"{node.module}.{alias.name}")
                )
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.split(".")[0] == "recommender")
    return found


def test_the_builders_roots_are_what_the_handlers_import() -> None:
    """`sam build` gives the builder layers/recommender/ alone, so it cannot read the handlers: its
    ROOTS list what they import, and the train image's entry point. They must not drift apart."""
    roots = set(build_closure.ROOTS)
    assert "recommender.task" in roots  # python -m recommender.task (containers/train/Dockerfile)
    assert roots - {"recommender.task"} <= handler_imports()
    assert build_closure.closure(roots) == build_closure.closure(handler_imports() | {"recommender.task"})


def test_recommender_layer_is_built_by_its_makefile() -> None:
    (layer,) = [r for name, r in load_template()["Resources"].items() if name == "RecommenderLayer"]
    assert layer["Metadata"]["BuildMethod"] == "makefile"
    folder = ROOT / layer["Properties"]["ContentUri"]
    assert BUILDER.parent == folder.resolve() and RECOMMENDER_MAKEFILE.parent == folder.resolve()
    text = RECOMMENDER_MAKEFILE.read_text()
    assert re.search(r"^build-RecommenderLayer:", text, re.M)  # SAM runs make build-<LogicalId>
    assert re.search(r"build_closure\.py \"\$\(ARTIFACTS_DIR\)/python\"", text)
    # SAM runs it with any python3, in a copy of the folder: the standard library only.
    imported = set()
    for node in ast.walk(ast.parse(BUILDER.read_text())):
        if isinstance(node, ast.Import):
            imported.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported


def test_recommender_layer_holds_only_what_the_steps_import(recommender_layer: Path) -> None:
    python = recommender_layer / "python"
    shipped = sorted(
        p.relative_to(python) for p in python.rglob("*") if p.is_file() and p.parent.name != "__pycache__"
    )
    modules = build_closure.closure()
    assert shipped == build_closure.closure_files(modules)
    assert not_shipped(modules) == [], "a step imports what only a person runs: keep it out of the steps"
    for name in NOT_SHIPPED:
        path = python.joinpath(*name.split("."))
        assert not path.exists() and not path.with_suffix(".py").exists(), name
    # What the steps need is there, with the package data they read (the manifest's schemas).
    assert {"recommender.steps.predict", "recommender.kernels.factors", "recommender.training"} <= set(
        modules
    )
    assert (python / "recommender" / "schemas" / "manifest.schema.json").is_file()
    # Bytecode only for what ships, compiled by the build for the runtime's Python.
    tag = f"cpython-{RUNTIME.removeprefix('python').replace('.', '')}"
    for compiled in python.rglob("*.pyc"):
        assert compiled.name.endswith(f".{tag}.pyc"), compiled
        assert (compiled.parent.parent / (compiled.name.split(".")[0] + ".py")).is_file(), compiled


def test_a_step_importing_the_command_would_ship_it(tmp_path: Path) -> None:
    """The check above is not vacuous: in a copy of the package whose Predict step imports the CLI
    (inside a function, as lazy imports are), the closure takes the CLI and what it imports."""
    copy = tmp_path / "source"
    shutil.copytree(
        BUILDER.parent / "recommender", copy / "recommender", ignore=shutil.ignore_patterns("__pycache__")
    )
    predict = copy / "recommender" / "steps" / "predict.py"
    predict.write_text(
        predict.read_text() + "\n\ndef _later() -> None:\n    from .. import cli  # noqa: F401\n"
    )
    assert "recommender.cli" in not_shipped(build_closure.closure(source=copy))
    assert not_shipped(build_closure.closure()) == []


def test_the_closure_follows_every_kind_of_import(tmp_path: Path) -> None:
    """On a small package: absolute and relative imports at any depth, `from package import module`,
    imports inside functions, literal `resources.files(...)` (which brings that package's data) and
    a parent package's __init__; a module nothing imports stays out; a broken import fails."""
    package = tmp_path / "recommender"
    files = {
        "__init__.py": "",
        "root.py": "import recommender.a\nfrom .sub import b\nfrom . import c\n",
        "a.py": "def f():\n    from .sub.deep import d\n",
        "c.py": "from importlib import resources\nresources.files('recommender.data')\n",
        "unused.py": "",
        "sub/__init__.py": "",
        "sub/b.py": "from ..c import something\n",
        "sub/deep/__init__.py": "",
        "sub/deep/d.py": "from ... import a\n",
        "data/__init__.py": "",
        "data/table.json": "{}",
    }
    for name, text in files.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)
    modules = build_closure.closure(["recommender.root"], source=tmp_path)
    assert modules == [
        "recommender",
        "recommender.a",
        "recommender.c",
        "recommender.data",
        "recommender.root",
        "recommender.sub",
        "recommender.sub.b",
        "recommender.sub.deep",
        "recommender.sub.deep.d",
    ]
    written = build_closure.build(tmp_path / "out", ["recommender.root"], source=tmp_path)
    assert Path("recommender/data/table.json") in written
    assert (tmp_path / "out" / "recommender" / "data" / "table.json").read_text() == "{}"
    assert not (tmp_path / "out" / "recommender" / "unused.py").exists()
    (package / "a.py").write_text("from .missing import x\n")
    with pytest.raises(build_closure.ClosureError, match=r"recommender\.missing"):
        build_closure.closure(["recommender.root"], source=tmp_path)


# --- the database secret ---------------------------------------------------------------------------

PASSWORD = "p@ss:w/rd?#%&é"  # every character a URL has to quote


@pytest.fixture
def secrets_client() -> Any:
    with mock_aws():
        yield boto3.client("secretsmanager", region_name="us-east-1")


def _secret(client: Any, value: str) -> str:
    arn: str = client.create_secret(Name="recommender/db", SecretString=value)["ARN"]
    return arn


def test_rds_json_secret_becomes_a_url(secrets_client: Any) -> None:
    arn = _secret(
        secrets_client,
        json.dumps(
            {
                "engine": "postgres",
                "username": "reader",
                "password": PASSWORD,
                "host": "db.example.internal",
                "port": 5433,
                "dbname": "app",
                "sslmode": "require",
            }
        ),
    )
    url = url_from_secret(arn, secrets_client)
    parsed = psycopg2.extensions.parse_dsn(url)  # what libpq will connect with
    assert parsed == {
        "user": "reader",
        "password": PASSWORD,
        "host": "db.example.internal",
        "port": "5433",
        "dbname": "app",
        "sslmode": "require",
    }


def test_url_secret_is_used_as_it_is(secrets_client: Any) -> None:
    arn = _secret(secrets_client, "postgresql://reader:secret@db:5432/app\n")
    assert url_from_secret(arn, secrets_client) == "postgresql://reader:secret@db:5432/app"


def test_json_defaults_and_ipv6() -> None:
    url = url_from_secret_string(
        json.dumps({"username": "u", "password": "p", "host": "::1", "port": "6432"})
    )
    assert url == "postgresql://u:p@[::1]:6432/postgres"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (json.dumps({"username": "reader", "password": PASSWORD, "port": 5432}), "lacks host"),
        (json.dumps({"username": "reader", "password": PASSWORD, "host": "h", "port": "x"}), "port"),
        ("{" + PASSWORD, "neither a postgresql:// URL nor a JSON object"),
        (json.dumps([PASSWORD]), "neither a postgresql:// URL nor a JSON object"),
    ],
)
def test_a_bad_secret_is_named_without_its_password(secrets_client: Any, value: str, expected: str) -> None:
    arn = _secret(secrets_client, value)
    with pytest.raises(SecretError) as raised:
        url_from_secret(arn, secrets_client)
    message = str(raised.value)
    assert expected in message and arn in message
    assert PASSWORD not in message and "ss:w" not in message
    # No chained exception whose message could quote the secret's text.
    error = raised.value
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)


def test_an_unreadable_secret_names_the_error_code(secrets_client: Any) -> None:
    missing = "arn:aws:secretsmanager:us-east-1:123456789012:secret:nothing-AbC123"
    with pytest.raises(SecretError, match="ResourceNotFoundException"):
        url_from_secret(missing, secrets_client)


def test_database_url_prefers_the_local_engine_setting(secrets_client: Any) -> None:
    arn = _secret(secrets_client, "postgresql://from-secret/db")
    both = Settings(bucket="b", database_url="postgresql://local/db", database_secret_arn=arn)
    assert database_url(both, secrets_client) == "postgresql://local/db"
    assert (
        database_url(Settings(bucket="b", database_secret_arn=arn), secrets_client)
        == "postgresql://from-secret/db"
    )
    with pytest.raises(ConfigError, match="DATABASE_SECRET_ARN"):
        database_url(Settings(bucket="b"))


def test_settings_read_the_secret_arn() -> None:
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbC123"
    settings = Settings.from_env({"RECOMMENDER_BUCKET": "b", "DATABASE_SECRET_ARN": arn})
    assert settings.database_secret_arn == arn and settings.database_url is None
    assert (
        Settings.from_env({"RECOMMENDER_BUCKET": "b", "DATABASE_SECRET_ARN": ""}).database_secret_arn is None
    )


def test_extract_handler_reads_the_secret_when_there_is_no_url(secrets_client: Any) -> None:
    """The deployed path: no DATABASE_URL, the secret's URL reaches connect(), nothing logs it."""
    arn = _secret(secrets_client, json.dumps({"username": "u", "password": PASSWORD, "host": "db"}))
    spec = importlib.util.spec_from_file_location("extract_app", ROOT / "functions/extract/app.py")
    assert spec is not None and spec.loader is not None
    environment = {"RECOMMENDER_BUCKET": "b", "DATABASE_SECRET_ARN": arn, "AWS_DEFAULT_REGION": "us-east-1"}
    with mock.patch.dict("os.environ", environment):
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        settings = Settings.from_env()
        url = database_url(settings)  # the same call the handler's connect makes
    assert psycopg2.extensions.parse_dsn(url)["password"] == PASSWORD
    handler_source = (ROOT / "functions/extract/app.py").read_text()
    assert "extract.connector(settings)" in handler_source  # how the handler connects
    source = (ROOT / "layers/recommender/recommender/steps/extract.py").read_text()
    assert "connect(database_url(settings)" in source
    for text in (handler_source, source):
        assert not re.search(r"log\w*\.\w+\([^)]*url", text, re.I)


# --- samconfig.toml and the deploy guide ------------------------------------------------------------


def test_samconfig_defaults() -> None:
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    default = config["default"]
    assert default["global"]["parameters"]["stack_name"]
    deploy = default["deploy"]["parameters"]
    # Roles are created without names: CAPABILITY_IAM is enough (and nothing broader is granted).
    assert deploy["capabilities"] == "CAPABILITY_IAM"
    assert deploy["confirm_changeset"] is True and deploy["resolve_s3"] is True
    # Nothing in it names a parameter the template does not have, nor holds a secret.
    overrides = deploy.get("parameter_overrides", "")  # one string, or a list of them
    names = set(re.findall(r"(\w+)=", " ".join(overrides) if isinstance(overrides, list) else overrides))
    assert names <= set(load_template()["Parameters"])
    assert "password" not in (ROOT / "samconfig.toml").read_text().lower()


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


# --- ScheduleInput through SAM CLI's --parameter-overrides parser -----------------------------------


def documented_block(language: str, needle: str) -> str:
    """The one fenced `language` block of docs/deploy.md that contains `needle`."""
    blocks = re.findall(rf"^```{language}\n(.*?)^```", DEPLOY_DOC.read_text(), re.M | re.S)
    found = [b for b in blocks if needle in b]
    assert len(found) == 1, f"{len(found)} {language} blocks of docs/deploy.md contain {needle!r}"
    block: str = found[0]
    return block


def sam_deploy_overrides(*args: str) -> dict[str, str]:
    """The parameter overrides `sam deploy ARGS` sends, run in the current directory: SAM CLI's own
    deploy command parses the arguments, with the samconfig.toml it finds there, and stops before
    it would call AWS."""
    from samcli.commands.deploy.command import cli as deploy

    context = deploy.make_context("deploy", list(args))
    overrides: dict[str, str] = context.params["parameter_overrides"]
    return overrides


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


def test_the_documented_samconfig_overrides_pass_the_schedule_input_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "samconfig.toml").write_text("version = 0.1\n" + documented_block("toml", "ScheduleInput"))
    shutil.copy(ROOT / "template.yaml", tmp_path / "template.yaml")
    monkeypatch.chdir(tmp_path)
    overrides = sam_deploy_overrides("--stack-name", "recommender")
    assert overrides["ScheduleInput"] == compact(load_event("schedule_input.json"))
    assert set(overrides) <= set(load_template()["Parameters"])


@pytest.mark.parametrize("path", sorted(EVENTS.glob("*input*.json")), ids=lambda p: p.name)
def test_every_input_survives_both_quotings(path: Path) -> None:
    """Each run input, compact, in the two forms SAM CLI takes whole: in single quotes (the
    documented command) and in double quotes with its quotes escaped (what `--guided` saves)."""
    from samcli.cli.types import CfnParameterOverridesType
    from samcli.commands.deploy.guided_config import GuidedConfig

    value = compact(json.loads(path.read_text()))
    parse = CfnParameterOverridesType().convert
    assert parse((f"ScheduleInput='{value}'",), None, None) == {"ScheduleInput": value}
    guided = f"ScheduleInput={GuidedConfig.quote_parameter_values(value)}"
    assert parse((guided,), None, None) == {"ScheduleInput": value}


def estimate_cost() -> Any:
    spec = importlib.util.spec_from_file_location("estimate_cost", ROOT / "scripts" / "estimate_cost.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["estimate_cost"] = module
    spec.loader.exec_module(module)
    return module


def test_deploy_guide_shows_the_cost_script_table() -> None:
    module = estimate_cost()
    assert module.table() in DEPLOY_DOC.read_text(), "run scripts/estimate_cost.py and paste its table"
    # The prices are the published ones the guide quotes.
    text = DEPLOY_DOC.read_text()
    for price in ("$0.0000133334 per GB-second", "$0.20 per million", "$0.025 per 1,000", "$0.005 per 1,000"):
        assert price in text, price


def test_scaling_guide_shows_the_projection_and_the_limits() -> None:
    module = estimate_cost()
    text = (ROOT / "docs" / "scaling.md").read_text()
    assert module.table() in text, "run scripts/estimate_cost.py and paste its table into docs/scaling.md"
    assert module.lambda_limits() in text
    assert "@" not in text.replace("`@", ""), "a placeholder is left in docs/scaling.md"


def test_the_projection_moves_train_to_fargate_only_past_lambdas_limits() -> None:
    module = estimate_cost()
    measured, small, large = (module.steps(s) for s in module.SCENARIOS)
    assert measured[1].where.startswith("Lambda") and small[1].where.startswith("Lambda")
    assert large[1].where.startswith("Fargate")
    # the measured run's projected memory is its measured peak
    measured_run = module.MEASURED
    assert module.train_memory_mb(measured_run.ratings, measured_run.users) == measured_run.train_peak_mb


def test_deploy_guide_covers_every_parameter_and_output() -> None:
    text = DEPLOY_DOC.read_text()
    template = load_template()
    for name in list(template["Parameters"]) + list(template["Outputs"]):
        assert f"`{name}`" in text, f"docs/deploy.md does not explain {name}"
    for command in ("sam build", "sam deploy --guided", "aws stepfunctions start-execution"):
        assert command in text, command
