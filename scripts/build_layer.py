"""Build every layer here exactly as `sam build` does, then measure them against Lambda.

    .venv/bin/python scripts/build_layer.py            # build for the template's architecture, report
    .venv/bin/python scripts/build_layer.py --lock     # rewrite the hashes of both locks

What it does:
1. Reads the runtime and architecture from template.yaml (the one place they are set).
2. Runs `make build-DependenciesLayer` in layers/dependencies/ with ARTIFACTS_DIR pointing to a
   folder under build/layer/: the very target `sam build` runs (BuildMethod: makefile), i.e.
   `pip install --platform manylinux_2_X_<arch> --only-binary=:all: --no-deps --require-hashes
   --target ...` from requirements.lock, then tests and caches removed.
   `make build-TrainLayer` there too builds the train layer from requirements-train.lock (implicit
   and scipy, for the Train function alone). Likewise `make build-RecommenderLayer` in a copy of
   layers/recommender/ (SAM builds in a copy too): the modules the steps import and their package
   data (layers/recommender/build_closure.py).
3. Prints each layer's unzipped and zipped size and its largest packages, and every function's
   unzipped total (its code + the layers the template gives it) against Lambda's 250 MB limit;
   exits 1 when one is over its budget (below), which is under that limit.
4. Checks every shared object: built for the target machine, needing no newer glibc than the
   runtime's image (Amazon Linux 2023: 2.34), and no scipy or pandas in the dependencies layer.
5. When an interpreter of the runtime's Python version exists here, builds the layer again for this
   machine's architecture (same locks, same wheels for the other platform) and imports every
   handler in a subprocess whose sys.path is only: the function's folder, its built layers (never
   layers/recommender/ itself) and the standard library; boto3 too comes from the layer.
   It runs with the template's environment and a read-only home folder, as on Lambda. It reports
   whether Surprise pulled in scipy or pandas (it must not), whether implicit and scipy can be
   imported (in Train alone, with its train layer), and each handler's cold import time:
   the best of --repeat imports (default 3), with the bytecode the layers' builds compiled and no
   other (-B: nothing is written, as to Lambda's read-only /opt).

The tests (tests/integration/test_layers.py) call the same functions, with the same cache folder.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from recommender.local import layers

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"
LAYER_SOURCE = ROOT / "layers" / "dependencies"
LOCK = LAYER_SOURCE / "requirements.lock"
TRAIN_LOCK = LAYER_SOURCE / "requirements-train.lock"
# Each layer built from a lock, by logical id: the same Makefile builds both (build-<LogicalId>).
LOCKS = {"DependenciesLayer": LOCK, "TrainLayer": TRAIN_LOCK}
RECOMMENDER_SOURCE = ROOT / "layers" / "recommender"

# Lambda: the function's code and all its layers, unzipped, at most 250 MB (262,144,000 bytes).
LAMBDA_UNZIPPED_LIMIT = 262_144_000
# What this project keeps free under that limit: a user's own algorithm module in a layer, a
# newer numpy, ... must still fit. A function with the shared layers alone stays within half the
# limit. Train also carries the train layer (scipy is most of its 115 MB): it stays 16 MB under the
# limit, room for a user's algorithm layer, which Train must carry too.
SIZE_BUDGET = LAMBDA_UNZIPPED_LIMIT // 2
TRAIN_SIZE_BUDGET = LAMBDA_UNZIPPED_LIMIT - 16 * 1_048_576
TRAIN_LAYER = "TrainLayer"
# What only a function with the train layer can import; the others must not find them.
TRAIN_MODULES = ("implicit", "scipy")
# glibc of the image each runtime runs on (python3.12 and newer: Amazon Linux 2023).
RUNTIME_GLIBC = {"python3.11": (2, 26), "python3.12": (2, 34), "python3.13": (2, 34)}
# Lambda architecture -> the machine name in wheel tags and `uname -m`; ELF e_machine numbers.
MACHINES = {"arm64": "aarch64", "x86_64": "x86_64"}
ELF_MACHINE = {183: "aarch64", 62: "x86_64"}
# The AWS SDK for Python and what it needs on Python 3.13, as top-level import names: in the layer, at
# the versions the tests run with, rather than whichever the Lambda runtime provides that day.
SDK = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six", "urllib3")
# Must not be in the dependencies layer, which every function carries: Surprise declares scipy but
# never imports it at run time. scipy is in the train layer, for the Train function alone.
FORBIDDEN = ("scipy", "pandas")


@dataclass(frozen=True)
class Target:
    runtime: str  # python3.13
    architecture: str  # arm64 (the template's name)

    @property
    def python_version(self) -> str:
        return self.runtime.removeprefix("python")

    @property
    def machine(self) -> str:
        return MACHINES[self.architecture]


# --- the template --------------------------------------------------------------------------------


class _CloudFormationLoader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML has no type hints here
    """Accepts !Ref, !Sub, ...: `!Ref Name` becomes {"Ref": "Name"}, the others None (their values
    do not matter here)."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, str] | None:
    if suffix == "Ref" and isinstance(node, yaml.ScalarNode):
        return {"Ref": loader.construct_scalar(node)}
    return None


