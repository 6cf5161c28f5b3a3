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
    # Whether the run's lists rank below the popularity fallback (BelowPopularityAlarm watches it),
    # held or not; a run that was not measured sends neither, and the alarm reads that as fine.
    if result["below_popularity"] is not None:
        metrics.add_metric("BelowPopularity", MetricUnit.Count, int(result["below_popularity"]))
    if result["popularity_ratio"] is not None:
        metrics.add_metric("NdcgToPopularity", MetricUnit.NoUnit, result["popularity_ratio"])
    logger.info("published", extra=result)
    return result
