"""The local IAM check: each function's S3 and Secrets Manager requests held to the statements of
its role in template.yaml, and a missing object answered 403 as S3 answers a role that may only
list under a prefix."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from recommender.local import template
from recommender.local.iam import Request, RoleGate, allowed, s3_requests
from recommender.storage import RunPaths, latest_key

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "local-bucket"
RUN = RunPaths("recommender", "run-1")


@pytest.fixture(scope="module")
def roles() -> dict[str, list[dict[str, Any]]]:
    names = {
        "RecommendationsBucket": BUCKET,
        "RecommendationsBucket.Arn": f"arn:aws:s3:::{BUCKET}",
        "DatabaseSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbC123",
    }
    return {f.logical_id: f.statements for f in template.functions(ROOT, names).values()}


def obj(key: str) -> str:
    return f"arn:aws:s3:::{BUCKET}/{key}"


@pytest.mark.parametrize(
    ("method", "path", "query", "headers", "expected"),
    [
        ("GET", f"/{BUCKET}/a/b", "", {}, [Request("s3:GetObject", obj("a/b"))]),
        ("HEAD", f"/{BUCKET}/a%20b", "", {}, [Request("s3:GetObject", obj("a b"))]),
        ("PUT", f"/{BUCKET}/k", "partNumber=1&uploadId=u", {}, [Request("s3:PutObject", obj("k"))]),
        ("POST", f"/{BUCKET}/k", "uploads=", {}, [Request("s3:PutObject", obj("k"))]),
        ("DELETE", f"/{BUCKET}/k", "uploadId=u", {}, [Request("s3:AbortMultipartUpload", obj("k"))]),
        ("DELETE", f"/{BUCKET}/k", "", {}, [Request("s3:DeleteObject", obj("k"))]),
        (
            "GET",
            f"/{BUCKET}",
            "list-type=2&prefix=p%2Fx&max-keys=1",
            {},
            [Request("s3:ListBucket", f"arn:aws:s3:::{BUCKET}", "p/x")],
        ),
        (
            "PUT",
            f"/{BUCKET}/to",
            "",
            {"x-amz-copy-source": f"/{BUCKET}/from"},
            [Request("s3:PutObject", obj("to")), Request("s3:GetObject", obj("from"))],
        ),
    ],
)
def test_requests_become_the_actions_iam_evaluates(
    method: str, path: str, query: str, headers: dict[str, str], expected: list[Request]
) -> None:
    from urllib.parse import parse_qs

    got = s3_requests(method, path, parse_qs(query, keep_blank_values=True), headers)
    assert got == expected


def test_each_role_allows_what_its_step_does_and_nothing_else(roles: dict[str, Any]) -> None:
    listing = f"arn:aws:s3:::{BUCKET}"
    assert allowed(roles["ExtractFunction"], Request("s3:PutObject", obj(RUN.dataset)))
    assert allowed(roles["ExtractFunction"], Request("s3:ListBucket", listing, RUN.dataset_meta))
    assert not allowed(roles["ExtractFunction"], Request("s3:ListBucket", listing, "elsewhere/"))
    assert not allowed(roles["ExtractFunction"], Request("s3:ListBucket", listing))  # no s3:prefix key
    assert not allowed(roles["ExtractFunction"], Request("s3:PutObject", obj(latest_key("recommender"))))
    assert allowed(roles["MergeFunction"], Request("s3:PutObject", obj(latest_key("recommender"))))
    assert not allowed(roles["PredictFunction"], Request("s3:DeleteObject", obj(RUN.shard_object(0))))
    assert allowed(roles["RecordFailureFunction"], Request("s3:PutObject", obj(RUN.failure)))
    assert not allowed(roles["RecordFailureFunction"], Request("s3:PutObject", obj(RUN.manifest)))
    secret = "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbC123"
    assert allowed(roles["ExtractFunction"], Request("secretsmanager:GetSecretValue", secret))
    assert not allowed(roles["TrainFunction"], Request("secretsmanager:GetSecretValue", secret))


def test_an_explicit_deny_wins() -> None:
    statements = [
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "s3:DeleteObject", "Resource": obj("*")},
    ]
    assert allowed(statements, Request("s3:GetObject", obj("k")))
    assert not allowed(statements, Request("s3:DeleteObject", obj("k")))


class Upstream:
    """Stands in for moto's server: answers every request with a fixed status."""

    def __init__(self, status: str) -> None:
        self.status, self.calls = status, 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        self.calls += 1
        start_response(self.status, [("Content-Type", "application/xml")])
        return [b"<upstream/>"]


def call(gate: RoleGate, method: str, path: str, key_id: str, service: str = "s3", **extra: Any) -> str:
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "HTTP_AUTHORIZATION": f"AWS4-HMAC-SHA256 Credential={key_id}/20261202/us-east-1/{service}/x",
        "wsgi.input": io.BytesIO(b""),
        **extra,
    }
    statuses: list[str] = []
    b"".join(gate(environ, lambda status, headers, *rest: statuses.append(status)))
    return statuses[0]


def test_the_gate_refuses_what_the_role_does_not_grant(roles: dict[str, Any]) -> None:
    upstream = Upstream("200 OK")
    gate = RoleGate(upstream, {"key-train": ("recommender-train", roles["TrainFunction"])})
    assert call(gate, "GET", f"/{BUCKET}/{RUN.dataset}", "key-train").startswith("200")
    assert call(gate, "PUT", f"/{BUCKET}/{latest_key('recommender')}", "key-train").startswith("403")
    assert upstream.calls == 1  # the refused request never reached S3
    assert gate.denials == [f"recommender-train: s3:PutObject on {obj(latest_key('recommender'))}"]
    assert call(gate, "GET", "/anything", "someone-else").startswith("200")  # the engine's own calls


def test_a_missing_object_is_403_for_a_role_that_lists_only_under_a_prefix(roles: dict[str, Any]) -> None:
    gate = RoleGate(Upstream("404 Not Found"), {"key-merge": ("recommender-merge", roles["MergeFunction"])})
    assert call(gate, "GET", f"/{BUCKET}/{latest_key('recommender')}", "key-merge").startswith("403")
    assert call(gate, "HEAD", f"/{BUCKET}/{RUN.shard_object(3)}", "key-merge").startswith("403")
    unconditioned = [
        *roles["MergeFunction"],
        {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{BUCKET}"},
    ]
    gate = RoleGate(Upstream("404 Not Found"), {"key-merge": ("recommender-merge", unconditioned)})
    assert call(gate, "GET", f"/{BUCKET}/{latest_key('recommender')}", "key-merge").startswith("404")


def test_secrets_are_held_to_the_role(roles: dict[str, Any]) -> None:
    secret = "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbC123"
    body = json.dumps({"SecretId": secret}).encode()
    gate = RoleGate(
        Upstream("200 OK"),
        {
            "key-extract": ("recommender-extract", roles["ExtractFunction"]),
            "key-train": ("recommender-train", roles["TrainFunction"]),
        },
    )
    extra = {
        "HTTP_X_AMZ_TARGET": "secretsmanager.GetSecretValue",
        "CONTENT_LENGTH": str(len(body)),
    }
    for key_id, expected in (("key-extract", "200"), ("key-train", "400")):
        environ_extra = {**extra, "wsgi.input": io.BytesIO(body)}
        assert call(gate, "POST", "/", key_id, service="secretsmanager", **environ_extra).startswith(expected)
