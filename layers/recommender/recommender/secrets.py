"""The database URL from a Secrets Manager secret, read at run time by Extract.

The secret is either the JSON that RDS and Secrets Manager's rotation functions use,
`{"username", "password", "host", "port", "dbname"}` (optionally `"sslmode"`), or a plain
`postgresql://` URL. Nothing here logs or raises with the URL, the password or the secret's text:
an error names the secret's ARN, the error code or the missing keys, and never chains the
original exception (whose message could quote the secret).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlencode

from .aws import error_code
from .config import Settings
from .errors import ConfigError, SecretError

DEFAULT_PORT = 5432
_REQUIRED = ("username", "password", "host")
_URL_SCHEMES = ("postgresql://", "postgres://")


def database_url(settings: Settings, client: Any = None) -> str:
    """DATABASE_URL when set (the local engine sets it), else the URL the secret describes."""
    if settings.database_url:
        return settings.database_url
    if not settings.database_secret_arn:
        raise ConfigError(
            "neither DATABASE_URL nor DATABASE_SECRET_ARN is set: the database the ratings are read from"
        )
    return url_from_secret(settings.database_secret_arn, client)


def url_from_secret(secret_arn: str, client: Any = None) -> str:
    """Read the secret (one GetSecretValue call, so a rotated password is picked up next run)."""
    if client is None:
        import boto3

        client = boto3.client("secretsmanager")
    try:
        response = client.get_secret_value(SecretId=secret_arn)
    except Exception as error:
        code = error_code(error) or type(error).__name__
        raise SecretError(f"cannot read the database secret {secret_arn}: {code}") from None
    text = response.get("SecretString")
    if text is None:
        raise SecretError(
            f"the database secret {secret_arn} has no SecretString (binary secrets are not read)"
        )
    return url_from_secret_string(text, secret_arn)


def url_from_secret_string(text: str, secret_arn: str = "the secret") -> str:
    """A URL as it is, or the URL the RDS-style JSON describes (user and password URL-quoted)."""
    stripped = text.strip()
    if stripped.startswith(_URL_SCHEMES):
        return stripped
    try:
        fields = json.loads(stripped)
    except ValueError:
        fields = None
    if not isinstance(fields, dict):
        raise SecretError(
            f"{secret_arn} is neither a postgresql:// URL nor a JSON object with "
            f"{', '.join(_REQUIRED)}, port and dbname"
        )
    missing = [key for key in _REQUIRED if not isinstance(fields.get(key), str) or not fields[key]]
    if missing:
        raise SecretError(f"{secret_arn} lacks {', '.join(missing)} (keys of the RDS secret format)")
    port = fields.get("port", DEFAULT_PORT)
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise SecretError(f"{secret_arn} has a port that is not a number from 1 to 65535")
    host = str(fields["host"])
    if ":" in host and not host.startswith("["):  # an IPv6 address
        host = f"[{host}]"
    user = quote(str(fields["username"]), safe="")
    password = quote(str(fields["password"]), safe="")
    database = quote(str(fields.get("dbname") or fields.get("database") or "postgres"), safe="")
    query = {"sslmode": fields["sslmode"]} if isinstance(fields.get("sslmode"), str) else {}
    url = f"postgresql://{user}:{password}@{host}:{port}/{database}"
    return f"{url}?{urlencode(query)}" if query else url
