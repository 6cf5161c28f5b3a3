"""Running the real state machine without AWS (the demo, `recommender run` and the tests).

Nothing here ships to Lambda: the layers hold only what the steps import.

- `engine`: moto's Step Functions engine executing `statemachine/recommender.asl.json`, with every
  Lambda task run the way Lambda runs it (in the sandbox) or in this process;
- `template`: template.yaml's functions, evaluated as CloudFormation deploys them;
- `seams`: every patch of moto's internals (moto is pinned for them);
- `sandbox` and `bootstrap`: one invocation in a Lambda-shaped process;
- `layers`: the layers as `sam build` builds them, assembled into the sandbox's /opt;
- `iam`: each function's role enforced on its requests to the local S3 and Secrets Manager;
- `recording`: what the engine records of every invocation;
- `process`: the Lambda context and error shape the in-process mode uses;
- `postgres`: an embedded PostgreSQL server, started on demand.
"""

from .engine import (
    BUCKET_SUBSTITUTION,
    DEFINITION,
    EXTRACT_ON_LAMBDA,
    TRAIN_ON_LAMBDA,
    Fault,
    LocalEngine,
    LocalRunError,
    RunResult,
    ServiceLimits,
    _handlers,
    project_root,
    render_definition,
)
from .postgres import embedded_postgres
from .process import Handler
from .recording import Invocation, peak_counter_available
from .seams import PINNED_MOTO
from .template import ACCOUNT, REGION

__all__ = [
    "ACCOUNT",
    "BUCKET_SUBSTITUTION",
    "DEFINITION",
    "EXTRACT_ON_LAMBDA",
    "PINNED_MOTO",
    "REGION",
    "TRAIN_ON_LAMBDA",
    "Fault",
    "Handler",
    "Invocation",
    "LocalEngine",
    "LocalRunError",
    "RunResult",
    "ServiceLimits",
    "_handlers",
    "embedded_postgres",
    "peak_counter_available",
    "project_root",
    "render_definition",
]
