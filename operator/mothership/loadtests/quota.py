"""Whether a LoadTest's workers fit its namespace's quota, decided purely.

The quota pre-flight of ``coordination.launch``: before anything is created, the
workers' total demand (``workers x spec.resources``, as both requests and limits,
plus one pod each) is compared with what the Tenant's ResourceQuota
(``mothership`` in the namespace, read with one GET) has left: ``hard`` minus
``used``, key by key. A test that cannot fit is refused at once
(``ExceedsQuota``), naming the numbers, instead of its pods being refused one by
one by quota admission while the test waits for them. Keys the workers do not
consume (``count/apps.mothership.dev``, storage) are ignored. A quota the
quota controller has not counted yet (no ``status.used``) counts as unused:
admission refuses with "status unknown" meanwhile, and the Job controller
retries.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mothership.api.common import QUANTITY_SUFFIXES, parse_quantity
from mothership.api.loadtest import LoadTestSpec

QUOTA_NAME = "mothership"
"""The Tenant's ResourceQuota in its namespace (``tenants.builders.CHILD_NAME``)."""

_QUANTITY = re.compile(r"([+-]?[0-9]*\.?[0-9]+)(?:([eE][+-]?[0-9]+)|(n|u|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?)")

_CPU = ("cpu", "requests.cpu", "limits.cpu")
_MEMORY = ("memory", "requests.memory", "limits.memory")
_PODS = ("pods", "count/pods")


def amount(value: Any) -> float | None:
    """A Kubernetes quantity as the API server writes it (``1500m``, ``4Gi``, ``1e3``); None if not one."""
    text = str(value).strip()
    match = _QUANTITY.fullmatch(text)
    if match is None:
        return None
    number, exponent, suffix = match.groups()
    return float(number + (exponent or "")) * QUANTITY_SUFFIXES[suffix or ""]


def demand(spec: LoadTestSpec) -> dict[str, float]:
    """What all the workers of ``spec`` take from a ResourceQuota, by quota key."""
    workers = spec.worker_count()
    cpu = parse_quantity(spec.resources.cpu) * workers
    memory = parse_quantity(spec.resources.memory) * workers
    return {**dict.fromkeys(_CPU, cpu), **dict.fromkeys(_MEMORY, memory),
            **dict.fromkeys(_PODS, float(workers))}


@dataclass(frozen=True)
class Shortfall:
    """One quota key the workers would overrun."""

    key: str
    needed: float
    hard: float
    used: float

    @property
    def free(self) -> float:
        return max(0.0, self.hard - self.used)

    def describe(self) -> str:
        return (f"{self.key} {show(self.key, self.needed)} but only {show(self.key, self.free)} is free "
                f"(hard {show(self.key, self.hard)}, used {show(self.key, self.used)})")


def shortfalls(spec: LoadTestSpec, quota: Mapping[str, Any] | None) -> list[Shortfall]:
    """Every key of ``quota`` (a ResourceQuota as read; None when there is none) the workers overrun."""
    if not quota:
        return []
    status = quota.get("status") or {}
    hard = status.get("hard") or (quota.get("spec") or {}).get("hard") or {}
    used = status.get("used") or {}
    needed = demand(spec)
    out = []
    for key in needed:
        if key not in hard:
            continue
        limit = amount(hard[key])
        taken = amount(used.get(key, 0)) or 0.0
        if limit is None:
            continue
        if needed[key] > limit - taken + 1e-9 * max(1.0, limit):
            out.append(Shortfall(key, needed[key], limit, taken))
    return out


def exceeded(spec: LoadTestSpec, quota: Mapping[str, Any] | None) -> str | None:
    """Why the workers of ``spec`` cannot fit ``quota``: a sentence naming the numbers; None if they do."""
    short = shortfalls(spec, quota)
    if not short:
        return None
    name = ((quota or {}).get("metadata") or {}).get("name") or QUOTA_NAME
    workers = spec.worker_count()
    return (f"{workers} worker(s) of cpu {spec.resources.cpu} and memory {spec.resources.memory} "
            f"exceed the namespace's quota (ResourceQuota {name}): they need "
            f"{'; '.join(s.describe() for s in short)}. Lower spec.workers or spec.resources, wait for "
            f"other pods to end, or ask for a higher spec.quota on the Tenant.")


def show(key: str, value: float) -> str:
    """A quota amount the way a tenant writes it: ``2``, ``1500m``, ``4Gi``, ``256Mi``, ``3``."""
    if key in _CPU:
        if abs(value - round(value)) < 1e-9:
            return str(round(value))
        return f"{math.ceil(value * 1000 - 1e-6)}m"
    if key in _MEMORY:
        for suffix in ("Ti", "Gi", "Mi", "Ki"):
            unit = QUANTITY_SUFFIXES[suffix]
            if value >= unit and abs(value / unit - round(value / unit)) < 1e-9:
                return f"{round(value / unit)}{suffix}"
        return str(round(value))
    return str(round(value))
