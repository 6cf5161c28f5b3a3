"""`recommender load`'s option mistakes, refused before any database is reached. Loading into a
real PostgreSQL is tests/integration/test_load.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from recommender.cli import main


def test_load_command_mistakes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert main(["load", "--synthetic", "--users", "10"]) == 2
    assert "give --database-url URL" in capsys.readouterr().err  # a temporary server would be lost
    assert main(["load", "--movielens", str(tmp_path), "--users", "10", "--database-url", "x"]) == 2
    assert "--users: for --synthetic only" in capsys.readouterr().err
    assert (
        main(["load", "--synthetic", "--users", "10", "--items", "20", "--ratings", "500", "--data-dir", "x"])
        == 2
    )
    assert "cannot be spread" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # one target only
        main(["load", "--synthetic", "--database-url", "x", "--data-dir", str(tmp_path)])
