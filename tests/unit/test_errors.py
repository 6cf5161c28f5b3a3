"""The error vocabulary: one module, one base class, the workflow's names marked, the CLI catching
only the product's own errors.

A Lambda function's error reaches Step Functions as its class name alone, so the names the ASL's
`ErrorEquals` gives are checked against `recommender.errors` both ways: a class renamed there, or a
name mistyped in the ASL, would otherwise only show as a Retry that never happens.
"""

from __future__ import annotations

import ast
import inspect
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from recommender import cli, errors
from recommender.errors import ConfigError, RecommenderError, WorkflowError

ROOT = Path(__file__).resolve().parents[2]
ASL = ROOT / "statemachine" / "recommender.asl.json"
PACKAGE = ROOT / "layers" / "recommender" / "recommender"
# The local engine emulates AWS on this machine; its errors are not the product's (see errors.py).
TOOLING = PACKAGE / "local"


def error_names(states: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(state, name) for every name in a Retry's or Catch's ErrorEquals, Map iterations included."""
    for name, state in states.items():
        for rule in [*state.get("Retry", []), *state.get("Catch", [])]:
            for error in rule["ErrorEquals"]:
                yield name, error
        for nested in ("ItemProcessor", "Iterator"):
            if nested in state:
                yield from error_names(state[nested]["States"])
        for branch in state.get("Branches", []):
            yield from error_names(branch["States"])


def product_names() -> dict[str, str]:
    """The names the ASL gives that are no service's: States.*, Lambda.*, ECS.* and the like hold a
    dot, a Python class name never does. name -> the first state that gives it."""
    found: dict[str, str] = {}
    for state, name in error_names(json.loads(ASL.read_text())["States"]):
        if "." not in name:
            found.setdefault(name, state)
    return found


def vocabulary() -> dict[str, type[BaseException]]:
    return {
        name: value
        for name, value in vars(errors).items()
        if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == errors.__name__
    }


def test_every_name_the_asl_retries_or_catches_is_a_workflow_error() -> None:
    names = product_names()
    assert names, "the ASL names none of the product's errors: the check would test nothing"
    for name, state in names.items():
        error = vocabulary().get(name)
        assert error is not None, f"{state!r} names {name}, which recommender.errors does not define"
        assert issubclass(error, WorkflowError), f"{name} ({state!r}) is not marked a WorkflowError"


def test_every_workflow_error_is_named_by_the_asl() -> None:
    marked = {name for name, error in vocabulary().items() if issubclass(error, WorkflowError)}
    assert marked - {"WorkflowError"} == set(product_names())


def test_every_error_is_a_recommender_error_named_as_one() -> None:
    for name, error in vocabulary().items():
        assert issubclass(error, RecommenderError), name
        assert name.endswith("Error"), name


def defined_exceptions(path: Path) -> list[str]:
    """Classes in a module whose bases are named as exceptions are (…Error, …Exception)."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            bases = [ast.unparse(base).rsplit(".", 1)[-1] for base in node.bases]
            if any(base.endswith(("Error", "Exception")) for base in bases):
                found.append(f"{path.relative_to(PACKAGE)}: {node.name}")
    return found


def test_the_product_defines_its_errors_in_one_module() -> None:
    elsewhere = [
        found
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != PACKAGE / "errors.py" and TOOLING not in path.parents
        for found in defined_exceptions(path)
    ]
    assert elsewhere == []


def test_the_cli_prints_a_product_error_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(args: Any) -> int:
        raise ConfigError("top_n must be between 1 and 1000, not 0")

    monkeypatch.setattr(cli, "cmd_recommend", refuse)
    assert cli.main(["recommend", "1"]) == 2
    assert capsys.readouterr().err == "recommender: top_n must be between 1 and 1000, not 0\n"


def test_the_cli_lets_anything_else_through(monkeypatch: pytest.MonkeyPatch) -> None:
    """A ValueError that is not the product's is a bug: its traceback is what finds it."""

    def fail(args: Any) -> int:
        raise ValueError("a bug")

    monkeypatch.setattr(cli, "cmd_recommend", fail)
    with pytest.raises(ValueError, match="a bug"):
        cli.main(["recommend", "1"])


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["recommend", "--rated", "item 1=nan"], "is not ITEM=RATING, RATING a finite number"),
        (["run", "--input", "missing.json"], "--input missing.json: No such file or directory"),
        (["run", "--input", "bad.json"], "--input bad.json: not a JSON document"),
    ],
)
def test_a_bad_option_is_one_line_before_any_work(
    argv: list[str],
    said: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    (tmp_path / "bad.json").write_text("{not json")
    published = tmp_path / "published"
    published.mkdir()
    monkeypatch.setattr(
        "recommender.cli.Recommendations.open", lambda source: None
    )  # the option alone is wrong
    assert cli.main([*argv, *(["--from", str(published)] if argv[0] == "recommend" else [])]) == 2
    err = capsys.readouterr().err
    assert err.startswith("recommender: ") and said in err and err.count("\n") == 1, err
