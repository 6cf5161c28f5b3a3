"""Each function's role, enforced on its S3 and Secrets Manager requests to the local moto server.

In the sandbox a function reaches AWS only through the engine's moto server, with credentials
naming the function. This middleware evaluates every request against the IAM statements the
template gives that function's role (`template.Function.statements`) and answers 403
AccessDenied, as AWS would, when nothing allows it. So a step that starts touching a key or
calling an API its role does not grant fails locally, not on the first deploy.

A missing object is answered as S3 documents it: 404 only to a caller allowed to list the bucket,
403 otherwise. The roles may list only under the output prefix (an `s3:prefix` condition), and
whether S3 counts such a conditioned grant for this answer is not documented, so here only an
unconditioned `s3:ListBucket` earns the 404; a step must not learn that an object is missing
from a GET or HEAD (see `storage.object_exists`).

Only what this template's statements use is evaluated: Allow and Deny, Action and Resource with
wildcards, and the `StringLike`/`StringEquals` condition on `s3:prefix`.
"""

from __future__ import annotations

import fnmatch
import io
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

_CREDENTIAL = re.compile(r"Credential=([^/]+)/[^/]+/[^/]+/([^/]+)/")
Environ = dict[str, Any]
StartResponse = Callable[..., Any]
App = Callable[[Environ, StartResponse], Iterable[bytes]]


@dataclass(frozen=True)
class Request:
    """What IAM evaluates: the action, the resource and the condition keys of one request."""

    action: str
    resource: str
    prefix: str | None = None  # s3:prefix, for listings

    def describe(self) -> str:
        where = f" (s3:prefix {self.prefix!r})" if self.prefix is not None else ""
        return f"{self.action} on {self.resource}{where}"


def _listed(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _condition_holds(statement: dict[str, Any], request: Request) -> bool:
    for operator, keys in statement.get("Condition", {}).items():
        for key, expected in keys.items():
            if key != "s3:prefix":
                raise ValueError(f"the local IAM check does not evaluate the condition key {key}")
            if request.prefix is None:
                return False  # the key is absent from the request: the condition does not match
            if operator == "StringLike":
                if not any(fnmatch.fnmatchcase(request.prefix, p) for p in _listed(expected)):
                    return False
            elif operator == "StringEquals":
                if request.prefix not in _listed(expected):
                    return False
            else:
                raise ValueError(f"the local IAM check does not evaluate the operator {operator}")
    return True


def _matches(statement: dict[str, Any], request: Request) -> bool:
    return (
        any(fnmatch.fnmatchcase(request.action, a) for a in _listed(statement["Action"]))
        and any(fnmatch.fnmatchcase(request.resource, r) for r in _listed(statement["Resource"]))
        and _condition_holds(statement, request)
    )


def allowed(statements: list[dict[str, Any]], request: Request) -> bool:
    """IAM's rule: an explicit Deny wins, else any Allow, else denied."""
    matching = [s for s in statements if _matches(s, request)]
    return any(s["Effect"] == "Allow" for s in matching) and not any(s["Effect"] == "Deny" for s in matching)


def lists_unconditionally(statements: list[dict[str, Any]], bucket: str) -> bool:
    """Whether a missing object reads as 404 for this role (see the module docstring)."""
    return any(
        s["Effect"] == "Allow"
        and "Condition" not in s
        and any(fnmatch.fnmatchcase("s3:ListBucket", a) for a in _listed(s["Action"]))
        and any(fnmatch.fnmatchcase(f"arn:aws:s3:::{bucket}", r) for r in _listed(s["Resource"]))
        for s in statements
    )


def s3_requests(
    method: str, path: str, query: dict[str, list[str]], headers: dict[str, str]
) -> list[Request]:
    """The IAM actions an S3 REST request (path style) needs."""
    bucket, _, key = unquote(path).lstrip("/").partition("/")
    if not key:
        if method in ("GET", "HEAD") and not set(query) - {
            "list-type",
            "prefix",
            "max-keys",
            "continuation-token",
            "delimiter",
            "encoding-type",
            "start-after",
            "fetch-owner",
            "marker",
        }:
            return [Request("s3:ListBucket", f"arn:aws:s3:::{bucket}", query.get("prefix", [""])[0])]
        return [Request(f"s3:{method}Bucket?{'&'.join(sorted(query))}", f"arn:aws:s3:::{bucket}")]
    resource = f"arn:aws:s3:::{bucket}/{key}"
    if method in ("GET", "HEAD"):
        action = "s3:ListMultipartUploadParts" if "uploadId" in query else "s3:GetObject"
        return [Request(action, resource)]
    if method in ("PUT", "POST"):
        needed = [Request("s3:PutObject", resource)]
        source = headers.get("x-amz-copy-source")
        if source:
            needed.append(
                Request("s3:GetObject", f"arn:aws:s3:::{unquote(source).lstrip('/').split('?')[0]}")
            )
        return needed
    if method == "DELETE":
        return [Request("s3:AbortMultipartUpload" if "uploadId" in query else "s3:DeleteObject", resource)]
    return [Request(f"s3:{method}", resource)]


def _denied(start_response: StartResponse, request: Request, who: str) -> list[bytes]:
    message = f"{who} is not authorized to perform {request.describe()} (local IAM check)"
    body = (
        "<?xml version='1.0' encoding='UTF-8'?><Error><Code>AccessDenied</Code>"
        f"<Message>{message}</Message></Error>"
    ).encode()
    start_response("403 Forbidden", [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))])
    return [body]


