"""Run the real state machine without AWS: moto's Step Functions engine, S3 served by moto, and
every Lambda task dispatched to the handler in `functions/<step>/app.py`, in this process.

THE SEAM (the one place that depends on moto's internals; moto is pinned in pyproject.toml):
with `mock_aws(config={"lambda": {"use_docker": False}})`, moto's Lambda backend is
`moto.awslambda_simple.models.LambdaSimpleBackend`, whose `invoke(self, function_name, qualifier,
body, headers, response_headers)` only echoes its input. `_invoke` below replaces it: it maps the
function name to our handler, calls it with the decoded event and a Lambda-like context, and
reports an exception the way Lambda does (`x-amz-function-error: Unhandled` and an
`{errorType, errorMessage, stackTrace}` body), so Retry and Catch see the exception's class name
as the error. Both Step Functions tasks and our own `lambda.invoke` calls go through it. See
`../shared/notes/local-engine.md` for what moto's engine does and does not do.

The ASL file is used as it is, with `${...}` DefinitionSubstitutions filled in the way
CloudFormation does it. The handlers share this process: the environment the template gives each
function is set here, once, for all of them.

OBSERVING INVOCATIONS: every handler call is recorded in `LocalEngine.invocations` (function, start,
seconds, error) and passed to the optional `on_invoke` callback. With `measure_memory=True` each
record also holds the process's resident memory at the start and its peak during the invocation:
the kernel's peak counter (VmHWM) is reset at the start (writing "5" to /proc/self/clear_refs) and
read at the end. Invocations that overlap (the DISTRIBUTED Map's items run in threads) share one
process and one counter: a reset first folds the current peak into every invocation still running,
so each record's peak is the process's peak over its own interval, other invocations' memory
included; `concurrent` says how many were in flight at most. Off by default because the reset also
lowers what `getrusage` reports as the process's maximum. Without /proc (macOS) the memory fields
are None.

ISOLATED INVOCATIONS: with `isolate=True` every invocation runs in a fresh Python process
(`process`), as a cold Lambda would: the child imports only its handler, reaches S3 over
HTTP (moto's server, started here, serves the same mocked state), and reports its own peak
resident memory, its imports included and moto's storage excluded. That is the figure to compare
with a function's memory setting; the in-process figures above include moto's copies of every
object. Slower (each invocation pays its imports), so off by default.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast
from unittest import mock

import boto3
from moto import mock_aws
from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.server import ThreadedMotoServer

from . import process
from .process import (
    FUNCTION_TIMEOUT_SECONDS,
    REGION,
    Handler,
    HandlerImportError,
    LocalContext,
    lambda_error,
    load_handler,
)

PINNED_MOTO = "5.2.5"
DEFINITION = Path("statemachine") / "recommender.asl.json"

# Logical function name in template.yaml -> (handler file, ASL substitution naming its ARN)
FUNCTIONS = {
    "ExtractFunction": ("functions/extract/app.py", "ExtractFunctionArn"),
    "TrainFunction": ("functions/train/app.py", "TrainFunctionArn"),
    "PredictFunction": ("functions/predict/app.py", "PredictFunctionArn"),
    "MergeFunction": ("functions/merge/app.py", "MergeFunctionArn"),
    "RecordFailureFunction": ("functions/record_failure/app.py", "RecordFailureFunctionArn"),
}
BUCKET_SUBSTITUTION = "RecommendationsBucket"
# The Train step's placement (template parameter TrainCompute and the Fargate task's settings): the
# local engine always trains in the Train function, so the Fargate task's values are the
# placeholders the template gives them with TrainCompute=lambda; the Choice state never reads them.
TRAIN_ON_LAMBDA = {
    "TrainCompute": "lambda",
    "TrainClusterArn": "none",
    "TrainTaskDefinitionArn": "none",
    "TrainSubnetIds": "none",
    "TrainSecurityGroupId": "none",
}
# The Extract step's placement (template parameter ExtractCompute), likewise: the local engine always
# extracts in the Extract function, so the extract task's values are the template's placeholders.
EXTRACT_ON_LAMBDA = {
    "ExtractCompute": "lambda",
    "ExtractClusterArn": "none",
    "ExtractTaskDefinitionArn": "none",
    "ExtractSubnetIds": "none",
    "ExtractSecurityGroupId": "none",
}
_handlers: dict[str, Handler] = {}
_active = threading.Lock()
PROC_STATUS = Path("/proc/self/status")
PROC_CLEAR_REFS = Path("/proc/self/clear_refs")


class LocalRunError(RuntimeError):
    """The local engine could not run the state machine at all (not: the run failed)."""


def project_root() -> Path:
    """The source checkout holding statemachine/ and functions/ (RECOMMENDER_HOME overrides)."""
    root = Path(os.environ.get("RECOMMENDER_HOME") or Path(__file__).resolve().parents[4])
    if not (root / DEFINITION).is_file():
        raise LocalRunError(
            f"{root / DEFINITION} not found: run from a source checkout installed with"
            " `pip install -e .`, or set RECOMMENDER_HOME to it"
        )
    return root


def render_definition(text: str, substitutions: dict[str, str]) -> str:
    """Fill `${Name}` placeholders as CloudFormation's DefinitionSubstitutions does."""
    missing = sorted(set(re.findall(r"\$\{(\w+)\}", text)) - set(substitutions))
    if missing:
        raise LocalRunError(f"the definition uses undefined substitution(s): {', '.join(missing)}")
    return re.sub(r"\$\{(\w+)\}", lambda m: substitutions[m.group(1)], text)


