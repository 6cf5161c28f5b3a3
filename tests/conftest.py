"""Shared fixtures: a real PostgreSQL server for the whole session, a fresh database per test.

The server is `pgserver` (a real PostgreSQL from a wheel, started on demand), unless
TEST_DATABASE_URL names one to use instead (for example in a CI with a PostgreSQL service).
"""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
from psycopg2 import sql

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ROOT / "events"
MOVIELENS = ROOT.parent / "shared" / "data" / "ml-latest-small"


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a PostgreSQL server that lives for the whole test session."""
    given = os.environ.get("TEST_DATABASE_URL")
    if given:
        yield given
        return
    from recommender.local import embedded_postgres

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with embedded_postgres(tmp_path_factory.mktemp("pgdata")) as url:
            yield url


@pytest.fixture
def database_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database on the session's server; dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(postgres_server)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = _with_database(postgres_server, name)
    try:
        yield url
    finally:
        with admin.cursor() as cursor:
            cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.close()


def _with_database(url: str, name: str) -> str:
    """The same server URL with another database name (pgserver's URLs use a socket host query)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))
