"""A Lambda environment in a fresh process: the local engine's `isolate` mode runs every
invocation through `python -m recommender.local.process`.

Why a separate process: in the engine's own process, moto's in-memory S3 and the other steps'
leftovers share one resident set, so no step's memory can be read apart from them. A child that
imports only the handler (no moto), reaches S3 over HTTP (the engine serves its mocked state with
moto's server) and reports its own peak resident memory measures what one Lambda invocation needs,
its imports included, as a cold start would.

This module imports nothing heavy itself; the engine reuses its context and handler loading.

Protocol: argv is `<handler file> <function name> <result file>`, the event is JSON on stdin, and
the result file receives `{"result": ...}` or `{"error": {errorType, errorMessage, stackTrace}}`,
plus `init_bytes` (resident memory once the handler is imported), `peak_bytes` and `cpu_seconds`
(the process's, imports included).
"""

from __future__ import annotations

import importlib.util
import json
import resource
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REGION = "us-east-1"
ACCOUNT = "123456789012"
FUNCTION_TIMEOUT_SECONDS = 900

Handler = Callable[[dict[str, Any], Any], Any]


class HandlerImportError(RuntimeError):
    """A handler file cannot be imported."""


def load_handler(path: Path) -> Handler:
    spec = importlib.util.spec_from_file_location(f"local_{path.parent.name}_app", path)
    if spec is None or spec.loader is None:
        raise HandlerImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    handler: Handler = module.lambda_handler
    return handler


@dataclass
class LocalContext:
    """What the handlers (and Powertools) read from Lambda's context object."""

    function_name: str
    memory_limit_in_mb: int = 1024
    timeout_seconds: float = FUNCTION_TIMEOUT_SECONDS
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "local"
    log_stream_name: str = "local"
    deadline: float = field(init=False)

    def __post_init__(self) -> None:
        self.deadline = time.monotonic() + self.timeout_seconds

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


def lambda_error(error: BaseException) -> dict[str, Any]:
    """The body Lambda returns for an unhandled exception (what Retry and Catch match on)."""
    return {
        "errorType": type(error).__name__,
        "errorMessage": str(error),
        "stackTrace": traceback.format_tb(error.__traceback__),
    }


def _memory_status(field: str) -> int | None:
    """A /proc/self/status figure in bytes (Linux), None elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _resident_bytes() -> int:
    return _memory_status("VmRSS") or 0


def _peak_bytes() -> int:
    """This program's peak resident memory. VmHWM belongs to the address space exec created;
    getrusage's maximum, used where /proc is missing, would also count the parent's resident
    memory at the fork (Linux keeps it across exec)."""
    peak = _memory_status("VmHWM")
    if peak is not None:
        return peak
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss if sys.platform == "darwin" else maxrss * 1024  # Linux reports KiB, macOS bytes


def main(argv: list[str]) -> int:
    handler_file, function_name, result_file = argv[1:4]
    event = json.loads(sys.stdin.read() or "{}")
    outcome: dict[str, Any]
    init = 0
    try:
        handler = load_handler(Path(handler_file))
        init = _resident_bytes()
        outcome = {"result": handler(event, LocalContext(function_name))}
    except Exception as error:
        outcome = {"error": lambda_error(error)}
    usage = resource.getrusage(resource.RUSAGE_SELF)
    outcome.update(init_bytes=init, peak_bytes=_peak_bytes(), cpu_seconds=usage.ru_utime + usage.ru_stime)
    Path(result_file).write_text(json.dumps(outcome))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
