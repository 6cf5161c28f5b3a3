"""Predict: the top-N unseen items for every user of one shard (one DISTRIBUTED Map item), and
the similar items of its item shard when the plan gives it one."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from recommender.aws import s3_client
from recommender.config import Settings
from recommender.contracts import PredictEvent, PredictResult
from recommender.observability import MetricUnit, handler, logger, metrics
from recommender.steps import predict


@handler
def lambda_handler(event: PredictEvent, context: LambdaContext) -> PredictResult:
    shard = event["shard"]
    logger.append_keys(shard=shard["index"])
    result = predict.run(
        s3_client(),
        Settings.from_env(),
        event["run_id"],
        shard,
        event["top_n"],
        remaining_ms=context.get_remaining_time_in_millis,
    )
    metrics.add_metric("UsersScored", MetricUnit.Count, result["users"])
    metrics.add_metric("SecondsPerShard", MetricUnit.Seconds, result["seconds"])
    if "similar_items" in result:  # this shard also listed an item shard's similar items
        metrics.add_metric("ItemsListedSimilar", MetricUnit.Count, result["similar_items"])
    logger.info("shard written", extra=result)
    return result
