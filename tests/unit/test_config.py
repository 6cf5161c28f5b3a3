"""The execution input and the deployment settings: defaults, and errors that name the field."""

from __future__ import annotations

import json

import pytest

from recommender.config import (
    DEFAULT_ALGORITHM,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_TOP_N,
    DEFAULT_USERS_PER_SHARD,
    MAX_CONCURRENCY,
    MAX_SIMILAR_MIN_SUPPORT,
    MAX_TOP_N,
    MAX_USERS_PER_SHARD,
    RunConfig,
    Settings,
    SourceTable,
    check_run_id,
)
from recommender.errors import ConfigError


@pytest.mark.parametrize("raw", [{}, None])
def test_defaults(raw: object) -> None:
    config = RunConfig.from_input(raw)
    assert config.algorithm == DEFAULT_ALGORITHM == "auto"
    assert config.params == {}
    assert config.top_n == DEFAULT_TOP_N == 10
    assert config.users_per_shard == DEFAULT_USERS_PER_SHARD
    assert config.max_concurrency == DEFAULT_MAX_CONCURRENCY
    assert config.rating_scale is None
    assert config.source == SourceTable()
    assert config.source.table == "ratings"
    assert config.source.user_column == "user_id"
    assert config.source.item_column == "item_id"
    assert config.source.rating_column == "rating"
    assert config.source.schema is None
    assert config.source.timestamp_column is None


def test_full_input_is_kept_and_serialised() -> None:
    raw = {
        "algorithm": "KNNBasic",
        "params": {"k": 20},
        "top_n": 5,
        "users_per_shard": 7,
        "max_concurrency": 3,
        "rating_scale": [1, 5],
        "source": {"table": "votes", "schema": "app", "timestamp_column": "at"},
    }
    config = RunConfig.from_input(raw)
    assert config.algorithm == "KNNBasic"
    assert config.params == {"k": 20}
    assert (config.top_n, config.users_per_shard, config.max_concurrency) == (5, 7, 3)
    assert config.rating_scale == (1.0, 5.0)
    assert config.source == SourceTable(table="votes", schema="app", timestamp_column="at")
    data = config.to_dict()
    assert data["rating_scale"] == [1.0, 5.0]
    assert data["source"]["table"] == "votes"
    # the serialised form is a valid input again and gives the same configuration
    assert RunConfig.from_input(data) == config


def test_params_are_copied() -> None:
    params = {"n_factors": 5}
    config = RunConfig.from_input({"algorithm": "SVD", "params": params})
    params["n_factors"] = 50
    assert config.params == {"n_factors": 5}


@pytest.mark.parametrize("raw", [[], "SVD", 3])
def test_input_not_an_object(raw: object) -> None:
    with pytest.raises(ConfigError, match="JSON object"):
        RunConfig.from_input(raw)


def test_unknown_field_is_named() -> None:
    with pytest.raises(ConfigError, match="topn"):
        RunConfig.from_input({"topn": 5})


def test_unknown_fields_are_all_named() -> None:
    with pytest.raises(ConfigError) as caught:
        RunConfig.from_input({"zeta": 1, "alpha": 2, "top_n": 3})
    assert "alpha, zeta" in str(caught.value)


@pytest.mark.parametrize("name", ["top_n", "users_per_shard", "max_concurrency", "similar_min_support"])
@pytest.mark.parametrize("value", [0, -1, 10**9, "10", True, False, 2.0, None, [3]])
def test_bounded_ints_reject(name: str, value: object) -> None:
    with pytest.raises(ConfigError) as caught:
        RunConfig.from_input({name: value})
    assert name in str(caught.value)


@pytest.mark.parametrize(
    ("name", "upper"),
    [
        ("top_n", MAX_TOP_N),
        ("users_per_shard", MAX_USERS_PER_SHARD),
        ("max_concurrency", MAX_CONCURRENCY),
        ("similar_min_support", MAX_SIMILAR_MIN_SUPPORT),
    ],
)
def test_bounded_ints_accept_bounds(name: str, upper: int) -> None:
    assert getattr(RunConfig.from_input({name: 1}), name) == 1
    assert getattr(RunConfig.from_input({name: upper}), name) == upper
    with pytest.raises(ConfigError, match=name):
        RunConfig.from_input({name: upper + 1})


@pytest.mark.parametrize(
    "value", [[5, 1], [3, 3], [1], [1, 2, 3], ["a", 2], [True, 5], "1-5", {"low": 1}, [1, float("nan")]]
)
def test_rating_scale_rejects(value: object) -> None:
    with pytest.raises(ConfigError, match="rating_scale"):
        RunConfig.from_input({"rating_scale": value})


