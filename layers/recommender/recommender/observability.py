"""Powertools for every handler, set up in one place.

`logger`, `tracer` and `metrics` are configured by the POWERTOOLS_* environment of each function
(service name, metrics namespace, log level). `handler` wraps a Lambda handler the same way for
every step: the Lambda context in every log line, an X-Ray segment without capturing the response
(step outputs can be large), the metrics flushed once per invocation, and an output that is
strict JSON: Step Functions carries it into the next states and Merge into the manifest, and the
Lambda runtime would write a NaN in it as the bare word NaN, which is not JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from .strict_json import dumps

__all__ = ["MetricUnit", "handler", "logger", "metrics", "tracer"]

logger = Logger()
tracer = Tracer()
metrics = Metrics()

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def strict_output(function: Handler) -> Handler:
    """The handler's output, refused (NonFiniteNumberError) when it holds NaN or Infinity."""

    def checked(event: dict[str, Any], context: Any) -> dict[str, Any]:
        result = function(event, context)
        dumps(result, what="the step's output")
        return result

    return checked


def handler(function: Handler) -> Handler:
    wrapped: Handler = logger.inject_lambda_context(
        tracer.capture_lambda_handler(capture_response=False)(metrics.log_metrics(strict_output(function)))
    )
    return wrapped
