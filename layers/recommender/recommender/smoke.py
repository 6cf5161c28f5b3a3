"""The first-deploy check: run the deployed state machine once and read what it published.

`recommender smoke --stack NAME` is what a user runs after `sam deploy`. It reads the stack's
outputs, starts an execution with a small input, prints the states as they pass, and then either
prints why the run failed (the failed state's error and cause, and the run's failure.json) or
opens latest.json with the client, as an app server would, and shows a known user's list and the
fallback. It uses the caller's AWS credentials and region (boto3's usual chain): what only a real
account can show, it shows (docs/deploy.md, "What only a real account can verify").
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from . import strict_json
from .aws import error_code
from .client import Recommendations
from .config import RunConfig
from .errors import ConfigError, RecommendationsError
from .executions import details, failed_state, history, map_item_counts
from .steps.merge import failed_run_id
from .storage import RunPaths

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# Small on purpose: no quality evaluation (it roughly halves Train's time) and short lists; the
# rest is the deployment's defaults, so the check exercises what a scheduled run does.
SMOKE_INPUT: dict[str, Any] = {"evaluate": False, "top_n": 5}
POLL_SECONDS = 2.0


@dataclass(frozen=True)
class Stack:
    """What the check needs from the stack's outputs."""

    name: str
    state_machine_arn: str
    bucket: str
    prefix: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


def read_stack(cloudformation: Any, name: str) -> Stack:
    """The stack's StateMachineArn, BucketName and LatestUri outputs (template.yaml's Outputs)."""
    try:
        stacks = cloudformation.describe_stacks(StackName=name)["Stacks"]
    except cloudformation.exceptions.ClientError as error:
        raise ConfigError(
            f"stack {name!r}: {error.response.get('Error', {}).get('Message', error)}"
        ) from None
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    missing = sorted({"StateMachineArn", "BucketName", "LatestUri"} - set(outputs))
    if missing:
        raise ConfigError(
            f"stack {name!r} has no output(s) {', '.join(missing)}: is it this application's stack,"
            f" and is its deployment complete (status {stacks[0].get('StackStatus')})?"
        )
    latest = outputs["LatestUri"].removeprefix(f"s3://{outputs['BucketName']}/")
    return Stack(
        name, outputs["StateMachineArn"], outputs["BucketName"], latest.removesuffix("latest.json").strip("/")
    )


def smoke(
    cloudformation: Any,
    sfn: Any,
    s3: S3Client,
    stack_name: str,
    run_input: dict[str, Any] | None = None,
    out: TextIO | None = None,
    poll_seconds: float = POLL_SECONDS,
    timeout_seconds: float = 3600.0,
    on_event: Callable[[dict[str, Any]], None] | None = None,
) -> int:
    """Run the check; returns 0 when the run published and the client reads it, else 1."""
    say: Callable[[str], None] = (lambda text: print(text, file=out, flush=True)) if out else print
    run_input = dict(SMOKE_INPUT if run_input is None else run_input)
    RunConfig.from_input(run_input)  # a bad input fails here, not in the deployed Extract
    stack = read_stack(cloudformation, stack_name)
    say(f"stack {stack.name}: {stack.state_machine_arn}, output {stack.uri}")
    name = time.strftime("smoke-%Y%m%dT%H%M%SZ-", time.gmtime()) + uuid.uuid4().hex[:6]
    execution_arn = sfn.start_execution(
        stateMachineArn=stack.state_machine_arn, name=name, input=strict_json.dumps(run_input)
    )["executionArn"]
    say(f"started {name} with {strict_json.dumps(run_input)}")
    started, seen, last_counts, in_map = time.monotonic(), 0, None, False
    while True:
        description = sfn.describe_execution(executionArn=execution_arn)
        events = history(sfn, execution_arn)
        for event in events[seen:]:
            if on_event is not None:
                on_event(event)
            if event["type"].endswith("StateEntered"):
                say(f"  [{time.monotonic() - started:6.1f}s] {details(event).get('name')} ...")
            if event["type"] == "MapRunStarted":
                in_map = True
            elif event["type"] in ("MapStateExited", "MapStateFailed", "MapStateAborted"):
                in_map = False
        seen = len(events)
        counts = map_item_counts(sfn, execution_arn) if in_map else None  # a Map run exists by now
        if counts and (counts["succeeded"], counts["failed"]) != last_counts:
            last_counts = (counts["succeeded"], counts["failed"])
            say(f"  shards: {counts['succeeded']}/{counts['total']} done, {counts['failed']} failed")
        if description["status"] != "RUNNING":
            break
        if time.monotonic() - started > timeout_seconds:
            say(f"still running after {timeout_seconds:.0f} s: follow it in the Step Functions console")
            return 1
        time.sleep(poll_seconds)
    if description["status"] != "SUCCEEDED":
        return _report_failure(s3, stack, name, run_input, description, events, say)
    return _read_published(s3, stack, say)


def _report_failure(
    s3: S3Client,
    stack: Stack,
    name: str,
    run_input: dict[str, Any],
    description: dict[str, Any],
    events: list[dict[str, Any]],
    say: Callable[[str], None],
) -> int:
    state, error, cause = failed_state(events)
    say(f"\nFAILED: the run {name} ended {description['status']}")
    say(f"  failed state: {state}")
    say(f"  error: {error or description.get('error')}")
    say(f"  cause: {(cause or description.get('cause') or '')[:2000]}")
    run_id = failed_run_id({"input": run_input}, name)
    key = RunPaths(stack.prefix, run_id).failure
    try:
        failure = s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read().decode()
        say(f"  s3://{stack.bucket}/{key}:\n{failure}")
    except s3.exceptions.ClientError as problem:
        code = error_code(problem)
        say(f"  s3://{stack.bucket}/{key} could not be read ({code}): the failure was not recorded")
    say("latest.json was not moved: an app server keeps reading the previous run, if any.")
    return 1


def _read_published(s3: S3Client, stack: Stack, say: Callable[[str], None]) -> int:
    try:
        recs = Recommendations.open(stack.uri, s3=s3)
        manifest = recs.manifest
        say(
            f"\npublished run {manifest['run_id']}: {manifest['users']:,} users in"
            f" {len(manifest['shards'])} shard(s), {manifest['model']['algorithm']}"
        )
        user = manifest["shards"][0]["first_user"]
        known = recs.for_user(user, n=5)
        say(f"  user {user}: {', '.join(known.items)}")
        new = recs.for_user("smoke-check-unknown-user", n=5)
        say(f"  a new user (fallback): {', '.join(new.items)}")
    except (RecommendationsError, KeyError, IndexError) as problem:
        say(f"\nthe run succeeded but its output cannot be read through the client: {problem}")
        return 1
    say(f"OK: {stack.uri}/latest.json -> {manifest['run_id']}")
    return 0
