"""Extract: validate the run's input, then stream the ratings from PostgreSQL into S3."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from recommender.aws import s3_client
from recommender.config import Settings
from recommender.contracts import ExtractEvent, ExtractResult
from recommender.observability import MetricUnit, handler, logger, metrics
from recommender.steps import extract


@handler
def lambda_handler(event: ExtractEvent, context: LambdaContext) -> ExtractResult:
    settings = Settings.from_env()
    # A bad input fails before connecting.
    config = extract.validate_input(event.get("input"), settings.predict_concurrency)
    result = extract.run(extract.connector(settings), s3_client(), settings, event["execution_name"], config)
    metrics.add_metric("RowsExtracted", MetricUnit.Count, result["extract"]["rows"])
    metrics.add_metric("ExtractSeconds", MetricUnit.Seconds, result["extract"]["seconds"])
    logger.info("extracted", extra=result["extract"])
    return result
