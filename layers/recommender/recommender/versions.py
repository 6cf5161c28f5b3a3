"""The versions a model and a manifest record: Python, numpy, scikit-surprise, the platform.

Read from the installed distributions' metadata (importlib.metadata), not from the libraries'
`__version__`: Merge records them without importing Surprise, which it never runs, and a cold
import of Surprise costs a predictor or Merge most of their start-up. The metadata is what pip
installed, in the layer, the image and a virtual environment alike; a library without it (a source
tree on the path) is asked for its `__version__`.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import platform
import sys

# distribution name -> the module whose __version__ says the same
LIBRARIES = {"numpy": "numpy", "scikit-surprise": "surprise"}


def library_version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        version: str = importlib.import_module(LIBRARIES[distribution]).__version__
        return version


def library_versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "numpy": library_version("numpy"),
        "scikit-surprise": library_version("scikit-surprise"),
        "platform": sys.platform,
    }
