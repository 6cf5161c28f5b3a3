"""The one way the product writes JSON: strict, finite numbers only.

Python's `json` writes NaN and Infinity as the bare words `NaN` and `Infinity` by default. No JSON
standard has them, and every strict reader refuses the whole document (Node's `JSON.parse`, Go's
`encoding/json`, Java's Jackson by default), while docs/format.md promises readers in any
language. Every object a run publishes or records (the snapshot's and the model's metadata, the
shard plan, shard records, the fallback, the manifest, `latest.json`, `failure.json`), every step
output, the evaluation report and the task's output go through `dumps` below, which refuses a
non-finite number and says where it is (`tests/unit/test_strict_json.py` checks that no other
`json.dumps` remains in the package outside the local engine's own plumbing).

Refusing is the last line of defence, not the expected path: Train refuses a model with a
non-finite parameter, predictors refuse non-finite scores, and Merge refuses empty lists, each
with an error that names the cause. A `NonFiniteNumberError` here means a number slipped past
those checks; the run fails and `latest.json` does not move.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from .errors import NonFiniteNumberError


def non_finite(obj: Any, path: str = "$") -> tuple[str, float] | None:
    """(JSONPath, value) of the first NaN or ±Infinity in `obj`, or None."""
    if isinstance(obj, float):
        return None if math.isfinite(obj) else (path, obj)
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            found = non_finite(value, f"{path}.{key}")
            if found is not None:
                return found
    elif isinstance(obj, (list, tuple)):
        for index, value in enumerate(obj):
            found = non_finite(value, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def dumps(obj: Any, *, what: str = "a JSON document", **options: Any) -> str:
    """`json.dumps(obj, allow_nan=False, **options)`; a non-finite number raises
    NonFiniteNumberError naming `what` and where in it the number is."""
    try:
        return json.dumps(obj, allow_nan=False, **options)
    except ValueError:
        found = non_finite(obj)
        if found is None:
            raise
        path, value = found
        raise NonFiniteNumberError(
            f"{what} would hold {value} at {path}: JSON has no NaN or Infinity (a strict reader such"
            " as JavaScript's JSON.parse refuses the whole document), so it is not written"
        ) from None


def dump_bytes(obj: Any, *, what: str = "a JSON document", **options: Any) -> bytes:
    """`dumps` encoded as UTF-8, as every object in the bucket is."""
    return dumps(obj, what=what, ensure_ascii=False, **options).encode("utf-8")
