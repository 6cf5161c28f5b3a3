"""Test doubles stand in for the typed S3 client: `as_s3` says so to the type checker, in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def as_s3(double: object) -> S3Client:
    """A recording, racing or refusing stand-in for the S3 client, typed as the client it replaces."""
    return cast("S3Client", double)
