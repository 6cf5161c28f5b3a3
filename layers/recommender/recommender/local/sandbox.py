"""One Lambda invocation the way Lambda runs it: read-only file system, a memory cap, /tmp capped,
an unprivileged user, Lambda's environment and sys.path, the function's timeout, Lambda's payload
limits and Lambda's error documents.

Why: the product otherwise only ever runs in ordinary processes, where a home folder is writable,
the virtual environment is importable and memory is plentiful, so bugs that only Lambda shows go
unseen until a deployment (`import surprise` writes `~/.surprise_data` at import time, which
fails on Lambda's read-only file system).

This is the host side: it runs in the caller's process (the local engine, a CLI, the tests),
imports only the standard library, prepares the invocation and starts `bootstrap.py`, the inside
side, whose docstring describes the protocol between the two. With root, util-linux's `unshare`
and a writable memory cgroup (this machine: Debian 12, cgroup v1) everything is enforced:

- file system: a mount namespace and a chroot into a read-only tmpfs holding read-only binds
  (`bootstrap.build_root`); /tmp is a tmpfs of `ephemeral_storage_mb`;
- user: uid/gid 65534 after the chroot, no supplementary groups, no_new_privs;
- memory: a child of this process's own memory cgroup, limited to `memory_mb` MiB (v1
  `memory.limit_in_bytes` and `memory.memsw.limit_in_bytes`; v2 `memory.max`, `memory.swap.max`
  and `memory.oom.group`, written for the unified hierarchy but not exercised here: this machine
  has cgroup v1), joined by the runtime before it does anything else; the kernel kills the
  invocation past the cap, which is reported as Lambda reports it;
- time: the host kills the whole process group (and everything left in the cgroup) at the
  function's timeout, counted from the end of the Init phase as Lambda counts it (`invoke`);
- payloads: 6 MiB requests and Lambda's 6,291,556-byte response limit.

Where the machine allows less (not root, no `unshare`, macOS, no writable memory cgroup), the
invocation still runs in a fresh interpreter with Lambda's environment and sys.path (host paths
for the code and the layers), the timeout and the payload limits, and `support()` says in one
sentence what is not enforced. When the environment variable CI is `true`, a missing guarantee
is an error (`Support.required_but_missing`, `Sandbox(...)` raises): the product's CI must
really enforce them.

Differences from Lambda that remain: /tmp is a tmpfs here, so what a function writes there is
charged to its memory cgroup (on Lambda /tmp is disk and does not count); pages of files that
other processes on this machine had already cached (the interpreter, shared libraries such as
numpy's) stay charged to whoever read them first, so the cap here is looser than Lambda's by
about that much (`_peak` reports the larger of the cgroup's figure and the runtime's VmHWM for
that reason); CPU is not scaled with memory; the network is the host's (handlers reach the
engine's moto server on 127.0.0.1); the runtime's own boto3 (/var/runtime on Lambda) is absent,
so a function must bring it in a layer, as this product does.

Lambda's error documents used here (checked against the Lambda developer guide, the Python
runtime interface client, and reported Invoke responses):
- timeout: `Sandbox.Timedout`, "RequestId: <id> Error: Task timed out after 1.00 seconds";
- killed (memory cap, or any SIGKILL): `Runtime.ExitError`, "RequestId: <id> Error: Runtime
  exited with error: signal: killed" (newer runtimes report the memory case as
  `Runtime.OutOfMemory` with the same message; `OOM_ERROR_TYPE` selects it);
- exited without answering: `Runtime.ExitError`, "... Runtime exited with error: exit status 3"
  or "... Runtime exited without providing a reason";
- response too large: `Function.ResponseSizeTooLarge`, "Response payload size exceeded maximum
  allowed payload size (6291556 bytes).";
- request too large: Invoke refuses it before any function runs (HTTP 413)
  `RequestEntityTooLargeException`, "<n> byte payload is too large for the RequestResponse
  invocation type (limit 6291456 bytes)" (`Outcome.refused`).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .template import ACCOUNT

BOOTSTRAP = Path(__file__).with_name("bootstrap.py")
TASK_ROOT = "/var/task"
OPT_PYTHON = "/opt/python"
RUNTIME_DIR = "/var/runtime"
REQUEST_LIMIT_BYTES = 6 * 1024 * 1024
RESPONSE_LIMIT_BYTES = REQUEST_LIMIT_BYTES + 100
INIT_LIMIT_SECONDS = 10.0
SANDBOX_UID = 65534
SANDBOX_GID = 65534
EXIT_GRACE_SECONDS = 5.0
OOM_ERROR_TYPE = "Runtime.ExitError"
# The Python runtime images' values (aws-lambda-base-images); the developer guide lists the same
# without the /var/lang entries.
LAMBDA_PATH = "/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin"
LAMBDA_LD_LIBRARY_PATH = (
    "/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib"
)
# Variables a function's configuration may set although Lambda sets them too.
UNRESERVED = frozenset({"LANG", "PATH", "LD_LIBRARY_PATH"})

READ_ONLY = "read-only file system"
MEMORY_CAP = "memory cap"
TMP_CAP = "/tmp cap"
NON_ROOT = "non-root user"
GUARANTEES = (READ_ONLY, MEMORY_CAP, TMP_CAP, NON_ROOT)

# How Go (Lambda's init process) names the signals a runtime dies of.
SIGNAL_NAMES: dict[int, str] = {
    signal.SIGKILL: "killed",
    signal.SIGSEGV: "segmentation fault",
    signal.SIGABRT: "aborted",
    signal.SIGTERM: "terminated",
    signal.SIGBUS: "bus error",
    signal.SIGILL: "illegal instruction",
    signal.SIGFPE: "floating point exception",
    signal.SIGINT: "interrupt",
    signal.SIGHUP: "hangup",
    signal.SIGPIPE: "broken pipe",
    signal.SIGQUIT: "quit",
}


class SandboxError(RuntimeError):
    """The sandbox itself failed (not the function): it could not be built or started."""


class SandboxUnavailable(SandboxError):
    """CI demands every guarantee and this machine cannot give them all."""


@dataclass(frozen=True)
class FunctionSpec:
    """One function as its template declares it."""

    name: str  # "recommender-predict"
    code_dir: Path  # functions/predict, becomes /var/task
    handler: str  # "app.lambda_handler"
    memory_mb: int
    timeout_seconds: float
    ephemeral_storage_mb: int = 512
    environment: dict[str, str] = field(default_factory=dict)  # the function's own, resolved


@dataclass(frozen=True)
class Outcome:
    """One invocation as Lambda's Invoke reports it, plus what it cost."""

    request_id: str
    payload: bytes  # Invoke's response body: the result as the runtime serialized it, or `error`
    result: Any  # the handler's result (parsed JSON; raw bytes when it returned non-JSON bytes)
    error: dict[str, Any] | None  # {"errorType", "errorMessage", ("stackTrace")}
    init_bytes: int | None  # resident memory once the handler is imported
    peak_bytes: int | None  # the larger of the cgroup's peak charge and the runtime's VmHWM
    cpu_seconds: float | None
    seconds: float
    refused: bool = False  # Invoke itself refused the request (HTTP 413): no function ran

    @property
    def ok(self) -> bool:
        return self.error is None


