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
