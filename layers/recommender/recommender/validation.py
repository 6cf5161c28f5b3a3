"""Checking a document against one of the shipped JSON Schemas, without the `jsonschema` package.

App servers read `latest.json` and the manifest with the client, which must not pull in more than
the standard library and numpy. So this is the part of JSON Schema (draft 2020-12) that the
shipped schemas use, and nothing else: a schema using another keyword fails loudly
(`UnsupportedSchemaError`) instead of being checked partly. The tests hold it to `jsonschema`'s
verdicts on the same documents.

One deliberate difference: `"additionalProperties": false` is not enforced unless asked for
(`closed=True`). A writer may add an optional field within a schema version; a reader that
refused every unknown field would turn each such addition into a breaking change.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import UnsupportedSchemaError

# Keywords that describe a document without constraining it.
_ANNOTATIONS = frozenset({"$schema", "$id", "$defs", "title", "description", "format", "examples"})
_SUPPORTED = _ANNOTATIONS | {
    "$ref",
    "allOf",
    "type",
    "const",
    "enum",
    "required",
    "properties",
    "additionalProperties",
    "items",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minimum",
    "minLength",
    "pattern",
}
_PATTERNS: dict[str, re.Pattern[str]] = {}


def _is_type(value: Any, name: str) -> bool:
    if name == "object":
        return isinstance(value, dict)
    if name == "array":
        return isinstance(value, list)
    if name == "string":
        return isinstance(value, str)
    if name == "boolean":
        return isinstance(value, bool)
    if name == "null":
        return value is None
    if isinstance(value, bool):  # JSON's true and false are not numbers
        return False
    if name == "integer":
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if name == "number":
        return isinstance(value, int | float)
    raise UnsupportedSchemaError(f"type {name!r}")


def _equal(a: Any, b: Any) -> bool:
    """JSON equality: 1 == 1.0, but true is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def _where(path: str) -> str:
    return path or "(the document)"


def problems(instance: Any, schema: dict[str, Any], closed: bool = False) -> list[str]:
    """Every way `instance` breaks `schema`, as "path: problem" (e.g. "shards[2].sha256: ...").
    `closed`: also enforce `"additionalProperties": false`."""
    _check_supported(schema)
    found: list[str] = []
    _check(instance, schema, schema, "", closed, found)
    return found


def _check_supported(schema: Any) -> None:
    """Every keyword of the schema and its subschemas is one `_check` implements."""
    if not isinstance(schema, dict):
        return
    unknown = set(schema) - _SUPPORTED
    if unknown:
        raise UnsupportedSchemaError(f"keyword(s) {', '.join(sorted(unknown))}")
    for name in ("items", "additionalProperties"):
        _check_supported(schema.get(name))
    for part in [*schema.get("allOf", []), *schema.get("properties", {}).values()]:
        _check_supported(part)
    for part in schema.get("$defs", {}).values():
        _check_supported(part)


def _check(
    instance: Any, schema: dict[str, Any], root: dict[str, Any], path: str, closed: bool, found: list[str]
) -> None:
    if "$ref" in schema:
        _check(instance, _resolve(root, schema["$ref"]), root, path, closed, found)
    for part in schema.get("allOf", []):
        _check(instance, part, root, path, closed, found)
    where = _where(path)
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is_type(instance, name) for name in names):
            found.append(f"{where}: must be {' or '.join(names)}, not {_describe(instance)}")
            return  # every other keyword would only repeat this
    if "const" in schema and not _equal(instance, schema["const"]):
        found.append(f"{where}: must be {schema['const']!r}, not {_describe(instance)}")
    if "enum" in schema and not any(_equal(instance, option) for option in schema["enum"]):
        found.append(
            f"{where}: must be one of {', '.join(map(repr, schema['enum']))}, not {_describe(instance)}"
        )
    if isinstance(instance, dict):
        _check_object(instance, schema, root, path, closed, found)
    if isinstance(instance, list):
        _check_array(instance, schema, root, path, closed, found)
    if isinstance(instance, str):
        _check_string(instance, schema, where, found)
    if (
        "minimum" in schema
        and isinstance(instance, int | float)
        and not isinstance(instance, bool)
        and instance < schema["minimum"]
    ):
        found.append(f"{where}: must be at least {schema['minimum']}, not {instance!r}")


def _check_array(
    instance: list[Any],
    schema: dict[str, Any],
    root: dict[str, Any],
    path: str,
    closed: bool,
    found: list[str],
) -> None:
    where = _where(path)
    if len(instance) < schema.get("minItems", 0):
        found.append(f"{where}: must hold at least {schema['minItems']} item(s), not {len(instance)}")
    if "maxItems" in schema and len(instance) > schema["maxItems"]:
        found.append(f"{where}: must hold at most {schema['maxItems']} item(s), not {len(instance)}")
    if schema.get("uniqueItems") and len({repr(item) for item in instance}) < len(instance):
        found.append(f"{where}: must not repeat an item")
    if "items" in schema:
        for index, item in enumerate(instance):
            _check(item, schema["items"], root, f"{path}[{index}]", closed, found)


def _check_string(instance: str, schema: dict[str, Any], where: str, found: list[str]) -> None:
    if len(instance) < schema.get("minLength", 0):
        found.append(f"{where}: must be at least {schema['minLength']} character(s) long")
    pattern = schema.get("pattern")
    if pattern is not None and not _compiled(pattern).search(instance):
        # a titled schema names its rule; the pattern itself is the last resort
        rule = f"is not {schema['title']}" if "title" in schema else f"does not match {pattern}"
        found.append(f"{where}: {instance[:80]!r} {rule}")


def _check_object(
    instance: dict[str, Any],
    schema: dict[str, Any],
    root: dict[str, Any],
    path: str,
    closed: bool,
    found: list[str],
) -> None:
    prefix = f"{path}." if path else ""
    for name in schema.get("required", []):
        if name not in instance:
            found.append(f"{prefix}{name}: a required field is missing")
    properties = schema.get("properties", {})
    for name, value in instance.items():
        if name in properties:
            _check(value, properties[name], root, f"{prefix}{name}", closed, found)
            continue
        extra = schema.get("additionalProperties", True)
        if extra is False:
            if closed:
                found.append(f"{prefix}{name}: not a field of this object")
        elif isinstance(extra, dict):
            _check(value, extra, root, f"{prefix}{name}", closed, found)


def _resolve(root: dict[str, Any], ref: str) -> dict[str, Any]:
    if not ref.startswith("#/"):
        raise UnsupportedSchemaError(f"$ref {ref!r}: only references inside the schema are followed")
    target: Any = root
    for part in ref[2:].split("/"):
        target = target[part.replace("~1", "/").replace("~0", "~")]
    if not isinstance(target, dict):
        raise UnsupportedSchemaError(f"$ref {ref!r} does not name a schema")
    return target


def _compiled(pattern: str) -> re.Pattern[str]:
    compiled = _PATTERNS.get(pattern)
    if compiled is None:
        compiled = _PATTERNS[pattern] = re.compile(pattern)
    return compiled


def _describe(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "true" if value is True else "false" if value is False else "null"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return f"the string {value[:80]!r}"
    return repr(value)
