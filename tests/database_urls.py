"""Database URLs malformed in every way a user gets one wrong, each holding a password, and the
strings none of what the product prints, logs or writes may contain."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

PLAIN = "Qu4rtzPlain7"  # a password without reserved characters
RAW = "Zq9@Xk7:Wv3/Jm5"  # as a user types it into a URL, unencoded: @, : and /
SLASHED = "Pw7/Sx9"  # only a /: libpq would read Pw7 as the port
AT = "Hy5@Tb8"  # only an @: libpq would read Tb8@127.0.0.1 as the host
ENCODED = quote(RAW, safe="")
# The password as a whole, percent-encoded, and each piece a parser could cut a raw one into.
SECRETS = (PLAIN, RAW, ENCODED, SLASHED, AT, "Zq9", "Xk7", "Wv3", "Jm5", "Pw7", "Sx9", "Hy5", "Tb8", "Qu4rtz")

MALFORMED = {
    "bad percent escape": f"postgresql://app:{PLAIN}%zz@127.0.0.1:5432/db",
    "bad percent escape in the user": f"postgresql://a%zzpp:{PLAIN}@127.0.0.1:5432/db",
    "bad port": f"postgresql://app:{PLAIN}@127.0.0.1:notaport/db",
    "port out of range": f"postgresql://app:{PLAIN}@127.0.0.1:99999/db",
    "unknown option": f"postgresql://app:{PLAIN}@127.0.0.1:5432/db?nosuchoption=1",
    "password with @ : /": f"postgresql://app:{RAW}@127.0.0.1:5432/db",
    "password with /": f"postgresql://app:{SLASHED}@127.0.0.1:5432/db",
    "password with @": f"postgresql://app:{AT}@127.0.0.1:5432/db",
    "password in the query, bad escape": f"postgresql://app@127.0.0.1:5432/db?password={PLAIN}%zz",
    "keyword form, unknown option": f"host=127.0.0.1 port=1 user=app password={PLAIN} nosuchoption=1",
    "keyword form, bad port": f"host=127.0.0.1 port=x{PLAIN} user=app password={PLAIN}",
}
UNREACHABLE = {
    "unreachable host": f"postgresql://app:{PLAIN}@127.0.0.1:1/db",
    "encoded @ : / password, unreachable": f"postgresql://app:{ENCODED}@127.0.0.1:1/db",
    "keyword form, unreachable": f"host=127.0.0.1 port=1 user=app password={PLAIN} dbname=db",
}


def leaks(*texts: str) -> list[str]:
    """The secrets found in any of the texts."""
    return [secret for secret in SECRETS if any(secret in text for text in texts)]


def leaks_in_files(root: Path) -> dict[str, list[str]]:
    """Every file under `root` that holds a secret, read as bytes (UTF-8 where it decodes)."""
    found = {}
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            text = path.read_bytes().decode("utf-8", "replace")
            if leaks(text):
                found[str(path)] = leaks(text)
    return found
