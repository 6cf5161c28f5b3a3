"""Shared fixtures: a real PostgreSQL server for the whole session, a fresh database per test.

The server is `pgserver` (a real PostgreSQL from a wheel, started on demand), unless
TEST_DATABASE_URL names one to use instead (for example in a CI with a PostgreSQL service).

Tests are marked by what they cost (pyproject.toml registers the markers): `db` and `e2e` are
given here, from what a test uses and where it is; `slow` is given by each integration module
that starts processes or servers or runs long. A test under tests/integration with neither `db`
nor `slow` fails: it is a unit test, and belongs in tests/unit, which refuses a database, another
process and the network (tests/unit/conftest.py).
"""

from __future__ import annotations

import contextlib
import os
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import boto3
import psycopg2
import pytest
from moto import mock_aws
from psycopg2 import sql

from recommender.local import template

ROOT = Path(__file__).resolve().parents[1]
INTEGRATION = ROOT / "tests" / "integration"
E2E = ROOT / "tests" / "e2e"
# The functions the local engine deploys (template.yaml's): logical id -> (handler file, the ASL
# substitution naming its ARN).
LOCAL_FUNCTIONS = {f.logical_id: (f.handler_file, f.substitution) for f in template.functions(ROOT).values()}


@pytest.hookimpl(tryfirst=True)  # before `-m` selects by these markers
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark what a test costs from what it uses and where it is, so that no test can forget it."""
    for item in items:
        if item.path.is_relative_to(E2E):
            item.add_marker(pytest.mark.e2e)
        # fixturenames holds every fixture a test uses, through other fixtures too.
        if "postgres_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.db)


def pytest_runtest_setup(item: pytest.Item) -> None:
    markers = {m.name for m in item.iter_markers()}
    if item.path.is_relative_to(INTEGRATION) and not markers & {"db", "slow"}:
        pytest.fail(
            "a test under tests/integration is marked db or slow; one that is neither belongs in tests/unit"
        )


@contextlib.contextmanager
def mocked_s3(bucket: str) -> Iterator[Any]:
    """moto's S3 in this process, with one empty bucket."""
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=bucket)
        yield client


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


class Databases:
    """Creates databases on the session's server and drops them when the session ends."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self.admin = psycopg2.connect(server_url)
        self.admin.autocommit = True
        self.names: list[str] = []

    def create(self, encoding: str | None = None) -> str:
        name = f"test_{uuid.uuid4().hex[:12]}"
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if encoding:
            statement += sql.SQL(" ENCODING {} TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'").format(
                sql.Literal(encoding)
            )
        with self.admin.cursor() as cursor:
            cursor.execute(statement)
        self.names.append(name)
        return urlunsplit(urlsplit(self.server_url)._replace(path=f"/{name}"))

    def drop_all(self) -> None:
        with self.admin.cursor() as cursor:
            for name in self.names:
                cursor.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
        self.admin.close()


@pytest.fixture(scope="session")
def databases(postgres_server: str) -> Iterator[Databases]:
    factory = Databases(postgres_server)
    yield factory
    factory.drop_all()


@pytest.fixture
def database_url(databases: Databases) -> str:
    """A fresh, empty database on the session's server."""
    return databases.create()