_CloudFormationLoader.add_multi_constructor("!", _intrinsic)


def _template() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.load(TEMPLATE.read_text(), Loader=_CloudFormationLoader)
    return loaded


def template_target() -> Target:
    """The runtime and architecture every function and layer of template.yaml uses."""
    function = _template()["Globals"]["Function"]
    (architecture,) = function["Architectures"]
    return Target(runtime=function["Runtime"], architecture=architecture)


def function_code_dirs() -> dict[str, Path]:
    template = _template()
    return {
        name: ROOT / resource["Properties"]["CodeUri"]
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }


def function_layers() -> dict[str, list[str]]:
    """Each function's layers, by logical id: Globals' followed by its own, as SAM merges lists."""
    template = _template()
    shared = template["Globals"]["Function"].get("Layers", [])
    return {
        name: [layer["Ref"] for layer in shared + resource["Properties"].get("Layers", [])]
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }


# --- building ------------------------------------------------------------------------------------


def build(target: Target, machine: str | None = None) -> Path:
    """The dependencies layer for the target's Python, built by its Makefile (what `sam build`
    runs) for `machine` (default: the target's); returns python/'s parent."""
    return layers.dependencies_layer(ROOT, target.python_version, machine or target.machine)


def build_recommender() -> Path:
    """The recommender layer, built by its Makefile in a copy of its folder as `sam build` does."""
    return layers.recommender_layer(ROOT)


def build_train(target: Target, machine: str | None = None) -> Path:
    """The train layer (implicit, scipy), built by the dependencies layer's Makefile from its own
    lock for `machine` (default: the target's); returns python/'s parent."""
    return layers.train_layer(ROOT, target.python_version, machine or target.machine)


def size_budget(function_layers: Sequence[str]) -> int:
    """The most a function carrying these layers may weigh, unzipped (see SIZE_BUDGET)."""
    return TRAIN_SIZE_BUDGET if TRAIN_LAYER in function_layers else SIZE_BUDGET


# --- measuring -----------------------------------------------------------------------------------


def _files(root: Path, bytecode: bool = True) -> list[Path]:
    """What gets packaged: no egg-info of an editable install, no build markers; bytecode where a
    build compiled it (a layer), not where running the code here left it (`bytecode=False`: a
    function's folder, which SAM copies without its caches)."""
    found = []
    for path in root.rglob("*"):
        parts = set(path.relative_to(root).parts)
        if ("__pycache__" in parts and not bytecode) or any(p.endswith(".egg-info") for p in parts):
            continue
        if path.is_file() and path.name != ".complete":
            found.append(path)
    return found


def unzipped_size(root: Path, bytecode: bool = True) -> int:
    return sum(path.stat().st_size for path in _files(root, bytecode))


def zipped_size(root: Path) -> int:
    with tempfile.TemporaryFile() as handle:
        with zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in _files(root):
                archive.write(path, path.relative_to(root).as_posix())
        return handle.tell()


