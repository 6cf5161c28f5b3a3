"""Every module reads an AWS error's code through aws.error_code: what it answers decides whether a
conditional write lost a race, a cached object is still fresh, or a reader lacks a permission."""

from __future__ import annotations

import botocore.exceptions
import pytest

from recommender.aws import error_code
from recommender.storage import precondition_failed


def client_error(code: str) -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError({"Error": {"Code": code, "Message": "m"}}, "PutObject")


@pytest.mark.parametrize(
    "code", ["PreconditionFailed", "412", "ConditionalRequestConflict", "NoSuchKey", "304"]
)
def test_a_service_answer_gives_its_code(code: str) -> None:
    assert error_code(client_error(code)) == code


@pytest.mark.parametrize(
    "error",
    [
        botocore.exceptions.ConnectTimeoutError(endpoint_url="https://s3"),
        ConnectionRefusedError("refused"),
        botocore.exceptions.ClientError({}, "GetObject"),  # an answer without an error body
    ],
)
def test_an_error_that_is_no_service_answer_has_no_code(error: Exception) -> None:
    assert error_code(error) is None
    assert not precondition_failed(error)


def test_only_a_failed_condition_counts_as_a_lost_race() -> None:
    assert precondition_failed(client_error("PreconditionFailed"))
    assert precondition_failed(client_error("412"))
    assert not precondition_failed(client_error("AccessDenied"))
    assert not precondition_failed(client_error("SlowDown"))
