"""Running the real state machine without AWS (the demo, `recommender run` and the tests).

Nothing here ships to Lambda: the layers hold only what the steps import.

- `engine`: moto's Step Functions engine executing `statemachine/recommender.asl.json`, with every
  Lambda task dispatched to its handler in `functions/<step>/app.py`;
- `process`: one invocation in a fresh Python process (the engine's `isolate` mode);
- `sandbox`: one invocation the way Lambda runs it (read-only file system, memory cap, /tmp cap,
  unprivileged user, Lambda's environment and sys.path, timeout, payload limits), with
  `bootstrap`, its inside half, standard library only; `sandbox.support()` says what this
  machine enforces;
- `postgres`: an embedded PostgreSQL server, started on demand.
"""

from .engine import (
    BUCKET_SUBSTITUTION,
    DEFINITION,
    EXTRACT_ON_LAMBDA,
    FUNCTIONS,
    PINNED_MOTO,
    TRAIN_ON_LAMBDA,
    Invocation,
    LocalEngine,
    LocalRunError,
    RunResult,
    _handlers,
    peak_counter_available,
    project_root,
    render_definition,
)
from .postgres import embedded_postgres
from .process import REGION, Handler

__all__ = [
    "BUCKET_SUBSTITUTION",
    "DEFINITION",
    "EXTRACT_ON_LAMBDA",
    "FUNCTIONS",
    "PINNED_MOTO",
    "REGION",
    "TRAIN_ON_LAMBDA",
    "Handler",
    "Invocation",
    "LocalEngine",
    "LocalRunError",
    "RunResult",
    "_handlers",
    "embedded_postgres",
    "peak_counter_available",
    "project_root",
    "render_definition",
]
