"""Every built-in algorithm's parameters are checked for type and range in Extract's first
step, before any work, with an error that names the field; what passes, Surprise accepts."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from recommender.errors import ConfigError
from recommender.params import SPECS
from recommender.snapshot import ratings_from_rows
from recommender.steps.extract import validate_input
from recommender.training import ALGORITHM_NAMES, PRODUCT_ALGORITHM_NAMES, fit

REFUSED: list[tuple[str, dict[str, Any], str]] = [
    # the issue's cases
    ("SVD", {"n_factors": "abc"}, "params.n_factors must be a whole number from 1 to 10,000, got 'abc'"),
    ("SVD", {"n_factors": 0}, "params.n_factors must be a whole number from 1 to 10,000, got 0"),
    ("SVD", {"n_epochs": -1}, "params.n_epochs must be a whole number from 1 to 10,000, got -1"),
    # whole numbers are JSON integers, bounded
    ("SVD", {"n_factors": 50.0}, "params.n_factors must be a whole number"),
    ("SVD", {"n_factors": True}, "params.n_factors must be a whole number .*got true"),
    ("SVD", {"n_factors": 10**12}, "params.n_factors must be a whole number from 1 to 10,000"),
    ("SVDpp", {"n_epochs": None}, "params.n_epochs must be a whole number"),
    ("NMF", {"n_factors": -3}, "params.n_factors"),
    ("CoClustering", {"n_cltr_u": 0}, "params.n_cltr_u must be a whole number from 1 to 10,000, got 0"),
    ("CoClustering", {"n_cltr_i": "3"}, "params.n_cltr_i"),
    ("CoClustering", {"n_epochs": 0}, "params.n_epochs"),
    ("KNNBasic", {"k": -1}, "params.k must be a whole number of at least 0, got -1"),
    ("KNNWithMeans", {"k": 2**40}, "params.k must be a whole number of at least 0"),
    ("KNNWithMeans", {"min_k": -1}, "params.min_k must be a whole number of at least 0, got -1"),
    ("EASE", {"max_items": 0}, "params.max_items must be a whole number of at least 1, got 0"),
    # real numbers are finite and in range
    ("SVD", {"lr_all": "fast"}, "params.lr_all must be a finite number above 0, got 'fast'"),
    ("SVD", {"lr_all": 0}, "params.lr_all must be a finite number above 0, got 0"),
    ("SVD", {"reg_all": -0.1}, "params.reg_all must be a finite number of at least 0, got -0.1"),
    ("SVD", {"reg_all": float("nan")}, "params.reg_all must be a finite number"),
    ("SVD", {"init_std_dev": float("inf")}, "params.init_std_dev must be a finite number"),
    ("SVD", {"init_mean": 10**400}, "params.init_mean must be a finite number"),
    ("SVD", {"lr_bu": -1}, "params.lr_bu must be a finite number above 0"),
    ("SVDpp", {"reg_yj": "x"}, "params.reg_yj"),
    ("NMF", {"init_low": -1}, "params.init_low must be a finite number of at least 0, got -1"),
    ("NMF", {"init_low": 2, "init_high": 1}, r"params.init_high must be at least init_low \(2\), got 1"),
    ("NMF", {"reg_pu": None}, "params.reg_pu must be a finite number"),
    ("EASE", {"reg": 0}, "params.reg must be a finite number above 0, got 0"),
    # booleans and seeds
    ("SVD", {"biased": "yes"}, "params.biased must be true or false, got 'yes'"),
    ("SVDpp", {"cache_ratings": 1}, "params.cache_ratings must be true or false, got 1"),
    ("EASE", {"implicit": 0}, "params.implicit must be true or false"),
    ("SVD", {"random_state": -1}, "params.random_state must be a whole number from 0 to 4294967295"),
    ("SVD", {"random_state": 2**32}, "params.random_state"),
    ("CoClustering", {"random_state": "seed"}, "params.random_state"),
    ("BaselineOnly", {"verbose": "no"}, "params.verbose must be true or false"),
    # nested options
    ("KNNBasic", {"sim_options": "cosine"}, "params.sim_options must be an object, got 'cosine'"),
    ("KNNBasic", {"sim_options": {"name": "jaccard"}}, "params.sim_options.name must be one of cosine,"),
    ("KNNBasic", {"sim_options": {"user_based": "false"}}, "sim_options.user_based must be true or false"),
    ("KNNBasic", {"sim_options": {"min_support": -1}}, "sim_options.min_support must be a whole number"),
    ("KNNBaseline", {"sim_options": {"shrinkage": -5}}, "sim_options.shrinkage must be a finite number"),
    ("KNNBasic", {"sim_options": {"user_base": False}}, r"params.sim_options has no option\(s\) user_base"),
    ("BaselineOnly", {"bsl_options": []}, "params.bsl_options must be an object"),
    ("BaselineOnly", {"bsl_options": {"method": "ALS"}}, "params.bsl_options.method must be one of als, sgd"),
    ("BaselineOnly", {"bsl_options": {"n_epochs": 0}}, "params.bsl_options.n_epochs must be a whole number"),
    ("BaselineOnly", {"bsl_options": {"reg_u": "high"}}, "params.bsl_options.reg_u must be a finite number"),
    (
        "BaselineOnly",
        {"bsl_options": {"learning_rate": 0.01}},
        r"params.bsl_options has no option\(s\) learning_rate for method 'als'",
    ),
    (
        "BaselineOnly",
        {"bsl_options": {"method": "sgd", "learning_rate": 0}},
        "params.bsl_options.learning_rate must be a finite number above 0",
    ),
    ("KNNBaseline", {"bsl_options": {"method": "sgd", "reg_i": 1}}, "for method 'sgd'"),
]


@pytest.mark.parametrize(("algorithm", "params", "message"), REFUSED, ids=lambda v: str(v)[:40])
def test_a_wrong_parameter_fails_validation_and_names_the_field(
    algorithm: str, params: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        validate_input({"algorithm": algorithm, "params": params})


ACCEPTED: list[tuple[str, dict[str, Any]]] = [
    ("SVD", {"n_factors": 1, "n_epochs": 1, "biased": False, "lr_all": 0.01, "reg_all": 0, "init_mean": -1}),
    ("SVD", {"lr_bu": None, "reg_qi": None, "random_state": None, "init_std_dev": 0}),
    ("SVD", {"random_state": 2**32 - 1, "verbose": True}),
    ("SVDpp", {"n_factors": 3, "lr_yj": 0.001, "reg_yj": 0, "cache_ratings": True}),
    ("NMF", {"n_factors": 2, "biased": True, "init_low": 0.5, "init_high": 0.5, "reg_bu": 0}),
    ("BaselineOnly", {"bsl_options": {"method": "sgd", "n_epochs": 3, "reg": 0.1, "learning_rate": 0.01}}),
    ("BaselineOnly", {"bsl_options": {"reg_u": 0, "reg_i": 2.5, "n_epochs": 1}}),
    ("KNNBasic", {"k": 1, "min_k": 0, "sim_options": {"name": "MSD", "user_based": False, "min_support": 0}}),
    ("KNNWithZScore", {"k": 3, "min_k": 3, "sim_options": {}}),
    ("KNNWithMeans", {"k": 2, "min_k": 5}),  # never enough neighbours: Surprise's own fallback
    (
        "KNNBaseline",
        {
            "sim_options": {"name": "pearson_baseline", "shrinkage": 0},
            "bsl_options": {"method": "als", "n_epochs": 2},
        },
    ),
    ("KNNBasic", {"sim_options": {"name": "pearson_baseline"}, "bsl_options": {"method": "sgd"}}),
    ("CoClustering", {"n_cltr_u": 1, "n_cltr_i": 2, "n_epochs": 1, "random_state": 7}),
    ("SlopeOne", {}),
    ("NormalPredictor", {}),
    ("EASE", {"reg": 0.5, "implicit": False, "max_items": 10}),
]


@pytest.mark.parametrize(("algorithm", "params"), ACCEPTED, ids=lambda v: str(v)[:40])
def test_what_validation_accepts_surprise_fits(algorithm: str, params: dict[str, Any]) -> None:
    """The ranges are not stricter than they need be: each accepted case fits."""
    config = validate_input({"algorithm": algorithm, "params": params})
    rows = [(f"u{u}", f"i{i}", float(1 + (u + 2 * i) % 5)) for u in range(6) for i in range(5) if (u + i) % 4]
    fitted = fit(ratings_from_rows(rows), algorithm, config.params, (1.0, 5.0))
    assert fitted.trainset.n_ratings == len(rows)
    assert np.isfinite(fitted.trainset.global_mean)


def test_every_built_in_algorithm_has_a_spec_of_exactly_its_parameters() -> None:
    """A parameter Surprise adds (or the table forgets) is noticed: the spec lists exactly the
    names effective_params accepts."""
    from recommender.training import effective_params

    for name in ALGORITHM_NAMES + PRODUCT_ALGORITHM_NAMES:
        assert name in SPECS, name
        with pytest.raises(ConfigError, match="has no parameter") as refused:
            effective_params(name, {"no_such_parameter": 1})
        taken = str(refused.value).split("(it takes: ")[1].rstrip(")")
        accepted = set() if taken == "none" else set(taken.split(", "))
        assert set(SPECS[name]) == accepted, name


def test_a_users_own_algorithm_is_checked_by_its_own_constructor() -> None:
    """Names are checked against the signature; values are the class's to check, in Extract."""
    with pytest.raises(ConfigError, match=r"params: .*rejected its parameters: .*size must be"):
        validate_input({"algorithm": "tests.unit.custom_algorithms:CheckedAlgo", "params": {"size": -1}})
    with pytest.raises(ConfigError, match=r"has no parameter\(s\) n_factors"):
        validate_input({"algorithm": "tests.unit.custom_algorithms:CheckedAlgo", "params": {"n_factors": 2}})
    config = validate_input({"algorithm": "tests.unit.custom_algorithms:CheckedAlgo", "params": {"size": 3}})
    assert config.params == {"size": 3}
