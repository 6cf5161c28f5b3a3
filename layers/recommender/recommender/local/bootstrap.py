"""The inside of the Lambda-shaped sandbox (`sandbox`): what Lambda's /var/runtime/bootstrap does
for one invocation, started under the runtime's own interpreter with `-I -S -B`.

STANDARD LIBRARY ONLY: this file runs under whichever interpreter plays the runtime (3.11 to
3.13), outside the project's virtual environment, and the second stage runs inside a file system
that holds nothing of the project but the function's code and the layers.

Two stages, both in this file:

`--enter CONFIG RESULT [--cgroup PROCS]` (root, started by `unshare --mount --propagation private`,
so every mount below is private to this process tree): joins the invocation's memory cgroup
first, so everything the invocation allocates from then on is charged to it; builds a new root in
a fresh tmpfs (read-only binds of /usr, /etc and the interpreter's prefix, /proc and /dev, the
usr-merge symlinks, `/tmp` a tmpfs capped at the function's ephemeral storage, `/var/task` the
function's code and `/opt` the layers, both read-only, this file at /var/runtime/bootstrap.py, the
extra binds read-write), remounts that root read-only, chroots into it, drops to an unprivileged
user and execs the second stage with Lambda's environment. The exec matters: the runtime process
starts inside the sandbox with Lambda's environment from its first instruction, as on Lambda
(LD_LIBRARY_PATH, TZ and LANG are read at process start), and its peak resident memory counts
from zero.

`--invoke CONFIG RESULT [--cgroup PROCS]` (the runtime, unprivileged; also what the sandbox runs
directly, without the first stage, where the machine cannot isolate): sets sys.path to what
Lambda gives (the code, the layers, the standard library; nothing else), imports the handler named
by `_HANDLER`, calls it once with the event and a context object, and reports.

Protocol. CONFIG is a file descriptor open on a file holding one line of JSON (the settings)
followed by the event's bytes; both stages read it from offset 0. RESULT is the write end of a
pipe; the runtime writes to it, never to stdout (handlers log JSON there) nor to a file (there is
no writable place but /tmp, which dies with the sandbox):
- `{"phase": "init", "init_bytes": N}` and a newline once the handler is imported: the host then
  starts the function's timeout, as Lambda does after the Init phase;
- `{"phase": "outcome", ...}` and a newline, then `response_bytes` bytes of the response exactly as
  Lambda would send it; the header holds `error` (Lambda's `{errorType, errorMessage,
  stackTrace}`) or `response_bytes`, plus `init_bytes`, `peak_bytes` (VmHWM) and `cpu_seconds`;
- `{"phase": "setup_error", "message": ...}` when the first stage cannot build the sandbox.
Logs (stdout, stderr) go to the host's own.
"""

from __future__ import annotations

import contextlib
import ctypes
import decimal
import importlib
import json
import logging
import os
import resource
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

TASK_ROOT = "/var/task"
RUNTIME_DIR = "/var/runtime"
OPT = "/opt"
INSIDE_BOOTSTRAP = RUNTIME_DIR + "/bootstrap.py"
# On-demand Lambda gives the Init phase 10 s of its own; past that the init is repeated inside the
# invoke phase under the function's timeout (Lambda developer guide, "Init phase").
INIT_LIMIT_SECONDS = 10.0

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
PR_SET_NO_NEW_PRIVS = 38
# Folders the new root is assembled on, first one that holds none of the sources; the tmpfs
# mounted there is private to this mount namespace.
STAGING_CANDIDATES = ("/mnt", "/media", "/srv", "/run", "/var/tmp", "/home")


