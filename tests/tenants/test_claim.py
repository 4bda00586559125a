"""A Tenant's claim on its namespace, decided from the Namespace alone: new, its own, adopted, or taken."""

from __future__ import annotations

from typing import Any

import pytest

from mothership.api.common import ConditionStatus, make_condition
from mothership.api.tenant import Tenant, TenantReason
from mothership.tenants import status
from tests.tenants.examples import UID, manifest

NOW = "2026-01-02T03:04:05Z"
LATER = "2026-01-02T03:09:00Z"


def tenant(name: str = "acme", **spec: Any) -> Tenant:
    return Tenant.model_validate(manifest({"namespace": "shop", **spec}, name=name))


def namespace(labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None,
              owners: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "shop", "resourceVersion": "42",
                            "labels": {"kubernetes.io/metadata.name": "shop", **(labels or {})}}
    if annotations:
        meta["annotations"] = annotations
    if owners:
        meta["ownerReferences"] = owners
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


OWN = {"mothership.dev/tenant": "acme"}
CREATED = {"mothership.dev/created-by-tenant": "acme"}


def test_a_namespace_that_does_not_exist_is_claimed_and_counts_as_created() -> None:
    claim = status.claim(tenant(), None)
    assert (claim.accepted, claim.created, claim.adopting) == (True, True, False)
    assert "created by this Tenant" in claim.message


def test_a_namespace_labelled_as_its_own_and_marked_created_by_it_is_claimed_as_created() -> None:
    claim = status.claim(tenant(), namespace(OWN, CREATED))
    assert (claim.accepted, claim.created, claim.adopting) == (True, True, False)


def test_a_namespace_labelled_as_its_own_without_the_created_mark_was_adopted_and_is_never_created() -> None:
    claim = status.claim(tenant(), namespace(OWN))
    assert (claim.accepted, claim.created, claim.adopting) == (True, False, False)
    assert "never deletes it" in claim.message


def test_a_namespace_marked_created_by_another_tenant_of_old_does_not_count_as_created() -> None:
    claim = status.claim(tenant(adopt=True), namespace(OWN, {"mothership.dev/created-by-tenant": "old"}))
    assert (claim.accepted, claim.created) == (True, False)


def test_a_namespace_from_before_the_created_mark_counts_as_created_when_the_tenant_owns_it() -> None:
    """What a Delete Tenant made before this annotation existed: its ownerReference says so."""
    ref = {"apiVersion": "mothership.dev/v1alpha1", "kind": "Tenant", "name": "acme", "uid": UID}
    assert status.claim(tenant(), namespace(OWN, owners=[ref])).created
    stranger = {**ref, "uid": "another-uid"}
    assert not status.claim(tenant(), namespace(OWN, owners=[stranger])).created


@pytest.mark.parametrize("adopt", [False, True])
def test_a_namespace_labelled_as_another_tenants_is_taken_and_names_that_tenant(adopt: bool) -> None:
    claim = status.claim(tenant("thief", adopt=adopt), namespace(OWN, CREATED))
    assert (claim.accepted, claim.owner) == (False, "acme")
    assert claim.message.startswith(
        "Namespace shop belongs to Tenant acme (label mothership.dev/tenant=acme); nothing was changed.")
    assert "Choose another spec.namespace" in claim.message


def test_an_existing_namespace_no_tenant_owns_is_refused_without_adopt_and_says_how_to_adopt() -> None:
    claim = status.claim(tenant(), namespace())
    assert (claim.accepted, claim.owner) == (False, None)
    assert "already exists and belongs to no Tenant" in claim.message
    assert "spec.adopt: true" in claim.message


def test_an_existing_namespace_no_tenant_owns_is_adopted_with_adopt_but_never_as_created() -> None:
    claim = status.claim(tenant(adopt=True), namespace())
    assert (claim.accepted, claim.created, claim.adopting) == (True, False, True)
    # Its message is the one every later reconcile gives, so the condition does not flap.
    assert claim.message == status.claim(tenant(adopt=True), namespace(OWN)).message


def test_the_holder_is_the_tenant_label_or_none() -> None:
    assert status.holder(namespace(OWN)) == "acme"
    assert status.holder(namespace()) is None
    assert status.holder(None) is None


def test_a_refused_tenant_is_accepted_false_and_ready_false_with_the_reason_and_no_namespace() -> None:
    message = status.claim(tenant("thief"), namespace(OWN)).message
    result = status.refused(TenantReason.NAMESPACE_TAKEN, message, 3, NOW, [])
    assert result.namespace is None
    assert [(c.type, c.status, c.reason, c.message, c.observed_generation) for c in result.conditions] == [
        ("Ready", ConditionStatus.FALSE, "NamespaceTaken", message, 3),
        ("Accepted", ConditionStatus.FALSE, "NamespaceTaken", message, 3),
    ]


def test_a_refusal_keeps_the_other_conditions_and_the_time_it_began() -> None:
    earlier = status.refused(TenantReason.NAMESPACE_TAKEN, "taken", 1, NOW, []).conditions
    other = make_condition("LimitsReady", ConditionStatus.TRUE, "Applied", "ok", generation=1, now=NOW,
                           previous=[])
    again = status.refused(TenantReason.NAMESPACE_TAKEN, "taken", 1, LATER, [*earlier, other])
    assert [c.type for c in again.conditions] == ["Ready", "Accepted", "LimitsReady"]
    assert {c.last_transition_time for c in again.conditions} == {NOW}
