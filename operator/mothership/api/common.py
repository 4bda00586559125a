"""Shared API types: the base model every CRD field inherits, Kubernetes-shaped
scalars (quantities, durations, DNS names) and the status Condition.

Why one base: ``alias_generator=to_camel`` derives every wire name from the
Python name, ``use_attribute_docstrings`` turns the docstring under a field into
its CRD description, and ``extra="forbid"`` makes the local runner reject the
same unknown fields that the API server prunes. This module imports nothing
else from ``mothership``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    with_config,
)
from pydantic.alias_generators import to_camel
from typing_extensions import TypedDict

GROUP = "mothership.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

Manifest = dict[str, Any]
"""A Kubernetes object as a JSON-ready dict, headed to or read from the API."""


class Model(BaseModel):
    """Base of every spec and status model: camelCase on the wire, docstrings as descriptions."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
        frozen=False,
    )

    def wire(self) -> Manifest:
        """The JSON form the API server stores: camelCase keys, unset optionals left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def field_path(loc: tuple[int | str, ...] | list[int | str]) -> str:
    """A pydantic error location as kubectl prints a field path: ``spec.env[0].name``.

    Union members tag the location with the branch tried (``str``, ``int``,
    ``function-after[...]``); those are not fields and are dropped.
    """
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not _UNION_TAG.match(part):
            out += f".{part}" if out else part
    return out


def error_lines(exc: ValidationError, prefix: str = "") -> list[str]:
    """One ``field.path: message`` line per validation error, paths in kubectl's style."""
    lines = []
    for err in exc.errors():
        path = field_path(((prefix,) if prefix else ()) + tuple(err["loc"])) or "(document)"
        message = err["msg"].removeprefix("Value error, ")
        lines.append(f"{path}: {message}")
    return lines


def invalid_spec_message(exc: ValidationError, limit: int = 5) -> str:
    """The condition and Event message for a spec only the operator could refuse (first few errors)."""
    lines = error_lines(exc)
    more = f" (and {len(lines) - limit} more)" if len(lines) > limit else ""
    return "The spec is invalid: " + "; ".join(lines[:limit]) + more


_UNION_TAG = re.compile(r"^(str|int|float|bool|none|function-\w+\[.*\]|.*\[.*\])$")


# --- Scalars ---------------------------------------------------------------

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DURATION = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$"

DnsLabel = Annotated[str, Field(pattern=DNS_LABEL, min_length=1, max_length=63)]
"""A DNS-1123 label: lower-case letters, digits and '-', at most 63 characters."""

DnsSubdomain = Annotated[str, Field(pattern=DNS_SUBDOMAIN, min_length=1, max_length=253)]
"""A DNS-1123 subdomain, e.g. a host name like ``shop.example.com``."""

Duration = Annotated[str, Field(pattern=DURATION, max_length=32)]
"""A duration such as ``500ms``, ``30s``, ``1m30s`` or ``2h``."""

MAX_QUANTITY = 64
"""Most characters in a quantity: every string in a spec is bounded, because kopf keeps the spec in
an annotation and the API server caps an object's annotations at 256 KiB."""


def _quantity_length(value: str | int) -> str | int:
    if len(str(value)) > MAX_QUANTITY:
        raise ValueError(f"a quantity has at most {MAX_QUANTITY} characters")
    return value


Quantity = Annotated[
    str | int,
    Field(union_mode="left_to_right"),
    AfterValidator(_quantity_length),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "x-kubernetes-int-or-string": True,
            "pattern": QUANTITY,
            "maxLength": MAX_QUANTITY,
        }
    ),
]
"""A Kubernetes resource quantity such as ``500m``, ``2``, ``512Mi`` or ``4Gi``, at most 64 characters."""