class Fault(Exception):
    """An error the runtime itself reports, under one of Lambda's `Runtime.*` error types."""

    def __init__(self, error_type: str, message: str, trace: list[str] | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.trace = trace or []


class SetupError(RuntimeError):
    """The sandbox could not be built (not the function's fault)."""


def read_config(fd: int) -> tuple[dict[str, Any], bytes]:
    """The settings line and the event; from offset 0, so that both stages can read it."""
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    data = b"".join(chunks)
    line, _, event = data.partition(b"\n")
    config: dict[str, Any] = json.loads(line)
    return config, event


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def send(fd: int, header: dict[str, Any], body: bytes = b"") -> None:
    write_all(fd, json.dumps(header).encode() + b"\n" + body)


def join_cgroup(procs: str | None) -> None:
    """Before anything else, so the interpreter's own memory is charged to the invocation."""
    if procs:
        with open(procs, "w") as handle:
            handle.write(str(os.getpid()))


# ---------------------------------------------------------------------------------------------
# Stage 1: the file system, the user, the exec.


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    libc.mount.restype = ctypes.c_int
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    libc.prctl.restype = ctypes.c_int
    return libc


def _encode(text: str | None) -> bytes | None:
    return None if text is None else os.fsencode(text)


class Root:
    """A new root being assembled at `path`; targets are paths as the sandbox will see them."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.libc = _libc()
        self.host_binds: list[str] = []

    def mount(
        self, source: str | None, target: str, fstype: str | None, flags: int, data: str | None
    ) -> None:
        status = self.libc.mount(_encode(source), _encode(target), _encode(fstype), flags, _encode(data))
        if status != 0:
            errno = ctypes.get_errno()
            raise SetupError(f"mount {source} on {target}: {os.strerror(errno)}")

    def inside(self, target: str) -> str:
        return self.path + target

    def make_point(self, target: str, is_file: bool = False) -> str:
        """Create a mount point, never inside a host folder already bound here: that would create
        it on the host's own file system."""
        under_host = [bound for bound in self.host_binds if target.startswith(bound.rstrip("/") + "/")]
        place = self.inside(target)
        if under_host:
            if not os.path.lexists(place):
                raise SetupError(f"cannot bind {target}: it would need a new folder inside {under_host[0]}")
            return place
        os.makedirs(place if not is_file else os.path.dirname(place), mode=0o755, exist_ok=True)
        if is_file and not os.path.exists(place):
            with open(place, "w"):
                pass
        return place

    def bind(self, source: str, target: str, writable: bool, extra_flags: int = MS_NOSUID | MS_NODEV) -> None:
        place = self.make_point(target, is_file=not os.path.isdir(source))
        self.mount(source, place, None, MS_BIND, None)
        if not writable:
            self.mount(None, place, None, MS_BIND | MS_REMOUNT | MS_RDONLY | extra_flags, None)
        self.host_binds.append(target)

    def tmpfs(self, target: str, size_mb: int, mode: str) -> None:
        place = self.make_point(target)
        self.mount("tmpfs", place, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size_mb}m,mode={mode}")

    def symlink(self, target: str, points_to: str) -> None:
        os.symlink(points_to, self.inside(target))


def _staging(sources: list[str]) -> str:
    for candidate in STAGING_CANDIDATES:
        holds_a_source = any(source == candidate or source.startswith(candidate + "/") for source in sources)
        if os.path.isdir(candidate) and not os.path.islink(candidate) and not holds_a_source:
            return candidate
    raise SetupError(f"no folder to assemble the sandbox on among {', '.join(STAGING_CANDIDATES)}")


def build_root(settings: dict[str, Any]) -> Root:
    """See the module docstring; every read-only mount is also nosuid."""
    prefix = os.path.realpath(sys.base_prefix)
    code_dir = os.path.realpath(settings["code_dir"])
    opt_dir = os.path.realpath(settings["opt_dir"])
    binds = [os.path.realpath(path) for path in settings["binds"]]
    this_file = os.path.realpath(__file__)
    root = Root(_staging([prefix, code_dir, opt_dir, this_file, *binds]))
    root.mount("tmpfs", root.path, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    root.bind("/usr", "/usr", writable=False)
    root.bind("/etc", "/etc", writable=False)
    if not (prefix == "/usr" or prefix.startswith("/usr/")):
        root.bind(prefix, prefix, writable=False)
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        host = "/" + name
        if os.path.islink(host):
            root.symlink(host, os.readlink(host))
        elif os.path.isdir(host):
            root.bind(host, host, writable=False)
    root.bind("/proc", "/proc", writable=True)
    root.bind("/dev", "/dev", writable=False, extra_flags=MS_NOSUID | MS_NOEXEC)
    root.bind(code_dir, TASK_ROOT, writable=False)
    root.bind(opt_dir, OPT, writable=False)
    root.bind(this_file, INSIDE_BOOTSTRAP, writable=False)
    root.tmpfs("/tmp", int(settings["ephemeral_storage_mb"]), "1777")
    for path in sorted(binds, key=lambda p: p.count("/")):
        root.bind(path, path, writable=True)
    root.mount(None, root.path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, None)
    return root


def enter(settings: dict[str, Any], environment: dict[str, str], config_fd: int, result_fd: int) -> None:
    """Build the root, become the sandbox user, exec the runtime. Does not return."""
    root = build_root(settings)
    python = os.path.realpath(sys.executable)
    os.chdir(root.path)
    os.chroot(".")
    os.chdir(TASK_ROOT)
    os.setgroups([])
    os.setgid(int(settings["gid"]))
    os.setuid(int(settings["uid"]))
    if root.libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise SetupError(f"prctl(PR_SET_NO_NEW_PRIVS): {os.strerror(ctypes.get_errno())}")
    arguments = [python, "-I", "-S", "-B", "-u", INSIDE_BOOTSTRAP, "--invoke", str(config_fd), str(result_fd)]
    os.execve(python, arguments, environment)


def probe() -> int:
    """What `sandbox.support()` runs once: can this machine build the sandbox? Exercises every
    kernel feature the first stage uses, prints one line of JSON and leaves nothing behind."""
    report: dict[str, Any] = {}
    try:
        root = Root(_staging([os.path.realpath(sys.base_prefix)]))
        root.mount("tmpfs", root.path, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
        root.bind("/etc", "/etc", writable=False)
        root.tmpfs("/tmp", 1, "1777")
        root.mount(None, root.path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, None)
        report["read_only"] = _fails_with(lambda: open(root.inside("/etc/.sandbox-probe"), "w").close())
        report["root_read_only"] = _fails_with(lambda: os.mkdir(root.inside("/x")))
        report["tmp_cap"] = _fails_with(lambda: _fill(root.inside("/tmp/fill"), 2 << 20))
        os.chdir(root.path)
        os.chroot(".")
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
        report["user"] = os.getuid()
    except (OSError, SetupError) as error:
        report["error"] = str(error)
    print(json.dumps(report))
    return 0


def _fails_with(action: Callable[[], object]) -> int:
    """The errno the action fails with, 0 when it succeeds."""
    try:
        action()
    except OSError as error:
        return error.errno or -1
    return 0


def _fill(path: str, size: int) -> None:
    with open(path, "wb") as handle:
        handle.write(b"\0" * size)


# ---------------------------------------------------------------------------------------------
# Stage 2: the runtime.


class CognitoIdentity:
    __slots__ = ("cognito_identity_id", "cognito_identity_pool_id")

    def __init__(self) -> None:
        self.cognito_identity_id: str | None = None
        self.cognito_identity_pool_id: str | None = None


class LambdaContext:
    """The context object of Lambda's Python runtime (awslambdaric's LambdaContext): its fields
    come from the environment, so `memory_limit_in_mb` is a string there too."""

    def __init__(self, request_id: str, invoked_function_arn: str, deadline_ms: int) -> None:
        self.aws_request_id = request_id
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.invoked_function_arn = invoked_function_arn
        self.client_context: object | None = None
        self.identity = CognitoIdentity()
        self.tenant_id: str | None = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))

    def log(self, message: str) -> None:
        sys.stdout.write(str(message))


class _RequestIdFilter(logging.Filter):
    def __init__(self, request_id: str) -> None:
        super().__init__()
        self.request_id = request_id

    def filter(self, record: logging.LogRecord) -> bool:
        setattr(record, "aws_request_id", self.request_id)  # noqa: B010
        return True


def setup_logging(request_id: str) -> None:
    """The root handler Lambda's runtime installs, so handlers that log without configuring
    logging behave as they do there."""
    logging.Formatter.converter = time.gmtime
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        logging.Formatter(
            "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n",
            "%Y-%m-%dT%H:%M:%S",
        )
    )
    handler.terminator = ""
    handler.addFilter(_RequestIdFilter(request_id))
    logging.getLogger().addHandler(handler)


