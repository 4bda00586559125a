"""Server-side printing: the ``Table`` that ``kubectl get`` asks for.

kubectl sends ``Accept: application/json;as=Table;g=meta.k8s.io;v=v1`` and prints the
columns the server chose: for custom resources the CRD's additionalPrinterColumns
(evaluated as the simple JSONPath subset CRDs use: ``.a.b``, ``[n]`` and
``[?(@.k=="v")]``), Name and Age otherwise (plus Status for namespaces). So
``kubectl get loadtests`` against the emulator shows what it shows on a cluster.
"""

from __future__ import annotations

import datetime
import re
from typing import Any

from .resources import ResourceType

Obj = dict[str, Any]
_STEP = re.compile(r"\.([A-Za-z0-9_\-]+)|\[(\d+)\]|\[\?\(@\.([A-Za-z0-9_.]+)\s*==\s*[\"']([^\"']*)[\"']\)\]")


def wants_table(accept: str) -> bool:
    return "as=Table" in accept


def jsonpath(obj: Any, path: str) -> Any:
    node: Any = obj
    pos = 0
    while pos < len(path) and node is not None:
        m = _STEP.match(path, pos)
        if not m:
            return None
        pos = m.end()
        field, index, key, value = m.groups()
        if field is not None:
            node = node.get(field) if isinstance(node, dict) else None
        elif index is not None:
            node = node[int(index)] if isinstance(node, list) and int(index) < len(node) else None
        else:
            matches = [i for i in node or [] if isinstance(i, dict) and str(i.get(key)) == value]
            node = matches[0] if matches else None
    return node


def age(timestamp: Any) -> str:
    """``5s``, ``3m``, ``2h``, ``4d``: kubectl's short human durations."""
    if not isinstance(timestamp, str):
        return "<unknown>"
    try:
        then = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "<invalid>"
    seconds = int((datetime.datetime.now(datetime.UTC) - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def _columns(rt: ResourceType) -> list[Obj]:
    name = {"name": "Name", "type": "string", "format": "name", "priority": 0,
            "description": "Name must be unique within a namespace.", "jsonPath": ".metadata.name"}
    created = {"name": "Age", "type": "date", "format": "", "priority": 0,
               "description": "CreationTimestamp", "jsonPath": ".metadata.creationTimestamp"}
    if rt.crd_name is not None:
        custom = [dict(c, format=c.get("format", ""), priority=c.get("priority", 0),
                       description=c.get("description", "")) for c in rt.printer_columns]
        return [name, *custom] if custom else [name, created]
    if rt.plural == "namespaces":
        status = {"name": "Status", "type": "string", "format": "", "priority": 0,
                  "description": "The status of the namespace", "jsonPath": ".status.phase"}
        return [name, status, created]
    return [name, created]


def table(rt: ResourceType, objects: list[Obj], list_meta: Obj) -> Obj:
    columns = _columns(rt)
    rows = []
    for obj in objects:
        cells = []
        for column in columns:
            value = jsonpath(obj, column["jsonPath"])
            if column["type"] == "date":
                value = age(value)
            cells.append(value)
        meta = obj.get("metadata", {})
        rows.append({"cells": cells, "object": {
            "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
        }})
    definitions = [{k: v for k, v in c.items() if k != "jsonPath"} for c in columns]
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta,
            "columnDefinitions": definitions, "rows": rows}
