"""Each function runs in the local engine's sandbox with only its own layers in /opt, as on Lambda:
Train, which alone carries the train layer, imports implicit and scipy and fits with them against the
dependencies layer's numpy; Predict cannot import either. The layers are built as `sam build` builds
them (cached under build/ while their Makefiles and locks are unchanged)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from recommender.local import template
from recommender.local.engine import LocalEngine
from recommender.local.layers import prepare_opt, runtime_python
from recommender.local.sandbox import FunctionSpec, Sandbox
from tests.unit.test_template import ROOT

pytestmark = pytest.mark.slow  # builds the layers, runs sandboxed processes

REGION = "us-east-1"
TRAIN_MODULES = ["implicit", "implicit.cpu.als", "scipy", "scipy.sparse"]

# Stands in for a function's code: imports what the event names, and with "fit", fits implicit's
# alternating least squares on a tiny matrix (its C++ extension against the layers' numpy).
PROBE = """
import importlib

def lambda_handler(event, context):
    found = {}
    for name in event["modules"]:
        try:
            found[name] = importlib.import_module(name).__file__
        except ModuleNotFoundError:
            found[name] = None
    if event.get("fit"):
        import numpy
        from implicit.als import AlternatingLeastSquares
        from scipy.sparse import csr_matrix

        model = AlternatingLeastSquares(factors=2, iterations=2, random_state=0)
        model.fit(csr_matrix(numpy.eye(4, dtype="float32")), show_progress=False)
        found["factors"] = list(model.item_factors.shape)
    return found
"""


def invoke(function: template.Function, code: Path, event: dict[str, Any]) -> dict[str, Any]:
    """The probe, run as the function: its memory, its environment and the /opt its layers make."""
    python = runtime_python(ROOT)
    sandbox = Sandbox(prepare_opt(ROOT, python.version, function.layers), python.executable)
    spec = FunctionSpec(
        name=function.name,
        code_dir=code,
        handler="app.lambda_handler",
        memory_mb=function.memory_mb,
        timeout_seconds=120,
        environment=function.environment,
    )
    outcome = sandbox.invoke(spec, json.dumps(event).encode(), REGION, {})
    assert outcome.error is None, outcome.error
    result: dict[str, Any] = json.loads(outcome.payload)
    return result


@pytest.fixture(scope="module")
def functions() -> dict[str, template.Function]:
    return {function.logical_id: function for function in template.functions(ROOT).values()}


@pytest.fixture
def probe(tmp_path: Path) -> Path:
    code = tmp_path / "task"
    code.mkdir()
    (code / "app.py").write_text(textwrap.dedent(PROBE))
    return code


def test_train_imports_implicit_and_scipy_and_fits(
    functions: dict[str, template.Function], probe: Path
) -> None:
    result = invoke(functions["TrainFunction"], probe, {"modules": TRAIN_MODULES, "fit": True})
    assert all(result[name] for name in TRAIN_MODULES), result
    assert result["factors"] == [4, 2]


def test_predict_cannot_import_them(functions: dict[str, template.Function], probe: Path) -> None:
    result = invoke(functions["PredictFunction"], probe, {"modules": [*TRAIN_MODULES, "numpy"]})
    assert result["numpy"], "the dependencies layer is there"
    assert {name: result[name] for name in TRAIN_MODULES} == dict.fromkeys(TRAIN_MODULES)


def test_the_engine_gives_each_function_its_own_layers(functions: dict[str, template.Function]) -> None:
    """One sandbox per distinct set of layers: Train's /opt has scipy, every other function's not."""
    with LocalEngine(None, sandbox=True) as engine:
        opts = {
            name: engine._sandboxes[function.layers].opt_dir for name, function in engine.functions.items()
        }
    for name, opt in opts.items():
        assert (opt / "python" / "scipy").is_dir() == (name == "recommender-train"), name
        assert (opt / "python" / "numpy").is_dir(), name
    assert len(set(opts.values())) == 2
    assert set(functions) == {function.logical_id for function in engine.functions.values()}
