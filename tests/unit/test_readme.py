"""The README's hostile-input table names the tests that hold each row: they must exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_test_the_hostile_input_table_names_exists() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Hostile input: each case and what happens", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`((?:[a-z0-9_]+/)?test_[a-z0-9_]+\.py)`", section))
    assert len(named) >= 10
    for name in sorted(named):
        candidates = [ROOT / "tests" / name] if "/" in name else [ROOT / "tests" / "unit" / name]
        assert any(path.is_file() for path in candidates), f"README names {name}, which does not exist"
