"""Connections to the user's PostgreSQL, and what may be said about one in logs and manifests.

The URL holds a password, and psycopg2 repeats a malformed URL in its error message: every error
leaves this module with the password replaced by `***`, and without the original exception
chained to it.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg2

from .config import ConfigError

CONNECT_TIMEOUT_SECONDS = 10


class DatabaseUnavailableError(RuntimeError):
    """The server could not be reached or dropped the connection: worth retrying (the ASL does)."""


def redact(text: str, url: str) -> str:
    """`text` with the URL's password (plain or percent-encoded) and any `password=...` hidden."""
    secrets: set[str] = set()
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    if password:
        secrets |= {password, unquote(password)}
    secrets |= set(re.findall(r"password\s*=\s*'?([^\s']+)", url))
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return re.sub(r"(password\s*=\s*)'?[^\s']+", r"\1***", text)


def connect(url: str, application_name: str = "recommender") -> Any:
    """A read-only connection in UTF-8, so ids arrive exactly as stored whatever the server locale."""
    try:
        conn = psycopg2.connect(
            url, connect_timeout=CONNECT_TIMEOUT_SECONDS, application_name=application_name
        )
    except psycopg2.OperationalError as error:
        raise DatabaseUnavailableError(
            f"cannot connect to the database: {redact(str(error), url).strip()}"
        ) from None
    except psycopg2.Error as error:
        raise ConfigError(f"DATABASE_URL: {redact(str(error), url).strip()}") from None
    conn.set_client_encoding("UTF8")
    conn.set_session(readonly=True)
    return conn


def describe(conn: Any) -> dict[str, str]:
    """Host, port, database and user of a connection: never the password."""
    params = conn.get_dsn_parameters()
    return {key: params[key] for key in ("host", "port", "dbname", "user") if params.get(key)}
