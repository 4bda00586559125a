"""Structural-schema handling of custom resources: prune, default, then validate.

The real server decodes a custom resource, applies the ``default``s of the stored
``openAPIV3Schema``, prunes fields the schema does not declare (unless
``x-kubernetes-preserve-unknown-fields``), drops nulls where the schema is not
``nullable``, and validates what is left; a failure is a 422 whose causes name the
field (``spec.replicas``). This module implements that on the subset of OpenAPI that
Mothership's CRDs use: type, properties, required, enum, minimum/maximum (and their
exclusive forms), pattern, min/maxLength, items, min/maxItems, additionalProperties,
min/maxProperties, allOf/anyOf/oneOf/not, nullable, x-kubernetes-int-or-string and
x-kubernetes-embedded-resource. CEL rules (x-kubernetes-validations) and ``format``
are not evaluated: the CRD tests judge those directly (docs/design.md, "Unit").
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

from .errors import Cause
from .merge import clone

Obj = dict[str, Any]
_ROOT_FIELDS = ("apiVersion", "kind", "metadata")


def prepare(obj: Obj, schema: Obj, unknown: list[str] | None = None) -> Obj:
    """Default, then prune, a custom resource about to be stored.

    Paths of pruned fields are appended to ``unknown`` (for ``fieldValidation=Strict``).
    """
    result = _default(clone(obj), schema, root=True)
    pruned = _prune(result, schema, True, "", unknown if unknown is not None else [])
    return pruned if isinstance(pruned, dict) else {}


def validate(obj: Obj, schema: Obj) -> list[Cause]:
    causes: list[Cause] = []
    for key, value in obj.items():
        if key in _ROOT_FIELDS:
            continue
        sub = (schema.get("properties") or {}).get(key)
        if sub is not None:
            _validate(value, sub, key, causes)
    for key in schema.get("required") or ():
        if key not in obj and key not in _ROOT_FIELDS:
            causes.append(Cause(Cause.REQUIRED, key, "Required value"))
    return causes


# --- defaulting and pruning -------------------------------------------------------------

def _default(value: Any, schema: Obj, root: bool = False) -> Any:
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for key, sub in props.items():
            if root and key in _ROOT_FIELDS:
                continue
            missing = key not in value or (value[key] is None and not sub.get("nullable"))
            if "default" in sub and missing:
                value[key] = clone(sub["default"])
            if key in value:
                value[key] = _default(value[key], sub)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key in value:
                if key not in props:
                    value[key] = _default(value[key], extra)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_default(item, schema["items"]) for item in value]
    return value


def _prune(value: Any, schema: Obj, root: bool, path: str, unknown: list[str]) -> Any:
    if schema.get("x-kubernetes-int-or-string"):
        return value
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        preserve = schema.get("x-kubernetes-preserve-unknown-fields") is True
        keep_meta = root or schema.get("x-kubernetes-embedded-resource") is True
        result: Obj = {}
        for key, sub_value in value.items():
            if keep_meta and key in _ROOT_FIELDS:
                result[key] = sub_value
            elif key in props:
                sub = props[key]
                if sub_value is None and not sub.get("nullable"):
                    continue
                result[key] = _prune(sub_value, sub, False, f"{path}.{key}", unknown)
            elif isinstance(extra, dict):
                result[key] = _prune(sub_value, extra, False, f"{path}.{key}", unknown)
            elif preserve or extra is True:
                result[key] = sub_value
            else:
                unknown.append(f"{path}.{key}")
        return result
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_prune(item, schema["items"], False, f"{path}[{n}]", unknown)
                for n, item in enumerate(value)]
    return value


# --- validation ---------------------------------------------------------------------------

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}


def _show(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return "\"" + type(value).__name__ + "\""
    return json.dumps(value)


def _type_ok(value: Any, schema: Obj) -> bool:
    if schema.get("x-kubernetes-int-or-string"):
        return isinstance(value, (int, str)) and not isinstance(value, bool)
    expected = schema.get("type")
    if not expected:
        return True
    if isinstance(value, bool) and expected != "boolean":
        return False
    if expected == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _TYPES.get(expected, (object,)))


@lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _bad(causes: list[Cause], path: str, value: Any, should: str, reason: str = Cause.INVALID) -> None:
    """Record "Invalid value: V: PATH in body SHOULD", kube-openapi's wording."""
    causes.append(Cause(reason, path, f"Invalid value: {_show(value)}: {path} in body {should}"))


