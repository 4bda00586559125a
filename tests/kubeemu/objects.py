"""Small accessors for Kubernetes objects as plain dicts, shared by the registry,
its strategies and the controllers. No I/O, no API rules."""

from __future__ import annotations

import datetime
from typing import Any

Obj = dict[str, Any]

#: Finalizers of the API machinery itself (garbage collector and CRD cleanup).
ORPHAN = "orphan"
FOREGROUND = "foregroundDeletion"
CRD_CLEANUP = "customresourcecleanup.apiextensions.k8s.io"


def now() -> str:
    """RFC 3339 in UTC with a Z and whole seconds, as metav1.Time serialises."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def meta_of(obj: Obj) -> Obj:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def is_deleting(obj: Obj) -> bool:
    return bool(meta_of(obj).get("deletionTimestamp"))


def finalizers_of(obj: Obj) -> list[str]:
    return list(meta_of(obj).get("finalizers") or [])


def owner_refs(obj: Obj) -> list[Obj]:
    return [r for r in meta_of(obj).get("ownerReferences") or [] if isinstance(r, dict)]


def set_condition(obj: Obj, ctype: str, status: str, reason: str, message: str) -> None:
    conditions = obj.setdefault("status", {}).setdefault("conditions", [])
    entry = {"type": ctype, "status": status, "lastTransitionTime": now(), "reason": reason,
             "message": message}
    for n, existing in enumerate(conditions):
        if existing.get("type") == ctype:
            if existing.get("status") == status:  # the transition time marks status changes
                entry["lastTransitionTime"] = existing.get("lastTransitionTime", now())
            conditions[n] = entry
            return
    conditions.append(entry)
