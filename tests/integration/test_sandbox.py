"""The Lambda-shaped sandbox (recommender.local.sandbox): every guarantee it gives, each checked
by a small handler written for the test, with a one-module /opt, so each invocation takes a
fraction of a second.

Tests of guarantees the machine may not enforce (file system, memory, user, exact sys.path) skip
with support()'s reason, except when CI=true: there they fail, because the product's CI must
enforce them. Timeout, errors and payload limits hold everywhere and always run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from recommender.local import sandbox as sandbox_module
from recommender.local.sandbox import (
    GUARANTEES,
    REQUEST_LIMIT_BYTES,
    RESPONSE_LIMIT_BYTES,
    FunctionSpec,
    Outcome,
    Sandbox,
    SandboxError,
    SandboxUnavailable,
    Support,
    exit_error,
    lambda_environment,
    python_version,
    runtime_python,
    support,
)

pytestmark = pytest.mark.slow  # each invocation is a sandboxed process

REGION = "eu-west-1"
EXTRA_ENV = {"AWS_ENDPOINT_URL": "http://127.0.0.1:1", "AWS_ACCESS_KEY_ID": "local"}
LAMBDA_VARIABLES = {
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
    "TZ",
    "LANG",
    "PATH",
    "LD_LIBRARY_PATH",
    "_HANDLER",
}


def require_full_sandbox() -> None:
    enforced = support()
    if enforced.complete:
        return
    if enforced.required_but_missing:
        pytest.fail(enforced.summary)
    pytest.skip(enforced.summary)


@pytest.fixture(scope="module")
def python() -> str:
    """The template's runtime (python3.13) when this machine has it."""
    return runtime_python("3.13") or os.path.realpath(sys.executable)


@pytest.fixture
def sandbox(tmp_path: Path, python: str) -> Sandbox:
    layer = tmp_path / "opt" / "python"
    layer.mkdir(parents=True)
    (layer / "optmod.py").write_text("VALUE = 'from /opt'\n")
    return Sandbox(tmp_path / "opt", python)


def function(tmp_path: Path, source: str, **settings: Any) -> FunctionSpec:
    code = tmp_path / "task"
    code.mkdir(exist_ok=True)
    (code / "app.py").write_text(textwrap.dedent(source))
    values: dict[str, Any] = {"memory_mb": 128, "timeout_seconds": 20.0, **settings}
    return FunctionSpec(name="recommender-test", code_dir=code, handler="app.lambda_handler", **values)


def run(sandbox: Sandbox, spec: FunctionSpec, event: Any = None) -> Outcome:
    return sandbox.invoke(spec, json.dumps(event or {}).encode(), REGION, EXTRA_ENV)


def test_support_reports_every_guarantee_enforced() -> None:
    require_full_sandbox()
    enforced = support()
    assert enforced.enforced == GUARANTEES
    assert enforced.missing == {}
    assert enforced.summary.startswith("Lambda sandbox: read-only file system, memory cap, /tmp cap")
    assert not enforced.required_but_missing


def test_file_system_is_read_only_except_a_capped_tmp(sandbox: Sandbox, tmp_path: Path) -> None:
    require_full_sandbox()
    spec = function(
        tmp_path,
        """
        import errno, os

        def attempt(action):
            try:
                action()
            except OSError as error:
                return errno.errorcode[error.errno]
            return "ok"

        def write(path, size=1):
            with open(path, "wb") as handle:
                handle.write(b"x" * size)

        def lambda_handler(event, context):
            return {
                "home": attempt(lambda: os.makedirs(os.path.expanduser("~/.surprise_data"))),
                "task": attempt(lambda: write("/var/task/new.txt")),
                "opt": attempt(lambda: write("/opt/python/new.py")),
                "root": attempt(lambda: os.mkdir("/new")),
                "usr": attempt(lambda: write("/usr/new")),
                "etc": attempt(lambda: write("/etc/new")),
                "var": attempt(lambda: os.mkdir("/var/new")),
                "tmp": attempt(lambda: write("/tmp/small", 1 << 20)),
                "tmp_read": open("/tmp/small", "rb").read(3).decode(),
                "tmp_past_cap": attempt(lambda: write("/tmp/large", 20 << 20)),
                "dev_null": attempt(lambda: write("/dev/null")),
            }
        """,
        ephemeral_storage_mb=16,
    )
    outcome = run(sandbox, spec)
    assert outcome.error is None
    assert outcome.result == {
        "home": "EROFS",
        "task": "EROFS",
        "opt": "EROFS",
        "root": "EROFS",
        "usr": "EROFS",
        "etc": "EROFS",
        "var": "EROFS",
        "tmp": "ok",
        "tmp_read": "xxx",
        "tmp_past_cap": "ENOSPC",
        "dev_null": "ok",
    }
    assert not (tmp_path / "task" / "new.txt").exists()