def load_handler(name: str) -> Callable[[Any, Any], Any]:
    """`module.function` as Lambda's runtime resolves it, with its `Runtime.*` errors."""
    try:
        module_name, function_name = name.rsplit(".", 1)
    except ValueError as error:
        raise Fault("Runtime.MalformedHandlerName", f"Bad handler '{name}': {error}") from None
    if module_name.split(".")[0] in sys.builtin_module_names:
        raise Fault(
            "Runtime.BuiltInModuleConflict", f"Cannot use built-in module {module_name} as a handler module"
        )
    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except ImportError as error:
        message = f"Unable to import module '{module_name}': {error}"
        raise Fault("Runtime.ImportModuleError", message) from None
    except SyntaxError as error:
        trace = [f'  File "{error.filename}" Line {error.lineno}\n    {error.text}']
        raise Fault(
            "Runtime.UserCodeSyntaxError", f"Syntax error in module '{module_name}': {error}", trace
        ) from None
    try:
        handler: Callable[[Any, Any], Any] = getattr(module, function_name)
    except AttributeError:
        raise Fault(
            "Runtime.HandlerNotFound", f"Handler '{function_name}' missing on module '{module_name}'"
        ) from None
    return handler


def error_document(error: BaseException) -> dict[str, Any]:
    """Lambda's body for an exception: the stack trace starts at the first frame outside this
    file, as the runtime drops its own frames."""
    frames = traceback.extract_tb(error.__traceback__)
    while frames and os.path.basename(frames[0].filename) == "bootstrap.py":
        frames.pop(0)
    return {
        "errorType": type(error).__name__,
        "errorMessage": str(error),
        "stackTrace": traceback.format_list(frames),
    }


