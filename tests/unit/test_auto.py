"""algorithm "auto": the candidates measured on Train's holdout, the best NDCG@k fitted, every
candidate's figures recorded; the choice rule on made-up reports, then a real Train run."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from jsonschema import Draft202012Validator

from recommender.choice import EASE_MAX_ITEMS, candidates, choose, ease_excluded, ease_params
from recommender.cli import _candidates
from recommender.config import RunConfig, Settings
from recommender.errors import ConfigError, DatasetError, RecommenderError
from recommender.manifest import load_schema
from recommender.sample_data import SyntheticSpec, synthetic_ratings
from recommender.steps import train
from recommender.storage import RunPaths, get_json
from recommender.validation import problems
from tests.conftest import mocked_s3
from tests.publishing import publish, write_snapshot

BUCKET = "auto"
SETTINGS = Settings(bucket=BUCKET, prefix="p")


def report(ndcg: float | None, k: int = 10) -> dict[str, Any]:
    return {"k": k, "params": {}, "model": {f"ndcg@{k}": ndcg}, "popularity": {f"ndcg@{k}": 0.1}}


def scripted(results: dict[str, float | Exception]) -> Any:
    """An evaluate() that answers each algorithm's NDCG, or raises its error, and logs the calls."""
    calls: list[str] = []

    def evaluate(algorithm: str, params: dict[str, Any]) -> dict[str, Any]:
        calls.append(algorithm)
        outcome = results[algorithm]
        if isinstance(outcome, Exception):
            raise outcome
        return report(outcome)

    evaluate.calls = calls  # type: ignore[attr-defined]
    return evaluate


def test_ease_is_a_candidate_only_where_its_dense_solve_fits() -> None:
    assert [name for name, _ in candidates(EASE_MAX_ITEMS)] == ["ItemKNN", "ALS", "SVD", "EASE"]
    assert [name for name, _ in candidates(EASE_MAX_ITEMS + 1)] == ["ItemKNN", "ALS", "SVD"]


def test_the_best_ndcg_wins_and_every_candidate_is_recorded() -> None:
    evaluate = scripted({"ItemKNN": 0.09, "ALS": 0.11, "SVD": 0.04, "EASE": 0.10})
    choice = choose(1000, evaluate)
    assert choice.algorithm == "ALS"
    assert evaluate.calls == ["ItemKNN", "ALS", "SVD", "EASE"]
    record = choice.record()
    assert record["chosen"] == "ALS"
    assert [(c["algorithm"], c["ndcg"]) for c in record["candidates"]] == [
        ("ItemKNN", 0.09),
        ("ALS", 0.11),
        ("SVD", 0.04),
        ("EASE", 0.10),
    ]
    assert choice.report == report(0.11)


def test_an_earlier_candidate_wins_a_tie() -> None:
    assert (
        choose(1000, scripted({"ItemKNN": 0.1, "ALS": 0.1, "SVD": 0.1, "EASE": 0.1})).algorithm == "ItemKNN"
    )
    assert choose(1000, scripted({"ItemKNN": 0.1, "ALS": 0.2, "SVD": 0.2, "EASE": 0.0})).algorithm == "ALS"


def test_the_budget_stops_new_candidates_but_the_first_always_runs() -> None:
    now = [0.0]

    def clock() -> float:
        return now[0]

    def slow(algorithm: str, params: dict[str, Any]) -> dict[str, Any]:
        now[0] += 100.0  # every candidate takes 100 s
        return report({"ItemKNN": 0.05, "ALS": 0.07}.get(algorithm, 0.5))

    choice = choose(1000, slow, budget_seconds=150.0, clock=clock)
    assert choice.algorithm == "ALS"  # SVD and EASE, which would have won, were never started
    records = choice.record()["candidates"]
    assert [c["algorithm"] for c in records if "skipped" in c] == ["SVD", "EASE"]
    assert [c["seconds"] for c in records if "skipped" not in c] == [100.0, 100.0]
    assert choose(1000, slow, budget_seconds=0.0, clock=clock).algorithm == "ItemKNN"


def test_a_candidate_that_fails_on_the_data_is_skipped_and_said() -> None:
    evaluate = scripted({"ItemKNN": DatasetError("no"), "ALS": 0.2, "SVD": 0.1, "EASE": 0.1})
    choice = choose(1000, evaluate)
    assert choice.algorithm == "ALS"
    assert choice.record()["candidates"][0]["error"] == "DatasetError: no"