def test_extra_binds_are_read_write_at_the_same_path(tmp_path: Path, python: str) -> None:
    require_full_sandbox()
    shared = tmp_path / "sockets"
    shared.mkdir()
    shared.chmod(0o777)  # the sandbox user is not root
    (tmp_path / "opt").mkdir()
    spec = function(
        tmp_path,
        """
        import os

        def lambda_handler(event, context):
            with open(os.path.join(event["folder"], "from-lambda.txt"), "w") as handle:
                handle.write("hello")
            return sorted(os.listdir(event["folder"]))
        """,
    )
    outcome = run(Sandbox(tmp_path / "opt", python, binds=[shared]), spec, {"folder": str(shared)})
    assert outcome.error is None
    assert outcome.result == ["from-lambda.txt"]
    assert (shared / "from-lambda.txt").read_text() == "hello"


def test_a_sandbox_that_cannot_be_built_is_the_sandboxs_error_not_the_functions(
    tmp_path: Path, python: str
) -> None:
    require_full_sandbox()
    (tmp_path / "opt").mkdir()
    spec = function(tmp_path, "def lambda_handler(event, context):\n    return 1\n")
    broken = Sandbox(tmp_path / "opt", python, binds=[Path("/usr/no-such-folder-for-the-sandbox")])
    with pytest.raises(SandboxError, match="would need a new folder inside /usr"):
        run(broken, spec)


MEMORY_HANDLER = """
def lambda_handler(event, context):
    data = b"x" * (event["megabytes"] << 20)  # every page written, so resident
    return len(data)
"""


def test_memory_past_the_function_memory_ends_like_lambda(sandbox: Sandbox, tmp_path: Path) -> None:
    require_full_sandbox()
    spec = function(tmp_path, MEMORY_HANDLER, memory_mb=128)
    fits = run(sandbox, spec, {"megabytes": 64})
    assert fits.error is None
    assert fits.result == 64 << 20
    assert fits.peak_bytes is not None and 64 << 20 < fits.peak_bytes < 128 << 20
    assert fits.init_bytes is not None and 0 < fits.init_bytes < fits.peak_bytes

    killed = run(sandbox, spec, {"megabytes": 300})
    assert killed.error == {
        "errorType": "Runtime.ExitError",
        "errorMessage": f"RequestId: {killed.request_id} Error: Runtime exited with error: signal: killed",
    }
    assert killed.peak_bytes is not None and killed.peak_bytes >= 120 << 20
    assert killed.cpu_seconds is not None and killed.cpu_seconds > 0