def largest_packages(layer: Path, count: int = 8) -> list[tuple[str, int]]:
    python = layer / "python"
    sizes = {
        entry.name: unzipped_size(entry) if entry.is_dir() else entry.stat().st_size
        for entry in python.iterdir()
    }
    return sorted(sizes.items(), key=lambda item: -item[1])[:count]


def top_level_names(layer: Path) -> set[str]:
    return {entry.name.removesuffix(".py") for entry in (layer / "python").iterdir()}


def shared_objects(layer: Path) -> list[Path]:
    return [p for p in _files(layer) if p.suffix == ".so" or ".so." in p.name]


def elf_machine(path: Path) -> str:
    header = path.read_bytes()[:20]
    assert header[:4] == b"\x7fELF", f"{path} is not an ELF file"
    number = int.from_bytes(header[18:20], "little")
    return ELF_MACHINE.get(number, f"e_machine {number}")


def glibc_needed(path: Path) -> tuple[int, int]:
    """The newest GLIBC_x.y symbol version a shared object needs (objdump -T, as the docs do it)."""
    if shutil.which("objdump"):
        text = subprocess.run(["objdump", "-T", str(path)], capture_output=True, text=True).stdout
        if not text:  # an objdump for this machine only cannot read the other architecture
            text = path.read_bytes().decode("latin-1")
    else:
        text = path.read_bytes().decode("latin-1")
    versions = [(int(a), int(b)) for a, b in re.findall(r"GLIBC_(\d+)\.(\d+)", text)]
    return max(versions, default=(0, 0))


def layer_report(
    target: Target, layer: Path, recommender_layer: Path, train_layer: Path, zipped: bool = True
) -> dict[str, Any]:
    """Sizes, machine and glibc of every shared object, forbidden packages: all offline."""
    objects = shared_objects(layer) + shared_objects(train_layer)
    glibc = {
        str(p.relative_to(built / "python")): glibc_needed(p)
        for built in (layer, train_layer)
        for p in shared_objects(built)
    }
    newest = max(glibc.values(), default=(0, 0))
    newest_file = max(glibc, key=lambda name: glibc[name]) if glibc else ""
    code = {name: unzipped_size(path, bytecode=False) for name, path in function_code_dirs().items()}
    recommender = unzipped_size(recommender_layer)
    dependencies = unzipped_size(layer)
    train = unzipped_size(train_layer)
    layer_bytes = {"RecommenderLayer": recommender, "DependenciesLayer": dependencies, TRAIN_LAYER: train}
    # Lambda's limit is on each function: its code and all its layers, unzipped.
    functions = {
        name: code[name] + sum(layer_bytes[layer] for layer in layers)
        for name, layers in function_layers().items()
    }
    budgets = {name: size_budget(layers) for name, layers in function_layers().items()}
    return {
        "runtime": target.runtime,
        "architecture": target.architecture,
        "layer_unzipped_bytes": dependencies,
        "layer_zipped_bytes": zipped_size(layer) if zipped else None,
        "largest_packages": largest_packages(layer),
        "recommender_layer_bytes": recommender,
        "train_layer_bytes": train,
        "train_layer_zipped_bytes": zipped_size(train_layer) if zipped else None,
        "train_largest_packages": largest_packages(train_layer, 4),
        "largest_function_code_bytes": max(code.values()),
        "largest_function_total_bytes": max(functions.values()),
        "function_total_bytes": functions,
        "function_layers": function_layers(),
        "function_budget_bytes": budgets,
        "over_budget": sorted(name for name, size in functions.items() if size > budgets[name]),
        "over_limit": sorted(name for name, size in functions.items() if size > LAMBDA_UNZIPPED_LIMIT),
        "limit_bytes": LAMBDA_UNZIPPED_LIMIT,
        "budget_bytes": SIZE_BUDGET,
        "shared_objects": len(objects),
        "machines": sorted({elf_machine(p) for p in objects}),
        "glibc_max": ".".join(map(str, newest)),
        "glibc_max_file": newest_file,
        "runtime_glibc": ".".join(map(str, RUNTIME_GLIBC[target.runtime])),
        "forbidden_present": sorted(top_level_names(layer) & set(FORBIDDEN)),
        "sdk_missing": sorted(set(SDK) - top_level_names(layer)),
    }


