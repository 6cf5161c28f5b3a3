"""Merge: verify every shard, write the fallback and the manifest, then move `latest.json`."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from recommender.aws import s3_client
from recommender.config import Settings
from recommender.contracts import MergeEvent, MergeResult
from recommender.observability import MetricUnit, handler, logger, metrics
from recommender.steps import merge


@handler
def lambda_handler(event: MergeEvent, context: LambdaContext) -> MergeResult:
    result = merge.run(
        s3_client(),
        Settings.from_env(),
        event["run_id"],
        event["config"],
        event["extract"],
        event["train"],
    )
    metrics.add_metric("UsersPublished", MetricUnit.Count, result["users"])
    metrics.add_metric("ShardsPublished", MetricUnit.Count, result["shards"])
    logger.info("published", extra=result)
    return result