def _json_denied(start_response: StartResponse, request: Request, who: str) -> list[bytes]:
    message = f"{who} is not authorized to perform {request.describe()} (local IAM check)"
    body = json.dumps({"__type": "AccessDeniedException", "message": message}).encode()
    start_response(
        "400 Bad Request",
        [("Content-Type", "application/x-amz-json-1.1"), ("Content-Length", str(len(body)))],
    )
    return [body]


class RoleGate:
    """WSGI middleware in front of moto's server: requests signed with a function's access key
    are held to that function's role; any other request (the engine's own) passes."""

    def __init__(self, app: App, roles: dict[str, tuple[str, list[dict[str, Any]]]]) -> None:
        """`roles` maps an access key id to (the function's name, its role's statements)."""
        self.app, self.roles = app, roles
        self.denials: list[str] = []  # every refusal, for the engine to report
        self.granted: list[tuple[str, Request]] = []  # (function, request) of every allowed request

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        match = _CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
        if not match or match.group(1) not in self.roles:
            return self.app(environ, start_response)
        who, statements = self.roles[match.group(1)]
        service = match.group(2)
        if service == "s3":
            return self._s3(environ, start_response, who, statements)
        if service == "secretsmanager":
            return self._secrets(environ, start_response, who, statements)
        request = Request(f"{service}:*", "*")
        self.denials.append(f"{who}: {request.describe()}")
        return _json_denied(start_response, request, who)

    def _s3(
        self, environ: Environ, start_response: StartResponse, who: str, statements: list[dict[str, Any]]
    ) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        headers = {"x-amz-copy-source": environ.get("HTTP_X_AMZ_COPY_SOURCE", "")}
        for request in s3_requests(method, environ.get("PATH_INFO", "/"), query, headers):
            if not allowed(statements, request):
                self.denials.append(f"{who}: {request.describe()}")
                return _denied(start_response, request, who)
            self.granted.append((who, request))
        bucket = unquote(environ.get("PATH_INFO", "/")).lstrip("/").partition("/")[0]
        if method not in ("GET", "HEAD") or lists_unconditionally(statements, bucket):
            return self.app(environ, start_response)
        captured: dict[str, Any] = {}

        def capture(status: str, response_headers: list[tuple[str, str]], *rest: Any) -> Any:
            captured["status"], captured["headers"] = status, response_headers
            return lambda data: None

        body = b"".join(self.app(environ, capture))
        if captured["status"].startswith("404"):
            path = environ.get("PATH_INFO", "/")
            return _denied(
                start_response, Request("s3:GetObject", f"arn:aws:s3:::{unquote(path).lstrip('/')}"), who
            )
        start_response(captured["status"], captured["headers"])
        return [body]

    def _secrets(
        self, environ: Environ, start_response: StartResponse, who: str, statements: list[dict[str, Any]]
    ) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        data = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(data)
        target = environ.get("HTTP_X_AMZ_TARGET", "").rpartition(".")[2]
        secret = json.loads(data or b"{}").get("SecretId", "*")
        request = Request(f"secretsmanager:{target}", secret)
        if not allowed(statements, request):
            self.denials.append(f"{who}: {request.describe()}")
            return _json_denied(start_response, request, who)
        self.granted.append((who, request))
        return self.app(environ, start_response)
