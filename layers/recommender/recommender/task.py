"""The Train step as a container's command: `python -m recommender.task`.

With the template's TrainCompute=fargate, the state machine runs the train image
(containers/train/Dockerfile) as an ECS task on Fargate instead of invoking the Train function,
for data that outgrows a Lambda (15 minutes, 10,240 MB). The task runs the very same
`steps.train.run` as the function, with the same settings:

- RECOMMENDER_BUCKET, RECOMMENDER_PREFIX and POWERTOOLS_*: the task definition's environment,
  the same values as the Train function's;
- RUN_ID: the run's id (the state machine's `$.run_id`);
- RUN_CONFIG: the run's resolved configuration as JSON (`States.JsonToString($.config)`).

On success it logs the result (Powertools JSON, like the function) and prints it as one JSON line,
the last line of its output, then exits 0. Then the state machine invokes the Train function,
which finds the model and shard plan this task wrote and returns them without fitting again.

On failure it exits non-zero, and the execution's history shows the task's exit code and stop
reason: 2 when RUN_ID, RUN_CONFIG or the settings are wrong, 1 when training failed (a missing
snapshot, bad data, an S3 error). The error is logged with its traceback and
summarised on stderr. Step Functions does not retry a task that exited non-zero.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from typing import Any, TextIO

from .aws import s3_client
from .config import ConfigError, Settings, check_run_id
from .observability import logger
from .steps import train

EXIT_OK = 0
EXIT_FAILED = 1  # training failed
EXIT_BAD_INPUT = 2  # RUN_ID, RUN_CONFIG or the settings are wrong


class TaskInputError(ValueError):
    """The task's environment does not describe a run."""


def read_input(env: Mapping[str, str]) -> tuple[str, Any]:
    """RUN_ID and the parsed RUN_CONFIG (validated by steps.train.run, as in the function)."""
    run_id = env.get("RUN_ID", "")
    if not run_id:
        raise TaskInputError("RUN_ID is not set: the run's id ($.run_id of the state machine)")
    try:
        check_run_id(run_id)
    except ConfigError as error:
        raise TaskInputError(f"RUN_ID: {error}") from None
    text = env.get("RUN_CONFIG", "")
    if not text:
        raise TaskInputError("RUN_CONFIG is not set: the run's configuration as JSON ($.config)")
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise TaskInputError(f"RUN_CONFIG is not JSON: {error}") from None
    if not isinstance(config, dict):
        raise TaskInputError(f"RUN_CONFIG must be a JSON object, got {type(config).__name__}")
    return run_id, config


def main(
    env: Mapping[str, str] | None = None,
    s3: Any = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Train one run from the environment; returns the process's exit code."""
    env = os.environ if env is None else env
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    try:
        run_id, config = read_input(env)
        settings = Settings.from_env(dict(env))
    except (TaskInputError, ConfigError) as error:
        logger.error("the task's input is wrong", extra={"error": str(error)})
        print(f"recommender.task: {error}", file=stderr)
        return EXIT_BAD_INPUT
    logger.append_keys(run_id=run_id)
    try:
        result = train.run(s3 if s3 is not None else s3_client(), settings, run_id, config)
    except Exception as error:
        logger.exception("training failed")
        print(f"recommender.task: run {run_id} failed: {type(error).__name__}: {error}", file=stderr)
        # A configuration the step rejects (RunConfig.from_input) is wrong input, not a failure.
        return EXIT_BAD_INPUT if isinstance(error, ConfigError) else EXIT_FAILED
    finally:
        logger.remove_keys(["run_id"])
    logger.info("trained", extra=result)
    print(json.dumps(result, sort_keys=True), file=stdout, flush=True)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
