"""AWS clients, created once per process (a warm Lambda container reuses them)."""

from __future__ import annotations

import functools
from typing import Any

import boto3
from botocore.config import Config

_RETRIES = Config(retries={"mode": "standard", "max_attempts": 5})


@functools.cache
def s3_client() -> Any:
    return boto3.client("s3", config=_RETRIES)
