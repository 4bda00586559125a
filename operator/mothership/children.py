"""Applying a controller's children, with one outcome per kind.

Tenants and Apps both server-side apply a handful of children concurrently
and then need, per kind, whether it applied (and what the API returned, for
status) or why not (for a condition), plus the first error to raise once
the status is written. Groups go in order: a Tenant's Namespace must exist
before anything inside it, so after a failed group the rest are not tried
and say so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from mothership import errors
from mothership.api.common import Manifest
from mothership.kube import ApiError, Kube


@dataclass
class Applied:
    messages: dict[str, str | None] = field(default_factory=dict)
    """Kind -> None when applied, else a sentence saying why not."""
    observed: dict[str, Manifest] = field(default_factory=dict)
    """Kind -> the object as the API returned it after the apply."""
    failure: ApiError | None = None
    """The first API error, to be classified and raised after the status is written."""


async def apply_children(kube: Kube, groups: Iterable[Sequence[Manifest]]) -> Applied:
    """Apply each group's manifests concurrently, group after group; anything but an ApiError raises."""
    out = Applied()
    for group in groups:
        if out.failure is not None:
            reason = errors.classify(out.failure).args[0]
            out.messages.update({m["kind"]: f"not applied: {reason}" for m in group})
            continue
        results = await asyncio.gather(*(kube.apply(m) for m in group), return_exceptions=True)
        for manifest, result in zip(group, results, strict=True):
            if isinstance(result, ApiError):
                out.messages[manifest["kind"]] = errors.classify(result).args[0]
                out.failure = out.failure or result
            elif isinstance(result, BaseException):
                raise result
            else:
                out.messages[manifest["kind"]] = None
                out.observed[manifest["kind"]] = result
    return out
