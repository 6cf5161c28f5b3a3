"""Configuration: the execution input of one run, and the settings of the deployment.

Both are read once into frozen dataclasses. The execution input is validated in the first step
(Extract) so that a typo in an algorithm name or a column fails in seconds, not after training.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from . import strict_json
from .choice import AUTO
from .errors import ConfigError, NonFiniteNumberError

DEFAULT_ALGORITHM = "auto"
DEFAULT_TOP_N = 10
#: ratings an item needs to get a list of similar items and to appear in one: fewer say more about
#: their few raters than about the item
DEFAULT_SIMILAR_MIN_SUPPORT = 5
MAX_SIMILAR_MIN_SUPPORT = 1_000_000
DEFAULT_USERS_PER_SHARD = 1000
DEFAULT_MAX_CONCURRENCY = 10
DEFAULT_SEED = 0
DEFAULT_MAX_INVALID_FRACTION = 0.05  # more invalid rows than this fails the run (see README)
DEFAULT_QUALITY_GATE_MAX_DROP = 0.1  # hold a run whose NDCG fell by more than 10% (see gate.py)
# What the gate does with a run that ranks below the popularity baseline (see gate.py and README)
BELOW_POPULARITY_ACTIONS = ("warn", "hold")
DEFAULT_QUALITY_GATE_BELOW_POPULARITY = "warn"

# Upper bounds that catch a mistyped number before it turns into a huge bill or a huge object.
MAX_TOP_N = 1000
# The state machine carries the input from state to state, each state's data at most 256 KiB,
# and a state past it fails the run where States.ALL cannot catch it (nothing records why). Real
# inputs are a few hundred bytes; a larger one is refused in the first step, with its reason.
MAX_INPUT_BYTES = 32 * 1024
MAX_USERS_PER_SHARD = 1_000_000
MAX_CONCURRENCY = 1000

_RUN_ID = re.compile(r"^[A-Za-z0-9_-]{1,80}$")


@dataclass(frozen=True)
class SourceTable:
    """Where the ratings live in the user's database. Names are quoted with sql.Identifier."""

    table: str = "ratings"
    schema: str | None = None
    user_column: str = "user_id"
    item_column: str = "item_id"
    rating_column: str = "rating"
    timestamp_column: str | None = None

    @classmethod
    def from_input(cls, raw: Any) -> SourceTable:
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise ConfigError("source must be an object with table and column names")
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"source has unknown field(s): {', '.join(unknown)}")
        values: dict[str, Any] = {}
        for name in known:
            if name not in raw or raw[name] is None:
                continue
            value = raw[name]
            if not isinstance(value, str) or not value or len(value) > 63:
                raise ConfigError(f"source.{name} must be a non-empty name of at most 63 characters")
            values[name] = value
        return cls(**values)