def test_a_handler_past_its_timeout_is_killed_with_its_children(
    sandbox: Sandbox, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    spec = function(
        tmp_path,
        """
        import subprocess, time

        def lambda_handler(event, context):
            child = subprocess.Popen(["sleep", "60"])
            print(f"child={child.pid}", flush=True)
            time.sleep(60)
        """,
        timeout_seconds=1.0,
    )
    outcome = run(sandbox, spec)
    assert outcome.error == {
        "errorType": "Sandbox.Timedout",
        "errorMessage": f"RequestId: {outcome.request_id} Error: Task timed out after 1.00 seconds",
    }
    assert outcome.seconds < 5
    child = int(capfd.readouterr().out.split("child=")[1].split()[0])
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_sys_path_environment_user_and_context_are_lambdas(
    sandbox: Sandbox, tmp_path: Path, python: str
) -> None:
    require_full_sandbox()
    spec = function(
        tmp_path,
        """
        import importlib, os, sys

        def importable(name):
            try:
                importlib.import_module(name)
            except ImportError:
                return False
            return True

        def lambda_handler(event, context):
            import optmod
            return {
                "sys_path": sys.path,
                "environment": dict(os.environ),
                "uid": os.getuid(),
                "gid": os.getgid(),
                "groups": os.getgroups(),
                "cwd": os.getcwd(),
                "optmod": optmod.VALUE,
                "numpy": importable("numpy"),
                "recommender": importable("recommender"),
                "pytest": importable("pytest"),
                "context": {
                    "function_name": context.function_name,
                    "memory_limit_in_mb": context.memory_limit_in_mb,
                    "aws_request_id": context.aws_request_id,
                    "remaining": context.get_remaining_time_in_millis(),
                    "arn": context.invoked_function_arn,
                },
            }
        """,
        environment={"RECOMMENDER_BUCKET": "bucket", "PATH": "/opt/bin:/usr/bin:/bin"},
    )
    outcome = run(sandbox, spec)
    assert outcome.error is None
    result = outcome.result
    stdlib = json.loads(
        subprocess.run(
            [python, "-I", "-S", "-c", "import json, sys; print(json.dumps(sys.path))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert result["sys_path"] == ["/var/task", "/opt/python", *stdlib]
    environment = result["environment"]
    assert set(environment) == LAMBDA_VARIABLES | {"RECOMMENDER_BUCKET"} | set(EXTRA_ENV)
    assert "HOME" not in environment
    assert environment["AWS_EXECUTION_ENV"] == f"AWS_Lambda_python{python_version(python)}"
    assert environment["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "128"
    assert environment["AWS_REGION"] == environment["AWS_DEFAULT_REGION"] == REGION
    assert environment["LAMBDA_TASK_ROOT"] == "/var/task"
    assert environment["TZ"] == ":UTC"
    assert environment["_HANDLER"] == "app.lambda_handler"
    assert environment["PATH"] == "/opt/bin:/usr/bin:/bin"  # unreserved: the function's own wins
    assert environment["RECOMMENDER_BUCKET"] == "bucket"
    assert environment["AWS_ENDPOINT_URL"] == EXTRA_ENV["AWS_ENDPOINT_URL"]
    assert result["uid"] != 0 and result["gid"] != 0 and result["groups"] == []
    assert result["cwd"] == "/var/task"
    assert result["optmod"] == "from /opt"
    assert (result["numpy"], result["recommender"], result["pytest"]) == (False, False, False)
    assert result["context"]["function_name"] == "recommender-test"
    assert result["context"]["memory_limit_in_mb"] == "128"  # a string, as in Lambda's runtime
    assert result["context"]["aws_request_id"] == outcome.request_id
    assert 15_000 < result["context"]["remaining"] <= 20_000
    assert result["context"]["arn"].startswith(f"arn:aws:lambda:{REGION}:")


def test_an_exception_comes_back_as_lambdas_error_document(sandbox: Sandbox, tmp_path: Path) -> None:
    spec = function(
        tmp_path,
        """
        class DatabaseUnavailableError(RuntimeError):
            pass

        def connect():
            raise DatabaseUnavailableError("no database at db:5432")

        def lambda_handler(event, context):
            connect()
        """,
    )
    outcome = run(sandbox, spec)
    assert outcome.result is None
    assert outcome.error is not None
    assert outcome.error["errorType"] == "DatabaseUnavailableError"
    assert outcome.error["errorMessage"] == "no database at db:5432"
    frames = outcome.error["stackTrace"]
    assert len(frames) == 2
    assert "in lambda_handler" in frames[0] and "in connect" in frames[1]
    assert all("app.py" in frame for frame in frames)
    assert json.loads(outcome.payload) == outcome.error


def test_an_import_error_is_the_runtimes_import_module_error(sandbox: Sandbox, tmp_path: Path) -> None:
    spec = function(tmp_path, "import numpy\n\ndef lambda_handler(event, context):\n    return 1\n")
    outcome = run(sandbox, spec)
    assert outcome.error == {
        "errorType": "Runtime.ImportModuleError",
        "errorMessage": "Unable to import module 'app': No module named 'numpy'",
        "stackTrace": [],
    }


def test_a_runtime_that_exits_without_answering(sandbox: Sandbox, tmp_path: Path) -> None:
    spec = function(tmp_path, "import os\n\ndef lambda_handler(event, context):\n    os._exit(3)\n")
    outcome = run(sandbox, spec)
    assert outcome.error == {
        "errorType": "Runtime.ExitError",
        "errorMessage": f"RequestId: {outcome.request_id} Error: Runtime exited with error: exit status 3",
    }


def test_payloads_past_six_megabytes_are_refused_as_lambda_does(sandbox: Sandbox, tmp_path: Path) -> None:
    spec = function(tmp_path, 'def lambda_handler(event, context):\n    return "x" * event["n"]\n')
    largest = run(sandbox, spec, {"n": RESPONSE_LIMIT_BYTES - 2})  # a JSON string: two quotes more
    assert largest.error is None
    assert len(largest.payload) == RESPONSE_LIMIT_BYTES
    too_large = run(sandbox, spec, {"n": RESPONSE_LIMIT_BYTES - 1})
    assert too_large.error == {
        "errorType": "Function.ResponseSizeTooLarge",
        "errorMessage": "Response payload size exceeded maximum allowed payload size (6291556 bytes).",
    }

    request = b'"' + b"x" * (REQUEST_LIMIT_BYTES - 1) + b'"'
    refused = sandbox.invoke(spec, request, REGION, EXTRA_ENV)
    assert refused.refused
    assert refused.error == {
        "errorType": "RequestEntityTooLargeException",
        "errorMessage": "6291457 byte payload is too large for the RequestResponse invocation type"
        " (limit 6291456 bytes)",
    }


def test_a_function_cannot_set_lambdas_reserved_variables(tmp_path: Path) -> None:
    spec = FunctionSpec("f", tmp_path, "app.lambda_handler", 128, 3, environment={"AWS_REGION": "x"})
    with pytest.raises(ValueError, match=r"reserved keys.*AWS_REGION"):
        lambda_environment(spec, REGION, {}, "3.13")


def test_exit_errors_use_lambdas_words() -> None:
    assert exit_error("r", 0, oom_killed=False)["errorMessage"] == (
        "RequestId: r Error: Runtime exited without providing a reason"
    )
    assert exit_error("r", 11, oom_killed=False)["errorMessage"] == (
        "RequestId: r Error: Runtime exited with error: signal: segmentation fault"
    )


NOTHING_ENFORCED = Support(
    missing={name: "needs root, for mount namespaces, tmpfs and the user switch" for name in GUARANTEES},
    isolation=False,
    cgroup=None,
    unshare=None,
)


def test_without_isolation_a_handler_still_gets_lambdas_environment_and_sys_path(
    tmp_path: Path, python: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(sandbox_module, "support", lambda: NOTHING_ENFORCED)
    (tmp_path / "opt" / "python").mkdir(parents=True)
    (tmp_path / "opt" / "python" / "optmod.py").write_text("VALUE = 1\n")
    spec = function(
        tmp_path,
        """
        import os, sys, optmod

        def lambda_handler(event, context):
            return {"sys_path": sys.path, "environment": dict(os.environ), "cwd": os.getcwd()}
        """,
    )
    outcome = Sandbox(tmp_path / "opt", python).invoke(spec, b"{}", REGION, EXTRA_ENV)
    assert outcome.error is None
    code, layers = str((tmp_path / "task").resolve()), str((tmp_path / "opt" / "python").resolve())
    assert outcome.result["sys_path"][:2] == [code, layers]
    assert not any("site-packages" in entry for entry in outcome.result["sys_path"])
    assert set(outcome.result["environment"]) == LAMBDA_VARIABLES | set(EXTRA_ENV)
    assert outcome.result["environment"]["LAMBDA_TASK_ROOT"] == outcome.result["cwd"] == code


def test_an_incomplete_sandbox_says_so_in_one_sentence_and_fails_under_ci(
    tmp_path: Path, python: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sandbox_module, "support", lambda: NOTHING_ENFORCED)
    assert NOTHING_ENFORCED.summary == (
        "Lambda sandbox incomplete: not enforced: read-only file system, memory cap, /tmp cap and"
        " non-root user (needs root, for mount namespaces, tmpfs and the user switch); handlers still"
        " run in their own process with Lambda's environment, sys.path, timeout and payload limits."
    )
    monkeypatch.setenv("CI", "false")
    assert not NOTHING_ENFORCED.required_but_missing
    monkeypatch.setenv("CI", "true")
    assert NOTHING_ENFORCED.required_but_missing
    with pytest.raises(SandboxUnavailable, match="CI=true demands the full sandbox"):
        Sandbox(tmp_path, python)
