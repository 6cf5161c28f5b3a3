"""The layers as `sam build` builds them, and the /opt a sandboxed invocation sees.

Each layer is built by its own Makefile target, the one `sam build` runs (BuildMethod: makefile,
target build-<LogicalId>): the dependencies layer and the train layer pip-install a lock of
layers/dependencies/ (requirements.lock, requirements-train.lock) for a Python version and an
architecture; the recommender layer writes the modules the steps import (build_closure.py), in a
copy of its folder, since SAM builds it in one. Each build is cached under build/ by its content.
scripts/build_layer.py measures them for deployment; the local engine merges the layers of each
function (the template's Globals and its own) into the /opt of its sandbox (hard links), under the
template's runtime version when this machine has it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from . import template
from .sandbox import runtime_python as installed_python

BUILD = Path("build")


class LayerBuildError(RuntimeError):
    """A layer could not be built; the message says which and why."""


@dataclass(frozen=True)
class RuntimePython:
    """The interpreter sandboxed invocations run under."""

    executable: str
    version: str  # "3.13"
    wanted: str  # the template's runtime version

    @property
    def stands_in(self) -> bool:
        return self.version != self.wanted


def host_machine() -> str:
    """This machine's architecture, named as in wheel tags (aarch64, x86_64)."""
    return platform.machine().lower().replace("arm64", "aarch64").replace("amd64", "x86_64")


def template_runtime(root: Path) -> str:
    """The Python version of the template's runtime ("3.13" for python3.13)."""
    runtime: str = template.load(root / "template.yaml")["Globals"]["Function"]["Runtime"]
    return runtime.removeprefix("python")


def find_python(version: str) -> str | None:
    """An interpreter of exactly this minor version here: this one, else pyenv's or PATH's."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        return sys.executable
    return installed_python(version)


def runtime_python(root: Path) -> RuntimePython:
    """The template's runtime version when this machine has it, else this interpreter."""
    wanted = template_runtime(root)
    found = find_python(wanted)
    if found is not None:
        return RuntimePython(found, wanted, wanted)
    return RuntimePython(sys.executable, f"{sys.version_info.major}.{sys.version_info.minor}", wanted)


def _make(folder: Path, target: str, out: Path, variables: dict[str, str]) -> None:
    command = ["make", "--no-print-directory", "-C", str(folder), target, f"ARTIFACTS_DIR={out}"]
    command += [f"{k}={v}" for k, v in variables.items()]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise LayerBuildError(f"`{' '.join(command)}` failed:\n{completed.stderr[-3000:]}")


def _fresh(out: Path) -> bool:
    """Whether `out` holds a finished build; otherwise it is emptied for one."""
    if (out / ".complete").is_file():
        return False
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    return True


# The layers pip builds from a lock of layers/dependencies/, by logical id.
LOCKS = {"DependenciesLayer": "requirements.lock", "TrainLayer": "requirements-train.lock"}
RECOMMENDER = "RecommenderLayer"


def dependencies_key(root: Path, layer: str = "DependenciesLayer") -> str:
    """Changes whenever what this locked layer's build does or installs changes."""
    source = root / "layers" / "dependencies"
    digest = hashlib.sha256(layer.encode())
    for path in (source / "Makefile", source / LOCKS[layer]):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def locked_layer(root: Path, layer: str, python_version: str, machine: str, out: Path | None = None) -> Path:
    """A layer built from its lock (LOCKS) for this Python and architecture (its folder holding
    python/)."""
    name = machine if python_version == template_runtime(root) else f"{machine}-py{python_version}"
    out = out or root / BUILD / "layer" / dependencies_key(root, layer) / name
    if _fresh(out):
        _make(
            root / "layers" / "dependencies",
            f"build-{layer}",
            out,
            {
                "PYTHON": sys.executable,
                "PYTHON_VERSION": python_version,
                "ARCH": machine,
                "RUNTIME_PYTHON": find_python(python_version) or f"python{python_version}",
            },
        )
        (out / ".complete").write_text(
            json.dumps({"layer": layer, "machine": machine, "python": python_version})
        )
    return out


