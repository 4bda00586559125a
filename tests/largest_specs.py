"""The largest LoadTest and App specs the API accepts, and what kopf's annotation makes of them.

kopf keeps the last-handled spec as JSON in the ``mothership.dev/last-handled-configuration``
annotation, and the API server refuses an object whose annotations together exceed 256 KiB. The
specs here put every bounded field at its bound and spend the rest of the spec's text budget
(``SCENARIOS_BUDGET``, ``CONTAINER_BUDGET``) on ``"``, the ASCII character JSON doubles, so their
size is the most an ASCII spec can weigh. tests/api/test_spec_size.py measures them; the real
control plane applies them in tests/loadtests/test_e2e.py and tests/operator/test_spec_size_cluster.py.
"""

from __future__ import annotations

import json
from typing import Any

from mothership.api.app import CONTAINER_BUDGET, AppSpec, container_size
from mothership.api.common import MAX_QUANTITY
from mothership.api.loadtest import (
    SCENARIOS_BUDGET,
    Scenario,
    scenarios_size,
)

ANNOTATION_CAP = 256 * 1024
"""The API server's cap on all of an object's annotations together (keys and values)."""
SPEC_CAP = 128 * 1024
"""What the largest spec's JSON must stay under: half the cap leaves room for the other annotations."""

_DURATION = "1s" * 16  # 32 characters, the most a Duration takes, and still 16 seconds
_QUANTITY = "1" * MAX_QUANTITY


def kopf_json(spec: dict[str, Any]) -> bytes:
    """The spec as kopf writes it into its annotation (``json.dumps``, no spaces, ASCII escapes)."""
    return json.dumps({"spec": spec}, separators=(",", ":")).encode()


def _label(prefix: str, i: int) -> str:
    return f"{prefix}{i:02d}".rjust(63, "a")


def largest_loadtest_spec(url: str | None = None, scenarios: int = 20) -> dict[str, Any]:
    """Every list outside the scenarios at its bound, ``scenarios`` scenarios with a request and a
    WebSocket session each, then one body of ``"`` to fill the budget. One scenario is the heaviest
    JSON (the budget's fixed allowances outweigh what they allow for); twenty is the widest."""
    request: dict[str, Any] = {
        "method": "OPTIONS", "path": "/" + "p" * 63, "name": "n" * 63,
        "headers": {"X-" + "h" * 62: '"' * 64},
        "expectStatus": list(range(580, 600)), "timeout": _DURATION, "thinkTime": _DURATION,
    }
    websocket: dict[str, Any] = {
        "path": "/" + "w" * 63, "headers": {"X-" + "h" * 62: '"' * 64},
        "subprotocols": [f"p{i:07d}" for i in range(10)], "message": '"' * 64, "interval": _DURATION,
        "expect": "pattern", "pattern": "." * 64, "hold": _DURATION, "pingInterval": _DURATION,
        "connectTimeout": _DURATION,
    }
    listed = [
        {"name": _label("s", i), "weight": 1000, "requests": [dict(request)], "websocket": dict(websocket)}
        for i in range(scenarios)
    ]
    spec: dict[str, Any] = {
        "target": {"url": url or "http://" + "t" * (2048 - len("http://"))},
        "scenarios": listed,
        "virtualUsers": 10_000_000,
        "stages": [{"duration": _DURATION, "target": 10_000_000}] * 100,
        "duration": _DURATION, "gracefulStop": _DURATION,
        "workers": 1000, "virtualUsersPerWorker": 100_000,
        "thresholds": [{"metric": "http_req_duration", "stat": "p999", "lt": _DURATION, "abortOnFail": True,
                        "delayAbortEval": _DURATION}]
        * 50,
        "toleratedWorkerFailures": 1000, "stop": False, "ttlSecondsAfterFinished": 31_536_000,
        "image": "i" * 512, "resources": {"cpu": _QUANTITY, "memory": _QUANTITY}, "spreadWorkers": True,
    }
    left = SCENARIOS_BUDGET - scenarios_size([Scenario.model_validate(s) for s in listed])
    listed[0]["requests"][0] = {**request, "body": '"' * left}
    return spec


def largest_app_spec() -> dict[str, Any]:
    """Every fixed field at its bound, one envFrom, then env values of ``"`` to fill the budget (an
    envFrom is allowed for more than it weighs, so fifty of them would make a lighter spec)."""
    spec: dict[str, Any] = {
        # autoscale.min 1, not 1000: the real cluster's ReplicaSet controller would make 1000 pods
        "image": "i" * 512, "port": 65535, "autoscale": {"min": 1, "max": 1000, "targetCPU": 100},
        "envFrom": [{"configMapRef": "c" * 253, "prefix": "P" * 64}],
        "env": [], "command": [], "args": [],
        "resources": {"requests": {"cpu": _QUANTITY, "memory": _QUANTITY},
                      "limits": {"cpu": _QUANTITY, "memory": _QUANTITY}},
        "healthCheck": {"path": "/" + "h" * 2047, "port": 65535, "initialDelay": _DURATION,
                        "period": _DURATION, "timeout": _DURATION, "failureThreshold": 100},
        "expose": {"host": ".".join(["e" * 63] * 4)[:253].rstrip("."), "path": "/" + "x" * 2047,
                   "tls": True, "tlsSecretName": "s" * 253, "clusterIssuer": "c" * 253,
                   "ingressClassName": "i" * 253},
        "protocol": "websocket",
        "strategy": {"type": "RollingUpdate", "maxSurge": 1000, "maxUnavailable": 1000},
        "securityContext": {"runAsUser": 2147483647, "runAsGroup": 2147483647, "fsGroup": 2147483647,
                            "readOnlyRootFilesystem": True},
    }
    left = CONTAINER_BUDGET - container_size(AppSpec.model_validate(spec))
    env = []
    while left > 48 + 8:
        value = min(left - 48 - 8, 32768)
        env.append({"name": f"V{len(env):07d}", "value": '"' * value})
        left -= 48 + 8 + value
    spec["env"] = env
    return spec


LAST_HANDLED = "mothership.dev/last-handled-configuration"
"""kopf's copy of the spec (controller.PREFIX), the annotation that grows with it."""


def annotation_bytes(obj: dict[str, Any]) -> int:
    """Bytes the API server counts against its cap: every annotation's key and value."""
    annotations = obj["metadata"].get("annotations") or {}
    return sum(len(k.encode()) + len(v.encode()) for k, v in annotations.items())