def fault_document(fault: Fault) -> dict[str, Any]:
    return {"errorType": fault.error_type, "errorMessage": fault.message, "stackTrace": fault.trace}


def log_error(document: dict[str, Any]) -> None:
    """The runtime's own log line for a failed invocation (its text format)."""
    lines = [f"[ERROR] {document['errorType']}: {document['errorMessage']}"]
    lines.append("Traceback (most recent call last):")
    for frame in document["stackTrace"]:
        lines.extend(frame.splitlines())
    sys.stdout.write("\r".join(lines) + "\n")


class _Encoder(json.JSONEncoder):
    """Decimals as numbers, as the runtime's marshaller writes them."""

    def default(self, value: Any) -> Any:
        if isinstance(value, decimal.Decimal):
            return int(value) if value == value.to_integral_value() else float(value)
        return super().default(value)


def marshal(result: Any) -> bytes:
    if isinstance(result, bytes):
        return result
    try:
        return _Encoder().encode(result).encode()
    except Exception as error:
        raise Fault("Runtime.MarshalError", f"Unable to marshal response: {error}") from None


def status_bytes(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def peak_bytes() -> int:
    """VmHWM: the peak of this address space, which began at exec."""
    peak = status_bytes("VmHWM")
    if peak is not None:
        return peak
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss if sys.platform == "darwin" else maxrss * 1024


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def invoke(invocation: dict[str, Any], environment: dict[str, str], event: bytes, result_fd: int) -> None:
    """One invocation, reported on `result_fd`; does not return (see `finish`)."""
    sys.path[:0] = [invocation["task_root"], invocation["opt_python"]]
    for name in set(os.environ) - set(environment):  # LC_CTYPE, when Python coerced a missing locale
        del os.environ[name]
    request_id = invocation["request_id"]
    setup_logging(request_id)
    init_bytes: int | None = None
    header: dict[str, Any]
    body = b""
    try:
        handler = load_handler(os.environ["_HANDLER"])
        init_bytes = status_bytes("VmRSS")
        send(result_fd, {"phase": "init", "init_bytes": init_bytes})
        timeout = float(invocation["timeout_seconds"])
        spawned = float(invocation["spawned_at"])
        now = time.time()
        deadline = now + timeout if now - spawned <= INIT_LIMIT_SECONDS else spawned + timeout
        context = LambdaContext(request_id, invocation["function_arn"], int(deadline * 1000))
        try:
            payload = json.loads(event or b"{}")
        except ValueError as error:
            raise Fault("Runtime.UnmarshalError", f"Unable to unmarshal input: {error}") from None
        body = marshal(handler(payload, context))
        header = {"phase": "outcome", "response_bytes": len(body)}
    except Fault as fault:
        header = {"phase": "outcome", "error": fault_document(fault)}
    except Exception as error:
        header = {"phase": "outcome", "error": error_document(error)}
    if "error" in header:
        log_error(header["error"])
    header.update(init_bytes=init_bytes, peak_bytes=peak_bytes(), cpu_seconds=cpu_seconds())
    send(result_fd, header, body)
    finish()


def finish() -> None:
    """Leave at once, as Lambda freezes the environment once the response is out: threads the
    handler left running must not keep the invocation open."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(0)


def main(argv: list[str]) -> int:
    if argv[1:] == ["--probe"]:
        return probe()
    stage, config_fd, result_fd = argv[1], int(argv[2]), int(argv[3])
    procs = argv[5] if len(argv) > 5 and argv[4] == "--cgroup" else None
    try:
        join_cgroup(procs)
        os.set_inheritable(result_fd, stage == "--enter")
        os.set_inheritable(config_fd, stage == "--enter")
        config, event = read_config(config_fd)
        if stage == "--enter":
            enter(config["sandbox"], config["environment"], config_fd, result_fd)
    except (OSError, SetupError, ValueError, KeyError) as error:
        send(result_fd, {"phase": "setup_error", "message": f"{type(error).__name__}: {error}"})
        return 1
    os.close(config_fd)
    invoke(config["invocation"], config["environment"], event, result_fd)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
