"""Record the failure: write the error next to the failed run's objects; `latest` is untouched."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from recommender.aws import s3_client
from recommender.config import Settings
from recommender.contracts import RecordFailureEvent, RecordFailureResult, RunState
from recommender.observability import MetricUnit, handler, logger, metrics
from recommender.steps import merge


@handler
def lambda_handler(event: RecordFailureEvent, context: LambdaContext) -> RecordFailureResult:
    state: RunState = event.get("state") or RunState()
    result = merge.record_failure(s3_client(), Settings.from_env(), event["execution_name"], state)
    metrics.add_metric("FailedRuns", MetricUnit.Count, 1)
    failure = state.get("error")
    error = failure.get("Error") if failure else None
    logger.error("run failed", extra={"run_id": result["run_id"], "error": error})
    return result
