"""Connections to the user's PostgreSQL, and what may be said about one in logs and manifests."""

from __future__ import annotations

from typing import Any

import psycopg2

CONNECT_TIMEOUT_SECONDS = 10


def connect(url: str, application_name: str = "recommender") -> Any:
    """A read-only connection in UTF-8, so ids arrive exactly as stored whatever the server locale."""
    conn = psycopg2.connect(url, connect_timeout=CONNECT_TIMEOUT_SECONDS, application_name=application_name)
    conn.set_client_encoding("UTF8")
    conn.set_session(readonly=True)
    return conn


def describe(conn: Any) -> dict[str, str]:
    """Host, port, database and user of a connection: never the password."""
    params = conn.get_dsn_parameters()
    return {key: params[key] for key in ("host", "port", "dbname", "user") if params.get(key)}
