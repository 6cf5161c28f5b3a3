"""An embedded PostgreSQL for the demo and the tests: a real server from the `pgserver` wheel."""

from __future__ import annotations

import contextlib
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def embedded_postgres(data_dir: Path | None = None) -> Iterator[str]:
    """A real PostgreSQL server from the `pgserver` wheel, started on demand; yields its URL.

    With no `data_dir` the cluster lives in a temporary folder removed afterwards.
    """
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")  # pgserver's platformdirs, as root
    import pgserver

    with contextlib.ExitStack() as stack:
        if data_dir is None:
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="recommender-pg-")))
        server = pgserver.get_server(data_dir, cleanup_mode="stop")  # type: ignore[attr-defined]
        stack.callback(server.cleanup)
        yield str(server.get_uri())
