"""What the engine's in-process mode gives a handler: Lambda's context object and error shape.

A handler called in the engine's own process gets a context with the function's name, memory and
deadline, and an exception is reported the way Lambda reports it, so Retry and Catch match its
class name. The sandbox's runtime (`bootstrap.py`) gives the same to a sandboxed handler.
"""

from __future__ import annotations

import importlib.util
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .template import ACCOUNT, REGION

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
