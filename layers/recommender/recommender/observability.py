"""Powertools for every handler, set up in one place.

`logger`, `tracer` and `metrics` are configured by the POWERTOOLS_* environment of each function
(service name, metrics namespace, log level). `handler` wraps a Lambda handler the same way for
every step: the Lambda context in every log line, an X-Ray segment without capturing the response
(step outputs can be large), the metrics flushed once per invocation, and an output that is
strict JSON: Step Functions carries it into the next states and Merge into the manifest, and the
Lambda runtime would write a NaN in it as the bare word NaN, which is not JSON.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from .strict_json import dumps

__all__ = ["MetricUnit", "handler", "logger", "metrics", "tracer"]

logger = Logger()
tracer = Tracer()
metrics = Metrics()

# A handler's event and result: the step's contracts (`recommender.contracts`), plain dicts at run time.
Event = TypeVar("Event", bound=Mapping[str, Any])
Result = TypeVar("Result", bound=Mapping[str, Any])


def strict_output(function: Callable[[Event, Any], Result]) -> Callable[[Event, Any], Result]:
    """The handler's output, refused (NonFiniteNumberError) when it holds NaN or Infinity."""

    def checked(event: Event, context: Any) -> Result:
        result = function(event, context)
        dumps(result, what="the step's output")
        return result

    return checked


def handler(function: Callable[[Event, Any], Result]) -> Callable[[Event, Any], Result]:
    wrapped: Callable[[Event, Any], Result] = logger.inject_lambda_context(
        tracer.capture_lambda_handler(capture_response=False)(metrics.log_metrics(strict_output(function)))
    )
    return wrapped
