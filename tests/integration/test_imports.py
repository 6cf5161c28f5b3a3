"""What importing a module loads, each in a fresh interpreter: the app server's reader and fold-in
never import Surprise."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # each check runs another Python


def test_importing_the_client_does_not_import_surprise() -> None:
    code = "import sys, recommender.client; assert 'surprise' not in sys.modules, 'surprise imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    # and the check itself can fail: importing the training module does import Surprise
    code = "import sys, recommender.training; assert 'surprise' not in sys.modules"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0


def test_importing_foldin_does_not_import_surprise() -> None:
    code = "import sys, recommender.foldin; sys.exit('surprise' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr or "recommender.foldin imported surprise"


def test_only_fitting_imports_implicit_and_scipy() -> None:
    """ALS and ItemKNN are served from arrays: importing what the predictors, fold-in and Train
    load (Train's algorithms included) loads neither implicit nor scipy; fitting one does."""
    modules = "recommender.steps.predict, recommender.foldin, recommender.kernels, recommender.training"
    code = f"import sys, {modules}; sys.exit(sorted({{'implicit', 'scipy'}} & set(sys.modules)) or None)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    fitting = (
        "import sys; from recommender.snapshot import ratings_from_rows;"
        " from recommender.training import fit;"
        " fit(ratings_from_rows([('a', 'x', 1.0), ('b', 'y', 2.0)]), 'ItemKNN', {}, None);"
        " sys.exit(0 if {'implicit', 'scipy'} <= set(sys.modules) else 1)"
    )
    done = subprocess.run([sys.executable, "-c", fitting], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
