"""Everything about deploying to AWS that can be checked without an AWS account, in this process.

- every function and ${Substitution} the definition names comes from the template;
- the dependencies layer's Makefile builds for the template's runtime and architecture, and its lock
  pins every declared requirement, hashed; the recommender layer's builder takes only the modules
  the steps import;
- the database secret is resolved into a URL without the password ever reaching a message;
- samconfig.toml and docs/deploy.md agree with the template.

What runs the tools or builds the layers is in tests/integration: statelint, cfn-lint and SAM CLI
in test_deploy_tools.py, the built layers and the handlers' imports in test_layers.py. Least
privilege against real runs is tests/e2e/test_least_privilege.py.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import json
import re
import shutil
import sys
import tomllib
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
import psycopg2.extensions
import pytest
from moto import mock_aws
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from recommender.config import Settings
from recommender.errors import ConfigError, SecretError
from recommender.secrets import database_url, url_from_secret, url_from_secret_string
from tests.unit.test_template import (
    ARCHITECTURE,
    ASL,
    EVENTS,
    ROOT,
    RUNTIME,
    compact,
    functions,
    load_event,
    load_template,
    state_machine,
    states,
)

SCRIPT = ROOT / "scripts" / "build_layer.py"
BUILDER = ROOT / "layers" / "recommender" / "build_closure.py"
RECOMMENDER_MAKEFILE = ROOT / "layers" / "recommender" / "Makefile"
MAKEFILE = ROOT / "layers" / "dependencies" / "Makefile"
LOCK = ROOT / "layers" / "dependencies" / "requirements.lock"
REQUIREMENTS = ROOT / "layers" / "dependencies" / "requirements.txt"
TRAIN_LOCK = ROOT / "layers" / "dependencies" / "requirements-train.lock"
TRAIN_REQUIREMENTS = ROOT / "layers" / "dependencies" / "requirements-train.txt"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"


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


def test_every_function_the_definition_invokes_is_in_the_template() -> None:
    template = load_template()
    substitutions = state_machine(template)["DefinitionSubstitutions"]
    used = set(re.findall(r"\$\{(\w+)\}", ASL.read_text()))
    assert used <= set(substitutions), f"not provided by the template: {used - set(substitutions)}"
    tasks = [s for s in states(json.loads(ASL.read_text())).values() if s["Type"] == "Task"]
    # Every task invokes a function, except the Fargate extract and train tasks
    # (tests/unit/test_fargate_definition.py).
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


def declared(requirements: Path) -> list[Requirement]:
    return [
        Requirement(line)
        for line in requirements.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]


def test_train_layer_shares_the_dependencies_layers_recipe() -> None:
    """SAM runs `make build-TrainLayer` in the same folder (the layers' ContentUri): one recipe
    builds both layers, each target naming its lock, so they cannot be built differently."""
    text = MAKEFILE.read_text()
    assert re.search(r"^build-DependenciesLayer build-TrainLayer:$", text, re.M)
    assert re.search(r"^build-DependenciesLayer: LOCK := requirements\.lock$", text, re.M)
    assert re.search(r"^build-TrainLayer: LOCK := requirements-train\.lock$", text, re.M)
    assert "--requirement $(LOCK)" in text
    assert build_layer.LOCKS == {"DependenciesLayer": LOCK, "TrainLayer": TRAIN_LOCK}


def test_train_lock_pins_within_its_ranges_and_apart_from_the_dependencies_lock() -> None:
    """Hash-locked for both architectures like requirements.lock. No package is in both locks:
    Train would see two copies, the one of the layer listed first shadowing the other. Numpy,
    which implicit and scipy need, is the dependencies layer's, so it must fit scipy's range."""
    pins, shared = read_lock(TRAIN_LOCK), read_lock()
    assert {"implicit", "scipy"} <= set(pins)
    for name, (_version, hashes) in pins.items():
        assert hashes, f"{name} has no hash"
    assert not set(pins) & set(shared), set(pins) & set(shared)
    for requirement in declared(TRAIN_REQUIREMENTS):
        name = build_layer._canonical(requirement.name)
        assert name in pins, f"{name} is declared but not locked"
        assert SpecifierSet(str(requirement.specifier)).contains(pins[name][0]), name
    assert pins["implicit"][0] == "0.7.3"


def test_train_requirements_are_the_train_extra() -> None:
    """requirements-train.txt declares pyproject.toml's `train` extra, the set the tests fit with."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    if "train" not in extras:
        pytest.skip("pyproject.toml has no `train` extra yet")
    expected = {(build_layer._canonical(r.name), str(r.specifier)) for r in map(Requirement, extras["train"])}
    assert {
        (build_layer._canonical(r.name), str(r.specifier)) for r in declared(TRAIN_REQUIREMENTS)
    } == expected


# --- the recommender layer: what the steps import, nothing else ----------------------------------

# What a person runs, never a step: the command, the local engine, the synthetic generator and the
# evaluate report. None of it may reach the layer or the image.
NOT_SHIPPED = ("recommender.cli", "recommender.local", "recommender.sample_data", "recommender.report")


build_closure = load_module("build_closure", BUILDER)


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
    imported: set[str] = set()
    for node in ast.walk(ast.parse(BUILDER.read_text())):
        if isinstance(node, ast.Import):
            imported.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported


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
