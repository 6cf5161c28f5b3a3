"""Types and ranges of the built-in algorithms' parameters, checked before any work.

Surprise checks almost nothing when an algorithm is built: `{"n_factors": "abc"}` or
`{"n_epochs": -1}` are accepted, and the mistake surfaces minutes later in Train as a bare
`TypeError` from Cython, or not at all (a model trained for no epoch). Extract checks the
execution input against the table below, so such a run fails in seconds with an error that names
the field, before the snapshot is written.

Whole numbers are JSON integers (not `true`, not `50.0`): Surprise passes them to numpy shapes and
Cython `int`s, which refuse anything else or truncate it. Every count has an upper bound: the
Cython `int` (2^31 - 1), or a bound no sensible run comes near (`MAX_FACTORS`, `MAX_EPOCHS`,
`MAX_CLUSTERS`), so that a mistyped number fails here rather than as an out-of-memory Train.
Every real number must be finite. Nested options (`sim_options`, `bsl_options`) are checked the
same way, and an option Surprise would silently ignore (a misspelt name, `learning_rate` with the
`als` method) is refused.

A user's own `module:Class` cannot be checked this way: its parameters are whatever its
`__init__` makes of them. `training.effective_params` checks their names against that signature,
and Extract builds the class once with them, so a class that checks its own arguments in
`__init__` (raising TypeError or ValueError) fails the run in Extract as well. A subclass of a
Surprise algorithm counts as the user's own: it may take other parameters.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from .confidence import CONFIDENCES
from .errors import ConfigError

C_INT_MAX = 2**31 - 1  # Surprise's Cython loops count in C ints
MAX_FACTORS = 10_000
MAX_EPOCHS = 10_000
MAX_CLUSTERS = 10_000
MAX_THREADS = 1_024  # implicit's fit threads (0: every core)
WEIGHTINGS = ("bm25", "tfidf", "cosine")  # ItemKNN's (recommender/algorithms/implicit_knn.py)
SEED_LIMIT = 2**32  # numpy's RandomState takes seeds 0 to 2**32 - 1
SIMILARITIES = ("cosine", "msd", "pearson", "pearson_baseline")
BASELINE_METHODS = ("als", "sgd")

Check = Callable[[str, Any], None]


def _shown(value: Any) -> str:
    return repr(value) if not isinstance(value, bool) else str(value).lower()


def whole(low: int, high: int = C_INT_MAX) -> Check:
    def check(path: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            bound = f"of at least {low:,}" if high == C_INT_MAX else f"from {low:,} to {high:,}"
            raise ConfigError(f"{path} must be a whole number {bound}, got {_shown(value)}")

    return check


def real(low: float | None = None, above: bool = False) -> Check:
    """A finite number, at least `low` (or above it, when `above`)."""

    def check(path: str, value: Any) -> None:
        finite = isinstance(value, (int, float)) and not isinstance(value, bool)
        if finite:
            try:
                finite = math.isfinite(float(value))
            except OverflowError:
                finite = False
        if not finite or (low is not None and (value <= low if above else value < low)):
            bound = "" if low is None else f" {'above' if above else 'of at least'} {low:g}"
            raise ConfigError(f"{path} must be a finite number{bound}, got {_shown(value)}")

    return check


def boolean(path: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{path} must be true or false, got {_shown(value)}")


def optional(check: Check) -> Check:
    """None stands for Surprise's default (for example `lr_bu`: None means `lr_all`)."""

    def checked(path: str, value: Any) -> None:
        if value is not None:
            check(path, value)

    return checked


