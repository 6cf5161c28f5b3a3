"""Batch collaborative filtering on AWS Step Functions: PostgreSQL ratings in, per-user top-N in S3.

The pipeline, one module per concern:
    config       the run's input and the deployment's settings
    dataset      PostgreSQL -> snapshot in S3 (COPY), snapshot -> arrays
    training     Surprise trainset and fit
    model        the fitted model as plain arrays (no pickle)
    scoring      top-N unseen items for blocks of users
    sharding     the shard plan and the shard objects
    manifest     the run manifest and the latest pointer
    steps/       extract, train, predict, merge: what each Lambda does
    client       reading published recommendations (app servers)
    local        the real state machine on moto, for trying and testing without AWS
    sample_data  synthetic ratings and MovieLens loading
    cli          the `recommender` command
"""

__version__ = "0.1.0"