@dataclass(frozen=True)
class Invocation:
    """One handler call made by the local engine."""

    function: str  # the function's name, e.g. "recommender-predict"
    started: float  # time.monotonic() when the handler was called
    seconds: float
    error: str | None  # the exception's class name when the handler raised
    rss_start_bytes: int | None  # the process's resident memory at the start (measure_memory)
    peak_bytes: int | None  # the process's peak resident memory during the call (measure_memory)
    concurrent: int  # the most invocations in flight at once during this one, itself included
    cpu_seconds: float | None = None  # isolated invocations: the CPU time of the handler's process

    @property
    def growth_bytes(self) -> int | None:
        """How far the process's peak rose above its resident memory at the start."""
        if self.peak_bytes is None or self.rss_start_bytes is None:
            return None
        return self.peak_bytes - self.rss_start_bytes


def _memory_status() -> tuple[int, int]:
    """(VmRSS, VmHWM) of this process, in bytes."""
    rss = peak = 0
    for line in PROC_STATUS.read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
        elif line.startswith("VmHWM:"):
            peak = int(line.split()[1]) * 1024
    return rss, peak


def _reset_peak() -> None:
    PROC_CLEAR_REFS.write_text("5")  # resets VmHWM to the current VmRSS (Linux >= 4.0)


def peak_counter_available() -> bool:
    """Whether this process can reset and read its peak resident memory (Linux /proc)."""
    try:
        _reset_peak()
        return _memory_status()[1] > 0
    except OSError:
        return False


@dataclass
class _Open:
    function: str
    started: float
    rss_start: int | None
    peak: int
    concurrent: int = 1


