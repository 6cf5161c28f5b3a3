"""The layers, built as `sam build` builds them (the dependencies and train layers by the same
Makefile targets: pip --platform, hash-locked wheels; the recommender layer by its Makefile, only
the modules the steps import): every function fits Lambda's 250 MB with a margin, the layers are for
the right machine and glibc, the dependencies layer holds no scipy or pandas, and the handlers
import with only their layers on sys.path, each loading only what its step needs; implicit and
scipy only Train can import.

The layer is built once into build/layer/<hash of Makefile and lock>/ (about 15 s with a warm pip
cache; it downloads the wheels from PyPI the first time) and reused while neither file changes.
"""

from __future__ import annotations

import gzip
import importlib.metadata
import importlib.util
import json
import re
import subprocess
import sys
import tomllib
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from tests.packages import installed_packages, unmet_requirements
from tests.unit.test_deploy import NOT_SHIPPED, SCRIPT, build_closure, build_layer, not_shipped, read_lock
from tests.unit.test_template import ARCHITECTURE, ROOT, RUNTIME, functions, load_template

pytestmark = pytest.mark.slow  # builds the layers with pip and imports the handlers in fresh interpreters


@pytest.fixture(scope="session")
def target_layer() -> Path:
    """The layer for the template's architecture, built by the Makefile (cached while unchanged)."""
    return Path(build_layer.build(build_layer.template_target()))


@pytest.fixture(scope="session")
def train_layer() -> Path:
    """The train layer for the template's architecture, built by the same Makefile (cached)."""
    return Path(build_layer.build_train(build_layer.template_target()))


def test_layer_fits_lambda_with_a_margin(
    target_layer: Path, recommender_layer: Path, train_layer: Path
) -> None:
    report = build_layer.layer_report(
        build_layer.template_target(), target_layer, recommender_layer, train_layer, zipped=False
    )
    # Every function but Train carries the shared layers alone, and stays within half the limit.
    shared = {name: size for name, size in report["function_total_bytes"].items() if name != "TrainFunction"}
    assert max(shared.values()) <= build_layer.SIZE_BUDGET, report
    assert build_layer.SIZE_BUDGET <= build_layer.LAMBDA_UNZIPPED_LIMIT // 2
    # Train, with the train layer too, within its own budget, under the limit.
    assert report["function_budget_bytes"]["TrainFunction"] == build_layer.TRAIN_SIZE_BUDGET
    assert report["over_budget"] == [] and report["over_limit"] == [], report["function_total_bytes"]
    assert build_layer.TRAIN_SIZE_BUDGET < build_layer.LAMBDA_UNZIPPED_LIMIT
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
    installed = installed_packages(target_layer / "python")
    assert {name: version for name, (version, _) in installed.items()} == {
        name: version for name, (version, _hashes) in pins.items()
    }
    environment = {"python_version": RUNTIME.removeprefix("python"), "sys_platform": "linux"}
    extras = {"aws-lambda-powertools": {"tracer"}}
    allowed_missing = {("scikit-surprise", "scipy")}
    assert unmet_requirements(installed, installed, environment, extras, allowed_missing) == []


def test_the_train_layer_with_the_dependencies_layer_holds_what_its_packages_need(
    target_layer: Path, train_layer: Path
) -> None:
    """Train carries both: together they are closed (implicit and scipy need numpy, which is the
    dependencies layer's, within scipy's range), and the train layer is exactly its lock, stripped
    like the other, its bytecode compiled for the runtime."""
    train = installed_packages(train_layer / "python")
    assert {name: version for name, (version, _m) in train.items()} == {
        name: version for name, (version, _hashes) in read_lock(build_layer.TRAIN_LOCK).items()
    }
    both = installed_packages(target_layer / "python", train_layer / "python")
    environment = {"python_version": RUNTIME.removeprefix("python"), "sys_platform": "linux"}
    assert unmet_requirements(both, train, environment) == []
    python = train_layer / "python"
    assert not (python / "bin").exists()
    assert not [p for p in python.rglob("tests") if p.is_dir()]
    if build_layer.find_python(RUNTIME.removeprefix("python")) is not None:
        assert (python / "implicit" / "__pycache__").is_dir()


def test_every_locked_package_supports_the_runtimes_python(target_layer: Path, train_layer: Path) -> None:
    """The Makefile passes --ignore-requires-python (some pips check the interpreter running them
    rather than --python-version): the runtime's Python is checked here instead."""
    version = RUNTIME.removeprefix("python")
    for layer in (target_layer, train_layer):
        for metadata in (layer / "python").glob("*.dist-info/METADATA"):
            message = Parser().parsestr(metadata.read_text())
            if message["Requires-Python"]:
                assert SpecifierSet(message["Requires-Python"]).contains(version), (message["Name"], version)


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
    # Train alone has the train layer: it can import implicit and scipy, no other function can.
    assert report["train_modules"] == {
        name: sorted(build_layer.TRAIN_MODULES) if name == "TrainFunction" else []
        for name in report["handlers"]
    }


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


def test_the_script_reports_the_size(target_layer: Path, train_layer: Path) -> None:
    """The command docs/deploy.md quotes (its import check is the test below): each function's
    unzipped size, its code and its layers, against Lambda's 250 MB."""
    command = [sys.executable, str(SCRIPT), "--no-imports"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"unzipped \d+\.\d MB \([\d,]+ bytes\)", result.stdout), result.stdout
    assert re.search(r"zipped +\d+\.\d MB", result.stdout), result.stdout
    assert "(its code + its layers) of Lambda's 250.0 MB" in result.stdout
    report = build_layer.layer_report(
        build_layer.template_target(),
        target_layer,
        build_layer.build_recommender(),
        train_layer,
        zipped=False,
    )
    for name in functions(load_template()):
        size = report["function_total_bytes"][name]
        code = build_layer.unzipped_size(build_layer.function_code_dirs()[name])
        train = report["train_layer_bytes"] if name == "TrainFunction" else 0
        assert size == code + report["layer_unzipped_bytes"] + report["recommender_layer_bytes"] + train
        assert re.search(rf"^  {name} +\d+\.\d MB \({size:,} bytes, \d+%\)$", result.stdout, re.M), name
    assert re.search(r"^train layer \(Train only\) unzipped \d+\.\d MB \([\d,]+ bytes\)", result.stdout, re.M)
    assert re.search(r"^    RecommenderLayer \+ DependenciesLayer \+ TrainLayer; budget", result.stdout, re.M)


def test_the_script_reports_each_handlers_cold_import(host_python: str) -> None:
    command = [sys.executable, str(SCRIPT), "--repeat", "1"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "cold import of each handler: fresh interpreter, the layers' bytecode (best of 1)" in result.stdout
    for name in functions(load_template()):
        assert re.search(rf"^  {name} +\d+\.\d\d s$", result.stdout, re.M), name


@pytest.fixture(scope="session")
def recommender_layer() -> Path:
    """The recommender layer, built by its Makefile in a copy of layers/recommender/ (cached)."""
    return Path(build_layer.build_recommender())


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
