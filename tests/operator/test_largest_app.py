"""The largest valid App on a real API server: the operator handles it, and its annotations fit.

kopf keeps the last-handled spec in an annotation and the API server caps an object's annotations
at 256 KiB; tests/largest_specs.py builds the largest App spec the CRD accepts
(tests/api/test_spec_size.py measures it without a cluster).
"""

from __future__ import annotations

import json
from typing import Any

from mothership.kube import Kube
from tests.largest_specs import ANNOTATION_CAP, LAST_HANDLED, annotation_bytes, kopf_json, largest_app_spec
from tests.operator.test_apps import Until, create


async def test_the_largest_valid_app_is_handled_and_its_annotations_fit_the_cap(
        api: Kube, namespace: str, until: Until) -> None:
    spec = largest_app_spec()
    await create(api, {"apiVersion": "mothership.dev/v1alpha1", "kind": "App",
                       "metadata": {"name": "largest", "namespace": namespace}, "spec": spec})

    async def handled() -> dict[str, Any] | None:
        obj = await api.get("App", "largest", namespace)
        annotations = (obj or {}).get("metadata", {}).get("annotations") or {}
        return obj if obj and (obj.get("status") or {}).get("phase") and LAST_HANDLED in annotations else None

    obj = await until(handled, timeout=20, what="a status and kopf's last-handled annotation")
    assert json.loads(obj["metadata"]["annotations"][LAST_HANDLED])["spec"] == spec
    assert await api.get("Deployment", "largest", namespace) is not None
    size = annotation_bytes(obj)
    print(f"largest App: spec JSON {len(kopf_json(spec))} bytes, annotations {size} bytes")
    assert size < ANNOTATION_CAP
