"""The Fargate image's packages, built for this machine's architecture rather than ARM64: the
dependencies layer's lock holds every package its packages need (the SDK's included), and with a
Python 3.13 on this machine, `python -m recommender.task` runs with only those, the train layer's
(implicit, scipy) and the built recommender layer on its path, against S3 served by moto over
HTTP."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from email.parser import Parser
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from recommender.config import Settings
from recommender.storage import RunPaths, object_exists
from tests.fargate import LAYER_LOCK, REGION, RUN_ID, TRAIN_LOCK, ratings, task_environment
from tests.packages import installed_packages, unmet_requirements
from tests.publishing import write_snapshot
from tests.unit.test_deploy import read_lock
from tests.unit.test_template import PREFIX, ROOT

pytestmark = pytest.mark.slow  # builds both layers, starts moto's server and a Python 3.13


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
    Makefile, cached by tests/integration/test_layers.py's build), which the image installs, and the
    recommender layer, which it copies."""
    build_layer = _build_layer()
    machine = os.uname().machine
    if machine not in ("x86_64", "aarch64"):
        pytest.skip(f"no Lambda architecture here ({machine})")
    dependencies = Path(build_layer.build(build_layer.template_target(), machine)) / "python"
    return dependencies, Path(build_layer.build_recommender()) / "python"


@pytest.fixture(scope="module")
def train_site(image_site: tuple[Path, Path]) -> Path:
    """The train lock's packages, which the image installs too, built by the same Makefile."""
    build_layer = _build_layer()
    return Path(build_layer.build_train(build_layer.template_target(), os.uname().machine)) / "python"


def test_the_train_lock_is_what_the_image_adds(train_site: Path) -> None:
    messages = [Parser().parsestr(m.read_text()) for m in train_site.glob("*.dist-info/METADATA")]
    installed = {re.sub(r"[-_.]+", "-", m["Name"]).lower(): m["Version"] for m in messages}
    assert installed == {n: v for n, (v, _h) in read_lock(TRAIN_LOCK).items()}


def test_the_lock_holds_everything_the_images_packages_need(image_site: tuple[Path, Path]) -> None:
    """The image installs the layer's lock alone, with --no-deps: so the lock must hold every package
    its packages need, boto3's included (Fargate has no runtime that provides it)."""
    dependencies, _package = image_site
    installed = installed_packages(dependencies)
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
    declared_never_imported = {("scikit-surprise", "scipy")}
    assert unmet_requirements(installed, installed, environment, extras, declared_never_imported) == []


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
    python313: str, image_site: tuple[Path, Path], train_site: Path, s3_server: str
) -> None:
    """`python -m recommender.task` in a Python 3.13 whose path is the image's: the standard library
    (-S: no site-packages), both locks' packages and the built recommender layer; S3 over HTTP."""
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
        "PYTHONPATH": os.pathsep.join([str(package), str(dependencies), str(train_site)]),
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
    # implicit fits there, against the dependencies lock's numpy.
    fit = (
        "import numpy, scipy.sparse; from implicit.als import AlternatingLeastSquares as A; "
        "A(factors=2, iterations=1, random_state=0)"
        ".fit(scipy.sparse.csr_matrix(numpy.eye(3, dtype='float32')), show_progress=False)"
    )
    fitted = subprocess.run(
        [python313, "-S", "-B", "-c", fit], capture_output=True, text=True, env=environment
    )
    assert fitted.returncode == 0, fitted.stderr[-3000:]
