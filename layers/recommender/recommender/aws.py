"""AWS clients, created once per process (a warm Lambda container reuses them), and what their
errors say."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_RETRIES = Config(retries={"mode": "standard", "max_attempts": 5})


@functools.cache
def s3_client() -> S3Client:
    return boto3.client("s3", config=_RETRIES)


def error_code(error: BaseException) -> str | None:
    """The code an AWS service answered with ("NoSuchKey", "PreconditionFailed", "304"...), or None
    for an error that is not a service's answer (a timeout, a refused connection)."""
    response = getattr(error, "response", None)
    if not isinstance(response, dict):
        return None
    code = response.get("Error", {}).get("Code")
    return str(code) if code else None
