"""The emulator's end-to-end scenarios, run unchanged against a real API server.

Imported, not copied: the same test functions, resolved here against the real
cluster's ``cluster``/``api``/``namespace`` fixtures (tests/cluster/conftest.py).
Left out are the tests that play a controller a real cluster already runs
(patching Deployment status, or creating pods the ReplicaSet controller would
adopt), and the one that relies on the emulator not enforcing list-map keys (a
real server refuses duplicate env names at apply; test_invalid_manifests covers
refusals).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from tests.operator.harness import app
from tests.operator.test_apps import (
    test_a_deleted_deployment_is_back_within_five_seconds,
    test_a_hand_edit_of_replicas_and_image_is_put_back,
    test_a_missing_secret_degrades_the_app_with_an_event,
    test_an_app_gets_a_deployment_and_a_service_owned_by_it,
    test_an_image_change_rolls_out_a_new_template,
    test_deleting_the_app_deletes_its_children,
    test_removing_expose_and_autoscale_removes_the_ingress_and_the_autoscaler,
)
from tests.operator.test_tenants import (
    test_a_tenant_gets_a_restricted_namespace_and_its_guard_rails,
    test_a_tenant_may_not_claim_a_system_namespace,
    test_deleting_a_delete_tenant_deletes_its_namespace,
    test_deleting_a_retain_tenant_keeps_the_namespace_its_apps_and_guard_rails,
    test_dropping_the_owners_deletes_the_role_binding,
)

from mothership.kube import KINDS, Kube

Until = Callable[..., Awaitable[Any]]

__all__ = [
    "test_a_deleted_deployment_is_back_within_five_seconds",
    "test_a_hand_edit_of_replicas_and_image_is_put_back",
    "test_a_missing_secret_degrades_the_app_with_an_event",
    "test_a_tenant_gets_a_restricted_namespace_and_its_guard_rails",
    "test_a_tenant_may_not_claim_a_system_namespace",
    "test_an_app_gets_a_deployment_and_a_service_owned_by_it",
    "test_an_image_change_rolls_out_a_new_template",
    "test_deleting_a_delete_tenant_deletes_its_namespace",
    "test_deleting_a_retain_tenant_keeps_the_namespace_its_apps_and_guard_rails",
    "test_deleting_the_app_deletes_its_children",
    "test_dropping_the_owners_deletes_the_role_binding",
    "test_removing_expose_and_autoscale_removes_the_ingress_and_the_autoscaler",
]


async def test_the_real_deployment_controller_moves_the_app_past_pending(
        api: Kube, namespace: str, until: Until) -> None:
    """Nobody plays the controller here: the App's phase follows the real Deployment's status."""
    await api.request("create", KINDS["App"], namespace=namespace, body=app("shop", namespace, replicas=1))

    async def phase() -> str | None:
        st = ((await api.get("App", "shop", namespace)) or {}).get("status") or {}
        # No nodes: pods stay Pending (Progressing); with nodes, the made-up image fails to pull
        # (Degraded, or Failed once the rollout deadline passes).
        return st.get("phase") if st.get("phase") in ("Progressing", "Degraded", "Failed", "Ready") else None

    assert await until(phase, timeout=30, what="a phase past Pending")


async def test_the_api_server_applies_the_crd_defaults(api: Kube, namespace: str) -> None:
    created = await api.request("create", KINDS["App"], namespace=namespace, body=app("shop", namespace))
    assert created["spec"]["port"] == 8080
    assert created["spec"]["protocol"] == "http"
