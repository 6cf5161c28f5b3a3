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


def test_the_layout_names_every_module_of_the_package() -> None:
    """A module the README's layout does not place is one a newcomer cannot find by reading it."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Repository layout\n", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`([a-z_/]+)`", section))
    package = ROOT / "layers" / "recommender" / "recommender"
    modules = {path.stem for path in package.glob("*.py") if path.stem != "__init__"}
    subpackages = {f"{path.name}/" for path in package.iterdir() if (path / "__init__.py").is_file()}
    steps = {f"steps/{path.stem}" for path in (package / "steps").glob("*.py") if path.stem != "__init__"}
    expected = (modules | subpackages | steps) - {"steps/"}
    assert sorted(expected - named) == []
