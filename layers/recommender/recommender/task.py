"""The Train and Extract steps as a container's command: `python -m recommender.task [train|extract]`.

The first argument names the step: `train` (the default, so the command without one trains, as it
always did) or `extract`. Anything else exits 2.

TRAIN

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

EXTRACT

With the template's ExtractCompute=fargate, the state machine runs the same image with the command
`extract` (the task definition's Command), in the Extract function's subnets and security group,
before invoking the Extract function. It runs the very same steps as the function:
`steps.extract.validate_input` on the run's input, the database URL from
`recommender.secrets.database_url` (DATABASE_URL when set, else the secret DATABASE_SECRET_ARN names,
read now), then `steps.extract.run`. Its settings:

- RECOMMENDER_BUCKET, RECOMMENDER_PREFIX, DATABASE_SECRET_ARN and POWERTOOLS_*: the task
  definition's environment, the same values as the Extract function's;
- RUN_ID: the execution's name (`$$.Execution.Name`), what the function receives as
  `execution_name`; the input's own `run_id`, when it has one, wins over it in both;
- RUN_INPUT: the execution's input as JSON (`States.JsonToString` of it), what the function receives
  as `input`.

The snapshot's metadata is written last, once the snapshot is complete; the Extract function then
finds it and returns it without reading the database again. Exit codes as for train: 2 when RUN_ID,
RUN_INPUT (validate_input rejects it) or the settings are wrong, 1 when the extract failed (the
database unreachable, too many invalid rows, an S3 error).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from . import strict_json
from .aws import s3_client
from .config import Settings, check_run_id
from .errors import ConfigError, NonFiniteNumberError, TaskInputError
from .observability import logger
from .steps import extract, train

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

EXIT_OK = 0
EXIT_FAILED = 1  # training (or the extract) failed
EXIT_BAD_INPUT = 2  # RUN_ID, RUN_CONFIG, RUN_INPUT, the command or the settings are wrong


def read_run_id(env: Mapping[str, str], what: str) -> str:
    run_id = env.get("RUN_ID", "")
    if not run_id:
        raise TaskInputError(f"RUN_ID is not set: {what}")
    try:
        check_run_id(run_id)
    except ConfigError as error:
        raise TaskInputError(f"RUN_ID: {error}") from None
    return run_id


def _json_variable(env: Mapping[str, str], name: str, what: str) -> Any:
    text = env.get(name, "")
    if not text:
        raise TaskInputError(f"{name} is not set: {what}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise TaskInputError(f"{name} is not JSON: {error}") from None


def read_input(env: Mapping[str, str]) -> tuple[str, Any]:
    """RUN_ID and the parsed RUN_CONFIG (validated by steps.train.run, as in the function)."""
    run_id = read_run_id(env, "the run's id ($.run_id of the state machine)")
    config = _json_variable(env, "RUN_CONFIG", "the run's configuration as JSON ($.config)")
    if not isinstance(config, dict):
        raise TaskInputError(f"RUN_CONFIG must be a JSON object, got {type(config).__name__}")
    return run_id, config


def read_extract_input(env: Mapping[str, str]) -> tuple[str, Any]:
    """RUN_ID (the execution's name) and the parsed RUN_INPUT (the execution's input, any JSON)."""
    execution_name = read_run_id(env, "the execution's name ($$.Execution.Name)")
    return execution_name, _json_variable(env, "RUN_INPUT", "the execution's input as JSON")


@dataclass(frozen=True)
class Step:
    """One step, read from the environment and ready to run: `run` takes the S3 client and returns
    the step's result. What the run is called (`run_id`) and what is logged differ by step."""

    run_id: str
    run: Callable[[Any], Mapping[str, Any]]
    done: str  # the message logging the result
    failed: str  # the message logging a failure
    logged: Callable[[Any], Mapping[str, Any]]  # what of the result is logged with `done`


def train_step(env: Mapping[str, str]) -> Step:
    """Train as the Train function does: steps.train.run with the run's id and configuration."""
    run_id, config = read_input(env)
    settings = Settings.from_env(dict(env))
    return Step(
        run_id,
        lambda s3: train.run(s3, settings, run_id, config),
        "trained",
        "training failed",
        lambda result: result,
    )


def extract_step(env: Mapping[str, str]) -> Step:
    """Extract as the Extract function does: the input checked before connecting, then
    steps.extract.run connecting the function's way (steps.extract.connector)."""
    execution_name, raw_input = read_extract_input(env)
    settings = Settings.from_env(dict(env))
    config = extract.validate_input(raw_input, settings.predict_concurrency)
    return Step(
        config.run_id or execution_name,
        lambda s3: extract.run(extract.connector(settings), s3, settings, execution_name, config),
        "extracted",
        "the extract failed",
        lambda result: result["extract"],
    )


COMMANDS: dict[str, Callable[[Mapping[str, str]], Step]] = {"train": train_step, "extract": extract_step}


def main(
    env: Mapping[str, str] | None = None,
    s3: S3Client | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    argv: Sequence[str] = (),
) -> int:
    """Run the step `argv` names (train when empty) from the environment; returns the exit code."""
    env = os.environ if env is None else env
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    command = argv[0] if argv else "train"
    if len(argv) > 1 or command not in COMMANDS:
        print(f"recommender.task: usage: python -m recommender.task [{'|'.join(COMMANDS)}]", file=stderr)
        return EXIT_BAD_INPUT
    try:
        step = COMMANDS[command](env)
    except (TaskInputError, ConfigError) as error:
        logger.error("the task's input is wrong", extra={"error": str(error)})
        print(f"recommender.task: {error}", file=stderr)
        return EXIT_BAD_INPUT
    logger.append_keys(run_id=step.run_id)
    try:
        result = step.run(s3 if s3 is not None else s3_client())
    except Exception as error:
        logger.exception(step.failed)
        print(f"recommender.task: run {step.run_id} failed: {type(error).__name__}: {error}", file=stderr)
        # A configuration the step rejects (RunConfig.from_input) is wrong input, not a failure.
        return EXIT_BAD_INPUT if isinstance(error, ConfigError) else EXIT_FAILED
    finally:
        logger.remove_keys(["run_id"])
    return _report(result, step.run_id, step.done, step.logged(result), stdout, stderr)


def _report(
    result: Mapping[str, Any], run_id: str, done: str, logged: Any, stdout: TextIO, stderr: TextIO
) -> int:
    """Print the step's result as one line of strict JSON (the task's output), or fail the task
    when a number in it is not finite; returns the exit code."""
    try:
        line = strict_json.dumps(result, what="the task's output", sort_keys=True)
    except NonFiniteNumberError as error:
        logger.error("the task's output is not strict JSON", extra={"error": str(error)})
        print(f"recommender.task: run {run_id} failed: {type(error).__name__}: {error}", file=stderr)
        return EXIT_FAILED
    logger.info(done, extra=logged)
    print(line, file=stdout, flush=True)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main(argv=sys.argv[1:]))