class _Recorder:
    """Records every invocation; see "OBSERVING INVOCATIONS" in the module docstring."""

    def __init__(self, measure_memory: bool, on_invoke: Callable[[Invocation], None] | None) -> None:
        self.memory = measure_memory and peak_counter_available()
        self.on_invoke = on_invoke
        self.records: list[Invocation] = []
        self._lock = threading.Lock()
        self._open: dict[object, _Open] = {}

    def begin(self, function: str, measure: bool = True) -> object:
        """Start a record; with `measure=False` the caller brings the memory figures to `end`."""
        token = object()
        with self._lock:
            rss: int | None = None
            if self.memory and measure:
                if self._open:  # keep the running invocations' peaks before the reset
                    peak = _memory_status()[1]
                    for running in self._open.values():
                        running.peak = max(running.peak, peak)
                _reset_peak()
                rss = _memory_status()[0]
            self._open[token] = _Open(function, time.monotonic(), rss, rss or 0)
            for running in self._open.values():
                running.concurrent = max(running.concurrent, len(self._open))
        return token

    def end(
        self,
        token: object,
        error: str | None,
        memory: tuple[int | None, int | None] | None = None,
        cpu_seconds: float | None = None,
    ) -> Invocation:
        """Close a record; `memory` is (start, peak) measured elsewhere (an isolated process)."""
        with self._lock:
            ended = time.monotonic()
            call = self._open.pop(token)
            if memory is not None:
                call.rss_start, peak = memory
            else:
                peak = max(call.peak, _memory_status()[1]) if self.memory else None
            record = Invocation(
                function=call.function,
                started=call.started,
                seconds=ended - call.started,
                error=error,
                rss_start_bytes=call.rss_start,
                peak_bytes=peak,
                concurrent=call.concurrent,
                cpu_seconds=cpu_seconds,
            )
            self.records.append(record)
        if self.on_invoke is not None:
            try:
                self.on_invoke(record)
            except Exception as failure:  # an observer never fails the run
                warnings.warn(f"on_invoke raised {failure!r}", RuntimeWarning, stacklevel=1)
        return record


_recorder: _Recorder | None = None


def _invoke(
    self: LambdaSimpleBackend,
    function_name: str,
    qualifier: str | None,
    body: Any,
    headers: Any,
    response_headers: dict[str, str],
) -> bytes:
    """Replaces LambdaSimpleBackend.invoke: run our handler instead of echoing the input."""
    name = function_name.split(":function:")[-1].split(":")[0]
    handler = _handlers.get(name)
    if handler is None:
        response_headers["x-amz-function-error"] = "Unhandled"
        return json.dumps(
            {"errorType": "ResourceNotFoundException", "errorMessage": f"no function {name}"}
        ).encode()
    recorder = _recorder
    if _isolation is not None:
        return _invoke_in_process(_isolation, name, body, response_headers, recorder)
    event = json.loads(body) if body else {}
    token = recorder.begin(name) if recorder is not None else None
    try:
        result = handler(event, LocalContext(name))
    except Exception as error:  # reported to Step Functions exactly like Lambda does
        if recorder is not None:
            recorder.end(token, type(error).__name__)
        response_headers["x-amz-function-error"] = "Unhandled"
        return json.dumps(lambda_error(error)).encode()
    if recorder is not None:
        recorder.end(token, None)
    return json.dumps(result).encode()


@dataclass(frozen=True)
class _Isolation:
    """How `isolate` mode starts a handler's process: its file and the environment to give it."""

    handler_files: dict[str, Path]
    environment: dict[str, str]


_isolation: _Isolation | None = None


def _invoke_in_process(
    isolation: _Isolation,
    name: str,
    body: Any,
    response_headers: dict[str, str],
    recorder: _Recorder | None,
) -> bytes:
    """Run one invocation in a fresh Python process (see `process`)."""
    token = recorder.begin(name, measure=False) if recorder is not None else None
    with tempfile.TemporaryDirectory(prefix="recommender-invoke-") as folder:
        result_file = Path(folder) / "result.json"
        command = [sys.executable, "-m", process.__name__, str(isolation.handler_files[name])]
        completed = subprocess.run(
            [*command, name, str(result_file)],
            input=body if isinstance(body, bytes) else (body or "{}").encode(),
            env=isolation.environment,
            check=False,
        )
        if completed.returncode != 0 or not result_file.is_file():
            outcome: dict[str, Any] = {
                "error": {
                    "errorType": "Runtime.ExitError",
                    "errorMessage": f"the {name} process exited with {completed.returncode}",
                },
                "init_bytes": None,
                "peak_bytes": None,
                "cpu_seconds": None,
            }
        else:
            outcome = json.loads(result_file.read_text())
    error = outcome.get("error")
    if recorder is not None:
        recorder.end(
            token,
            error["errorType"] if error else None,
            memory=(outcome["init_bytes"], outcome["peak_bytes"]),
            cpu_seconds=outcome["cpu_seconds"],
        )
    if error:
        response_headers["x-amz-function-error"] = "Unhandled"
        return json.dumps(error).encode()
    return json.dumps(outcome["result"]).encode()