# --- importing the handlers with only the layers on the path -----------------------------------


find_python = layers.find_python
host_machine = layers.host_machine


_IMPORT_PROBE = """
import json, os, sys, time
sys.path[:0] = json.loads(os.environ["PROBE_PATH"])
import importlib.util
started = time.perf_counter()
spec = importlib.util.spec_from_file_location("app", os.environ["PROBE_HANDLER"])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
seconds = time.perf_counter() - started
assert callable(module.lambda_handler)
roots = {m.split(".")[0] for m in sys.modules}
ours = sorted(m for m in sys.modules if m == "recommender" or m.startswith("recommender."))
files = sorted({getattr(m, "__file__", None) or "" for m in list(sys.modules.values())})
version = sys.version.split()[0]
importable = {}
for name in json.loads(os.environ.get("PROBE_MODULES", "[]")):
    try:
        importlib.import_module(name)
        importable[name] = True
    except ModuleNotFoundError:
        importable[name] = False
print(json.dumps(
    {"modules": sorted(roots), "recommender": ours, "files": files, "version": version, "seconds": seconds,
     "importable": importable}
))
"""


# A home folder nothing can write to, root included, as on Lambda (and the train image's user has
# no home at all): an import that writes under ~ fails in the check as it would there.
READ_ONLY_HOME = "/proc"


def lambda_environment() -> dict[str, str]:
    """What a function's process sees at import: the template's Globals variables (a stand-in
    value for each CloudFormation reference), the region, and a read-only home folder."""
    variables = _template()["Globals"]["Function"]["Environment"]["Variables"]
    environment = {name: value if isinstance(value, str) else "probe" for name, value in variables.items()}
    environment.update(AWS_DEFAULT_REGION="us-east-1", POWERTOOLS_TRACE_DISABLED="true", HOME=READ_ONLY_HOME)
    return environment


def import_handler(
    python: str,
    handler: Path,
    layers: Sequence[Path],
    environment: dict[str, str] | None = None,
    modules: Sequence[str] = (),
) -> dict[str, Any]:
    """Import one handler in a fresh interpreter: -I (no user site, no PYTHON* variables, no cwd),
    -S (no site-packages) and -B (no bytecode written, as on Lambda's read-only /opt): only the
    standard library, then the folders Lambda would offer. `environment` replaces
    `lambda_environment()`. The report's `seconds` is the handler module's import, all it imports
    included: a cold start's init, less the interpreter's own start; its `importable` says which of
    `modules` import afterwards (a module that is found but fails to import fails the call)."""
    path = [str(handler.parent), *(str(layer / "python") for layer in layers)]
    environment = {
        **(lambda_environment() if environment is None else environment),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PROBE_PATH": json.dumps(path),
        "PROBE_HANDLER": str(handler),
        "PROBE_MODULES": json.dumps(list(modules)),
    }
    result = subprocess.run(
        [python, "-I", "-S", "-B", "-c", _IMPORT_PROBE], capture_output=True, text=True, env=environment
    )
    if result.returncode != 0:
        raise RuntimeError(f"{handler} does not import with only the layers:\n{result.stderr[-3000:]}")
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


def host_layers(target: Target, machine: str) -> dict[str, Path]:
    """Every layer of the template, built for `machine`, by logical id."""
    return {
        "RecommenderLayer": build_recommender(),
        "DependenciesLayer": build(target, machine),
        TRAIN_LAYER: build_train(target, machine),
    }


