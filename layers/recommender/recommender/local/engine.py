"""Run the real state machine without AWS, each step the way Lambda runs it.

`statemachine/recommender.asl.json` runs on moto's Step Functions engine as it is, with its
`${...}` DefinitionSubstitutions filled in the way CloudFormation does it. Every function comes
from template.yaml (`template.functions`): its handler, memory, timeout, /tmp, environment,
reserved concurrency and role. What moto does not do the way AWS does is patched in
`seams.py`, the one module that reaches into moto's internals.

Each invocation runs in one of two ways:
- in the sandbox (`sandbox=True`, the default): a fresh process shaped like Lambda's
  (`sandbox.py`): read-only file system but /tmp (capped at the function's ephemeral storage), no
  home folder, resident memory capped at the function's memory size, its timeout, Lambda's
  environment, and only the runtime's standard library, the function's folder and the layers as
  built for deployment on sys.path. It reaches S3 and Secrets Manager over HTTP through the
  engine's moto server, which holds each request to the function's role (`iam.py`). Where the
  machine cannot enforce part of that, `sandbox_support` says what is missing.
- in this process (`sandbox=False`): the handler is called directly. Faster, and tests can patch
  the steps' code; nothing above is enforced, and all handlers share one environment.

Service limits (`ServiceLimits`) are enforced in both: state payloads (256 KiB: inputs after
Parameters, outputs, what a Map collects), the execution history (25,000 events), Lambda's
concurrency (the function's reserved concurrency and the account's) and its 6 MB response (moto's
own check). The database URL is kept in
a Secrets Manager secret on moto and reaches Extract as on AWS, through DATABASE_SECRET_ARN.

Invocations are recorded (`recording.py`); faults can be injected as the Lambda service would
produce them (`inject`), which works the same in both modes.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest import mock

import boto3
from moto import mock_aws
from moto.awslambda.exceptions import LambdaClientError
from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server

from ..executions import history, map_item_counts
from . import folder as folder_store
from . import seams, template
from .forward import SocketForwarder, socket_path, tcp_url
from .iam import RoleGate
from .process import Handler, HandlerImportError, LocalContext, lambda_error, load_handler
from .recording import Invocation, Recorder
from .template import ACCOUNT, REGION, Function

if TYPE_CHECKING:  # the sandbox is imported when an engine uses it
    from .sandbox import Sandbox

DEFINITION = Path("statemachine") / "recommender.asl.json"
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
# The Extract step's placement (template parameter ExtractCompute), likewise.
EXTRACT_ON_LAMBDA = {
    "ExtractCompute": "lambda",
    "ExtractClusterArn": "none",
    "ExtractTaskDefinitionArn": "none",
    "ExtractSubnetIds": "none",
    "ExtractSecurityGroupId": "none",
}
# What the engine sets over the template's environment, and why: no X-Ray daemon runs here, and
# metrics and INFO logs of every invocation would bury the run's own output.
LOCAL_ENVIRONMENT = {
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
}
SECRET_NAME = "recommender/local-database"
_handlers: dict[str, Handler] = {}  # in-process mode: function name -> handler
_active = threading.Lock()
_engine: LocalEngine | None = None


class LocalRunError(RuntimeError):
    """The local engine could not run the state machine at all (not: the run failed)."""


@dataclass(frozen=True)
class ServiceLimits:
    """The AWS limits the engine enforces; tests may lower them to reach them quickly."""

    state_payload_bytes: int = 256 * 1024  # Step Functions: a state's input or output
    history_events: int = 25_000  # Step Functions: events in one execution's history
    account_concurrency: int = 1_000  # Lambda: concurrent executions in a region (the default quota)


@dataclass
class Fault:
    """A failure the Lambda service or the function reports instead of running the handler."""

    function: str
    error_type: str  # e.g. "TooManyRequestsException" (the service), "RuntimeError" (the function)
    message: str
    times: int
    when: Callable[[dict[str, Any]], bool] | None = None
    by_service: bool = False  # a service error (Lambda.<code> in Step Functions), not Unhandled
    seen: list[dict[str, Any]] = field(default_factory=list)


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


class _Throttled(LambdaClientError):
    code = 429

    def __init__(self, message: str) -> None:
        super().__init__("TooManyRequestsException", message)


def _invoke(
    self: LambdaSimpleBackend,
    function_name: str,
    qualifier: str | None,
    body: Any,
    headers: Any,
    response_headers: dict[str, str],
) -> bytes:
    """Replaces LambdaSimpleBackend.invoke (seams.py): the running engine handles the call."""
    if _engine is None:  # pragma: no cover - the patch lives only while an engine runs
        raise LocalRunError("no local engine is running")
    data = body if isinstance(body, bytes) else (body or "{}").encode()
    return _engine.handle(function_name.split(":function:")[-1].split(":")[0], data, response_headers)


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
    """A context manager: AWS mocked, bucket and secret created, functions and state machine
    deployed."""

    def __init__(
        self,
        database_url: str | None,
        bucket: str = "recommender-local",
        prefix: str = "recommender",
        env: dict[str, str] | None = None,
        measure_memory: bool = False,
        on_invoke: Callable[[Invocation], None] | None = None,
        sandbox: bool = True,
        limits: ServiceLimits | None = None,
        parameters: dict[str, str] | None = None,
        definition: str | None = None,
        layers: list[Path] | None = None,
    ) -> None:
        """`env` is set over every function's environment; `parameters` overrides template
        parameters (e.g. {"PredictMemorySize": "512"}); `definition` replaces the ASL file's text
        (to show what another shape of the workflow would do); `layers` are more layer folders
        (each holding python/), as a deployment adds a layer for its own algorithm's module;
        `measure_memory` and `on_invoke`: see recording.py; `sandbox`: see the module docstring."""
        self.root = project_root()
        self.database_url = database_url
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.extra_env = {**LOCAL_ENVIRONMENT, **(env or {})}
        self.parameters = {"OutputPrefix": self.prefix, **(parameters or {})}
        self.sandboxed = sandbox
        self.limits = limits or ServiceLimits()
        self.definition = definition
        self.layers = [Path(layer) for layer in layers or []]
        self.functions: dict[str, Function] = {}
        self.state_machine_arn = ""
        self._recorder = Recorder(measure_memory and not sandbox, on_invoke)
        self._patches: list[Any] = []
        self._faults: list[Fault] = []
        self._running: dict[str, int] = {}
        self._running_lock = threading.Lock()
        self._server: BaseWSGIServer | None = None
        self._server_thread: threading.Thread | None = None
        self._gate: RoleGate | None = None
        # One sandbox per distinct set of layers: each function sees only its own in /opt.
        self._sandboxes: dict[tuple[str, ...], Sandbox] = {}
        self._credentials: dict[str, str] = {}
        self._forwarder: SocketForwarder | None = None

    # --- what the engine reports --------------------------------------------------------------

    @property
    def invocations(self) -> list[Invocation]:
        """Every handler call so far, in the order they ended."""
        return self._recorder.records

    @property
    def memory_measured(self) -> bool:
        """Whether the invocations carry memory figures."""
        return self._recorder.memory or self.sandboxed

    @property
    def sandbox_support(self) -> str:
        """One sentence: what the sandbox enforces here, or that invocations run in this process."""
        if not self.sandboxed:
            return "Lambda sandbox off: each invocation runs in this process, nothing of it enforced"
        from .sandbox import support

        return support().summary

    @property
    def denials(self) -> list[str]:
        """Requests the local IAM check refused (sandbox mode), as "function: action on resource"."""
        return list(self._gate.denials) if self._gate is not None else []

    @property
    def granted(self) -> list[tuple[str, Any]]:
        """Requests the local IAM check allowed (sandbox mode): (function, iam.Request)."""
        return list(self._gate.granted) if self._gate is not None else []

    # --- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> LocalEngine:
        global _engine
        if not _active.acquire(blocking=False):
            raise LocalRunError("another LocalEngine is running in this process")
        _engine = self
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start(self) -> None:
        self._patches = [
            mock.patch.dict(os.environ, {"AWS_DEFAULT_REGION": REGION}),
            mock_aws(
                config={
                    "stepfunctions": {"execute_state_machine": True},
                    "lambda": {"use_docker": False},
                }
            ),
            *seams.patches(
                _invoke, lambda: self.limits.state_payload_bytes, lambda: self.limits.history_events
            ),
        ]
        for patch in self._patches:
            patch.start()
        self.s3 = boto3.client("s3", region_name=REGION)
        self.sfn = boto3.client("stepfunctions", region_name=REGION)
        self.s3.create_bucket(Bucket=self.bucket)
        names = {
            BUCKET_SUBSTITUTION: self.bucket,
            f"{BUCKET_SUBSTITUTION}.Arn": f"arn:aws:s3:::{self.bucket}",
            "DatabaseSecretArn": self._database_secret(),
            **self.parameters,
        }
        self.functions = template.functions(self.root, names)
        if self.sandboxed:
            self._start_sandbox()
        else:
            environment: dict[str, str] = {}
            for function in self.functions.values():
                environment.update(function.environment)
            self._patches.append(mock.patch.dict(os.environ, {**environment, **self.extra_env}))
            self._patches[-1].start()
            for layer in self.layers:  # what a layer adds to sys.path on Lambda
                self._patches.append(mock.patch.object(sys, "path", [str(layer / "python"), *sys.path]))
                self._patches[-1].start()
            for name, function in self.functions.items():
                try:
                    _handlers[name] = load_handler(function.handler_file)
                except HandlerImportError as error:
                    raise LocalRunError(str(error)) from None
        self._deploy()

    def _database_secret(self) -> str:
        """The database URL, kept where Extract reads it on AWS: a Secrets Manager secret. A
        sandboxed Extract reaches a Unix-socket database over TCP, as a Lambda would (forward.py)."""
        secrets = boto3.client("secretsmanager", region_name=REGION)
        value = self.database_url or "postgresql://no-database-given@localhost:1/none"
        target = socket_path(value) if self.sandboxed else None
        if target is not None:
            self._forwarder = SocketForwarder(target).start()
            value = tcp_url(value, self._forwarder.port)
        arn: str = secrets.create_secret(Name=SECRET_NAME, SecretString=value)["ARN"]
        return arn

    def _deploy(self) -> None:
        role = boto3.client("iam", region_name=REGION).create_role(
            RoleName="recommender-local",
            AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
        )["Role"]["Arn"]
        lam = boto3.client("lambda", region_name=REGION)
        substitutions = {BUCKET_SUBSTITUTION: self.bucket, **TRAIN_ON_LAMBDA, **EXTRACT_ON_LAMBDA}
        for name, function in self.functions.items():
            arn = lam.create_function(
                FunctionName=name,
                Runtime="python3.12",
                Role=role,
                Handler=function.handler,
                Code={"ZipFile": _placeholder_zip()},
                Timeout=function.timeout_seconds,
                MemorySize=function.memory_mb,
            )["FunctionArn"]
            substitutions[function.substitution] = arn
        text = self.definition if self.definition is not None else (self.root / DEFINITION).read_text()
        definition = render_definition(text, substitutions)
        self.state_machine_arn = self.sfn.create_state_machine(
            name="recommender", definition=definition, roleArn=role
        )["stateMachineArn"]

    def _start_sandbox(self) -> None:
        """Serve the mocked state over HTTP, each function held to its role, and prepare the
        sandbox every invocation runs in."""
        from .layers import prepare_opt, runtime_python
        from .sandbox import Sandbox

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per request
        roles: dict[str, tuple[str, list[dict[str, Any]]]] = {}
        for name, function in self.functions.items():
            key_id = f"LOCAL{uuid.uuid4().hex[:12].upper()}"
            self._credentials[name] = key_id
            roles[key_id] = (name, function.statements)
        self._gate = RoleGate(DomainDispatcherApplication(create_backend_app), roles)
        self._server = make_server("127.0.0.1", 0, self._gate, True, request_handler=MotoRequestHandler)
        self._server_thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._server_thread.start()
        python = runtime_python(self.root)
        self.runtime = python
        for layers in sorted({function.layers for function in self.functions.values()}):
            opt = prepare_opt(self.root, python.version, layers, self.layers)
            self._sandboxes[layers] = Sandbox(opt_dir=opt, python=python.executable)

    def __exit__(self, *exc: Any) -> None:
        global _engine
        if self._forwarder is not None:
            self._forwarder.close()
            self._forwarder = None
        if self._server is not None:
            self._server.shutdown()
            if self._server_thread is not None:
                self._server_thread.join()
            self._server = None
        for patch in reversed(self._patches):
            patch.stop()
        self._patches = []
        _handlers.clear()
        _engine = None
        _active.release()

    # --- invocations ---------------------------------------------------------------------------

    def inject(
        self,
        function: str,
        error_type: str,
        message: str = "injected",
        times: int = 1,
        when: Callable[[dict[str, Any]], bool] | None = None,
        by_service: bool = False,
    ) -> Fault:
        """Make the next `times` invocations of `function` (whose event `when` accepts) fail
        without running: as the function failing with `error_type`, or with `by_service` as the
        Lambda service refusing the call (e.g. "TooManyRequestsException", a throttle)."""
        fault = Fault(function, error_type, message, times, when, by_service)
        self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        """Forget every injected fault: invocations run again."""
        with self._running_lock:
            self._faults.clear()

    def _injected(self, name: str, event: dict[str, Any]) -> Fault | None:
        with self._running_lock:
            for fault in self._faults:
                pending = fault.function == name and len(fault.seen) < fault.times
                if pending and (fault.when is None or fault.when(event)):
                    fault.seen.append(event)
                    return fault
        return None

    def _admit(self, function: Function) -> None:
        """Count the invocation against the function's reserved concurrency and the account's, or
        refuse it as Lambda does (Lambda.TooManyRequestsException in Step Functions)."""
        with self._running_lock:
            running = self._running.get(function.name, 0)
            total = sum(self._running.values())
            if function.reserved_concurrency is not None and running >= function.reserved_concurrency:
                raise _Throttled(f"Rate Exceeded: {function.name} is at its reserved concurrency")
            if total >= self.limits.account_concurrency:
                raise _Throttled("Rate Exceeded: the account's concurrency is in use")
            self._running[function.name] = running + 1

    def _release(self, function: Function) -> None:
        with self._running_lock:
            self._running[function.name] -= 1

    def handle(self, name: str, body: bytes, response_headers: dict[str, str]) -> bytes:
        """One invocation of the function `name` with the event `body`; returns Lambda's answer."""
        function = self.functions.get(name)
        if function is None:
            raise LambdaClientError("ResourceNotFoundException", f"Function not found: {name}")
        event = json.loads(body or b"{}")
        fault = self._injected(name, event)
        if fault is not None and fault.by_service:
            if fault.error_type == "TooManyRequestsException":
                raise _Throttled(fault.message)
            raise LambdaClientError(fault.error_type, fault.message)
        self._admit(function)
        try:
            token = self._recorder.begin(name, measure=not self.sandboxed)
            if fault is not None:
                self._recorder.end(token, fault.error_type)
                response_headers["x-amz-function-error"] = "Unhandled"
                return json.dumps({"errorType": fault.error_type, "errorMessage": fault.message}).encode()
            if self.sandboxed:
                return self._in_sandbox(function, body, token, response_headers)
            return self._in_process(function, event, token, response_headers)
        finally:
            self._release(function)

    def _in_process(
        self, function: Function, event: dict[str, Any], token: object, response_headers: dict[str, str]
    ) -> bytes:
        context = LocalContext(function.name, function.memory_mb, timeout_seconds=function.timeout_seconds)
        try:
            result = _handlers[function.name](event, context)
        except Exception as error:  # reported to Step Functions exactly like Lambda does
            self._recorder.end(token, type(error).__name__)
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps(lambda_error(error)).encode()
        self._recorder.end(token, None)
        return json.dumps(result).encode()

    def _in_sandbox(
        self, function: Function, body: bytes, token: object, response_headers: dict[str, str]
    ) -> bytes:
        assert self._server is not None
        host, port = str(self._server.server_address[0]), self._server.server_address[1]
        from .sandbox import FunctionSpec

        spec = FunctionSpec(
            name=function.name,
            code_dir=function.code_dir,
            handler=function.handler,
            memory_mb=function.memory_mb,
            timeout_seconds=function.timeout_seconds,
            ephemeral_storage_mb=function.ephemeral_storage_mb,
            environment={**function.environment, **self.extra_env},
        )
        credentials = {
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
            "AWS_ACCESS_KEY_ID": self._credentials[function.name],
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_SESSION_TOKEN": "local",
        }
        outcome = self._sandboxes[function.layers].invoke(spec, body, REGION, credentials)
        error = outcome.error
        self._recorder.end(
            token,
            error["errorType"] if error else None,
            memory=(outcome.init_bytes, outcome.peak_bytes),
            cpu_seconds=outcome.cpu_seconds,
        )
        if outcome.refused:  # Invoke refused the request itself (413): a service error
            assert error is not None
            raise LambdaClientError(error["errorType"], error["errorMessage"])
        if error:
            response_headers["x-amz-function-error"] = "Unhandled"
        payload: bytes = outcome.payload
        return payload

    # --- executions ----------------------------------------------------------------------------

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
                events = history(self.sfn, execution_arn)
                for event in events[seen:]:
                    on_event(event)
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
        return map_item_counts(self.sfn, execution_arn)

    def load_folder(self, folder: Path) -> int:
        """Put an output folder's objects into the bucket before a run: the folder is the bucket a
        local run stands for (folder.py). Returns how many objects it held."""
        return folder_store.load(self.s3, self.bucket, self.prefix, folder)

    def export(self, destination: Path) -> folder_store.Published:
        """Publish the bucket into `destination` as S3 is published: run objects, manifests, then
        latest.json (only to newer data), each whole; a published run's objects never change."""
        return folder_store.publish(self.s3, self.bucket, self.prefix, destination)


def _placeholder_zip() -> bytes:
    """moto's create_function wants a code package; the real code is the handler file itself."""
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", "def lambda_handler(event, context):\n    return event\n")
    return buffer.getvalue()


__all__ = [
    "ACCOUNT",
    "BUCKET_SUBSTITUTION",
    "DEFINITION",
    "EXTRACT_ON_LAMBDA",
    "REGION",
    "TRAIN_ON_LAMBDA",
    "Fault",
    "Invocation",
    "LocalEngine",
    "LocalRunError",
    "RunResult",
    "ServiceLimits",
    "project_root",
    "render_definition",
]
