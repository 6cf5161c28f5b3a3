"""Build the recommender layer from the modules the steps import, and nothing else.

    python3 build_closure.py OUT      # writes OUT/recommender/...: the closure's modules and data
    python3 build_closure.py --list   # prints the closure, one module a line

The package also holds what only a person at a terminal runs: the `recommender` command (cli), the
local engine (local/), the synthetic data generator (sample_data), the `recommender evaluate`
report (report), the app servers' client. None of it belongs in a Lambda layer or the train image.
So the layer is the static import closure of `ROOTS`: the modules the handlers import and the train
image's entry point, then every `recommender` module those import, transitively. Every import
statement counts, wherever it is: at module level, inside a function (the lazy imports that keep
Surprise out of Predict and Merge) and under `if TYPE_CHECKING:`. A package's `__init__` comes
with any of its modules. `importlib.resources.files("recommender.x")` and
`importlib.import_module("recommender.x")` with a literal name count as imports of that package.

A package in the closure brings its data: the files beside its modules that are not Python source
(the JSON Schemas of `recommender.schemas`).

`sam build` runs this through the Makefile beside it (BuildMethod: makefile), in a copy of this
folder and with whatever `python3` it finds: so it uses the standard library only, reads nothing
outside this folder, and imports none of the package. scripts/build_layer.py builds the layer
the same way; the train image (containers/train/Dockerfile) runs the same command.
"""

from __future__ import annotations

import argparse
import ast
import shutil
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

PACKAGE = "recommender"
SOURCE = Path(__file__).resolve().parent

# What functions/*/app.py import from the package (tests/unit/test_deploy.py compares this with the
# handlers' own import statements, which live outside this folder), and the train image's entry
# point, `python -m recommender.task`.
ROOTS: tuple[str, ...] = (
    "recommender.aws",
    "recommender.config",
    "recommender.contracts",
    "recommender.observability",
    "recommender.steps.extract",
    "recommender.steps.merge",
    "recommender.steps.predict",
    "recommender.steps.train",
    "recommender.task",
)

# Calls whose literal first argument names a module or package that is loaded at run time.
_LOADING_CALLS = {"files", "import_module"}


class ClosureError(RuntimeError):
    """An import names a module of the package that does not exist."""


def module_file(name: str, source: Path = SOURCE) -> Path | None:
    """The source file of a module of the package (a package's `__init__.py`), or None."""
    base = source.joinpath(*name.split("."))
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def _is_ours(name: str) -> bool:
    return name == PACKAGE or name.startswith(PACKAGE + ".")


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def imported_modules(name: str, source: Path = SOURCE) -> set[str]:
    """The package's modules that module `name` imports, by any statement anywhere in its file."""
    path = module_file(name, source)
    if path is None:
        raise ClosureError(f"{name} is not a module of {source / PACKAGE}")
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    # What `from . import x` is relative to: the package itself for an __init__, else its parent.
    here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if _is_ours(alias.name))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if node.level - 1 >= len(here):
                    raise ClosureError(f"{path}:{node.lineno}: relative import beyond the package")
                parts = here[: len(here) - (node.level - 1)] + (node.module.split(".") if node.module else [])
                base = ".".join(parts)
            else:
                base = node.module or ""
            if not _is_ours(base):
                continue
            found.add(base)
            # `from package import module` imports the module; `from module import name` does not.
            found.update(
                f"{base}.{alias.name}" for alias in node.names if module_file(f"{base}.{alias.name}", source)
            )
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and _is_ours(node.args[0].value)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) in _LOADING_CALLS
        ):
            found.add(node.args[0].value)
    for module in found:
        if module_file(module, source) is None:
            raise ClosureError(f"{path}: imports {module}, which does not exist")
    return found


def closure(roots: Iterable[str] = ROOTS, source: Path = SOURCE) -> list[str]:
    """Every module of the package that the roots need, sorted; packages' `__init__` included."""
    pending = list(roots)
    seen: set[str] = set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        if module_file(name, source) is None:
            raise ClosureError(f"{name} is not a module of {source / PACKAGE}")
        seen.add(name)
        pending.extend(_ancestors(name))
        pending.extend(imported_modules(name, source) - seen)
    return sorted(seen)


def closure_files(modules: Iterable[str], source: Path = SOURCE) -> list[Path]:
    """The files that make up these modules, relative to `source`: each module's source, and the
    data files (anything but Python source) in the folder of each package among them."""
    files: set[Path] = set()
    for name in modules:
        path = module_file(name, source)
        assert path is not None, name
        files.add(path.relative_to(source))
        if path.name == "__init__.py":
            files.update(
                data.relative_to(source)
                for data in path.parent.iterdir()
                if data.is_file() and data.suffix not in (".py", ".pyc", ".pyo")
            )
    return sorted(files)


def build(out: Path, roots: Sequence[str] = ROOTS, source: Path = SOURCE) -> list[Path]:
    """Write the closure under `out` (the layer's python/ folder), replacing any earlier package
    there; returns the files written, relative to `out`."""
    files = closure_files(closure(roots, source), source)
    shutil.rmtree(out / PACKAGE, ignore_errors=True)
    for relative in files:
        target = out / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / relative, target)
    return files


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("out", nargs="?", type=Path, help="the layer's python/ folder")
    parser.add_argument("--list", action="store_true", help="print the closure's modules and exit")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(closure()))
        return 0
    if args.out is None:
        parser.error("give the output folder, or --list")
    files = build(args.out)
    modules = sum(1 for f in files if f.suffix == ".py")
    print(f"recommender layer: {modules} modules and {len(files) - modules} data files -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