def import_report(target: Target, repeat: int = 1) -> dict[str, Any] | str:
    """Every handler imported with only its function's layers (built for this machine), `repeat`
    times each in a fresh interpreter (the best time is kept: the others paid for a cold file cache
    or a busy machine); or why it could not run."""
    python = find_python(target.python_version)
    if python is None:
        return f"no Python {target.python_version} interpreter here: handlers not imported"
    host = host_machine()
    if host not in MACHINES.values():
        return f"this machine ({host}) is not a Lambda architecture: handlers not imported"
    built = host_layers(target, host)
    layers = {name: [built[layer] for layer in ids] for name, ids in function_layers().items()}
    handlers = {name: path / "app.py" for name, path in function_code_dirs().items()}
    imported: dict[str, dict[str, Any]] = {}
    seconds: dict[str, float] = {}
    for name, handler in handlers.items():
        runs = [import_handler(python, handler, layers[name]) for _ in range(repeat)]
        imported[name] = runs[0]
        seconds[name] = min(run["seconds"] for run in runs)
    # Which functions can import what only Train needs: after the timed imports, not to slow them.
    importable = {
        name: import_handler(python, handler, layers[name], modules=TRAIN_MODULES)["importable"]
        for name, handler in handlers.items()
    }
    modules = set().union(*(set(r["modules"]) for r in imported.values()))
    files = set().union(*(set(r["files"]) for r in imported.values()))
    return {
        "python": python,
        "version": next(iter(imported.values()))["version"],
        "machine": host,
        "handlers": sorted(imported),
        "forbidden_imported": sorted(modules & set(FORBIDDEN)),
        # Must stay empty: the check imports the built layer, never the source folder.
        "from_source": sorted(f for f in files if f and Path(f).is_relative_to(RECOMMENDER_SOURCE)),
        "recommender_modules": {name: report["recommender"] for name, report in imported.items()},
        "top_level_modules": {name: report["modules"] for name, report in imported.items()},
        "train_modules": {
            name: sorted(m for m, ok in found.items() if ok) for name, found in importable.items()
        },
        "import_seconds": seconds,
        "repeat": repeat,
    }


# --- the lock ------------------------------------------------------------------------------------


def write_lock(lock: Path = LOCK) -> None:
    """Rewrite a lock's hashes: every wheel of each pin, for both architectures."""
    target = template_target()
    pins = [line.split()[0] for line in lock.read_text().splitlines() if re.match(r"^[A-Za-z0-9]", line)]
    header = [line for line in lock.read_text().splitlines() if line.startswith("#")]
    hashes: dict[str, set[str]] = {pin: set() for pin in pins}
    with tempfile.TemporaryDirectory() as folder:
        for machine in MACHINES.values():
            platforms = [f"manylinux_2_{minor}_{machine}" for minor in range(17, 35)]
            platforms.append(f"manylinux2014_{machine}")
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"]
                + ["--implementation", "cp", "--python-version", target.python_version]
                + [arg for p in platforms for arg in ("--platform", p)]
                + ["--dest", f"{folder}/{machine}", *pins],
                check=True,
                env={**os.environ, "PIP_CONSTRAINT": ""},
            )
            for wheel in Path(folder, machine).glob("*.whl"):
                name, version = wheel.name.split("-")[:2]
                pin = next(p for p in pins if _pin_key(p) == (_canonical(name), version))
                hashes[pin].add(hashlib.sha256(wheel.read_bytes()).hexdigest())
    lines = header[:]
    for pin in pins:
        lines.append(pin + " \\")
        digests = sorted(hashes[pin])
        for index, digest in enumerate(digests):
            lines.append(f"    --hash=sha256:{digest}" + (" \\" if index < len(digests) - 1 else ""))
    lock.write_text("\n".join(lines) + "\n")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pin_key(pin: str) -> tuple[str, str]:
    name, version = pin.split("==")
    return _canonical(name), version


# --- command line --------------------------------------------------------------------------------


