"""Train: fit the Surprise algorithm, write the model's arrays and the shard plan."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from recommender.aws import s3_client
from recommender.config import Settings
from recommender.contracts import TrainEvent, TrainResult
from recommender.observability import MetricUnit, handler, logger, metrics
from recommender.steps import train


@handler
def lambda_handler(event: TrainEvent, context: LambdaContext) -> TrainResult:
    result = train.run(s3_client(), Settings.from_env(), event["run_id"], event["config"])
    metrics.add_metric("UsersTrained", MetricUnit.Count, result["users"])
    metrics.add_metric("ItemsTrained", MetricUnit.Count, result["items"])
    metrics.add_metric("Shards", MetricUnit.Count, result["shards"])
    metrics.add_metric("TrainSeconds", MetricUnit.Seconds, result["seconds"])
    for name, value in result["quality"].items():  # NDCG@top_n of the model and of popularity
        if isinstance(value, int | float):
            metrics.add_metric(f"Quality_{name}", MetricUnit.Count, value)
    logger.info("trained", extra=result)
    return result
