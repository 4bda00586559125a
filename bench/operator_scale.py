"""How fast does the operator turn N new Apps into Deployments and Services?

Creates N Apps (default 500) in a fresh namespace, with ``mothership operator``
running as a subprocess, and measures from the bench's side of the API:

- ``seconds_all``: from the first create until every App has its Deployment and
  Service and a status with ``observedGeneration`` (the operator has reported);
- ``create_to_deployment_ms`` p50/p99: each App's create response to its
  Deployment's ADDED event on a watch;
- ``create_to_status_ms`` p50/p99: the same, to the first status the operator wrote;
- ``operator_peak_rss_mb``: the operator's peak resident set (VmHWM, or psutil);
- ``anchor_seconds``: N plain ConfigMap creates through the same client at the
  same concurrency, in the same run — the API server's own speed, so
  ``ratio = seconds_all / anchor_seconds`` compares across machines;
  ``anchor_apply_seconds``: the same N ConfigMaps written with server-side apply,
  which is how the operator writes every child (2 per App here).

Target: a fresh API emulator in its own process (default), or ``--kubeconfig``
(``$KUBECONFIG``; a namespace ``bench-<random>`` is created and deleted). Goal on
a real API server, 2 cores: 500 Apps in < 30 s, p99 < 1 s, RSS < 200 MB.
Prints one JSON line. Usage::

    .venv/bin/python bench/operator_scale.py [--apps 500] [--concurrency 50] [--rate 0] [--kubeconfig]

A burst (the default) measures throughput: every App waits behind the ones
created before it, so p99 is roughly ``seconds_all``. ``--rate`` measures the
latency of one App on a busy operator.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.kubeemu when run as a script
sys.path.insert(0, str(ROOT / "bench"))

from compare import header  # noqa: E402
from mothership.kube import KINDS, Kube  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def peak_rss_mb(pid: int) -> float | None:
    """Peak resident set size of a process: psutil if installed, else /proc's VmHWM."""
    try:
        import psutil  # type: ignore[import-untyped]

        info = psutil.Process(pid).memory_info()
        return round(getattr(info, "peak_wset", info.rss) / 2**20, 1)
    except ImportError:
        pass
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def start_emulator(tmp: Path) -> tuple[subprocess.Popen[bytes], Path]:
    kubeconfig = tmp / "kubeconfig.yaml"
    proc = subprocess.Popen([sys.executable, "-m", "tests.kubeemu", "--kubeconfig", str(kubeconfig)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    proc.stdout.readline()  # the URL: the kubeconfig is written before it is printed
    return proc, kubeconfig


def start_operator(
    kubeconfig: str, port: int, log: Path, profile: str | None = None
) -> subprocess.Popen[bytes]:
    script = Path(sys.executable).with_name("mothership")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "mothership"]
    if profile and profile.endswith(".prof"):  # cProfile stats (pstats), written when it exits
        cmd = [sys.executable, "-m", "cProfile", "-o", profile, "-m", "mothership"]
    elif profile:  # pyinstrument's text report of the operator process, written when it exits
        cmd = [sys.executable, "-m", "pyinstrument", "-r", "text", "-o", profile, "-m", "mothership"]
    env = {**os.environ, "KUBECONFIG": kubeconfig}
    return subprocess.Popen([*cmd, "operator", "--port", str(port)], env=env,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=ROOT)


def wait_healthy(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"operator exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit("operator not healthy")


class Watcher:
    """Watches one resource in the namespace and records when each name first matched."""

    def __init__(self, kube: Kube, kind: str, namespace: str, match: Any = None) -> None:
        self.kube, self.kind, self.namespace = kube, KINDS[kind], namespace
        self.match = match or (lambda obj: True)
        self.seen: dict[str, float] = {}
        self.ready = asyncio.Event()

    async def run(self, session: aiohttp.ClientSession) -> None:
        creds = self.kube.credentials
        headers = {"Authorization": creds.header() or ""} if creds.header() else {}
        url = creds.server + self.kind.path(self.namespace)
        listing = await self.kube.list(self.kind, self.namespace)
        for obj in listing:
            if self.match(obj):
                self.seen.setdefault(obj["metadata"]["name"], time.monotonic())
        rv = ""
        async with session.get(url, params={"limit": "1"}, headers=headers) as r:
            rv = (await r.json())["metadata"]["resourceVersion"]
        params = {"watch": "1", "resourceVersion": rv, "allowWatchBookmarks": "true"}
        async with session.get(url, params=params, headers=headers,
                               timeout=aiohttp.ClientTimeout(total=None, sock_read=None)) as r:
            self.ready.set()
            async for line in r.content:
                event = json.loads(line)
                obj = event.get("object") or {}
                if event.get("type") in ("ADDED", "MODIFIED") and self.match(obj):
                    self.seen.setdefault(obj["metadata"]["name"], time.monotonic())


async def bench(args: argparse.Namespace, kubeconfig: str, target: str) -> dict[str, Any]:
    os.environ["KUBECONFIG"] = kubeconfig
    namespace = f"bench-{secrets.token_hex(3)}"
    kube = Kube.connect(limit=args.concurrency * 2)
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        await kube.apply(yaml.safe_load(path.read_text()))
    await kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    gate = asyncio.Semaphore(args.concurrency)

    async def paced(coro: Any) -> Any:
        async with gate:
            return await coro

    # The anchor: N plain creates, same client, same concurrency, operator not involved.
    start = time.monotonic()
    await asyncio.gather(*(paced(kube.create({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": f"anchor-{i}", "namespace": namespace}, "data": {"i": str(i)},
    })) for i in range(args.apps)))
    anchor = time.monotonic() - start
    # The same, with server-side apply: what each child write costs the server.
    start = time.monotonic()
    await asyncio.gather(*(paced(kube.apply({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": f"anchor-apply-{i}", "namespace": namespace}, "data": {"i": str(i)},
    })) for i in range(args.apps)))
    anchor_apply = time.monotonic() - start

    port = free_port()
    log = Path(tempfile.mkdtemp()) / "operator.log"
    operator = start_operator(kubeconfig, port, log, args.profile)
    rss = None
    try:
        await asyncio.to_thread(wait_healthy, port, operator)
        async with aiohttp.ClientSession() as session:
            deployments = Watcher(kube, "Deployment", namespace)
            services = Watcher(kube, "Service", namespace)
            statuses = Watcher(kube, "App", namespace,
                               lambda o: (o.get("status") or {}).get("observedGeneration") is not None)
            watchers = [deployments, services, statuses]
            tasks = [asyncio.create_task(w.run(session)) for w in watchers]
            await asyncio.gather(*(w.ready.wait() for w in watchers))

            created: dict[str, float] = {}

            async def create(i: int) -> None:
                name = f"app-{i}"
                await kube.request("create", KINDS["App"], namespace=namespace, body={
                    "apiVersion": "mothership.dev/v1alpha1", "kind": "App",
                    "metadata": {"name": name, "namespace": namespace},
                    "spec": {"image": f"ghcr.io/acme/bench:{i % 7}", "replicas": 1},
                })
                created[name] = time.monotonic()

            async def scheduled(i: int) -> None:
                if args.rate:  # an open arrival rate: app i is created at i / rate seconds
                    await asyncio.sleep(max(0.0, t0 + i / args.rate - time.monotonic()))
                await paced(create(i))

            t0 = time.monotonic()
            await asyncio.gather(*(scheduled(i) for i in range(args.apps)))
            created_s = time.monotonic() - t0
            deadline = time.monotonic() + args.timeout
            while time.monotonic() < deadline:
                if all(len(w.seen) >= args.apps for w in watchers):
                    break
                await asyncio.sleep(0.05)  # polling the watchers' own records, not waiting on time
            done = max(max(w.seen.values(), default=t0) for w in watchers)
            complete = all(len(w.seen) >= args.apps for w in watchers)
            rss = peak_rss_mb(operator.pid)
            for task in tasks:
                task.cancel()
    finally:
        operator.terminate()
        try:
            operator.wait(timeout=20)
        except subprocess.TimeoutExpired:
            operator.kill()
    to_deployment = [(deployments.seen[n] - t) * 1000 for n, t in created.items() if n in deployments.seen]
    to_status = [(statuses.seen[n] - t) * 1000 for n, t in created.items() if n in statuses.seen]
    if target == "kubeconfig":
        await kube.delete("Namespace", namespace)
    await kube.close()
    seconds_all = done - t0
    return {
        **header("operator_scale"),
        "target": target,
        "apps": args.apps,
        "concurrency": args.concurrency,
        "rate": args.rate,
        "complete": complete,
        "seconds_all": round(seconds_all, 2),
        "seconds_creating": round(created_s, 2),
        "create_to_deployment_ms": {"p50": round(percentile(to_deployment, 50), 1),
                                    "p99": round(percentile(to_deployment, 99), 1)},
        "create_to_status_ms": {"p50": round(percentile(to_status, 50), 1),
                                "p99": round(percentile(to_status, 99), 1)},
        "operator_peak_rss_mb": rss,
        "anchor_seconds": round(anchor, 2),
        "anchor_apply_seconds": round(anchor_apply, 2),
        "ratio": round(seconds_all / anchor, 2) if anchor else None,
        "goal": {"seconds_all_lt_30": seconds_all < 30,
                 "p99_lt_1s": percentile(to_deployment, 99) < 1000,
                 "rss_lt_200mb": rss is not None and rss < 200},
        "operator_log": str(log),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--apps", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=50, help="creates in flight")
    parser.add_argument("--rate", type=float, default=0,
                        help="create Apps at this many per second (default 0: all at once, as fast as "
                             "--concurrency allows)")
    parser.add_argument("--timeout", type=float, default=300, help="give up after this many seconds")
    parser.add_argument("--profile", metavar="FILE",
                        help="profile the operator into FILE: cProfile stats if it ends in .prof, "
                             "else pyinstrument's text report")
    parser.add_argument("--kubeconfig", action="store_true",
                        help="use the cluster $KUBECONFIG points at instead of a fresh emulator")
    args = parser.parse_args()
    if args.kubeconfig:
        if not os.environ.get("KUBECONFIG"):
            raise SystemExit("--kubeconfig needs $KUBECONFIG")
        result = asyncio.run(bench(args, os.environ["KUBECONFIG"], "kubeconfig"))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            emulator, kubeconfig = start_emulator(Path(tmp))
            try:
                result = asyncio.run(bench(args, str(kubeconfig), "emulator"))
            finally:
                emulator.terminate()
                emulator.wait(timeout=10)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