def _mb(value: int) -> str:
    return f"{value / 1_048_576:.1f} MB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lock", action="store_true", help="rewrite both locks' hashes, then exit")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--no-imports", action="store_true", help="skip the handlers' import check")
    parser.add_argument(
        "--repeat", type=int, default=3, help="imports of each handler, the best time kept (default 3)"
    )
    args = parser.parse_args(argv)
    if args.lock:
        for lock in LOCKS.values():
            write_lock(lock)
            print(f"wrote {lock.relative_to(ROOT)}")
        return 0

    target = template_target()
    started = time.monotonic()
    layer = build(target)
    recommender_layer = build_recommender()
    report = layer_report(target, layer, recommender_layer, build_train(target))
    report["build_seconds"] = round(time.monotonic() - started, 1)
    report["layer_dir"] = str(layer / "python")
    if args.no_imports:
        report["imports"] = "handlers' import check skipped (--no-imports)"
    else:
        report["imports"] = import_report(target, args.repeat)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    _print_report(target, report)
    imports = report["imports"]
    ok = (
        not report["over_budget"]
        and report["machines"] == [target.machine]
        and glibc_tuple(report["glibc_max"]) <= RUNTIME_GLIBC[target.runtime]
        and not report["forbidden_present"]
        and not report["sdk_missing"]
        and (isinstance(imports, str) or not imports["forbidden_imported"])
    )
    return 0 if ok else 1


def _print_report(target: Target, report: dict[str, Any]) -> None:
    print(f"dependencies layer for {target.runtime} {target.architecture}: {report['layer_dir']}")
    print(f"  unzipped {_mb(report['layer_unzipped_bytes'])} ({report['layer_unzipped_bytes']:,} bytes)")
    print(f"  zipped   {_mb(report['layer_zipped_bytes'])}")
    print("  largest: " + ", ".join(f"{name} {_mb(size)}" for name, size in report["largest_packages"]))
    recommender = report["recommender_layer_bytes"]
    print(f"recommender layer {_mb(recommender)} ({recommender:,} bytes)")
    train, train_zipped = report["train_layer_bytes"], report["train_layer_zipped_bytes"]
    print(f"train layer (Train only) unzipped {_mb(train)} ({train:,} bytes), zipped {_mb(train_zipped)}")
    print("  largest: " + ", ".join(f"{name} {_mb(size)}" for name, size in report["train_largest_packages"]))
    print(
        f"each function, unzipped (its code + its layers) of Lambda's {_mb(LAMBDA_UNZIPPED_LIMIT)} "
        f"(budget {_mb(SIZE_BUDGET)}, with the train layer {_mb(TRAIN_SIZE_BUDGET)}):"
    )
    for name, size in sorted(report["function_total_bytes"].items()):
        print(f"  {name:24} {_mb(size)} ({size:,} bytes, {100 * size / LAMBDA_UNZIPPED_LIMIT:.0f}%)")
        over = " OVER IT" if name in report["over_budget"] else ""
        budget = report["function_budget_bytes"][name]
        print(f"    {' + '.join(report['function_layers'][name])}; budget {_mb(budget)}{over}")
    print(
        f"{report['shared_objects']} shared objects, machine {', '.join(report['machines'])}, "
        f"newest glibc needed {report['glibc_max']} ({report['glibc_max_file']}); "
        f"{target.runtime} runs on glibc {report['runtime_glibc']}"
    )
    print(f"scipy/pandas in the dependencies layer: {report['forbidden_present'] or 'none'}")
    imports = report["imports"]
    if isinstance(imports, str):
        print(imports)
    else:
        print(
            f"handlers imported with only the built layers ({imports['machine']} build, Python "
            f"{imports['version']}): {', '.join(imports['handlers'])}; "
            f"scipy/pandas imported: {imports['forbidden_imported'] or 'none'}"
        )
        carriers = [
            f"{name} ({', '.join(found)})"
            for name, found in sorted(imports["train_modules"].items())
            if found
        ]
        print(f"{' and '.join(TRAIN_MODULES)} importable in: {', '.join(carriers) or 'no function'}")
        repeat = imports["repeat"]
        print(f"cold import of each handler: fresh interpreter, the layers' bytecode (best of {repeat})")
        for name, seconds in sorted(imports["import_seconds"].items()):
            print(f"  {name:24} {seconds:.2f} s")
    print(f"built in {report['build_seconds']} s")


def glibc_tuple(text: str) -> tuple[int, int]:
    major, minor = text.split(".")
    return int(major), int(minor)


if __name__ == "__main__":
    sys.exit(main())
