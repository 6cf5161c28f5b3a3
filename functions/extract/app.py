"""Extract: validate the run's input, then stream the ratings from PostgreSQL into S3."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from recommender.aws import s3_client
from recommender.config import Settings
from recommender.database import connect
from recommender.observability import MetricUnit, handler, logger, metrics
from recommender.secrets import database_url
from recommender.steps import extract


@handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = Settings.from_env()
    # A bad input fails before connecting.
    config = extract.validate_input(event.get("input"), settings.predict_concurrency)

    def connect_to_database() -> Any:  # not called when a resumed run reuses its snapshot
        # DATABASE_URL when set (the local engine), else the secret, read now so that a rotated
        # password is picked up; the URL is never logged.
        return connect(database_url(settings), "recommender-extract")

    result = extract.run(connect_to_database, s3_client(), settings, event["execution_name"], config)
    metrics.add_metric("RowsExtracted", MetricUnit.Count, result["extract"]["rows"])
    metrics.add_metric("ExtractSeconds", MetricUnit.Seconds, result["extract"]["seconds"])
    logger.info("extracted", extra=result["extract"])
    return result
