"""How many API requests per minute does an idle operator make with N Tenants and M Apps?

Starts a fresh real control plane (``tests.controlplane``: etcd, kube-apiserver,
kube-controller-manager, our CRDs), runs ``mothership operator`` as a
subprocess under its own user (``mothership-operator``, bound to the chart's
ClusterRole as the tests bind it), creates N Tenants (default 50) and M Apps
(default 200, spread over the Tenants' namespaces), waits until every Tenant is
Ready and every App has a status with ``observedGeneration``, waits ``--settle``
seconds more (default 45: the creates' echoes die down, the first timers run),
then counts for ``--window`` seconds (default 60) the operator's requests as the
API server's audit log records them (the control plane audits that user alone,
each request once, when its response completes: a watch counts when it ends).

Prints one JSON line: ``requests_per_minute`` (the total, scaled to a minute)
and ``by_verb_resource`` (``"list rolebindings": 4``, per minute, largest
first). Exit status 1 when the objects are not all done within ``--timeout``.
Usage::

    .venv/bin/python bench/operator_idle.py [--tenants 50] [--apps 200] [--settle 45] [--window 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.controlplane when run as a script
sys.path.insert(0, str(ROOT / "bench"))

from compare import header  # noqa: E402
from mothership.kube import KINDS, ApiError, Kube  # noqa: E402
from operator_scale import BenchError, free_port, start_operator, tail, wait_healthy, wait_served  # noqa: E402


def audit_lines(path: Path, offset: int) -> tuple[list[dict[str, Any]], int]:
    """The operator's completed requests in the audit log from byte ``offset``, and the new offset."""
    events = []
    with path.open("rb") as f:
        f.seek(offset)
        data = f.read()
    complete = data[: data.rfind(b"\n") + 1]
    for line in complete.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("stage") == "ResponseComplete":
            events.append(event)
    return events, offset + len(complete)


def key(event: dict[str, Any]) -> str:
    ref = event.get("objectRef") or {}
    resource = ref.get("resource") or event.get("requestURI", "?").split("?")[0]
    if ref.get("subresource"):
        resource += "/" + ref["subresource"]
    return f"{event.get('verb')} {resource}"


async def done(kube: Kube, tenants: int, apps: int) -> tuple[int, int]:
    """Tenants that are Ready, Apps with an observed status."""
    ready = 0
    for t in (await kube.request("list", KINDS["Tenant"])).get("items") or []:
        conditions = (t.get("status") or {}).get("conditions") or []
        ready += any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    seen = sum((a.get("status") or {}).get("observedGeneration") is not None
               for a in (await kube.request("list", KINDS["App"])).get("items") or [])
    return ready, seen


async def measure(args: argparse.Namespace, cp: Any) -> dict[str, Any]:
    from tests.controlplane import OPERATOR_USER
    from tests.operator.harness import bind_operator_role

    kube = Kube.connect(kubeconfig=str(cp.kubeconfig), limit=50)
    gate = asyncio.Semaphore(20)

    async def paced(coro: Any) -> Any:
        async with gate:
            return await coro

    try:
        crds = [yaml.safe_load(p.read_text()) for p in sorted((ROOT / "crds").glob("*.yaml"))]
        await wait_served(kube, crds)
        await bind_operator_role(kube, OPERATOR_USER)
        port = free_port()
        log = Path(tempfile.mkdtemp(prefix="operator-idle-")) / "operator.log"
        operator = start_operator(str(cp.kubeconfig_for("operator")), port, log)
        try:
            await asyncio.to_thread(wait_healthy, port, operator, log)
            names = [f"idle-{i}" for i in range(args.tenants)]
            await asyncio.gather(*(paced(kube.create({
                "apiVersion": "mothership.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": n},
                "spec": {"owners": [{"name": "alice@example.com"}], "quota": {"cpu": "40", "pods": 40},
                         "deletionPolicy": "Delete"}})) for n in names))
            t0 = time.monotonic()
            while (await done(kube, args.tenants, 0))[0] < args.tenants:
                if operator.poll() is not None:
                    raise BenchError(f"operator exited; {log}:\n{tail(log)}")
                if time.monotonic() - t0 > args.timeout:
                    raise BenchError(f"Tenants not all Ready within {args.timeout:g} s")
                await asyncio.sleep(1)
            await asyncio.gather(*(paced(kube.create({
                "apiVersion": "mothership.dev/v1alpha1", "kind": "App",
                "metadata": {"name": f"app-{i}", "namespace": names[i % args.tenants]},
                "spec": {"image": "ghcr.io/acme/idle:1", "replicas": 1}})) for i in range(args.apps)))
            while True:
                ready, seen = await done(kube, args.tenants, args.apps)
                if ready >= args.tenants and seen >= args.apps:
                    break
                if operator.poll() is not None:
                    raise BenchError(f"operator exited; {log}:\n{tail(log)}")
                if time.monotonic() - t0 > args.timeout:
                    raise BenchError(f"not all done within {args.timeout:g} s: {ready} Tenants Ready, "
                                     f"{seen} Apps with status")
                await asyncio.sleep(1)
            settled = time.monotonic() - t0
            await asyncio.sleep(args.settle)
            _, offset = audit_lines(cp.audit_log, 0)
            await asyncio.sleep(args.window)
            events, _ = audit_lines(cp.audit_log, offset)
            if operator.poll() is not None:
                raise BenchError(f"operator exited; {log}:\n{tail(log)}")
        finally:
            operator.terminate()
            try:
                operator.wait(timeout=20)
            except Exception:
                operator.kill()
    finally:
        await kube.close()
    counts = Counter(key(e) for e in events if (e.get("user") or {}).get("username") == OPERATOR_USER)
    scale = 60.0 / args.window
    return {
        "tenants": args.tenants,
        "apps": args.apps,
        "settle_seconds": args.settle,
        "window_seconds": args.window,
        "seconds_to_ready": round(settled, 1),
        "requests_per_minute": round(sum(counts.values()) * scale, 1),
        "by_verb_resource": {k: round(v * scale, 1) for k, v in counts.most_common()},
        "operator_log": str(log),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tenants", type=int, default=50)
    parser.add_argument("--apps", type=int, default=200)
    parser.add_argument("--settle", type=float, default=45,
                        help="seconds to wait after everything is done before counting")
    parser.add_argument("--window", type=float, default=60, help="seconds to count requests for")
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    from tests.controlplane import CRDS, ControlPlane

    with tempfile.TemporaryDirectory(prefix="operator-idle-") as tmp:
        try:
            cp = ControlPlane.start(Path(tmp) / "controlplane", crds=CRDS)
        except RuntimeError as exc:
            raise SystemExit(f"operator_idle: the control plane did not start: {exc}") from None
        os.environ["KUBECONFIG"] = str(cp.kubeconfig)
        try:
            result = asyncio.run(measure(args, cp))
        except (BenchError, ApiError) as exc:
            raise SystemExit(f"operator_idle: {exc}") from None
        finally:
            cp.stop()
    print(json.dumps({**header("operator_idle"), "server_version": cp.version, **result}), flush=True)


if __name__ == "__main__":
    main()
