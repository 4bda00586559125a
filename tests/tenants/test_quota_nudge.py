"""An uncounted quota is re-applied (``spec.hard`` without the uncounted keys, then with them), when due.

The quota controller re-syncs a quota only when its ``spec.hard`` changes (or
every 5 minutes), so this is what gets a quota synced before it knew the App
CRD counted. ``tenants.handlers.nudge_quota`` against a stand-in that records
each apply; the real quota controller is in tests/cluster/test_real_controllers.py.
"""

from __future__ import annotations

import copy
from typing import Any

from mothership.tenants import handlers, status
from tests.tenants.test_status import COUNTED, HARD, UNCOUNTED

WANTED = {"apiVersion": "v1", "kind": "ResourceQuota",
          "metadata": {"name": "mothership", "namespace": "team-acme"}, "spec": {"hard": HARD}}


class Applies:
    """Records each applied ``spec.hard``; returns the quota as the API server would (status unchanged)."""

    def __init__(self, quota: dict[str, Any]) -> None:
        self.quota = quota
        self.hards: list[dict[str, str]] = []

    async def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        self.hards.append(dict(manifest["spec"]["hard"]))
        return {**copy.deepcopy(self.quota), "metadata": manifest["metadata"], "spec": manifest["spec"]}


def observed(quota: dict[str, Any]) -> dict[str, Any]:
    return {**copy.deepcopy(quota), "metadata": WANTED["metadata"]}


async def nudge(kube: Applies, quota: dict[str, Any], nudges: dict[str, tuple[int, float]],
                now: float) -> dict[str, Any]:
    return await handlers.nudge_quota(kube, "acme", WANTED, observed(quota), nudges, now)  # type: ignore[arg-type]


async def test_a_synced_quota_lacking_a_count_is_re_applied_without_the_key_and_then_with_it() -> None:
    kube, nudges = Applies(UNCOUNTED), {}
    await nudge(kube, UNCOUNTED, nudges, now=100.0)
    without = {k: v for k, v in HARD.items() if k != "count/apps.mothership.dev"}
    assert kube.hards == [without, HARD]
    assert nudges == {"acme": (1, 100.0 + status.nudge_delay(1))}


async def test_the_next_nudge_waits_until_it_is_due() -> None:
    kube, nudges = Applies(UNCOUNTED), {"acme": (3, 105.0)}
    await nudge(kube, UNCOUNTED, nudges, now=104.9)
    assert kube.hards == []
    await nudge(kube, UNCOUNTED, nudges, now=105.0)
    assert len(kube.hards) == 2 and nudges["acme"][0] == 4


async def test_a_quota_the_controller_has_not_synced_yet_is_left_to_it() -> None:
    kube, nudges = Applies(UNCOUNTED), {}
    for quota in ({"spec": {"hard": HARD}}, {"spec": {"hard": HARD}, "status": {"hard": {"pods": "1"}}}):
        await nudge(kube, quota, nudges, now=100.0)
    assert kube.hards == [] and nudges == {}


async def test_a_counted_quota_is_not_touched_and_forgets_its_nudges() -> None:
    kube, nudges = Applies(COUNTED), {"acme": (2, 200.0)}
    assert await nudge(kube, COUNTED, nudges, now=300.0) == observed(COUNTED)
    assert kube.hards == [] and nudges == {}