def test_when_every_candidate_fails_the_first_failure_is_raised() -> None:
    first = DatasetError("every rating is equal")
    evaluate = scripted({"ItemKNN": first, "ALS": DatasetError("b"), "SVD": DatasetError("c"), "EASE": 0.0})
    with pytest.raises(DatasetError, match="every rating is equal"):
        choose(EASE_MAX_ITEMS + 1, evaluate)


def test_a_bug_in_a_candidate_is_not_hidden() -> None:
    evaluate = scripted({"ItemKNN": KeyError("bug"), "ALS": 0.2, "SVD": 0.1, "EASE": 0.1})
    with pytest.raises(KeyError):
        choose(1000, evaluate)
    assert not issubclass(KeyError, RecommenderError)


def test_an_unmeasured_run_takes_the_first_candidate_and_says_why() -> None:
    choice = choose(1000, None)
    assert (choice.algorithm, choice.report) == ("ItemKNN", None)
    assert choice.record()["candidates"] == [
        {"algorithm": "ItemKNN", "seconds": 0.0, "skipped": "the run is not measured"}
    ]


def test_auto_takes_no_params() -> None:
    assert RunConfig.from_input({"algorithm": "auto"}).algorithm == "auto"
    with pytest.raises(ConfigError, match="with algorithm 'auto' each candidate keeps its defaults"):
        RunConfig.from_input({"algorithm": "auto", "params": {"n_factors": 5}})


@pytest.fixture
def s3() -> Iterator[Any]:
    with mocked_s3(BUCKET) as client:
        yield client


def test_train_fits_the_winner_on_every_rating_and_records_the_choice(s3: Any) -> None:
    spec = SyntheticSpec(users=300, items=200, ratings_per_user=25, seed=3)
    rows = [(u, i, r) for u, i, r, *_ in synthetic_ratings(spec)]
    write_snapshot(s3, SETTINGS, "r1", rows)
    config = RunConfig.from_input({"algorithm": "auto", "users_per_shard": 100}).to_dict()
    trained = train.run(s3, SETTINGS, "r1", config)
    meta = get_json(s3, BUCKET, RunPaths("p", "r1").model_meta)
    choice = meta["choice"]
    measured = [c for c in choice["candidates"] if "ndcg" in c]
    assert [c["algorithm"] for c in choice["candidates"]] == ["ItemKNN", "ALS", "SVD", "EASE"]
    assert len(measured) == 4  # 300 users: far inside the budget
    ease = measured[3]["params"]  # stars 1 to 5: rating-weighted, reg scaled to them
    assert ease["implicit"] is False and ease["reg"] > 150
    best = max(measured, key=lambda c: c["ndcg"])
    assert meta["algorithm"] == choice["chosen"] == best["algorithm"]
    assert meta["params"] == best["params"]  # the winner's own defaults, as fitted
    assert meta["quality"]["algorithm"] == best["algorithm"]
    assert trained["quality"]["ndcg"] == best["ndcg"]
    assert meta["ratings"] == len(rows)  # the published model saw every rating


def test_the_manifest_names_the_chosen_algorithm_and_every_candidate(s3: Any) -> None:
    spec = SyntheticSpec(users=120, items=80, ratings_per_user=20, seed=5)
    rows = [(u, i, r) for u, i, r, *_ in synthetic_ratings(spec)]
    manifest = publish(s3, SETTINGS, "r2", rows, {"algorithm": "auto", "users_per_shard": 50})
    model = manifest["model"]
    assert model["algorithm"] == model["choice"]["chosen"] != "auto"
    assert model["params"] == next(
        c["params"] for c in model["choice"]["candidates"] if c["algorithm"] == model["algorithm"]
    )
    assert list(Draft202012Validator(load_schema("manifest")).iter_errors(manifest)) == []
    assert problems(manifest, load_schema("manifest"), closed=True) == []
    assert manifest["config"]["algorithm"] == "auto"  # what was asked stays in the run's config


def test_the_cli_summary_names_each_candidate_and_why_one_has_no_figure() -> None:
    record = {
        "chosen": "ALS",
        "candidates": [
            {"algorithm": "ItemKNN", "seconds": 0.5, "ndcg": 0.09},
            {"algorithm": "ALS", "seconds": 1.25, "ndcg": 0.105},
            {"algorithm": "SVD", "seconds": 0.1, "error": "DatasetError: no"},
            {"algorithm": "EASE", "seconds": 0.0, "skipped": "the 300 s budget was spent"},
        ],
    }
    assert _candidates(record) == (
        "ItemKNN 0.090 (0.5s), ALS 0.105 (1.2s), SVD not measured: DatasetError: no,"
        " EASE not measured: the 300 s budget was spent"
    )


