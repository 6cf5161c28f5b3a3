"""The four steps of a run, one module each, in pipeline order: extract, train, predict, merge.

Each takes its clients and connections as arguments and returns the small dict its handler
returns to Step Functions (S3 keys and figures, never data).
"""
