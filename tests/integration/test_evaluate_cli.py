"""`recommender evaluate` as a user runs it, and the cross-validation protocol on MovieLens."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from surprise import SVD, BaselineOnly, Dataset, Reader
from surprise.model_selection import KFold, cross_validate

from recommender.cli import main
from recommender.evaluation import evaluate
from recommender.report import cross_validate_ratings
from recommender.sample_data import SyntheticSpec, calibrated, read_movielens, synthetic_ratings
from recommender.snapshot import ratings_from_rows

pytestmark = pytest.mark.slow  # the MovieLens cross-validation runs long

MOVIELENS = Path(__file__).resolve().parents[3] / "shared" / "data" / "ml-latest-small"
SMALL = ["--synthetic", "--users", "200", "--items", "150", "--ratings-per-user", "15"]


def test_evaluate_prints_both_tables_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report.json"
    args = ["evaluate", *SMALL, "--algorithms", "SVD", "BaselineOnly", "--folds", "3", "--top-n", "5"]
    assert main([*args, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "KFold(n_splits=3, random_state=0, shuffle=True)" in printed
    assert "| algorithm" in printed and " ndcg@5 |" in printed
    assert "popularity (most-rated unseen)" in printed

    report = json.loads(out.read_text())
    ratings = ratings_from_rows(
        synthetic_ratings(SyntheticSpec(users=200, items=150, ratings_per_user=15, **calibrated(150)))
    )
    assert report["dataset"]["ratings"] == ratings.n_ratings
    cv = cross_validate_ratings(ratings, ["SVD", "BaselineOnly"], folds=3, seed=0)
    assert [r["rmse"] for r in report["cross_validation"]["results"]] == [r["rmse"] for r in cv]
    single = evaluate(ratings, "SVD", {}, None, k=5)
    svd = report["top_n"]["models"][0]
    assert svd["algorithm"] == "SVD"
    assert {k: v for k, v in svd.items() if k not in ("seconds", "algorithm", "params")} == {
        k: v for k, v in single["model"].items() if k != "seconds"
    }
    assert report["top_n"]["popularity"] == single["popularity"]
    assert report["top_n"]["split"] == single["split"]


def test_one_protocol_only(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", *SMALL, "--algorithms", "BaselineOnly", "--cv-only"]) == 0
    printed = capsys.readouterr().out
    assert "Cross-validation" in printed and "hold-out" not in printed
    assert main(["evaluate", *SMALL, "--algorithms", "BaselineOnly", "--top-n-only"]) == 0
    printed = capsys.readouterr().out
    assert "Cross-validation" not in printed and "Top-10 hold-out" in printed


def test_bad_options_fail_before_any_work(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", *SMALL, "--algorithms", "SVD", "NoSuchAlgo"]) == 2
    assert "NoSuchAlgo" in capsys.readouterr().err
    assert main(["evaluate", *SMALL, "--folds", "1"]) == 2
    assert "--folds" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["evaluate", "--cv-only", "--top-n-only"])


@pytest.mark.parametrize("where", ["missing/report.json", "."])
def test_a_report_path_that_cannot_be_written_fails_before_any_work(
    where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_work(*args: object, **kwargs: object) -> None:
        raise AssertionError("the evaluation ran before the report's path was checked")

    monkeypatch.setattr("recommender.report.run_report", no_work)
    target = tmp_path / where
    assert main(["evaluate", *SMALL, "--top-n-only", "--json", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("recommender: --json ") and str(target) in err
    assert "Traceback" not in err


@pytest.mark.skipif(
    not (MOVIELENS / "ratings.csv").is_file(), reason="MovieLens ml-latest-small is not present"
)
def test_cross_validation_on_movielens_is_surprises() -> None:
    """Surprise's protocol on ml-latest-small (about 15 s): the same figures as Surprise's own
    cross_validate on a pandas-built dataset, and SVD near the ~0.87 RMSE usually reported for it
    (ml-100k's published 0.934 is another dataset)."""
    rows = list(read_movielens(MOVIELENS))
    results = cross_validate_ratings(ratings_from_rows(rows), ["SVD", "BaselineOnly"], folds=5, seed=0)
    frame = pd.DataFrame([r[:3] for r in rows], columns=["user", "item", "rating"])
    data = Dataset.load_from_df(frame, Reader(rating_scale=(0.5, 5.0)))
    for result, algo in zip(results, [SVD(random_state=0), BaselineOnly(verbose=False)]):
        out = cross_validate(algo, data, measures=["rmse", "mae"], cv=KFold(5, random_state=0))
        assert result["rmse"] == pytest.approx(float(np.mean(out["test_rmse"])), abs=1e-12, rel=0)
        assert result["mae"] == pytest.approx(float(np.mean(out["test_mae"])), abs=1e-12, rel=0)
    assert 0.85 < results[0]["rmse"] < 0.89
    assert 0.85 < results[1]["rmse"] < 0.89
