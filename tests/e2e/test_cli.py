"""The `recommender` command as a user runs it: demo, run on a MovieLens folder, recommend."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recommender.choice import ease_excluded
from recommender.cli import main

pytestmark = pytest.mark.e2e

MOVIELENS = Path(__file__).resolve().parents[3] / "shared" / "data" / "ml-latest-small"


def test_demo_then_recommend_for_known_and_unknown_users(
    database_url: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = main(
        ["demo", "--users", "150", "--items", "80", "--database-url", database_url, "--out", str(out)]
    )
    captured = capfd.readouterr()  # the sandboxed steps write to this process's file descriptors
    printed = captured.out
    assert code == 0, printed
    assert "published" in printed and "a new user (fallback)" in printed
    assert "Lambda sandbox: read-only file system, memory cap, /tmp cap and non-root user enforced" in printed
    assert "Warning" not in captured.err  # a cold start logs no warning (joblib's, for one)
    latest = json.loads((out / "latest.json").read_text())
    manifest = json.loads((out / latest["manifest"]).read_text())
    assert manifest["model"]["users"] == 150

    assert main(["recommend", "1", "--from", str(out), "-n", "3"]) == 0
    known = capfd.readouterr().out
    assert "personal recommendations" in known
    assert len([line for line in known.splitlines() if line.strip()[:2].rstrip(".").isdigit()]) == 3

    assert main(["recommend", "nobody-at-all", "--from", str(out)]) == 0
    unknown = capfd.readouterr().out
    assert "unknown user: fallback list" in unknown
    assert manifest["fallback"]["items"][0] in unknown


def test_bad_options_fail_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--top-n", "0", "--out", str(tmp_path)]) == 2
    assert "top_n must be between 1 and" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
    assert main(["recommend", "1", "--from", str(tmp_path)]) == 2
    assert "no latest.json" in capsys.readouterr().err


@pytest.mark.skipif(
    not (MOVIELENS / "ratings.csv").is_file(), reason="MovieLens ml-latest-small is not present"
)
def test_run_on_a_movielens_folder(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["run", "--movielens", str(MOVIELENS), "--database-url", database_url, "--out", str(tmp_path)]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    manifest = json.loads(
        (tmp_path / json.loads((tmp_path / "latest.json").read_text())["manifest"]).read_text()
    )
    assert manifest["dataset"]["rows"] == 100_836
    assert manifest["model"]["users"] == 610
    assert manifest["model"]["rating_scale"] == [0.5, 5.0]
    assert manifest["model"]["algorithm"] == "EASE"  # the default's choice, as benchmarks/quality.py finds


def test_the_default_serves_ease_at_the_largest_catalogue_its_memory_rule_admits(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """10,300 items: just inside auto's rule for EASE at the template's 2,048 MB Predict and Merge
    (two 10,300^2 float64 matrices and 400 MB: 2,019 MB). Every step runs at its template memory
    in the sandbox, so a rule that admits a model the functions cannot hold fails here."""
    items = 10_300
    assert ease_excluded(items, 2048) is None and ease_excluded(10_500, 2048) is not None
    args = ["--users", "3000", "--items", str(items), "--ratings-per-user", "60"]
    code = main(["demo", *args, "--database-url", database_url, "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    manifest = json.loads(
        (tmp_path / json.loads((tmp_path / "latest.json").read_text())["manifest"]).read_text()
    )
    assert 10_250 < manifest["model"]["items"] <= items  # a few items drew no rating
    assert manifest["model"]["algorithm"] == manifest["model"]["choice"]["chosen"] == "EASE"


def test_recommend_for_ratings_folds_into_the_published_model(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert (
        main(["demo", "--users", "120", "--items", "60", "--database-url", database_url, "--out", str(out)])
        == 0
    )
    capsys.readouterr()
    rated = ["item-00001=5", "item-00002=1", "item-00003=4.5"]
    assert (
        main(["recommend", "--rated", *rated, "--from", str(out), "-n", "5", "--exclude", "item-00004"]) == 0
    )
    printed = capsys.readouterr().out
    assert "for these 3 rating(s), folded into run" in printed
    listed = [line.split()[1] for line in printed.splitlines()[1:] if line.strip()]
    assert len(listed) == 5
    assert not {"item-00001", "item-00002", "item-00003", "item-00004"} & set(listed)
    assert main(["recommend", "--rated", "item-00001", "--from", str(out)]) == 2
    assert "is not ITEM=RATING" in capsys.readouterr().err