@dataclass(frozen=True)
class RunConfig:
    """The state machine input, with every default filled in. Stored in each step's output."""

    algorithm: str = DEFAULT_ALGORITHM
    params: dict[str, Any] = field(default_factory=dict)
    top_n: int = DEFAULT_TOP_N
    similar_min_support: int = DEFAULT_SIMILAR_MIN_SUPPORT
    users_per_shard: int = DEFAULT_USERS_PER_SHARD
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    rating_scale: tuple[float, float] | None = None
    source: SourceTable = field(default_factory=SourceTable)
    max_invalid_fraction: float = DEFAULT_MAX_INVALID_FRACTION
    evaluate: bool = True  # measure the run on a holdout split before the final fit
    quality_gate_max_drop: float = DEFAULT_QUALITY_GATE_MAX_DROP
    quality_gate_below_popularity: str = DEFAULT_QUALITY_GATE_BELOW_POPULARITY  # "warn" or "hold"
    force_publish: bool = False  # publish even when the quality gate would hold the run
    run_id: str | None = None  # resume this earlier run instead of starting one named after the execution

    @classmethod
    def from_input(cls, raw: Any) -> RunConfig:
        """Validate the execution input; every field is optional."""
        raw = {} if raw is None else raw
        if not isinstance(raw, dict):
            raise ConfigError("the execution input must be a JSON object")
        # `json.loads` reads NaN and Infinity, so an input given as a file may hold them: such an
        # input is refused, after the field checks below, whose errors name the field better.
        non_finite: ConfigError | None = None
        try:
            text = strict_json.dumps(
                raw, what="the execution input", ensure_ascii=False, separators=(",", ":")
            )
        except NonFiniteNumberError:
            path, value = strict_json.non_finite(raw) or ("$", math.nan)
            field_name = path.removeprefix("$.")
            message = f"{field_name} must be a finite number, got {value}: JSON has no NaN or Infinity"
            non_finite, text = ConfigError(message), ""
        size = len(text.encode("utf-8"))
        if size > MAX_INPUT_BYTES:
            raise ConfigError(
                f"the execution input is {size:,} bytes, more than the {MAX_INPUT_BYTES:,} a run"
                " accepts: the state machine carries it between states (256 KiB each at most)"
            )
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"unknown input field(s): {', '.join(unknown)}")

        algorithm = raw.get("algorithm", DEFAULT_ALGORITHM)
        if not isinstance(algorithm, str):
            raise ConfigError("algorithm must be the name of a Surprise algorithm, e.g. 'SVD'")
        params = raw.get("params")
        params = {} if params is None else params
        if not isinstance(params, dict):
            raise ConfigError("params must be an object of the algorithm's keyword arguments")
        if algorithm == AUTO and params:
            raise ConfigError(
                "params apply to one algorithm: with algorithm 'auto' each candidate keeps its"
                " defaults (README, Choosing an algorithm); name the algorithm to set its params"
            )

        config = cls(
            algorithm=algorithm,
            params=dict(params),
            top_n=_bounded_int(raw, "top_n", DEFAULT_TOP_N, MAX_TOP_N),
            similar_min_support=_bounded_int(
                raw, "similar_min_support", DEFAULT_SIMILAR_MIN_SUPPORT, MAX_SIMILAR_MIN_SUPPORT
            ),
            users_per_shard=_bounded_int(
                raw, "users_per_shard", DEFAULT_USERS_PER_SHARD, MAX_USERS_PER_SHARD
            ),
            max_concurrency=_bounded_int(raw, "max_concurrency", DEFAULT_MAX_CONCURRENCY, MAX_CONCURRENCY),
            rating_scale=_rating_scale(raw.get("rating_scale")),
            source=SourceTable.from_input(raw.get("source")),
            max_invalid_fraction=_fraction(raw, "max_invalid_fraction", DEFAULT_MAX_INVALID_FRACTION),
            evaluate=_bool(raw, "evaluate", True),
            quality_gate_max_drop=_fraction(raw, "quality_gate_max_drop", DEFAULT_QUALITY_GATE_MAX_DROP),
            quality_gate_below_popularity=_below_popularity(raw),
            force_publish=_bool(raw, "force_publish", False),
            run_id=None if raw.get("run_id") is None else check_run_id(raw["run_id"]),
        )
        if non_finite is not None:
            raise non_finite
        if config.quality_gate_below_popularity == "hold" and not config.evaluate:
            raise ConfigError(
                'quality_gate_below_popularity "hold" needs evaluate: true: without the measurement'
                ' no run can be compared with the popularity baseline (use "warn", or evaluate)'
            )
        return config

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["rating_scale"] = list(self.rating_scale) if self.rating_scale else None
        return data


def _bounded_int(raw: dict[str, Any], name: str, default: int, upper: int) -> int:
    value = raw.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be a whole number, got {value!r}")
    if not 1 <= value <= upper:
        raise ConfigError(f"{name} must be between 1 and {upper}, got {value}")
    return value


