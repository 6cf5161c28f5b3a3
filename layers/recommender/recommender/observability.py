"""Powertools for every handler, set up in one place.

`logger`, `tracer` and `metrics` are configured by the POWERTOOLS_* environment of each function
(service name, metrics namespace, log level). `handler` wraps a Lambda handler the same way for
every step: the Lambda context in every log line, an X-Ray segment without capturing the response
(step outputs can be large), and the metrics flushed once per invocation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

__all__ = ["MetricUnit", "handler", "logger", "metrics", "tracer"]

logger = Logger()
tracer = Tracer()
metrics = Metrics()

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def handler(function: Handler) -> Handler:
    wrapped: Handler = logger.inject_lambda_context(
        tracer.capture_lambda_handler(capture_response=False)(metrics.log_metrics(function))
    )
    return wrapped
