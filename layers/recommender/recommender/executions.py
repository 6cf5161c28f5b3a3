"""Reading a Step Functions execution: its history, its DISTRIBUTED Map's progress, and the state
it failed in. The local engine, the CLI's progress lines and the first-deploy check read
executions the same way, on moto or on AWS."""

from __future__ import annotations

from typing import Any


def map_item_counts(sfn: Any, execution_arn: str) -> dict[str, int] | None:
    """Item counts of the execution's DISTRIBUTED Map run, once it has started."""
    runs = sfn.list_map_runs(executionArn=execution_arn).get("mapRuns", [])
    if not runs:
        return None
    counts: dict[str, int] = sfn.describe_map_run(mapRunArn=runs[0]["mapRunArn"])["itemCounts"]
    return counts


def history(sfn: Any, execution_arn: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for page in sfn.get_paginator("get_execution_history").paginate(executionArn=execution_arn):
        events.extend(page["events"])
    return events


def details(event: dict[str, Any]) -> dict[str, Any]:
    """The event's `...EventDetails` part (each event type names its own)."""
    found: dict[str, Any] = next((v for k, v in event.items() if k.endswith("EventDetails")), {})
    return found


def failed_state(events: list[dict[str, Any]]) -> tuple[str | None, str | None, str | None]:
    """(state, error, cause) of the first failure in the history, the one the run failed on."""
    entered: str | None = None
    for event in events:
        found = details(event)
        failed = event["type"].endswith(("Failed", "TimedOut"))
        if event["type"].endswith("StateEntered"):
            entered = found.get("name")
        elif failed and ("error" in found or "cause" in found):
            return entered, found.get("error"), found.get("cause")
    return entered, None, None