def _bool(raw: dict[str, Any], name: str, default: bool) -> bool:
    value = raw.get(name, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    return value


def _below_popularity(raw: dict[str, Any]) -> str:
    value = raw.get("quality_gate_below_popularity", DEFAULT_QUALITY_GATE_BELOW_POPULARITY)
    if value not in BELOW_POPULARITY_ACTIONS:
        raise ConfigError(f'quality_gate_below_popularity must be "warn" or "hold", got {value!r}')
    return str(value)


def _fraction(raw: dict[str, Any], name: str, default: float) -> float:
    value = raw.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name} must be a number from 0 to 1, got {value!r}")
    return float(value)


def finite_float(value: Any) -> float | None:
    """`value` as a finite float, or None: bool is not a number here, and neither is an integer
    no float holds (JSON has no size limit on integers)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _rating_scale(value: Any) -> tuple[float, float] | None:
    """The scale is published (the manifest) and bounds every score: Infinity or NaN there would
    make the manifest unreadable to a strict JSON reader, and `[0, 1e999]` parses as Infinity."""
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ConfigError(f"rating_scale must be [low, high] with low < high, got {value!r}")
    low, high = finite_float(value[0]), finite_float(value[1])
    if low is None or high is None:
        raise ConfigError(f"rating_scale must be two finite numbers [low, high], got {value!r}")
    if not low < high:
        raise ConfigError(f"rating_scale must be [low, high] with low < high, got {value!r}")
    return low, high


def check_run_id(run_id: Any) -> str:
    """Run ids become S3 key segments; the execution name rules keep them safe there."""
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
        raise ConfigError(
            f"run_id must be 1-80 letters, digits, '-' or '_' (an execution name), got {run_id!r}"
        )
    return run_id


@dataclass(frozen=True)
class Settings:
    """Deployment settings, from the Lambda environment (the template) or the local runner."""

    bucket: str
    prefix: str = "recommender"
    database_url: str | None = None  # the local engine's way; wins over the secret when both are set
    # On AWS: the Secrets Manager secret Extract reads the connection from (recommender.secrets).
    database_secret_arn: str | None = None
    # The predictor's reserved concurrency (the stack's MaxConcurrency; None when it reserves none):
    # a Map running more predictors at once would only be throttled.
    predict_concurrency: int | None = None
    # The smallest memory (MB) of the functions that load a whole model: Train (Lambda's
    # AWS_LAMBDA_FUNCTION_MEMORY_SIZE, or the Fargate task's TRAIN_MEMORY_MB), each predictor and
    # Merge. auto measures EASE only where its dense matrices fit it (choice.py); None: no limit known.
    model_memory_mb: int | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ) if env is None else env
        bucket = env.get("RECOMMENDER_BUCKET", "")
        if not bucket:
            raise ConfigError("RECOMMENDER_BUCKET is not set: the bucket the runs are written to")
        prefix = env.get("RECOMMENDER_PREFIX", "recommender").strip("/")
        reserved = env.get("PREDICT_RESERVED_CONCURRENCY", "0") or "0"
        if not reserved.isdigit():
            raise ConfigError(f"PREDICT_RESERVED_CONCURRENCY must be a whole number, got {reserved!r}")
        return cls(
            bucket=bucket,
            prefix=prefix,
            database_url=env.get("DATABASE_URL") or None,
            database_secret_arn=env.get("DATABASE_SECRET_ARN") or None,
            predict_concurrency=int(reserved) or None,
            model_memory_mb=_smallest_memory(env),
        )


MEMORY_VARIABLES = (
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "TRAIN_MEMORY_MB",
    "PREDICT_MEMORY_MB",
    "MERGE_MEMORY_MB",
)


def _smallest_memory(env: dict[str, str]) -> int | None:
    """The smallest of the memory sizes (MB) the environment gives, None when it gives none."""
    sizes = []
    for name in MEMORY_VARIABLES:
        value = env.get(name, "")
        if not value:
            continue
        if not value.isdigit() or int(value) == 0:
            raise ConfigError(f"{name} must be a whole number of MB above 0, got {value!r}")
        sizes.append(int(value))
    return min(sizes, default=None)
