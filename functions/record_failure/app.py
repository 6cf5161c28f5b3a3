"""Record the failure: write the error next to the failed run's objects; `latest` is untouched."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from recommender.aws import s3_client
from recommender.config import Settings
from recommender.contracts import RecordFailureEvent, RecordFailureResult
from recommender.observability import MetricUnit, handler, logger, metrics
from recommender.steps import merge


@handler
def lambda_handler(event: RecordFailureEvent, context: LambdaContext) -> RecordFailureResult:
    state = event.get("state") or {}
    result = merge.record_failure(s3_client(), Settings.from_env(), event["execution_name"], state)
    metrics.add_metric("FailedRuns", MetricUnit.Count, 1)
    error = (state.get("error") or {}).get("Error")
    logger.error("run failed", extra={"run_id": result["run_id"], "error": error})
    return result