# ---------------------------------------------------------------------------------------------
# Memory cgroups.


@dataclass(frozen=True)
class CgroupParent:
    """This process's own memory cgroup: invocations get children of it, so the sandbox never
    touches a cgroup it does not own."""

    version: int  # 1 (the memory controller's own hierarchy) or 2 (the unified hierarchy)
    path: Path

    def create(self, name: str, limit_bytes: int) -> Cgroup:
        path = self.path / name
        path.mkdir()
        cgroup = Cgroup(self.version, path)
        try:
            if self.version == 1:
                (path / "memory.limit_in_bytes").write_text(str(limit_bytes))
                if (path / "memory.memsw.limit_in_bytes").exists():
                    (path / "memory.memsw.limit_in_bytes").write_text(str(limit_bytes))
                with contextlib.suppress(OSError):  # charge what the runtime allocated before it joined
                    (path / "memory.move_charge_at_immigrate").write_text("1")
            else:
                (path / "memory.max").write_text(str(limit_bytes))
                if (path / "memory.swap.max").exists():
                    (path / "memory.swap.max").write_text("0")
                (path / "memory.oom.group").write_text("1")
        except OSError:
            cgroup.remove()
            raise
        return cgroup


@dataclass(frozen=True)
class Cgroup:
    version: int
    path: Path

    @property
    def procs(self) -> Path:
        return self.path / "cgroup.procs"

    def peak_bytes(self) -> int | None:
        name = "memory.max_usage_in_bytes" if self.version == 1 else "memory.peak"
        try:
            return int((self.path / name).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def oom_kills(self) -> int:
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        try:
            for line in (self.path / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            pass
        return 0

    def kill_all(self) -> None:
        try:
            pids = [int(pid) for pid in self.procs.read_text().split()]
        except OSError:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def remove(self) -> None:
        """Kill what is left in it and remove it; a cgroup can only go once it is empty."""
        for _ in range(200):
            self.kill_all()
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError as error:
                if error.errno != errno.EBUSY:
                    raise
            time.sleep(0.01)
        raise SandboxError(f"cannot remove {self.path}: processes are still in it")


def _mountinfo() -> list[tuple[str, str, str, list[str]]]:
    """(file system type, root, mount point, super options) of every mount."""
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        before, _, after = line.partition(" - ")
        fields, tail = before.split(), after.split()
        if len(fields) >= 5 and len(tail) >= 3:
            mounts.append((tail[0], fields[3], fields[4], tail[2].split(",")))
    return mounts


def _inside(root: str, mount_point: str, path: str) -> Path | None:
    if root != "/" and not (path == root or path.startswith(root.rstrip("/") + "/")):
        return None
    relative = path[len(root) :] if root != "/" else path
    return Path(mount_point + relative)


def find_memory_cgroup() -> tuple[CgroupParent | None, str]:
    """This process's memory cgroup if children can be made under it with a memory limit, else
    None and why not."""
    try:
        memberships = Path("/proc/self/cgroup").read_text().splitlines()
        mounts = _mountinfo()
    except OSError as error:
        return None, f"cannot read /proc ({error.strerror})"
    found: CgroupParent | None = None
    reason = "no memory cgroup"
    for line in memberships:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            for fstype, root, point, options in mounts:
                place = _inside(root, point, path) if fstype == "cgroup" and "memory" in options else None
                if place is not None and place.is_dir():
                    found = CgroupParent(1, place)
                    break
        if found is None and controllers == "":
            for fstype, root, point, _options in mounts:
                place = _inside(root, point, path) if fstype == "cgroup2" else None
                if place is not None and place.is_dir():
                    found, reason = _unified(place)
                    break
        if found is not None:
            break
    if found is None:
        return None, reason
    return _try_cgroup(found)


def _unified(place: Path) -> tuple[CgroupParent | None, str]:
    try:
        available = (place / "cgroup.controllers").read_text().split()
        if "memory" not in available:
            return None, f"the memory controller is not available in {place}"
        if "memory" not in (place / "cgroup.subtree_control").read_text().split():
            (place / "cgroup.subtree_control").write_text("+memory")
    except OSError as error:
        return None, f"cannot enable the memory controller under {place} ({error.strerror})"
    return CgroupParent(2, place), ""


def _try_cgroup(parent: CgroupParent) -> tuple[CgroupParent | None, str]:
    try:
        parent.create(f"recommender-sandbox-probe-{os.getpid()}-{uuid.uuid4().hex[:8]}", 64 << 20).remove()
    except OSError as error:
        return None, f"cannot create a memory cgroup under {parent.path} ({error.strerror})"
    return parent, ""


# ---------------------------------------------------------------------------------------------
# What this machine can enforce.


@dataclass(frozen=True)
class Support:
    """Which guarantees this machine enforces (`GUARANTEES`) and why the others are not."""

    missing: dict[str, str]  # guarantee -> why it is not enforced
    isolation: bool  # the file system, /tmp and user guarantees (they come together)
    cgroup: CgroupParent | None
    unshare: str | None

    @property
    def enforced(self) -> tuple[str, ...]:
        return tuple(name for name in GUARANTEES if name not in self.missing)

    @property
    def complete(self) -> bool:
        return not self.missing

    @property
    def required_but_missing(self) -> bool:
        """CI must enforce everything: then an incomplete sandbox is an error, never a skip."""
        return os.environ.get("CI") == "true" and not self.complete

    @property
    def summary(self) -> str:
        """One sentence a CLI can print."""
        if self.complete:
            where = f"memory cgroup v{self.cgroup.version} under {self.cgroup.path}" if self.cgroup else ""
            return f"Lambda sandbox: {_join(list(GUARANTEES))} enforced ({where})."
        reasons: dict[str, list[str]] = {}
        for name, reason in self.missing.items():
            reasons.setdefault(reason, []).append(name)
        parts = [f"{_join(names)} ({reason})" for reason, names in reasons.items()]
        return (
            f"Lambda sandbox incomplete: not enforced: {'; '.join(parts)}; handlers still run in their"
            " own process with Lambda's environment, sys.path, timeout and payload limits."
        )

    def require(self) -> None:
        if self.required_but_missing:
            raise SandboxUnavailable(f"CI=true demands the full sandbox. {self.summary}")


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


_support_lock = threading.Lock()


@functools.cache
def _support() -> Support:
    missing: dict[str, str] = {}
    isolation_reason = _isolation_reason()
    unshare = shutil.which("unshare")
    if isolation_reason:
        for name in (READ_ONLY, TMP_CAP, NON_ROOT):
            missing[name] = isolation_reason
    cgroup: CgroupParent | None = None
    if sys.platform != "linux":
        missing[MEMORY_CAP] = "needs Linux memory cgroups"
    else:
        cgroup, reason = find_memory_cgroup()
        if cgroup is None:
            missing[MEMORY_CAP] = reason
    return Support(missing, isolation=not isolation_reason, cgroup=cgroup, unshare=unshare)


def support() -> Support:
    """What this machine enforces; computed once per process (it starts one probe process)."""
    with _support_lock:
        return _support()


def _isolation_reason() -> str:
    """Empty when the first stage of the bootstrap works here, else why not."""
    if sys.platform != "linux":
        return "needs Linux mount namespaces"
    if os.geteuid() != 0:
        return "needs root, for mount namespaces, tmpfs and the user switch"
    unshare = shutil.which("unshare")
    if unshare is None:
        return "needs unshare (util-linux) for a mount namespace"
    command = [unshare, "--mount", "--propagation", "private", os.path.realpath(sys.executable)]
    try:
        completed = subprocess.run(
            [*command, "-I", "-S", "-B", str(BOOTSTRAP), "--probe"],
            capture_output=True,
            text=True,
            timeout=60,
            env={},
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"unshare --mount failed ({error})"
    lines = completed.stdout.strip().splitlines()
    try:
        report = json.loads(lines[-1]) if lines else {}
    except ValueError:
        report = {}
    if completed.returncode != 0 or not report:
        detail = (completed.stderr.strip().splitlines() or ["no output"])[-1]
        return f"unshare --mount failed ({detail})"
    if "error" in report:
        return f"building a sandbox root failed ({report['error']})"
    expected = {
        "read_only": errno.EROFS,
        "root_read_only": errno.EROFS,
        "tmp_cap": errno.ENOSPC,
        "user": SANDBOX_UID,
    }
    wrong = [key for key, value in expected.items() if report.get(key) != value]
    if wrong:
        return f"the sandbox probe did not behave ({', '.join(wrong)}: {report})"
    return ""


# ---------------------------------------------------------------------------------------------
# Interpreters.


def runtime_python(version: str) -> str | None:
    """An interpreter of the runtime's version ("3.13") on this machine: pyenv's newest, else one
    on PATH. pyenv's shims are shell scripts that need pyenv's environment, so never those."""
    candidates = sorted(
        (Path.home() / ".pyenv" / "versions").glob(f"{version}.*/bin/python{version}"),
        key=lambda path: [int(part) for part in re.findall(r"\d+", path.parent.parent.name)],
    )
    if candidates:
        return str(candidates[-1])
    found = shutil.which(f"python{version}")
    return found if found and "/shims/" not in found else None


@functools.cache
def python_version(python: str) -> str:
    """ "3.13" for an interpreter: the runtime identifier in AWS_EXECUTION_ENV names it."""
    completed = subprocess.run(
        [python, "-I", "-S", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    )
    return completed.stdout.strip()


# ---------------------------------------------------------------------------------------------
# The environment.


def lambda_environment(
    spec: FunctionSpec, region: str, extra_env: Mapping[str, str], version: str, task_root: str = TASK_ROOT
) -> dict[str, str]:
    """Exactly what a Python runtime's process sees: Lambda's variables, the function's own, then
    the caller's (endpoint, credentials: on Lambda the role's keys are Lambda's to set too). No
    HOME: Lambda does not set it, so `~` resolves through the password database to a place the
    function cannot write."""
    stream = time.strftime("%Y/%m/%d", time.gmtime()) + "/[$LATEST]" + uuid.uuid4().hex
    environment = {
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_EXECUTION_ENV": f"AWS_Lambda_python{version}",
        "AWS_LAMBDA_FUNCTION_NAME": spec.name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": stream,
        "LAMBDA_TASK_ROOT": task_root,
        "LAMBDA_RUNTIME_DIR": RUNTIME_DIR,
        "TZ": ":UTC",
        "LANG": "en_US.UTF-8",
        "PATH": LAMBDA_PATH,
        "LD_LIBRARY_PATH": LAMBDA_LD_LIBRARY_PATH,
        "_HANDLER": spec.handler,
    }
    reserved = sorted((set(environment) - UNRESERVED) & set(spec.environment))
    if reserved:
        raise ValueError(
            f"{spec.name}: Lambda refuses reserved keys in a function's environment: {', '.join(reserved)}"
        )
    environment.update(spec.environment)
    environment.update(extra_env)
    return environment


def _error(error_type: str, message: str) -> dict[str, Any]:
    return {"errorType": error_type, "errorMessage": message}


def exit_error(request_id: str, status: int, oom_killed: bool) -> dict[str, Any]:
    """A runtime that ended without answering, as Lambda words it (Go's names for signals)."""
    prefix = f"RequestId: {request_id} Error: Runtime exited"
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        name = SIGNAL_NAMES.get(number) or signal.strsignal(number) or f"signal {number}"
        core = " (core dumped)" if os.WCOREDUMP(status) else ""
        error_type = OOM_ERROR_TYPE if oom_killed else "Runtime.ExitError"
        return _error(error_type, f"{prefix} with error: signal: {name.lower()}{core}")
    if oom_killed:
        return _error(OOM_ERROR_TYPE, f"{prefix} with error: signal: killed")
    code = os.WEXITSTATUS(status)
    if code == 0:
        return _error("Runtime.ExitError", f"{prefix} without providing a reason")
    return _error("Runtime.ExitError", f"{prefix} with error: exit status {code}")


# ---------------------------------------------------------------------------------------------
# The invocation.


class _Messages:
    """What the runtime writes on the result pipe (see bootstrap's docstring), read as it comes."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.init: dict[str, Any] | None = None
        self.init_at: float | None = None
        self.header: dict[str, Any] | None = None
        self.setup_error: str | None = None
        self.body = b""
        self.complete = False
        self.eof = False

    def feed(self, chunk: bytes) -> None:
        if not chunk:
            self.eof = True
            return
        self.buffer += chunk
        while not self.complete and self.header is None:
            line, newline, rest = bytes(self.buffer).partition(b"\n")
            if not newline:
                return
            self.buffer = bytearray(rest)
            try:
                message = json.loads(line)
            except ValueError as error:
                raise SandboxError(f"unreadable message from the runtime: {line[:200]!r}") from error
            if message["phase"] == "init":
                self.init, self.init_at = message, time.monotonic()
            elif message["phase"] == "setup_error":
                self.setup_error, self.complete = message["message"], True
            else:
                self.header = message
        if self.header is not None and len(self.buffer) >= int(self.header.get("response_bytes", 0)):
            self.body, self.complete = bytes(self.buffer), True


class Sandbox:
    """Runs invocations, one process tree each, the way Lambda runs them (module docstring)."""

    def __init__(self, opt_dir: Path, python: str, binds: Sequence[Path] = ()) -> None:
        """`opt_dir` becomes /opt (its `python/` holds the layers' packages, merged by the
        caller); `python` is the interpreter playing the runtime; `binds` are host folders the
        function sees read-write at the same path (a PostgreSQL socket folder, say). Raises
        SandboxUnavailable when CI=true and this machine cannot enforce everything."""
        support().require()
        self.opt_dir = Path(opt_dir)
        self.python = python
        self.binds = [Path(path) for path in binds]
        try:
            self.version = python_version(python)
        except (OSError, subprocess.CalledProcessError) as error:
            raise SandboxError(f"{python} is not a usable interpreter: {error}") from error

    def invoke(
        self, spec: FunctionSpec, event: bytes, region: str, extra_env: Mapping[str, str] | None = None
    ) -> Outcome:
        """One synchronous invocation (RequestResponse). The function's own failures come back
        in `Outcome.error`; SandboxError means the sandbox failed."""
        request_id = str(uuid.uuid4())
        if len(event) > REQUEST_LIMIT_BYTES:
            message = (
                f"{len(event)} byte payload is too large for the RequestResponse invocation type"
                f" (limit {REQUEST_LIMIT_BYTES} bytes)"
            )
            error = _error("RequestEntityTooLargeException", message)
            return Outcome(request_id, json.dumps(error).encode(), None, error, None, None, None, 0.0, True)
        enforced = support()
        cgroup = None
        if enforced.cgroup is not None:
            try:
                cgroup = enforced.cgroup.create(f"recommender-sandbox-{request_id}", spec.memory_mb << 20)
            except OSError as error:
                raise SandboxError(f"cannot create the invocation's memory cgroup: {error}") from error
        try:
            return self._run(spec, event, region, dict(extra_env or {}), request_id, enforced, cgroup)
        finally:
            if cgroup is not None:
                cgroup.remove()

    def _run(
        self,
        spec: FunctionSpec,
        event: bytes,
        region: str,
        extra_env: dict[str, str],
        request_id: str,
        enforced: Support,
        cgroup: Cgroup | None,
    ) -> Outcome:
        unshare = enforced.unshare if enforced.isolation else None
        isolated = unshare is not None
        task_root = TASK_ROOT if isolated else str(spec.code_dir.resolve())
        opt_python = OPT_PYTHON if isolated else str(self.opt_dir.resolve() / "python")
        environment = lambda_environment(spec, region, extra_env, self.version, task_root)
        config = {
            "sandbox": self._sandbox_config(spec),
            "environment": environment,
            "invocation": {
                "request_id": request_id,
                "task_root": task_root,
                "opt_python": opt_python,
                "timeout_seconds": spec.timeout_seconds,
                "spawned_at": time.time(),
                "function_arn": f"arn:aws:lambda:{region}:{ACCOUNT}:function:{spec.name}",
            },
        }
        with tempfile.TemporaryFile(prefix="recommender-invoke-") as config_file:
            config_file.write(json.dumps(config).encode() + b"\n" + event)
            config_file.flush()
            read_fd, write_fd = os.pipe()
            try:
                fds = [str(config_file.fileno()), str(write_fd)]
                joins = ["--cgroup", str(cgroup.procs)] if cgroup is not None else []
                runtime = [self.python, "-I", "-S", "-B"]
                env: dict[str, str]
                if unshare is not None:
                    command = [unshare, "--mount", "--propagation", "private", *runtime]
                    command += [str(BOOTSTRAP), "--enter", *fds, *joins]
                    env, cwd = {}, "/"
                else:
                    command = [*runtime, "-u", str(BOOTSTRAP), "--invoke", *fds, *joins]
                    env, cwd = environment, task_root
                started = time.monotonic()
                try:
                    process = subprocess.Popen(
                        command,
                        stdin=subprocess.DEVNULL,
                        pass_fds=(config_file.fileno(), write_fd),
                        start_new_session=True,
                        env=env,
                        cwd=cwd,
                    )
                except OSError as failure:
                    os.close(read_fd)
                    raise SandboxError(f"cannot start {command[0]}: {failure}") from failure
            finally:
                os.close(write_fd)
            try:
                messages, timed_out = self._read(read_fd, process, cgroup, spec.timeout_seconds, started)
            except BaseException:  # never leave the process tree running behind an error
                _kill(process, cgroup)
                _reap(process, cgroup, 0.0)
                raise
            finally:
                os.close(read_fd)
            status, cpu = _reap(process, cgroup, 0.0 if timed_out else EXIT_GRACE_SECONDS)
        seconds = time.monotonic() - started
        if messages.setup_error is not None:
            raise SandboxError(f"the sandbox could not be built: {messages.setup_error}")
        header = messages.header or {}
        init_bytes = header.get("init_bytes", (messages.init or {}).get("init_bytes"))
        peak = _peak([cgroup.peak_bytes() if cgroup is not None else None, header.get("peak_bytes")])
        error = _invocation_error(messages, header, spec, request_id, timed_out, status, cgroup)
        costs = (init_bytes, peak, cpu, seconds)
        if error is not None:
            return Outcome(request_id, json.dumps(error).encode(), None, error, *costs)
        return Outcome(request_id, messages.body, _parse(messages.body), None, *costs)

    def _sandbox_config(self, spec: FunctionSpec) -> dict[str, Any]:
        """What bootstrap.py needs to build the function's root before it drops privileges."""
        return {
            "code_dir": str(spec.code_dir.resolve()),
            "opt_dir": str(self.opt_dir.resolve()),
            "binds": [str(path) for path in self.binds],
            "ephemeral_storage_mb": spec.ephemeral_storage_mb,
            "uid": SANDBOX_UID,
            "gid": SANDBOX_GID,
        }

    def _read(
        self,
        read_fd: int,
        process: subprocess.Popen[bytes],
        cgroup: Cgroup | None,
        timeout: float,
        started: float,
    ) -> tuple[_Messages, bool]:
        """Read the runtime's messages until it answers, dies, or runs out of time. The timeout
        counts from the end of the Init phase; an Init phase past Lambda's 10 s is repeated by
        Lambda inside the invoke phase, so then the whole run counts against the timeout."""
        messages = _Messages()
        deadline: float | None = None
        with selectors.DefaultSelector() as selector:
            selector.register(read_fd, selectors.EVENT_READ)
            while not (messages.complete or messages.eof):
                now = time.monotonic()
                if deadline is None and messages.init_at is not None:
                    in_time = messages.init_at - started <= INIT_LIMIT_SECONDS
                    deadline = messages.init_at + timeout if in_time else started + timeout
                elif deadline is None and now - started >= INIT_LIMIT_SECONDS:
                    deadline = started + timeout
                if deadline is not None and now >= deadline:
                    _kill(process, cgroup)
                    return messages, True
                wake = deadline if deadline is not None else started + INIT_LIMIT_SECONDS
                if selector.select(timeout=max(0.0, wake - now)):
                    messages.feed(os.read(read_fd, 1 << 20))
        return messages, False


def _invocation_error(
    messages: _Messages,
    header: dict[str, Any],
    spec: FunctionSpec,
    request_id: str,
    timed_out: bool,
    status: int,
    cgroup: Cgroup | None,
) -> dict[str, Any] | None:
    """The error Lambda would report for this invocation, or None when the handler answered."""
    if timed_out:
        seconds_text = f"{spec.timeout_seconds:.2f}"
        message = f"RequestId: {request_id} Error: Task timed out after {seconds_text} seconds"
        return _error("Sandbox.Timedout", message)
    if not messages.complete:
        return exit_error(request_id, status, cgroup is not None and cgroup.oom_kills() > 0)
    if "error" in header:
        error: dict[str, Any] = header["error"]
        return error
    if len(messages.body) > RESPONSE_LIMIT_BYTES:
        limit = RESPONSE_LIMIT_BYTES
        message = f"Response payload size exceeded maximum allowed payload size ({limit} bytes)."
        return _error("Function.ResponseSizeTooLarge", message)
    return None


def _peak(figures: list[int | None]) -> int | None:
    """The larger of the cgroup's peak charge and the runtime's VmHWM. The cgroup misses the pages
    of files other processes here had already cached (the interpreter, shared libraries: charged
    to whoever read them first), which a fresh Lambda environment does count; VmHWM misses what
    the runtime's children used. Only the cgroup survives a killed runtime."""
    known = [figure for figure in figures if figure is not None]
    return max(known) if known else None


def _parse(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return body


def _kill(process: subprocess.Popen[bytes], cgroup: Cgroup | None) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    if cgroup is not None:
        cgroup.kill_all()


def _reap(process: subprocess.Popen[bytes], cgroup: Cgroup | None, grace: float) -> tuple[int, float]:
    """Wait for the runtime (killing its group after `grace`): its wait status and the CPU time
    of it and the children it waited for, which the kernel keeps even for a killed process."""
    limit = time.monotonic() + grace
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() >= limit:
            _kill(process, cgroup)
            pid, status, usage = os.wait4(process.pid, 0)
            break
        time.sleep(0.005)
    process.returncode = os.waitstatus_to_exitcode(status)
    with contextlib.suppress(ProcessLookupError, PermissionError):  # what the handler left running
        os.killpg(process.pid, signal.SIGKILL)
    return status, usage.ru_utime + usage.ru_stime