@dataclass
class RunResult:
    execution_arn: str
    name: str
    status: str
    seconds: float
    output: dict[str, Any] | None
    error: str | None
    cause: str | None


class LocalEngine:
    """A context manager: AWS mocked, bucket created, functions and state machine deployed."""

    def __init__(
        self,
        database_url: str | None,
        bucket: str = "recommender-local",
        prefix: str = "recommender",
        env: dict[str, str] | None = None,
        measure_memory: bool = False,
        on_invoke: Callable[[Invocation], None] | None = None,
        isolate: bool = False,
    ) -> None:
        """`measure_memory` and `on_invoke`: see "OBSERVING INVOCATIONS" in the module docstring;
        `isolate`: see "ISOLATED INVOCATIONS"."""
        self.root = project_root()
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.environment = {
            "AWS_DEFAULT_REGION": REGION,
            "RECOMMENDER_BUCKET": bucket,
            "RECOMMENDER_PREFIX": self.prefix,
            "POWERTOOLS_SERVICE_NAME": "recommender",
            "POWERTOOLS_METRICS_NAMESPACE": "Recommender",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            **({"DATABASE_URL": database_url} if database_url else {}),
            **(env or {}),
        }
        self._patches: list[Any] = []
        self.state_machine_arn = ""
        self._recorder = _Recorder(measure_memory, on_invoke)
        self.isolate = isolate
        self._server: ThreadedMotoServer | None = None

    @property
    def invocations(self) -> list[Invocation]:
        """Every handler call so far, in the order they ended."""
        return self._recorder.records

    @property
    def memory_measured(self) -> bool:
        """Whether the invocations carry memory figures (asked for, and /proc allows it)."""
        return self._recorder.memory or self.isolate

    def __enter__(self) -> LocalEngine:
        if not _active.acquire(blocking=False):
            raise LocalRunError("another LocalEngine is running in this process")
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start(self) -> None:
        global _recorder
        _recorder = self._recorder
        self._patches = [
            mock.patch.dict(os.environ, self.environment),
            mock_aws(
                config={
                    "stepfunctions": {"execute_state_machine": True},
                    "lambda": {"use_docker": False},
                }
            ),
            mock.patch.object(LambdaSimpleBackend, "invoke", _invoke),
        ]
        for patch in self._patches:
            patch.start()
        self.s3 = boto3.client("s3", region_name=REGION)
        self.sfn = boto3.client("stepfunctions", region_name=REGION)
        self.s3.create_bucket(Bucket=self.bucket)
        role = boto3.client("iam", region_name=REGION).create_role(
            RoleName="recommender-local",
            AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
        )["Role"]["Arn"]
        lam = boto3.client("lambda", region_name=REGION)
        substitutions = {BUCKET_SUBSTITUTION: self.bucket, **TRAIN_ON_LAMBDA, **EXTRACT_ON_LAMBDA}
        handler_files: dict[str, Path] = {}
        for logical, (path, substitution) in FUNCTIONS.items():
            name = f"recommender-{logical.removesuffix('Function').lower()}"
            handler_files[name] = self.root / path
            try:
                _handlers[name] = load_handler(self.root / path)
            except HandlerImportError as error:
                raise LocalRunError(str(error)) from None
            arn = lam.create_function(
                FunctionName=name,
                Runtime="python3.12",
                Role=role,
                Handler="app.lambda_handler",
                Code={"ZipFile": _placeholder_zip()},
                Timeout=FUNCTION_TIMEOUT_SECONDS,
            )["FunctionArn"]
            substitutions[substitution] = arn
        definition = render_definition((self.root / DEFINITION).read_text(), substitutions)
        self.state_machine_arn = self.sfn.create_state_machine(
            name="recommender", definition=definition, roleArn=role
        )["stateMachineArn"]
        if self.isolate:
            self._serve_isolated(handler_files)

    def _serve_isolated(self, handler_files: dict[str, Path]) -> None:
        """Serve the mocked state over HTTP for the handlers' own processes."""
        global _isolation
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per S3 request
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        environment = {
            **os.environ,
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
        }
        environment.pop("AWS_SESSION_TOKEN", None)
        _isolation = _Isolation(handler_files, environment)

    def __exit__(self, *exc: Any) -> None:
        global _isolation
        _isolation = None
        if self._server is not None:
            self._server.stop()
            self._server = None
        for patch in reversed(self._patches):
            patch.stop()
        self._patches = []
        _handlers.clear()
        global _recorder
        _recorder = None
        _active.release()

    def start(self, run_input: dict[str, Any], name: str | None = None) -> str:
        name = name or datetime.now(UTC).strftime("run-%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]
        arn: str = self.sfn.start_execution(
            stateMachineArn=self.state_machine_arn, name=name, input=json.dumps(run_input)
        )["executionArn"]
        return arn

    def wait(
        self,
        execution_arn: str,
        timeout: float = 3600,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        on_tick: Callable[[str], None] | None = None,
    ) -> RunResult:
        """Poll until the execution ends, passing each new history event to `on_event` and the
        execution ARN to `on_tick` at every poll (for progress displays)."""
        started = time.monotonic()
        seen = 0
        while True:
            description = self.sfn.describe_execution(executionArn=execution_arn)
            if on_event is not None:
                events = self.sfn.get_execution_history(executionArn=execution_arn)["events"]
                for event in events[seen:]:
                    on_event(dict(event))
                seen = len(events)
            if on_tick is not None:
                on_tick(execution_arn)
            if description["status"] != "RUNNING":
                break
            if time.monotonic() - started > timeout:
                raise LocalRunError(f"execution still running after {timeout:.0f} s")
            time.sleep(0.2)
        output = description.get("output")
        return RunResult(
            execution_arn=execution_arn,
            name=description["name"],
            status=description["status"],
            seconds=time.monotonic() - started,
            output=json.loads(output) if output else None,
            error=description.get("error"),
            cause=description.get("cause"),
        )

    def run(
        self,
        run_input: dict[str, Any],
        name: str | None = None,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        on_tick: Callable[[str], None] | None = None,
    ) -> RunResult:
        return self.wait(self.start(run_input, name), on_event=on_event, on_tick=on_tick)

    def map_progress(self, execution_arn: str) -> dict[str, int] | None:
        """Item counts of the execution's DISTRIBUTED Map run, once it has started."""
        runs = self.sfn.list_map_runs(executionArn=execution_arn).get("mapRuns", [])
        if not runs:
            return None
        # A TypedDict of int counts where the Step Functions stubs are installed (aws-sam-cli brings them).
        counts = self.sfn.describe_map_run(mapRunArn=runs[0]["mapRunArn"])["itemCounts"]
        return cast(dict[str, int], counts)

    def export(self, destination: Path) -> int:
        """Copy every object under the prefix to `destination`, keeping the layout; returns count."""
        count = 0
        paginator = self.s3.get_paginator("list_objects_v2")
        head = f"{self.prefix}/" if self.prefix else ""
        for page in paginator.paginate(Bucket=self.bucket, Prefix=head):
            for entry in page.get("Contents", []):
                target = destination / entry["Key"][len(head) :]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(self.s3.get_object(Bucket=self.bucket, Key=entry["Key"])["Body"].read())
                count += 1
        return count


def _placeholder_zip() -> bytes:
    """moto's create_function wants a code package; the real code is the handler file itself."""
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", "def lambda_handler(event, context):\n    return event\n")
    return buffer.getvalue()
