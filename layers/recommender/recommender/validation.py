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
    checker = _Checker(schema, closed)
    checker.check(instance, schema, "")
    return checker.found


def _check_supported(schema: Any) -> None:
    """Every keyword of the schema and its subschemas is one `_Checker` implements."""
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


class _Checker:
    """One walk of an instance against a schema: the root its references resolve in, whether
    objects are closed, and the problems found so far."""

    def __init__(self, root: dict[str, Any], closed: bool) -> None:
        self.root = root
        self.closed = closed
        self.found: list[str] = []

    def check(self, instance: Any, schema: dict[str, Any], path: str) -> None:
        if "$ref" in schema:
            self.check(instance, _resolve(self.root, schema["$ref"]), path)
        for part in schema.get("allOf", []):
            self.check(instance, part, path)
        where = _where(path)
        if "type" in schema:
            names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
            if not any(_is_type(instance, name) for name in names):
                self.found.append(f"{where}: must be {' or '.join(names)}, not {_describe(instance)}")
                return  # every other keyword would only repeat this
        if "const" in schema and not _equal(instance, schema["const"]):
            self.found.append(f"{where}: must be {schema['const']!r}, not {_describe(instance)}")
        if "enum" in schema and not any(_equal(instance, option) for option in schema["enum"]):
            self.found.append(
                f"{where}: must be one of {', '.join(map(repr, schema['enum']))}, not {_describe(instance)}"
            )
        if isinstance(instance, dict):
            self.check_object(instance, schema, path)
        if isinstance(instance, list):
            self.check_array(instance, schema, path)
        if isinstance(instance, str):
            self.check_string(instance, schema, where)
        if (
            "minimum" in schema
            and isinstance(instance, int | float)
            and not isinstance(instance, bool)
            and instance < schema["minimum"]
        ):
            self.found.append(f"{where}: must be at least {schema['minimum']}, not {instance!r}")

    def check_array(self, instance: list[Any], schema: dict[str, Any], path: str) -> None:
        where = _where(path)
        if len(instance) < schema.get("minItems", 0):
            self.found.append(
                f"{where}: must hold at least {schema['minItems']} item(s), not {len(instance)}"
            )
        if "maxItems" in schema and len(instance) > schema["maxItems"]:
            self.found.append(f"{where}: must hold at most {schema['maxItems']} item(s), not {len(instance)}")
        if schema.get("uniqueItems") and len({repr(item) for item in instance}) < len(instance):
            self.found.append(f"{where}: must not repeat an item")
        if "items" in schema:
            for index, item in enumerate(instance):
                self.check(item, schema["items"], f"{path}[{index}]")

    def check_string(self, instance: str, schema: dict[str, Any], where: str) -> None:
        if len(instance) < schema.get("minLength", 0):
            self.found.append(f"{where}: must be at least {schema['minLength']} character(s) long")
        pattern = schema.get("pattern")
        if pattern is not None and not _compiled(pattern).search(instance):
            # a titled schema names its rule; the pattern itself is the last resort
            rule = f"is not {schema['title']}" if "title" in schema else f"does not match {pattern}"
            self.found.append(f"{where}: {instance[:80]!r} {rule}")

    def check_object(self, instance: dict[str, Any], schema: dict[str, Any], path: str) -> None:
        prefix = f"{path}." if path else ""
        for name in schema.get("required", []):
            if name not in instance:
                self.found.append(f"{prefix}{name}: a required field is missing")
        properties = schema.get("properties", {})
        for name, value in instance.items():
            if name in properties:
                self.check(value, properties[name], f"{prefix}{name}")
                continue
            extra = schema.get("additionalProperties", True)
            if extra is False:
                if self.closed:
                    self.found.append(f"{prefix}{name}: not a field of this object")
            elif isinstance(extra, dict):
                self.check(value, extra, f"{prefix}{name}")


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