_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in a duration string (``1m30s`` -> 90.0); ValueError if malformed."""
    if not re.fullmatch(DURATION, text):
        raise ValueError(f"not a duration: {text!r} (use e.g. 500ms, 30s, 1m30s, 2h)")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))


QUANTITY_SUFFIXES: dict[str, float] = {
    "n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15,
    "E": 1e18, "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50, "Ei": 2.0**60,
}
"""What each Kubernetes quantity suffix multiplies by: one table for every parser of quantities."""


def parse_quantity(value: str | int) -> float:
    """The number a quantity stands for (``500m`` -> 0.5, ``1Gi`` -> 1073741824.0)."""
    if isinstance(value, int):
        return float(value)
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)(m|k|Ki|Mi|Gi|Ti|M|G|T)?", value)
    if not match:
        raise ValueError(f"not a quantity: {value!r} (use e.g. 500m, 2, 512Mi, 4Gi)")
    return float(match.group(1)) * QUANTITY_SUFFIXES[match.group(2) or ""]


# --- Conditions -------------------------------------------------------------


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(Model):
    """One observation about the object, in the shape of metav1.Condition."""

    type: str
    """CamelCase condition type, e.g. ``Ready``."""
    status: ConditionStatus
    """True, False or Unknown."""
    reason: str = Field(default="", max_length=1024)
    """CamelCase reason for the last transition, e.g. ``DeploymentProgressing``."""
    message: str = Field(default="", max_length=32768)
    """A sentence a tenant can act on."""
    last_transition_time: str | None = None
    """RFC 3339 time of the last status change."""
    observed_generation: int | None = None
    """The .metadata.generation this condition was computed from."""


CONDITIONS_FIELD: Any = Field(
    default=[],
    max_length=32,
    json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
)
"""Use as ``conditions: list[Condition] = CONDITIONS_FIELD``: a list keyed by type, as metav1 does."""


# --- CRD metadata -----------------------------------------------------------


class PrinterColumn(Model):
    name: str
    type: str
    json_path: str
    description: str | None = None
    priority: int | None = None

    def wire(self) -> Manifest:
        out = super().wire()
        out["jsonPath"] = out.pop("jsonPath")
        return out


class CrdInfo(Model):
    """What a root model declares about its CRD beyond the schema."""

    kind: str
    plural: str
    singular: str
    scope: str  # "Namespaced" or "Cluster"
    short_names: list[str] = []
    categories: list[str] = ["mothership"]
    printer_columns: list[PrinterColumn] = []
    name_schema: dict[str, Any] | None = None
    """Restrictions on metadata.name (the only metadata a structural schema may restrict)."""


DNS_1035 = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
DNS_1035_NAME = {"type": "string", "maxLength": 63, "pattern": DNS_1035}
"""metadata.name of an object whose name also names a Service. Only restrictions are allowed on
metadata in a CRD (no description), so the reason lives here and in the invalid sample."""


@with_config(ConfigDict(extra="allow"))
class ServiceNamedMetadata(TypedDict, total=False):
    """Metadata of an object whose name also names a Service: a DNS-1035 label.

    A TypedDict, so the model keeps metadata as the plain dict the API sent,
    while a bad name is reported at ``metadata.name`` like the CRD rule does.
    """

    name: Annotated[str, Field(pattern=DNS_1035, max_length=63)]


class Resource(Model):
    """A root object: apiVersion, kind, metadata, spec, status.

    Subclasses set ``crd`` and narrow ``spec``/``status``. Metadata stays a
    free-form dict: the API server owns its schema.
    """

    crd: ClassVar[CrdInfo]
    api_version: str = API_VERSION
    kind: str = ""
    metadata: dict[str, Any] = {}


class Owner(Model):
    """The parent object a builder stamps into its children's ownerReferences."""

    api_version: str
    kind: str
    name: str
    uid: str
    namespace: str | None = None

    def reference(self) -> Manifest:
        """An ownerReference that makes the API server garbage-collect the child with its owner."""
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }

    @classmethod
    def of(cls, body: Manifest) -> Owner:
        meta = body["metadata"]
        return cls(
            api_version=body["apiVersion"],
            kind=body["kind"],
            name=meta["name"],
            uid=meta["uid"],
            namespace=meta.get("namespace"),
        )


def conditions_of(status: Mapping[str, Any] | None) -> list[Condition]:
    """The conditions recorded in a status as the API returned it; malformed entries are skipped."""
    out = []
    for raw in (status or {}).get("conditions") or []:
        try:
            out.append(Condition.model_validate(raw))
        except ValidationError:
            continue
    return out


def make_condition(
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    *,
    generation: int | None,
    now: str,
    previous: list[Condition] | tuple[Condition, ...] = (),
) -> Condition:
    """A condition whose lastTransitionTime moves only when its status changes (metav1 semantics)."""
    since = now
    for old in previous:
        if old.type == type_ and old.status == status and old.last_transition_time:
            since = old.last_transition_time
    return Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=since,
        observed_generation=generation,
    )