@pytest.mark.parametrize(
    "value",
    [
        [0, float("inf")],
        [float("-inf"), 5],
        [float("nan"), 5],
        [float("-inf"), float("inf")],
        [0, 10**400],  # a JSON integer no float holds
        [1, False],
    ],
)
def test_rating_scale_must_be_finite(value: object) -> None:
    """`[0, 1e999]` parses as [0, Infinity]: Infinity would reach the manifest, which no strict
    JSON reader accepts."""
    with pytest.raises(ConfigError, match="rating_scale must be two finite numbers"):
        RunConfig.from_input({"rating_scale": value})


def test_rating_scale_from_json_with_1e999_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"rating_scale .*got \[0, inf\]"):
        RunConfig.from_input(json.loads('{"rating_scale": [0, 1e999]}'))


def test_rating_scale_accepts_numbers() -> None:
    assert RunConfig.from_input({"rating_scale": [0.5, 5]}).rating_scale == (0.5, 5.0)
    assert RunConfig.from_input({"rating_scale": (-1, 1)}).rating_scale == (-1.0, 1.0)


def test_algorithm_must_be_a_string() -> None:
    with pytest.raises(ConfigError, match="algorithm"):
        RunConfig.from_input({"algorithm": 7})


@pytest.mark.parametrize("value", [[1], "x", 3, [], "", 0, False])
def test_params_not_an_object(value: object) -> None:
    with pytest.raises(ConfigError, match="params"):
        RunConfig.from_input({"params": value})


def test_params_null_means_none() -> None:
    assert RunConfig.from_input({"params": None}).params == {}


def test_source_unknown_field_is_named() -> None:
    with pytest.raises(ConfigError) as caught:
        RunConfig.from_input({"source": {"table": "t", "user_col": "u"}})
    message = str(caught.value)
    assert "source" in message and "user_col" in message


@pytest.mark.parametrize("value", ["", "x" * 64, "x" * 100, 5])
def test_source_table_rejected(value: object) -> None:
    with pytest.raises(ConfigError, match=r"source\.table"):
        RunConfig.from_input({"source": {"table": value}})


@pytest.mark.parametrize(
    "field", ["schema", "user_column", "item_column", "rating_column", "timestamp_column"]
)
def test_source_other_names_rejected(field: str) -> None:
    with pytest.raises(ConfigError, match=rf"source\.{field}"):
        RunConfig.from_input({"source": {field: ""}})


def test_source_table_of_63_characters_is_fine() -> None:
    name = "t" * 63
    assert RunConfig.from_input({"source": {"table": name}}).source.table == name


def test_source_null_fields_keep_defaults() -> None:
    source = RunConfig.from_input({"source": {"table": None, "user_column": "uid"}}).source
    assert source.table == "ratings"
    assert source.user_column == "uid"


@pytest.mark.parametrize("value", ["ratings", ["ratings"], 1])
def test_source_not_an_object(value: object) -> None:
    with pytest.raises(ConfigError, match="source"):
        RunConfig.from_input({"source": value})


def test_settings_from_env() -> None:
    settings = Settings.from_env({"RECOMMENDER_BUCKET": "my-bucket"})
    assert settings == Settings(bucket="my-bucket", prefix="recommender", database_url=None)

    settings = Settings.from_env(
        {
            "RECOMMENDER_BUCKET": "b",
            "RECOMMENDER_PREFIX": "/team/recs/",
            "DATABASE_URL": "postgresql://u@h/db",
        }
    )
    assert settings.bucket == "b"
    assert settings.prefix == "team/recs"
    assert settings.database_url == "postgresql://u@h/db"

    assert Settings.from_env({"RECOMMENDER_BUCKET": "b", "DATABASE_URL": ""}).database_url is None


@pytest.mark.parametrize("env", [{}, {"RECOMMENDER_BUCKET": ""}, {"DATABASE_URL": "postgresql://h/db"}])
def test_settings_without_bucket(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="RECOMMENDER_BUCKET"):
        Settings.from_env(env)


def test_settings_default_to_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECOMMENDER_BUCKET", "from-environ")
    monkeypatch.delenv("RECOMMENDER_PREFIX", raising=False)
    assert Settings.from_env().bucket == "from-environ"
    monkeypatch.delenv("RECOMMENDER_BUCKET")
    with pytest.raises(ConfigError, match="RECOMMENDER_BUCKET"):
        Settings.from_env()


@pytest.mark.parametrize("run_id", ["a", "run-2024_01", "A" * 80, "x-Y_9"])
def test_check_run_id_accepts(run_id: str) -> None:
    assert check_run_id(run_id) == run_id


