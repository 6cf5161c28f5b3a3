"""Every command that takes a database URL, fed malformed and unreachable ones holding a password:
it fails with a short message, and the password is in nothing it prints or writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from recommender.cli import main
from tests.database_urls import MALFORMED, UNREACHABLE, leaks, leaks_in_files


def movielens(folder: Path) -> Path:
    folder.mkdir()
    (folder / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,10,4.0,964982703\n")
    return folder


def commands(tmp_path: Path) -> dict[str, list[str]]:
    out = str(tmp_path / "out")
    return {
        "load": ["load", "--synthetic", "--users", "10", "--items", "20", "--ratings", "60"],
        "run --movielens": ["run", "--movielens", str(movielens(tmp_path / "ml")), "--out", out],
        "demo": ["demo", "--users", "10", "--items", "10", "--out", out, "--quiet"],
        "run": ["run", "--out", out, "--quiet"],
    }


@pytest.mark.parametrize("command", ["load", "run --movielens", "demo", "run"])
@pytest.mark.parametrize("url", list(MALFORMED.values()), ids=list(MALFORMED))
@pytest.mark.parametrize("how", ["option", "environment"])
def test_a_malformed_url_is_refused_before_anything_starts_and_never_shown(
    command: str,
    url: str,
    how: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = commands(tmp_path)[command]
    if how == "option":
        argv = [*argv, "--database-url", url]
    else:
        monkeypatch.setenv("DATABASE_URL", url)
    assert main(argv) == 2
    printed = capfd.readouterr()
    assert "recommender: the database URL" in printed.err, printed.err
    assert "Traceback" not in printed.err
    assert leaks(printed.out, printed.err) == []
    assert leaks_in_files(tmp_path) == {}
    assert not (tmp_path / "out").exists()  # refused before the engine or any server started


@pytest.mark.parametrize("command", ["load", "run --movielens", "demo"])
@pytest.mark.parametrize("url", list(UNREACHABLE.values()), ids=list(UNREACHABLE))
def test_an_unreachable_database_is_named_without_the_password(
    command: str, url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main([*commands(tmp_path)[command], "--database-url", url]) == 1
    printed = capfd.readouterr()
    assert "recommender: cannot connect to the database" in printed.err, printed.err
    assert "127.0.0.1" in printed.err and "Traceback" not in printed.err
    assert leaks(printed.out, printed.err) == []
    assert leaks_in_files(tmp_path) == {}


def test_evaluate_never_reads_the_database_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """It takes no database option: DATABASE_URL in the environment is not read, nor shown."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", MALFORMED["password with @ : /"])
    argv = ["evaluate", "--users", "30", "--items", "15", "--ratings-per-user", "6"]
    argv += ["--algorithms", "BaselineOnly", "--top-n-only", "--json", str(tmp_path / "report.json")]
    assert main(argv) == 0
    printed = capfd.readouterr()
    assert leaks(printed.out, printed.err) == []
    assert leaks_in_files(tmp_path) == {}
