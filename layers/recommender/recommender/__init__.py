"""Batch collaborative filtering on AWS Step Functions: PostgreSQL ratings in, per-user top-N in S3.

The pipeline, one module per concern:
    config       the run's input and the deployment's settings
    contracts    what the steps hand each other and record: the fields the ASL reads, typed
    ratings      ratings as arrays, the snapshot's columns
    dataset      PostgreSQL -> snapshot in S3 (COPY); snapshot reads it back into arrays
    training     Surprise trainset and fit
    evaluation   Train's hold-out measurement of a run
    model        the fitted model as plain arrays (no pickle)
    scoring      top-N unseen items for blocks of users
    sharding     the shard plan and the shard objects, and the one check of a shard object
    manifest     the run manifest and the latest pointer; versions, the libraries' it records
    steps/       extract, train, predict, merge: what each Lambda does
    client       reading published recommendations (app servers)
    validation   the JSON Schema check the client applies, with the standard library only
    local        the real state machine on moto, for trying and testing without AWS
    sample_data  synthetic ratings and MovieLens loading
    report       the `recommender evaluate` report (Surprise's cross-validation and the hold-out)
    cli          the `recommender` command

The Lambda layer and the train image ship only what the steps import (../build_closure.py): not
client, local, sample_data, report nor cli.
"""

__version__ = "0.1.0"