@pytest.mark.parametrize(
    "run_id", ["", "A" * 81, "a/b", "../x", "run.1", "run 1", "runé", "a\n", None, 5, ["a"]]
)
def test_check_run_id_rejects(run_id: object) -> None:
    with pytest.raises(ConfigError, match="run_id"):
        check_run_id(run_id)


# --- the predictor's reserved concurrency ----------------------------------------------------------


def test_settings_read_the_reserved_concurrency() -> None:
    base = {"RECOMMENDER_BUCKET": "b"}
    assert Settings.from_env(base).predict_concurrency is None
    assert Settings.from_env({**base, "PREDICT_RESERVED_CONCURRENCY": "0"}).predict_concurrency is None
    assert Settings.from_env({**base, "PREDICT_RESERVED_CONCURRENCY": "4"}).predict_concurrency == 4
    with pytest.raises(ConfigError, match="PREDICT_RESERVED_CONCURRENCY"):
        Settings.from_env({**base, "PREDICT_RESERVED_CONCURRENCY": "four"})


def test_settings_take_the_smallest_memory_a_model_must_fit_in() -> None:
    base = {"RECOMMENDER_BUCKET": "b"}
    assert Settings.from_env(base).model_memory_mb is None
    lambda_env = {
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "3008",
        "PREDICT_MEMORY_MB": "2048",
        "MERGE_MEMORY_MB": "4096",
    }
    assert Settings.from_env({**base, **lambda_env}).model_memory_mb == 2048
    assert (
        Settings.from_env({**base, "TRAIN_MEMORY_MB": "1536", "MERGE_MEMORY_MB": "2048"}).model_memory_mb
        == 1536
    )
    for bad in ("2 GB", "0", "-5"):
        with pytest.raises(
            ConfigError, match=f"MERGE_MEMORY_MB must be a whole number of MB above 0, got '{bad}'"
        ):
            Settings.from_env({**base, "MERGE_MEMORY_MB": bad})


def test_max_concurrency_stays_within_the_reserved_concurrency() -> None:
    from recommender.steps.extract import validate_input

    assert validate_input({}, None).max_concurrency == DEFAULT_MAX_CONCURRENCY
    assert validate_input({}, 4).max_concurrency == 4  # the default pace is lowered to the cap
    assert validate_input({"max_concurrency": 3}, 4).max_concurrency == 3
    assert validate_input({"max_concurrency": 4}, 4).max_concurrency == 4
    with pytest.raises(ConfigError, match=r"max_concurrency must be at most 4.*MaxConcurrency"):
        validate_input({"max_concurrency": 5}, 4)
    assert validate_input({"max_concurrency": 50}, None).max_concurrency == 50


def test_an_input_too_large_to_carry_between_states_is_refused() -> None:
    RunConfig.from_input({"algorithm": "SVD", "params": {"verbose": "x" * 30_000}})
    with pytest.raises(ConfigError, match=r"the execution input is 40,0\d\d bytes, more than the 32,768"):
        RunConfig.from_input({"algorithm": "SVD", "params": {"verbose": "x" * 40_000}})
    with pytest.raises(ConfigError, match="execution input is"):  # bytes, not characters
        RunConfig.from_input(
            {"source": {"table": "t"}, "algorithm": "SVD", "params": {"verbose": "é" * 17_000}}
        )


def test_bad_algorithm_fails_validation() -> None:
    from recommender.steps import extract

    with pytest.raises(ConfigError, match="algorithm 'SVD\\+\\+'"):
        extract.validate_input({"algorithm": "SVD++"})
    with pytest.raises(ConfigError, match="params: SVD has no parameter"):
        extract.validate_input({"algorithm": "SVD", "params": {"n_factor": 5}})


def test_below_popularity_warns_by_default_and_may_hold() -> None:
    assert RunConfig.from_input({}).quality_gate_below_popularity == "warn"
    held = RunConfig.from_input({"quality_gate_below_popularity": "hold"})
    assert held.quality_gate_below_popularity == "hold"
    assert RunConfig.from_input(held.to_dict()) == held


@pytest.mark.parametrize("value", ["HOLD", "block", "", None, True, 1, ["hold"]])
def test_below_popularity_takes_warn_or_hold(value: object) -> None:
    with pytest.raises(ConfigError, match='quality_gate_below_popularity must be "warn" or "hold"'):
        RunConfig.from_input({"quality_gate_below_popularity": value})


def test_holding_below_popularity_needs_the_measurement() -> None:
    with pytest.raises(ConfigError, match='"hold" needs evaluate: true'):
        RunConfig.from_input({"quality_gate_below_popularity": "hold", "evaluate": False})
    assert not RunConfig.from_input({"quality_gate_below_popularity": "warn", "evaluate": False}).evaluate
