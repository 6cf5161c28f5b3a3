"""The layers as `sam build` builds them, assembled into the /opt a sandboxed invocation sees.

Lambda unpacks a function's layers into /opt, and its Python runtime puts /opt/python on sys.path.
The sandbox gets the same: the dependencies layer built by its own Makefile (the target `sam build`
runs) for the interpreter the sandbox uses and this machine's architecture, and the recommender
layer, merged into one folder under build/sandbox/ (hard links, so assembling it is cheap).
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from . import template
from .sandbox import runtime_python as sandbox_python

BUILD = Path("build")
MACHINES = {"arm64": "aarch64", "aarch64": "aarch64", "x86_64": "x86_64", "amd64": "x86_64"}


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
    return MACHINES.get(platform.machine().lower(), platform.machine().lower())


def template_runtime(root: Path) -> str:
    """The Python version of the template's runtime ("3.13" for python3.13)."""
    runtime: str = template.load(root / "template.yaml")["Globals"]["Function"]["Runtime"]
    return runtime.removeprefix("python")


def runtime_python(root: Path) -> RuntimePython:
    """The template's runtime version when this machine has it, else this interpreter."""
    wanted = template_runtime(root)
    found = sys.executable if f"{sys.version_info.major}.{sys.version_info.minor}" == wanted else None
    found = found or sandbox_python(wanted)
    if found is not None:
        return RuntimePython(found, wanted, wanted)
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    return RuntimePython(sys.executable, here, wanted)


def _digest(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            if "__pycache__" in file.parts or file.suffix == ".pyc":
                continue
            digest.update(str(file.relative_to(path.parent)).encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def _make(folder: Path, target: str, out: Path, variables: dict[str, str]) -> Path:
    """Run a layer's Makefile target as `sam build` does (ARTIFACTS_DIR), once per content."""
    if (out / ".complete").is_file():
        return out
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    command = ["make", "--no-print-directory", "-C", str(folder), target, f"ARTIFACTS_DIR={out}"]
    command += [f"{k}={v}" for k, v in variables.items()]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise LayerBuildError(f"`{' '.join(command)}` failed:\n{completed.stderr[-2000:]}")
    (out / ".complete").write_text(target)
    return out


def dependencies_layer(root: Path, python_version: str, machine: str | None = None) -> Path:
    """The dependencies layer (its folder holding python/), built by layers/dependencies/Makefile."""
    source = root / "layers" / "dependencies"
    machine = machine or host_machine()
    key = _digest(source / "Makefile", source / "requirements.lock")
    return _make(
        source,
        "build-DependenciesLayer",
        root / BUILD / "layer" / key / f"{machine}-py{python_version}",
        {"PYTHON": sys.executable, "PYTHON_VERSION": python_version, "ARCH": machine},
    )


def recommender_layer(root: Path) -> Path:
    """The recommender layer (its folder holding python/), as `sam build` builds it."""
    source = root / "layers" / "recommender"
    makefile = source / "Makefile"
    if makefile.is_file():
        key = _digest(makefile, source / "recommender")
        return _make(source, "build-RecommenderLayer", root / BUILD / "recommender-layer" / key, {})
    out = root / BUILD / "recommender-layer" / _digest(source / "recommender")
    if not (out / ".complete").is_file():
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(
            source / "recommender",
            out / "python" / "recommender",
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
        (out / ".complete").write_text("copied")
    return out


def prepare_opt(root: Path, python_version: str, extra: list[Path] | None = None) -> Path:
    """The folder a sandboxed invocation sees as /opt: every layer's python/ merged, the
    template's two and the `extra` ones (folders holding python/, e.g. a user's algorithm)."""
    built = [dependencies_layer(root, python_version), recommender_layer(root)]  # named by content
    layers = [*built, *(extra or [])]
    names = [str(layer) for layer in built]
    names += [f"{layer}:{_digest(layer / 'python')}" for layer in extra or []]
    key = hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]
    opt = root / BUILD / "sandbox" / f"opt-{key}"
    if (opt / ".complete").is_file():
        return opt
    shutil.rmtree(opt, ignore_errors=True)
    for layer in layers:
        for path in sorted((layer / "python").rglob("*")):
            target = opt / "python" / path.relative_to(layer / "python")
            if path.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                raise LayerBuildError(f"two layers hold {target.relative_to(opt)}")
            try:
                os.link(path, target)
            except OSError:
                shutil.copy2(path, target)
    (opt / ".complete").write_text("\n".join(str(layer) for layer in layers))
    return opt
