"""Generate CustomResourceDefinitions from the pydantic models.

The models are the single source of truth; ``mothership crds`` writes
``crds/<plural>.yaml`` (and the Helm chart's identical copy) from them, and a
test fails when the committed YAML is stale. Kubernetes wants a *structural*
schema, which differs from pydantic's JSON Schema in a few ways, all handled in
``StructuralSchema`` (a ``GenerateJsonSchema`` subclass, so the generator itself
speaks Kubernetes rather than its output being patched):

- ``$ref``s are inlined (CRDs cannot reference definitions);
- ``Optional[X]`` is just ``X``: absence, not null, is how Kubernetes spells "unset";
- ``title`` and ``additionalProperties: false`` go (the API server prunes unknown
  fields, and kubectl's strict field validation rejects them);
- ``dict[str, Any]`` becomes ``x-kubernetes-preserve-unknown-fields``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from .common import GROUP, VERSION, Manifest, Resource

_DROP = {"title", "$defs"}


class StructuralSchema(GenerateJsonSchema):
    """pydantic's JSON Schema generator, speaking Kubernetes structural schema."""

    def nullable_schema(self, schema: core_schema.NullableSchema) -> JsonSchemaValue:
        return self.generate_inner(schema["schema"])

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        out = super().default_schema(schema)
        default = _without_nulls(out.get("default"))
        if default is None or default == {}:
            out.pop("default", None)  # absent is Kubernetes' "unset"; {} would only add noise
        else:
            out["default"] = default
        return out

    def literal_schema(self, schema: core_schema.LiteralSchema) -> JsonSchemaValue:
        out = super().literal_schema(schema)
        if "const" in out:
            out["enum"] = [out.pop("const")]
        return out

    def dict_schema(self, schema: core_schema.DictSchema) -> JsonSchemaValue:
        out = super().dict_schema(schema)
        if out.get("additionalProperties") in (True, {}, None) and "patternProperties" not in out:
            out.pop("additionalProperties", None)
            out["x-kubernetes-preserve-unknown-fields"] = True
        return out

    def generate(self, schema: core_schema.CoreSchema, mode: Any = "validation") -> JsonSchemaValue:
        raw = super().generate(schema, mode=mode)
        out: JsonSchemaValue = _structural(raw, raw.get("$defs", {}))
        return out


def _without_nulls(value: Any) -> Any:
    """A default as the API server should store it: no explicit nulls, at any depth."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _structural(node: Any, defs: dict[str, Any]) -> Any:
    """Inline refs and drop what structural schemas forbid, recursively."""
    if isinstance(node, list):
        return [_structural(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].split("/")[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _structural(merged, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP or (key == "additionalProperties" and value is False):
            continue
        if key in ("properties", "patternProperties"):
            out[key] = {name: _structural(sub, defs) for name, sub in value.items()}
        elif key in ("default", "enum", "x-kubernetes-validations", "required", "example"):
            out[key] = value
        else:
            out[key] = _structural(value, defs)
    # A lone anyOf left by Optional[Model] collapsing (rare) is unwrapped.
    if set(out) - {"description"} == {"anyOf"} and len(out["anyOf"]) == 1:
        inner = out.pop("anyOf")[0]
        out = {**inner, **out}
    return out


def model_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural schema of one model, as it appears under openAPIV3Schema."""
    return model.model_json_schema(by_alias=True, schema_generator=StructuralSchema, mode="validation")


def build_crd(resource: type[Resource]) -> Manifest:
    """The full CRD manifest for a root model (its ``spec`` and ``status`` fields)."""
    info = resource.crd
    fields = resource.model_fields
    spec_model = _model_of(fields["spec"].annotation)
    status_model = _model_of(fields["status"].annotation)
    spec = model_schema(spec_model)
    status = _without_defaults(model_schema(status_model))
    spec.setdefault("description", (spec_model.__doc__ or "").strip())
    root: dict[str, Any] = {
        "type": "object",
        "description": (resource.__doc__ or info.kind).strip(),
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": (
                {"type": "object", "properties": {"name": info.name_schema}}
                if info.name_schema
                else {"type": "object"}
            ),
            "spec": spec,
            "status": status,
        },
        "required": ["spec"],
    }
    version: dict[str, Any] = {
        "name": VERSION,
        "served": True,
        "storage": True,
        "subresources": {"status": {}},
        "additionalPrinterColumns": [c.wire() for c in info.printer_columns],
        "schema": {"openAPIV3Schema": root},
    }
    names: dict[str, Any] = {
        "kind": info.kind,
        "listKind": f"{info.kind}List",
        "plural": info.plural,
        "singular": info.singular,
    }
    if info.short_names:
        names["shortNames"] = list(info.short_names)
    if info.categories:
        names["categories"] = list(info.categories)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{info.plural}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "mothership"},
        },
        "spec": {"group": GROUP, "names": names, "scope": info.scope, "versions": [version]},
    }


def _model_of(annotation: Any) -> type[BaseModel]:
    """The model class inside ``Model`` or ``Model | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    raise TypeError(f"no model in {annotation!r}")


def _without_defaults(node: Any) -> Any:
    """Status is written by the operator alone; defaults there would only confuse readers."""
    if isinstance(node, dict):
        return {k: _without_defaults(v) for k, v in node.items() if k != "default"}
    if isinstance(node, list):
        return [_without_defaults(v) for v in node]
    return node


def all_resources() -> list[type[Resource]]:
    """Every root model that gets a CRD, in a stable order."""
    from . import resources

    return list(resources.ALL)


def render(crd: Manifest) -> str:
    """YAML text of one CRD, stable across runs (sorted keys would scramble the reading order)."""
    return "# Generated by `mothership crds` from operator/mothership/api. Do not edit.\n" + yaml.safe_dump(
        crd, sort_keys=False, width=100, allow_unicode=True
    )


def write_crds(out: Path, chart: Path | None = None) -> Iterable[Path]:
    """Write one YAML file per kind into ``out`` (and ``chart``, identically); return the paths."""
    written = []
    for folder in [out, *([chart] if chart else [])]:
        folder.mkdir(parents=True, exist_ok=True)
        for resource in all_resources():
            path = folder / f"{resource.crd.plural}.{GROUP}.yaml"
            path.write_text(render(build_crd(resource)))
            written.append(path)
    return written
