"""A database on a Unix socket, reached over TCP from the sandbox, as a Lambda reaches its database.

The embedded PostgreSQL (and many local servers) listen on a Unix socket in a folder only its owner
may enter. A Lambda reaches its database over the network; so does a sandboxed invocation: the
engine forwards a loopback TCP port to the socket and gives the sandbox a URL naming that port.
PostgreSQL still sees a local-socket connection, so its authentication rules are unchanged.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from ..database import check_url
from ..errors import ConfigError

SOCKET_NAME = ".s.PGSQL.{port}"
BUFFER = 1 << 16


def socket_path(url: str) -> Path | None:
    """The Unix socket a PostgreSQL URL names (`?host=/folder`), or None. None too for a URL
    `database.check_url` refuses: reading one here would raise an error quoting a piece of it
    (urllib's port error does), and Extract refuses it anyway, with a message that quotes none."""
    try:
        check_url(url)
        parts = urlsplit(url)
        port = parts.port or 5432
    except (ConfigError, ValueError):
        return None
    hosts = parse_qs(parts.query).get("host", [])
    folder = next((h for h in hosts if h.startswith("/")), None)
    if folder is None:
        return None
    return Path(folder) / SOCKET_NAME.format(port=port)


def tcp_url(url: str, port: int) -> str:
    """The same URL (user, password, database, options) naming 127.0.0.1:port instead of the socket."""
    parts = urlsplit(url)
    query = {k: v for k, v in parse_qs(parts.query).items() if k != "host"}
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@127.0.0.1:{port}" if credentials else f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query, doseq=True)))


class SocketForwarder:
    """Accepts TCP connections on 127.0.0.1 and pipes each to the Unix socket, both ways."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._closing = threading.Event()

    def start(self) -> SocketForwarder:
        thread = threading.Thread(target=self._accept, name="db-forwarder", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # the listener was closed
            try:
                upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                upstream.connect(str(self.target))
            except OSError:
                client.close()
                continue
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(source, sink), daemon=True).start()

    def close(self) -> None:
        self._closing.set()
        with contextlib.suppress(OSError):
            self.listener.close()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(BUFFER):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                end.close()
