"""One redacting path for every connection: a malformed database URL is refused without a word of
its password, and so is every error of a well-formed one (database.check_url, database.connect)."""

from __future__ import annotations

import pytest

from recommender.database import check_url, connect
from recommender.errors import ConfigError, DatabaseUnavailableError
from recommender.local.forward import socket_path, tcp_url
from recommender.secrets import url_from_secret_string
from tests.database_urls import MALFORMED, PLAIN, RAW, UNREACHABLE, leaks

WELL_FORMED = [
    "postgresql://postgres:@/postgres?host=/tmp/recommender-pg-x",  # the embedded server's
    "postgresql://app:p%40ss%2Fw%3Ard@db.example.com:5432/app?sslmode=require",
    "postgres://app@localhost/app",
    "postgresql:///app",
    "postgresql://h1:5432,h2:5433/app",
    "host=/tmp port=5432 dbname=app",
    "postgresql://app:pa:ss@localhost:5432/app",  # a ':' in the password is not reserved
]


@pytest.mark.parametrize("url", WELL_FORMED)
def test_well_formed_urls_pass_the_check(url: str) -> None:
    check_url(url)


@pytest.mark.parametrize("readonly", [True, False], ids=["read-only", "writable"])
@pytest.mark.parametrize("url", list(MALFORMED.values()), ids=list(MALFORMED))
def test_a_malformed_url_is_refused_without_its_password(url: str, readonly: bool) -> None:
    with pytest.raises(ConfigError) as refused:
        connect(url, readonly=readonly)
    assert leaks(str(refused.value)) == []
    # nothing chained: a psycopg2 error would carry the URL in its own message
    assert refused.value.__cause__ is None and refused.value.__suppress_context__
    assert "database URL" in str(refused.value)
    with pytest.raises(ConfigError) as checked:
        check_url(url)
    assert str(checked.value) == str(refused.value)


@pytest.mark.parametrize("readonly", [True, False], ids=["read-only", "writable"])
@pytest.mark.parametrize("url", list(UNREACHABLE.values()), ids=list(UNREACHABLE))
def test_an_unreachable_server_is_named_without_the_password(url: str, readonly: bool) -> None:
    with pytest.raises(DatabaseUnavailableError) as unreachable:
        connect(url, readonly=readonly)
    assert leaks(str(unreachable.value)) == []
    assert "127.0.0.1" in str(unreachable.value)  # it still says where it could not connect


SOCKET_URLS = [
    f"postgresql://app:{RAW}@/db?host=/tmp/pg",
    f"postgresql://app:{PLAIN}@:notaport/db?host=/tmp/pg",
    f"postgresql://app:{PLAIN}%zz@/db?host=/tmp/pg",
]


@pytest.mark.parametrize("url", [*MALFORMED.values(), *SOCKET_URLS])
def test_the_engines_socket_forwarding_never_quotes_a_malformed_url(url: str) -> None:
    """The local engine looks for a Unix socket in the URL it keeps as the secret: a malformed URL
    names none (Extract then refuses it, as on AWS), and is never an error quoting a piece of it."""
    assert socket_path(url) is None


def test_the_engines_socket_forwarding_still_finds_a_socket() -> None:
    url = f"postgresql://app:{PLAIN}@/db?host=/tmp/pg&sslmode=disable"
    assert str(socket_path(url)) == "/tmp/pg/.s.PGSQL.5432"
    assert tcp_url(url, 6000) == f"postgresql://app:{PLAIN}@127.0.0.1:6000/db?sslmode=disable"


def test_a_secrets_manager_password_with_reserved_characters_is_encoded_and_never_shown() -> None:
    url = url_from_secret_string(
        f'{{"username": "app", "password": "{RAW}", "host": "127.0.0.1", "port": 1, "dbname": "db"}}'
    )
    check_url(url)
    with pytest.raises(DatabaseUnavailableError) as unreachable:
        connect(url)
    assert leaks(str(unreachable.value)) == []
    # a secret holding a URL is used as it is, and refused the same way when malformed
    with pytest.raises(ConfigError) as refused:
        connect(url_from_secret_string(MALFORMED["password with @ : /"]))
    assert leaks(str(refused.value)) == []
    assert PLAIN not in str(refused.value)


@pytest.mark.parametrize("name", ["password with @ : /", "password with /", "password with @"])
def test_an_unencoded_at_or_slash_is_named_as_the_problem(name: str) -> None:
    """Not a later symptom (a port or host libpq cut out of the password): the cause, and the fix."""
    with pytest.raises(ConfigError, match="percent-encode '@' as %40 and '/' as %2F"):
        check_url(MALFORMED[name])