def _validate(value: Any, schema: Obj, path: str, causes: list[Cause]) -> None:
    if value is None:
        if not schema.get("nullable"):
            _bad(causes, path, "null", f"must be of type {schema.get('type', 'object')}: \"null\"",
                 Cause.TYPE)
        return
    if not _type_ok(value, schema):
        _bad(causes, path, value, f"must be of type {schema.get('type')}: {_show(value)}",
             Cause.TYPE)
        return
    _check_enum_and_bounds(value, schema, path, causes)
    for combinator in ("allOf", "anyOf", "oneOf"):
        if combinator in schema:
            _validate_combinator(value, schema, combinator, path, causes)
    if isinstance(schema.get("not"), dict):
        probe: list[Cause] = []
        _validate(value, schema["not"], path, probe)
        if not probe:
            _bad(causes, path, value, "must not match the schema in 'not'")
    if isinstance(value, dict):
        _validate_object(value, schema, path, causes)
    elif isinstance(value, list):
        _validate_array(value, schema, path, causes)


def _check_enum_and_bounds(value: Any, schema: Obj, path: str, causes: list[Cause]) -> None:
    enum = schema.get("enum")
    if enum is not None and value not in enum:
        supported = ", ".join(json.dumps(e) for e in enum)
        causes.append(Cause(
            Cause.NOT_SUPPORTED, path,
            f"Unsupported value: {_show(value)}: supported values: {supported}",
        ))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        low, high = schema.get("minimum"), schema.get("maximum")
        if low is not None:
            if schema.get("exclusiveMinimum") and value <= low:
                _bad(causes, path, value, f"should be greater than {low}")
            elif value < low:
                _bad(causes, path, value, f"should be greater than or equal to {low}")
        if high is not None:
            if schema.get("exclusiveMaximum") and value >= high:
                _bad(causes, path, value, f"should be less than {high}")
            elif value > high:
                _bad(causes, path, value, f"should be less than or equal to {high}")
    if isinstance(value, str):
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            causes.append(Cause(
                Cause.TOO_LONG, path, f"Too long: may not be more than {schema['maxLength']} bytes"
            ))
        if "minLength" in schema and len(value) < schema["minLength"]:
            _bad(causes, path, value, f"should be at least {schema['minLength']} chars long")
        if "pattern" in schema and not _regex(schema["pattern"]).search(value):
            _bad(causes, path, value, f"should match '{schema['pattern']}'")


def _validate_combinator(
    value: Any, schema: Obj, combinator: str, path: str, causes: list[Cause]
) -> None:
    results = []
    for option in schema[combinator]:
        probe: list[Cause] = []
        typed = option if "type" in option else {"type": schema.get("type"), **option}
        _validate(value, typed, path, probe)
        results.append(probe)
    passed = sum(1 for r in results if not r)
    if combinator == "allOf":
        for r in results:
            causes.extend(r)
    elif combinator == "anyOf" and passed == 0:
        _bad(causes, path, value, "must validate at least one schema (anyOf)")
    elif combinator == "oneOf" and passed != 1:
        _bad(causes, path, value, "must validate one and only one schema (oneOf)")


def _too_many(causes: list[Cause], path: str, count: int, limit: int) -> None:
    causes.append(Cause(Cause.TOO_MANY, path, f"Too many: {count}: must have at most {limit} items"))


def _validate_object(value: Obj, schema: Obj, path: str, causes: list[Cause]) -> None:
    props = schema.get("properties") or {}
    extra = schema.get("additionalProperties")
    embedded = schema.get("x-kubernetes-embedded-resource") is True
    for key, sub_value in value.items():
        if embedded and key in _ROOT_FIELDS:
            continue
        if key in props:
            _validate(sub_value, props[key], f"{path}.{key}", causes)
        elif isinstance(extra, dict):
            _validate(sub_value, extra, f"{path}.{key}", causes)
    for key in schema.get("required") or ():
        if key not in value:
            causes.append(Cause(Cause.REQUIRED, f"{path}.{key}", "Required value"))
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        _too_many(causes, path, len(value), schema["maxProperties"])
    if "minProperties" in schema and len(value) < schema["minProperties"]:
        _bad(causes, path, len(value), f"should have at least {schema['minProperties']} properties")


def _validate_array(value: list[Any], schema: Obj, path: str, causes: list[Cause]) -> None:
    items = schema.get("items")
    if isinstance(items, dict):
        for n, item in enumerate(value):
            _validate(item, items, f"{path}[{n}]", causes)
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        _too_many(causes, path, len(value), schema["maxItems"])
    if "minItems" in schema and len(value) < schema["minItems"]:
        _bad(causes, path, len(value), f"should have at least {schema['minItems']} items")
    if schema.get("uniqueItems") or schema.get("x-kubernetes-list-type") == "set":
        seen: list[Any] = []
        for n, item in enumerate(value):
            if item in seen:
                causes.append(Cause(Cause.DUPLICATE, f"{path}[{n}]", f"Duplicate value: {_show(item)}"))
            seen.append(item)