def seed(path: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < SEED_LIMIT:
        raise ConfigError(
            f"{path} must be a whole number from 0 to {SEED_LIMIT - 1} (or null), got {_shown(value)}"
        )


def _object(path: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{path} must be an object, got {_shown(value)}")
    return value


def _fields(path: str, value: Mapping[str, Any], fields: Mapping[str, Check], context: str = "") -> None:
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise ConfigError(
            f"{path} has no option(s) {', '.join(map(str, unknown))}{context}"
            f" (it takes: {', '.join(sorted(fields))})"
        )
    for name, check in fields.items():
        if name in value:
            check(f"{path}.{name}", value[name])


def similarity_name(options: Mapping[str, Any]) -> str:
    """The similarity Surprise computes for these `sim_options` (it lowercases the name)."""
    name = options.get("name", "msd")
    return name.lower() if isinstance(name, str) else ""


def sim_options(path: str, value: Any) -> None:
    options = _object(path, value)

    def name(field: str, given: Any) -> None:
        if not isinstance(given, str) or given.lower() not in SIMILARITIES:
            raise ConfigError(f"{field} must be one of {', '.join(SIMILARITIES)}, got {_shown(given)}")

    _fields(
        path,
        options,
        {"name": name, "user_based": boolean, "min_support": whole(0), "shrinkage": real(0)},
    )


_BASELINE_OPTIONS: dict[str, dict[str, Check]] = {
    "als": {"n_epochs": whole(1, MAX_EPOCHS), "reg_u": real(0), "reg_i": real(0)},
    "sgd": {"n_epochs": whole(1, MAX_EPOCHS), "reg": real(0), "learning_rate": real(0, above=True)},
}


def bsl_options(path: str, value: Any) -> None:
    options = _object(path, value)
    method = options.get("method", "als")
    if method not in BASELINE_METHODS:
        raise ConfigError(f"{path}.method must be one of {', '.join(BASELINE_METHODS)}, got {_shown(method)}")
    fields = {"method": lambda _path, _value: None, **_BASELINE_OPTIONS[method]}
    _fields(path, options, fields, f" for method {method!r}")


def _factor_fields(*, lr_all: bool = True) -> dict[str, Check]:
    return {
        "n_factors": whole(1, MAX_FACTORS),
        "n_epochs": whole(1, MAX_EPOCHS),
        "init_mean": real(),
        "init_std_dev": real(0),
        **({"lr_all": real(0, above=True), "reg_all": real(0)} if lr_all else {}),
        "random_state": seed,
        "verbose": boolean,
    }


def one_of(*choices: str) -> Check:
    def check(path: str, value: Any) -> None:
        if value not in choices:
            raise ConfigError(f"{path} must be one of {', '.join(choices)}, got {_shown(value)}")

    return check


def unit_interval(path: str, value: Any) -> None:
    real(0)(path, value)
    if value > 1:
        raise ConfigError(f"{path} must be a finite number from 0 to 1, got {_shown(value)}")


#: how ratings become implicit feedback (recommender/confidence.py), for ALS and ItemKNN
_CONFIDENCE: dict[str, Check] = {"confidence": one_of(*CONFIDENCES), "min_rating": optional(real())}

_LEARNING = ("lr_bu", "lr_bi", "lr_pu", "lr_qi")
_REGULARISATION = ("reg_bu", "reg_bi", "reg_pu", "reg_qi")

_KNN: dict[str, Check] = {
    "k": whole(0),  # 0: no neighbour, the estimate without them
    "min_k": whole(0),
    "sim_options": sim_options,
    "bsl_options": bsl_options,
    "verbose": boolean,
}

#: every built-in algorithm's parameters, as Surprise (or recommender.algorithms) names them
SPECS: dict[str, dict[str, Check]] = {
    "SVD": {
        **_factor_fields(),
        "biased": boolean,
        **dict.fromkeys(_LEARNING, optional(real(0, above=True))),
        **dict.fromkeys(_REGULARISATION, optional(real(0))),
    },
    "SVDpp": {
        **_factor_fields(),
        "cache_ratings": boolean,
        **dict.fromkeys((*_LEARNING, "lr_yj"), optional(real(0, above=True))),
        **dict.fromkeys((*_REGULARISATION, "reg_yj"), optional(real(0))),
    },
    "NMF": {
        "n_factors": whole(1, MAX_FACTORS),
        "n_epochs": whole(1, MAX_EPOCHS),
        "biased": boolean,
        **dict.fromkeys(_REGULARISATION, real(0)),
        "lr_bu": real(0, above=True),
        "lr_bi": real(0, above=True),
        "init_low": real(0),
        "init_high": real(0),
        "random_state": seed,
        "verbose": boolean,
    },
    "BaselineOnly": {"bsl_options": bsl_options, "verbose": boolean},
    "KNNBasic": _KNN,
    "KNNWithMeans": _KNN,
    "KNNWithZScore": _KNN,
    "KNNBaseline": _KNN,
    "SlopeOne": {},
    "CoClustering": {
        "n_cltr_u": whole(1, MAX_CLUSTERS),
        "n_cltr_i": whole(1, MAX_CLUSTERS),
        "n_epochs": whole(1, MAX_EPOCHS),
        "random_state": seed,
        "verbose": boolean,
    },
    "NormalPredictor": {},
    "EASE": {"reg": real(0, above=True), "implicit": boolean, "max_items": whole(1)},
    "ALS": {
        "factors": whole(1, MAX_FACTORS),
        "regularization": real(0),
        "alpha": real(0, above=True),
        "iterations": whole(1, MAX_EPOCHS),
        **_CONFIDENCE,
        "random_state": seed,
        "num_threads": whole(0, MAX_THREADS),
    },
    "ItemKNN": {
        "weighting": one_of(*WEIGHTINGS),
        "K": whole(1),
        "K1": real(0),
        "B": unit_interval,
        **_CONFIDENCE,
        "num_threads": whole(0, MAX_THREADS),
    },
}

_NMF_DEFAULT_LOW, _NMF_DEFAULT_HIGH = 0, 1


def check_params(algorithm: str, params: Mapping[str, Any]) -> None:
    """Raise ConfigError naming `params.<field>` when a built-in algorithm's parameter has the
    wrong type or range. Names are checked by `training.effective_params`; an algorithm not in
    SPECS (a user's own class) is not checked here (see the module docstring)."""
    spec = SPECS.get(algorithm)
    if spec is None:
        return
    try:
        for name, value in params.items():
            if name in spec:
                spec[name](f"params.{name}", value)
        if algorithm == "NMF":
            low = params.get("init_low", _NMF_DEFAULT_LOW)
            high = params.get("init_high", _NMF_DEFAULT_HIGH)
            if high < low:
                raise ConfigError(f"params.init_high must be at least init_low ({low}), got {high}")
    except ConfigError as error:
        raise ConfigError(f"{error} (algorithm {algorithm})") from None
