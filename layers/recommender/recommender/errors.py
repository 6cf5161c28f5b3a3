"""Every error the product raises on purpose, under one base class.

`RecommenderError` is the base: `except RecommenderError` catches what the product itself refuses
or detects (a wrong input, unusable data, a damaged object) and nothing else, so a bug (a plain
`KeyError`, `TypeError`, ...) still surfaces with its traceback. Each class also keeps the builtin
parent its callers have always caught (`ValueError` for what is wrong with an input or an object,
`RuntimeError` for a state of the world), so `except ValueError` around a call still works.

`WorkflowError` marks the workflow's interface. A Lambda function's error reaches Step Functions
as the exception's class name alone (`errorType`), and the state machine
(statemachine/recommender.asl.json) names some of those in a Retry's or Catch's `ErrorEquals`.
Renaming one of them silently changes what the workflow retries, so they are subclasses of
`WorkflowError`, and tests/unit/test_errors.py checks that every name the ASL gives is one of
them, and every one of them is named there.

The local engine's errors (`recommender.local`: the template, the layers, the sandbox) are not
here: they report the emulation of AWS on this machine, not the product, and
`local/bootstrap.py` plays Lambda's runtime with the standard library only, outside the package.

This module imports nothing: the client (app servers) and every step import it.
"""

from __future__ import annotations


class RecommenderError(Exception):
    """Base of every error the product raises on purpose; the message is meant for a person."""


class WorkflowError(RecommenderError):
    """An error the state machine names in `ErrorEquals`: its class name is part of the workflow."""


# --- the workflow's interface (named in statemachine/recommender.asl.json) ------------------------


class DatabaseUnavailableError(WorkflowError, RuntimeError):
    """The server could not be reached or dropped the connection: worth retrying (the ASL does)."""


class NonFiniteScoreError(WorkflowError, ValueError):
    """An unseen item's score is NaN or infinite: it cannot be ranked, and a list that leaves it
    out would be published as if complete. The shard (or the fallback) is not written. Not
    retried: the same model scores the same again."""


class ShardTimeoutError(WorkflowError, RuntimeError):
    """Too little Lambda time is left to finish the shard; nothing was written. Not retried."""


class PublishConflictError(WorkflowError, RuntimeError):
    """latest.json changed under every attempt to publish: retried by the state machine."""


# --- input and configuration -------------------------------------------------------------------


class ConfigError(RecommenderError, ValueError):
    """The execution input or the deployment settings are wrong; the message names the field."""


class PublishedRunError(ConfigError):
    """The run is published already (its manifest exists): its objects are never changed, so a
    rerun under its run id is refused; a new run (a new execution, no run_id) is the way.
    Record the failure recognises it by its name (`steps.merge.record_failure`)."""


class SecretError(ConfigError):
    """The secret could not be read or does not describe a database; the message is safe to log."""


class TaskInputError(RecommenderError, ValueError):
    """The Fargate task's environment does not describe a run."""


# --- data and models ---------------------------------------------------------------------------


class DatasetError(RecommenderError, ValueError):
    """The ratings cannot be used as they are; the message names the row or the column."""


class SimilarityError(RecommenderError, ValueError):
    """A k-NN similarity divides 0 by 0 on this data (Surprise fails with a bare "float
    division"); the message names the similarity and one that is defined here."""


class NonFiniteModelError(RecommenderError, ValueError):
    """The fitted model holds NaN or Infinity: no list could be ranked with it, so the run fails
    before anything is written (and `latest.json` stays where it was)."""


class TooManyItemsError(RecommenderError, ValueError):
    """The catalogue is larger than EASE's `max_items`: its dense matrices would not fit."""


class ModelFormatError(RecommenderError, ValueError):
    """`model.npz` was written in another format version than this code reads."""


class ModelIntegrityError(RecommenderError, ValueError):
    """A model object is not the one Train wrote: its size or SHA-256 differs from the record."""


class NoKernelError(RecommenderError):
    """No vectorised kernel serves this algorithm or model kind (see `kernels`)."""


class FoldInUnsupportedError(RecommenderError, ValueError):
    """The model's algorithm (or its configuration) cannot be folded in."""


# --- the run's objects ---------------------------------------------------------------------------


class ShardError(RecommenderError, RuntimeError):
    """A shard's object or model part does not match the shard plan or the checksum recorded."""


class IncompleteRunError(RecommenderError, RuntimeError):
    """Some planned shard is missing or damaged: the run is not published."""


class EmptyListsError(RecommenderError, RuntimeError):
    """Users who have items left to recommend got empty lists: their scores were not finite, and
    publishing would serve them nothing. The run is not published."""


class ObjectExistsError(RecommenderError, RuntimeError):
    """A write that must create its object found one there already."""


class NonFiniteNumberError(RecommenderError, ValueError):
    """A JSON document would hold NaN or Infinity; nothing was written."""


# --- reading the published output (the client) --------------------------------------------------


class RecommendationsError(RecommenderError, RuntimeError):
    """The published output cannot be read as the manifest describes it."""


class UnsupportedSchemaError(RecommenderError, ValueError):
    """The schema uses a keyword this checker does not implement."""
