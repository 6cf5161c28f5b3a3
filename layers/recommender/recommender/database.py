"""Connections to the user's PostgreSQL, and what may be said about one in logs and manifests.

The URL holds a password, and psycopg2 repeats a malformed URL in its error message: every error
leaves this module with the password replaced by `***`, and without the original exception
chained to it. A URL libpq would misread (an unencoded '@' or '/' in the password, a port that is
not a number) is refused before libpq sees it, with a message quoting none of it.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg2
import psycopg2.extensions

from .errors import ConfigError, DatabaseUnavailableError

CONNECT_TIMEOUT_SECONDS = 10


URL_SCHEMES = ("postgresql://", "postgres://")
MALFORMED = "the database URL is malformed"
RESERVED_IN_CREDENTIALS = (
    f"{MALFORMED}: '@' appears more than once, or after a '/', so its user name or password"
    " cannot be told apart from the host: percent-encode '@' as %40 and '/' as %2F in the user"
    " name, the password and option values"
)


def _passwords(url: str) -> set[str]:
    """Every string that may be the URL's password, as written and decoded: what urllib reads,
    what libpq reads, what sits between the first ':' and the last '@' of the credentials (a
    user's unencoded password), and any password=... option."""
    found: set[str] = set()
    if url.startswith(URL_SCHEMES):
        rest = url.split("://", 1)[1]
        if "@" in rest:
            found.add(rest[: rest.rindex("@")].partition(":")[2])
    with contextlib.suppress(ValueError):  # a port that is not a number: found above
        found.add(urlsplit(url).password or "")
    with contextlib.suppress(psycopg2.Error):
        found.add(psycopg2.extensions.parse_dsn(url).get("password", ""))
    found.update(re.findall(r"password\s*=\s*'?([^\s'&]+)", url))
    return {form for secret in found if secret for form in (secret, unquote(secret))}


def redact(text: str, url: str) -> str:
    """`text` with the URL's password, in every form it may take (see `_passwords`), and any
    `password=...` hidden."""
    for secret in sorted(_passwords(url), key=len, reverse=True):
        text = text.replace(secret, "***")
    return re.sub(r"(password\s*=\s*)'?[^\s'&]+", r"\1***", text)


def check_url(url: str) -> dict[str, str]:
    """The connection parameters libpq reads from `url`, or a ConfigError that says what is wrong
    and quotes nothing of the URL but option names.

    Checked before libpq connects because libpq's own errors quote the part it stumbled on: an
    unencoded '@' or '/' in a password makes libpq take a piece of the password for the host or
    the port, and its error then shows that piece, which no redaction of "the password" finds.
    Every connection checks its URL here (`connect`), and the CLI does before starting anything.
    """
    if url.startswith(URL_SCHEMES):
        rest = url.split("://", 1)[1]
        if rest.count("@") > 1 or ("@" in rest and "/" in rest[: rest.rindex("@")]):
            raise ConfigError(RESERVED_IN_CREDENTIALS) from None
    try:
        params: dict[str, str] = psycopg2.extensions.parse_dsn(url)
    except psycopg2.Error as error:
        raise ConfigError(f"{MALFORMED}: {redact(str(error), url).strip()}") from None
    for port in params.get("port", "").split(","):
        if port and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
            raise ConfigError(f"{MALFORMED}: its port is not a number from 1 to 65535") from None
    return params


def connect(url: str, application_name: str = "recommender", readonly: bool = True) -> Any:
    """A connection in UTF-8, so ids arrive exactly as stored whatever the server locale; read-only
    unless `readonly` is False (`recommender load` writes). Every connection of the product is
    made here, so every error leaves with the password redacted (see the module docstring)."""
    check_url(url)
    try:
        conn = psycopg2.connect(
            url, connect_timeout=CONNECT_TIMEOUT_SECONDS, application_name=application_name
        )
    except psycopg2.OperationalError as error:
        raise DatabaseUnavailableError(
            f"cannot connect to the database: {redact(str(error), url).strip()}"
        ) from None
    except psycopg2.Error as error:
        raise ConfigError(f"{MALFORMED}: {redact(str(error), url).strip()}") from None
    conn.set_client_encoding("UTF8")
    if readonly:
        conn.set_session(readonly=True)
    return conn


def describe(conn: Any) -> dict[str, str]:
    """Host, port, database and user of a connection: never the password."""
    params = conn.get_dsn_parameters()
    return {key: params[key] for key in ("host", "port", "dbname", "user") if params.get(key)}
