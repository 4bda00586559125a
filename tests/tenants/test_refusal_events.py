"""A refused Tenant gets one Warning Event, not one per timer tick, and nothing is written for it.

``tenants.handlers.reconcile`` against a stand-in that holds one Namespace and
records what is asked of it: milliseconds, no API server. (The end-to-end
refusals are in tests/operator/test_tenants.py.)
"""

from __future__ import annotations

from typing import Any

from mothership.api.common import conditions_of
from mothership.tenants import handlers
from tests.tenants.examples import manifest

TAKEN = {"apiVersion": "v1", "kind": "Namespace",
         "metadata": {"name": "shop", "resourceVersion": "7", "labels": {"mothership.dev/tenant": "acme"}}}


class Recorder:
    """The few calls a refusal may make: read the Namespace, post Events. Anything else fails the test."""

    def __init__(self, namespace: dict[str, Any] | None) -> None:
        self.namespace = namespace
        self.events: list[tuple[str, str]] = []

    async def get(self, kind: Any, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        assert getattr(kind, "kind", kind) == "Namespace" and name == "shop"
        return self.namespace

    async def post_event(self, involved: Any, *, reason: str, message: str, type: str = "Normal",
                         action: str = "Reconcile") -> None:
        assert type == "Warning"
        self.events.append((reason, message))


async def test_a_namespace_taken_refusal_posts_one_event_and_the_next_tick_posts_none() -> None:
    kube = Recorder(TAKEN)
    body = manifest({"namespace": "shop"}, name="thief")
    first, error = await handlers.reconcile(body, kube, "mothership-system", [])  # type: ignore[arg-type]
    assert isinstance(error, handlers.Refused)
    assert [reason for reason, _ in kube.events] == ["NamespaceTaken"]
    assert "belongs to Tenant acme" in kube.events[0][1]

    again, error = await handlers.reconcile(body, kube, "mothership-system",  # type: ignore[arg-type]
                                            conditions_of(first))
    assert isinstance(error, handlers.Refused)
    assert len(kube.events) == 1
    assert again == first


async def test_a_new_reason_to_refuse_posts_again() -> None:
    kube = Recorder(TAKEN)
    body = manifest({"namespace": "shop"}, name="thief")
    first, _ = await handlers.reconcile(body, kube, "mothership-system", [])  # type: ignore[arg-type]
    kube.namespace = {**TAKEN, "metadata": {**TAKEN["metadata"], "labels": {}}}  # released, but no adopt
    await handlers.reconcile(body, kube, "mothership-system", conditions_of(first))  # type: ignore[arg-type]
    assert [reason for reason, _ in kube.events] == ["NamespaceTaken", "NamespaceTaken"]
    assert "belongs to no Tenant" in kube.events[1][1]