def test_ratings_near_float64s_limit_publish_a_ranking_model_and_say_why_svd_lost(s3: Any) -> None:
    """Ratings up to 4e300: SVD's fit diverges (recorded as the candidate's error), and the ranking
    models' RMSE against such ratings, whose squares overflow, is still a finite figure."""
    rows = [
        (f"u{u}", f"i{i}", float((u * 7 + i) % 5) * 1e300)
        for u in range(30)
        for i in range(20)
        if (u + i) % 3
    ]
    manifest = publish(s3, SETTINGS, "huge", rows, {"algorithm": "auto", "users_per_shard": 10})
    candidates = {c["algorithm"]: c for c in manifest["model"]["choice"]["candidates"]}
    assert candidates["SVD"]["error"].startswith("NonFiniteModelError: SVD's fitted model is not finite")
    assert manifest["model"]["algorithm"] in ("ItemKNN", "ALS", "EASE")
    model_quality = manifest["quality"]["model"]
    assert all(math.isfinite(value) for value in model_quality.values())
    assert 1e299 < model_quality["mae"] <= model_quality["rmse"] <= 4e300
    assert list(Draft202012Validator(load_schema("manifest")).iter_errors(manifest)) == []


def test_ease_is_rating_weighted_with_a_reg_scaled_to_the_ratings() -> None:
    """150 x the mean squared rating: the same model whatever the unit of the ratings."""
    assert ease_params(np.array([1.0, 2.0, 3.0])) == {"implicit": False, "reg": 700.0}
    stars, tenths = ease_params(np.array([0.5, 4.0, 5.0])), ease_params(np.array([0.05, 0.4, 0.5]))
    assert stars["reg"] == pytest.approx(tenths["reg"] * 100)
    assert dict(candidates(10, np.array([1.0, 2.0, 3.0])))["EASE"] == {"implicit": False, "reg": 700.0}


@pytest.mark.parametrize(
    "values",
    [
        np.array([0.0, 1.0, 5.0]),  # a zero would weigh nothing: binary
        np.array([-2.0, 1.0, 2.0]),
        np.array([4e300, 1e300]),  # the mean square overflows
        np.array([1e-200, 3e-200]),  # it underflows to zero
        np.array([np.nan, 1.0]),
        np.array([]),
        None,
    ],
)
def test_ease_stays_binary_where_rating_weights_mean_nothing(values: np.ndarray | None) -> None:
    assert ease_params(values) == {}


def test_ease_is_measured_only_where_its_model_fits_every_function_that_loads_it() -> None:
    """ml-latest-small's 9,742 items: two dense 9,742^2 float64 matrices (1.4 GB) and the reserve
    fit the template's 2,048 MB predictors and Merge, not 1,024 MB."""
    assert [name for name, _ in candidates(9742, memory_mb=2048)][-1] == "EASE"
    assert [name for name, _ in candidates(9742, memory_mb=1024)] == ["ItemKNN", "ALS", "SVD"]
    assert [name for name, _ in candidates(9742, memory_mb=None)][-1] == "EASE"  # no limit known
    choice = choose(9742, scripted({"ItemKNN": 0.1, "ALS": 0.2, "SVD": 0.1}), memory_mb=1024)
    assert choice.record()["candidates"][-1] == {
        "algorithm": "EASE",
        "seconds": 0.0,
        "skipped": "9,742 items: EASE's model needs about 1,848 MB where it is loaded, and the"
        " smallest of Train's, Predict's and Merge's memory is 1,024 MB",
    }
    assert "more than EASE's 15,000" in str(ease_excluded(EASE_MAX_ITEMS + 1, None))


def test_train_skips_ease_where_its_model_would_not_fit_the_functions_memory(s3: Any) -> None:
    spec = SyntheticSpec(users=120, items=200, ratings_per_user=20, seed=5)
    rows = [(u, i, r) for u, i, r, *_ in synthetic_ratings(spec)]
    write_snapshot(s3, SETTINGS, "small", rows)
    config = RunConfig.from_input({"algorithm": "auto", "users_per_shard": 50}).to_dict()
    tight = Settings(bucket=BUCKET, prefix="p", model_memory_mb=400)  # EASE: 0.6 MB over, with the reserve
    train.run(s3, tight, "small", config)
    choice = get_json(s3, BUCKET, RunPaths("p", "small").model_meta)["choice"]
    assert choice["candidates"][-1]["algorithm"] == "EASE"
    assert choice["candidates"][-1]["skipped"].endswith("Merge's memory is 400 MB")
    assert choice["chosen"] != "EASE"