def dependencies_layer(root: Path, python_version: str, machine: str, out: Path | None = None) -> Path:
    """The dependencies layer, which every function carries (its folder holding python/)."""
    return locked_layer(root, "DependenciesLayer", python_version, machine, out)


def train_layer(root: Path, python_version: str, machine: str, out: Path | None = None) -> Path:
    """The train layer, implicit and scipy, which only the Train function carries."""
    return locked_layer(root, "TrainLayer", python_version, machine, out)


def built_layer(root: Path, layer: str, python_version: str, machine: str) -> Path:
    """The template's layer of this logical id, built (its folder holding python/)."""
    if layer == RECOMMENDER:
        return recommender_layer(root)
    if layer not in LOCKS:
        raise LayerBuildError(f"template.yaml's layer {layer} has no build here (layers/*/Makefile)")
    return locked_layer(root, layer, python_version, machine)


def _source_files(folder: Path) -> list[Path]:
    """The files of a layer's source folder, without what building or testing here leaves in it."""
    return sorted(
        path
        for path in folder.rglob("*")
        if path.is_file()
        and not {"__pycache__", "build"} & set(path.relative_to(folder).parts)
        and not any(part.endswith(".egg-info") for part in path.relative_to(folder).parts)
    )


def recommender_key(root: Path) -> str:
    """Changes whenever the package, its builder or its Makefile changes."""
    source = root / "layers" / "recommender"
    digest = hashlib.sha256()
    for path in _source_files(source):
        digest.update(path.relative_to(source).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def recommender_layer(root: Path, out: Path | None = None) -> Path:
    """The recommender layer (its folder holding python/), built in a copy of layers/recommender/
    as `sam build` builds it, so that the build can use nothing outside that folder. Pure Python:
    the same for every architecture."""
    source = root / "layers" / "recommender"
    out = out or root / BUILD / "layer" / "recommender" / recommender_key(root)
    if _fresh(out):
        with tempfile.TemporaryDirectory() as scratch:
            copy = Path(scratch) / "source"
            for path in _source_files(source):
                target = copy / path.relative_to(source)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
            version = template_runtime(root)
            _make(
                copy,
                "build-RecommenderLayer",
                out,
                {
                    "PYTHON": sys.executable,
                    "PYTHON_VERSION": version,
                    "RUNTIME_PYTHON": find_python(version) or f"python{version}",
                },
            )
        (out / ".complete").write_text(json.dumps({"source": recommender_key(root)}))
    return out


def _digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in _source_files(folder):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def prepare_opt(
    root: Path, python_version: str, layers: Sequence[str], extra: list[Path] | None = None
) -> Path:
    """The folder a sandboxed invocation sees as /opt: the python/ of the template's `layers` (by
    logical id, a function's layers) and of the `extra` ones (folders holding python/, e.g. a
    user's algorithm), merged. One folder per distinct set, so that a function sees its own."""
    built = [built_layer(root, layer, python_version, host_machine()) for layer in layers]
    folders = [*built, *(extra or [])]
    names = [str(layer) for layer in built]  # their folders are named by their content
    names += [f"{layer}:{_digest(layer / 'python')}" for layer in extra or []]
    opt = root / BUILD / "sandbox" / f"opt-{hashlib.sha256(chr(10).join(names).encode()).hexdigest()[:16]}"
    if not _fresh(opt):
        return opt
    for layer in folders:
        for path in sorted((layer / "python").rglob("*")):
            target = opt / "python" / path.relative_to(layer / "python")
            if path.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                raise LayerBuildError(f"two layers hold python/{target.relative_to(opt / 'python')}")
            try:
                os.link(path, target)
            except OSError:
                shutil.copy2(path, target)
    (opt / ".complete").write_text("\n".join(names))
    return opt
