"""The README's walk-through: examples/tenant.yaml then examples/app.yaml, children within 2 s."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml

from mothership.kube import Kube

Until = Callable[..., Awaitable[Any]]
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


async def test_the_examples_give_a_namespace_and_an_app_with_its_children_within_two_seconds(
        api: Kube, until: Until) -> None:
    tenant = yaml.safe_load((EXAMPLES / "tenant.yaml").read_text())
    app = yaml.safe_load((EXAMPLES / "app.yaml").read_text())
    namespace = app["metadata"]["namespace"]

    await api.apply(tenant, field_manager="kubectl")
    await until(lambda: api.get("LimitRange", "mothership", namespace), timeout=2, what="the guard rails")
    created = await api.apply(app, field_manager="kubectl")

    for kind in ("Deployment", "Service", "Ingress", "PodDisruptionBudget"):
        child = await until(lambda k=kind: api.get(k, app["metadata"]["name"], namespace), timeout=2,
                            what=kind)
        assert child["metadata"]["ownerReferences"][0]["uid"] == created["metadata"]["uid"]
