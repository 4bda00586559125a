"""How fast does the operator turn N new Apps into Deployments and Services?

Creates N Apps (default 500) in a fresh namespace, with ``mothership operator``
running as a subprocess, and measures from the bench's side of the API:

- ``seconds_all``: from the first create until every App has its Deployment and
  Service and a status with ``observedGeneration`` (the operator has reported);
- ``create_to_deployment_ms`` p50/p99: each App's create response to its
  Deployment's ADDED event on a watch;
- ``create_to_status_ms`` p50/p99: the same, to the first status the operator wrote;
- ``operator_peak_rss_mb``: the operator's peak resident set (VmHWM, or psutil);
- ``cpu_seconds``: CPU time (user + system) each local process spent from the
  first create to the end: the bench itself, the operator and, with
  ``--controlplane``, etcd, kube-apiserver and kube-controller-manager — where
  the time of ``seconds_all`` went on a box with ``cores`` cores;
  ``runqueue_wait_seconds``: the time their threads were runnable but waiting for
  a CPU (``/proc/PID/task/*/schedstat``): large means starved by other processes;
- ``apiserver_requests``: the API server's own ``apiserver_request_total`` over
  the same window (its /metrics; null when we may not read it), the total
  and the 12 largest by verb and resource — the operator's and the controllers';
- ``anchor_seconds``: N plain ConfigMap creates through the same client at the
  same concurrency, in the same run — the API server's own speed, so
  ``ratio = seconds_all / anchor_seconds`` compares across machines;
  ``anchor_apply_seconds``: the same N ConfigMaps written with server-side apply,
  which is how the operator writes every child (2 per App here);
- ``server_version`` (the server's /version), ``load_average_1m_before`` and
  ``load_average_1m`` (the box's load when the run started and ended).

Target: a fresh real control plane (default, or ``--controlplane``:
``tests.controlplane``, etcd, kube-apiserver and kube-controller-manager on
127.0.0.1 with our CRDs, client-certificate auth, stopped at the end); or
``--kubeconfig`` (``$KUBECONFIG``: bearer token or client certificates and CA,
as kind writes them; a namespace ``bench-<random>`` is created and deleted). The
bench's watches use the Kube client's credentials (its SSL context and
Authorization header); a watch that fails (401, 403, TLS, an
ERROR event), an operator that exits, and every wait that outlasts its timeout
end the bench with an error on stderr and exit status 1. When not every App
completes within ``--timeout``, the line is still printed (``complete: false``,
``seen``) and the exit status is 1.

Goal on a real API server with kube-controller-manager running, 2 cores: a burst
of 500 Apps complete in < 10 s, RSS < 200 MB; with ``--rate 20``, p99 < 1 s
(``goal`` holds the one that applies to the run, null for the other).
Prints one JSON line. Usage::

    .venv/bin/python bench/operator_scale.py [--apps 500] [--concurrency 50] [--rate 0]
        [--controlplane | --kubeconfig] [--timeout 300] [--profile FILE]

A burst (the default) measures throughput: every App waits behind the ones
created before it, so p99 is roughly ``seconds_all``. ``--rate`` measures the
latency of one App on a busy operator.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.controlplane when run as a script
sys.path.insert(0, str(ROOT / "bench"))

from compare import header  # noqa: E402
from mothership.kube import KINDS, ApiError, Credentials, Kube  # noqa: E402


class BenchError(Exception):
    """The bench cannot go on: a watch failed, the operator died, or a wait timed out."""


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


def cpu_seconds(pid: int) -> tuple[float, float] | None:
    """CPU seconds a live process has used so far, and seconds its threads spent runnable but
    waiting for a CPU (/proc/PID/stat utime + stime; /proc/PID/task/*/schedstat), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        used = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return None
    waited = 0
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            waited += int((task / "schedstat").read_text().split()[1])
    return used, waited / 1e9


def tail(path: Path, size: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError:
        return ""


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


def wait_healthy(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"operator exited with {proc.returncode}; {log}:\n{tail(log)}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise BenchError(f"operator not healthy within {timeout:.0f} s; {log}:\n{tail(log)}")


def api_session(credentials: Credentials) -> aiohttp.ClientSession:
    """A session for long-lived watches, with the Kube client's TLS: CA, client certificate, verify.

    Not the Kube client's own session: its pool is sized for the creates, and a watch
    holds a connection for the whole run.
    """
    connector = aiohttp.TCPConnector(ssl=credentials.ssl_context(), limit=0)
    return aiohttp.ClientSession(connector=connector)


def api_headers(credentials: Credentials) -> dict[str, str]:
    """The Kube client's headers: its Authorization (bearer token, refreshed) when it has one."""
    headers = {"Accept": "application/json"}
    auth = credentials.header()
    if auth:
        headers["Authorization"] = auth
    return headers


async def server_version(session: aiohttp.ClientSession, credentials: Credentials) -> str | None:
    try:
        async with session.get(credentials.server + "/version", headers=api_headers(credentials),
                               timeout=aiohttp.ClientTimeout(total=10)) as r:
            return str((await r.json()).get("gitVersion")) if r.status == 200 else None
    except (TimeoutError, aiohttp.ClientError, ValueError):
        return None


_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


async def apiserver_requests(session: aiohttp.ClientSession, credentials: Credentials) -> Counter[str]:
    """The API server's ``apiserver_request_total`` by verb and resource, from its /metrics.

    Empty when we may not read it.
    """
    counts: Counter[str] = Counter()
    try:
        async with session.get(credentials.server + "/metrics", headers=api_headers(credentials),
                               timeout=aiohttp.ClientTimeout(total=30)) as r:
            if r.status != 200:
                return counts
            text = await r.text()
    except (TimeoutError, aiohttp.ClientError):
        return counts
    for line in text.splitlines():
        if line.startswith("apiserver_request_total{"):
            labels_text, _, value = line[len("apiserver_request_total{"):].rpartition("} ")
            labels = dict(_LABEL.findall(labels_text))
            resource = ".".join(filter(None, (labels.get("resource"), labels.get("group"))))
            if labels.get("subresource"):
                resource += "/" + labels["subresource"].lstrip("/")
            counts[f"{labels.get('verb')} {resource}"] += int(float(value))
    return counts


class Watcher:
    """Watches one resource in the namespace and records when each name first matched.

    Lists through the Kube client, then watches from the list's resourceVersion with the
    same credentials, resuming when the server ends the watch. Raises :class:`BenchError`
    on an error status or an ERROR event; TLS and connection errors propagate as raised.
    """

    def __init__(self, kube: Kube, kind: str, namespace: str, match: Any = None) -> None:
        self.kube, self.kind, self.namespace = kube, KINDS[kind], namespace
        self.match = match or (lambda obj: True)
        self.seen: dict[str, float] = {}
        self.ready = asyncio.Event()

    def _record(self, obj: Mapping[str, Any]) -> None:
        if self.match(obj):
            self.seen.setdefault(obj["metadata"]["name"], time.monotonic())

    async def run(self, session: aiohttp.ClientSession) -> None:
        creds = self.kube.credentials
        url = creds.server + self.kind.path(self.namespace)
        listing = await self.kube.request("list", self.kind, namespace=self.namespace)
        for obj in listing.get("items") or []:
            self._record(obj)
        rv = listing["metadata"]["resourceVersion"]
        while True:  # the server ends a watch after its request timeout; resume where it stopped
            params = {"watch": "1", "resourceVersion": rv, "allowWatchBookmarks": "true"}
            async with session.get(url, params=params, headers=api_headers(creds),
                                   timeout=aiohttp.ClientTimeout(total=None, connect=10,
                                                                 sock_read=None)) as r:
                if r.status != 200:
                    raise BenchError(f"watch {self.kind.plural}: HTTP {r.status}: "
                                     f"{(await r.text())[:500]}")
                self.ready.set()
                async for line in r.content:
                    event = json.loads(line)
                    obj = event.get("object") or {}
                    if event.get("type") == "ERROR":
                        raise BenchError(f"watch {self.kind.plural}: ERROR event {obj.get('code')} "
                                         f"{obj.get('reason')}: {obj.get('message')}")
                    rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
                    if event.get("type") in ("ADDED", "MODIFIED"):
                        self._record(obj)


async def wait_until(done: Callable[[], bool], timeout: float, check: Callable[[], None]) -> bool:
    """Poll ``done`` (the watchers' own records) until it holds; False after ``timeout`` seconds.

    ``check`` raises when something the wait depends on has failed (a watch, the operator).
    """
    deadline = time.monotonic() + timeout
    while not done():
        check()
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def wait_served(kube: Kube, crds: list[Mapping[str, Any]], timeout: float = 60) -> None:
    """Until every CRD is served: ``Established``, and its storage answers a list.

    Before ``Established`` an App create is a 404; for a moment after it, a list is
    ``429 storage is (re)initializing``.
    """
    deadline = time.monotonic() + timeout
    for crd in crds:
        name = crd["metadata"]["name"]
        kind = KINDS[crd["spec"]["names"]["kind"]]
        while True:
            stored = await kube.get("CustomResourceDefinition", name) or {}
            conditions = {c.get("type"): c.get("status")
                          for c in (stored.get("status") or {}).get("conditions") or []}
            if conditions.get("Established") == "True":
                try:
                    await kube.request("list", kind, params={"limit": "1"})
                    break
                except ApiError as exc:
                    if exc.status != 429:
                        raise
            if time.monotonic() > deadline:
                raise BenchError(f"CRD {name} not served within {timeout:.0f} s")
            await asyncio.sleep(0.1)


async def bench(
    args: argparse.Namespace,
    kubeconfig: str,
    target: str,
    *,
    processes: Mapping[str, int] | None = None,
    version: str | None = None,
) -> tuple[dict[str, Any], bool]:
    """One run against ``kubeconfig``; the JSON line's fields and whether every App completed.

    ``processes``: the server's local processes (name: pid), for ``cpu_seconds``.
    """
    os.environ["KUBECONFIG"] = kubeconfig
    load_before = round(os.getloadavg()[0], 2)
    namespace = f"bench-{secrets.token_hex(3)}"
    kube = Kube.connect(limit=args.concurrency * 2)  # $KUBECONFIG, through the operator's own loader
    session = api_session(kube.credentials)
    try:
        version = version or await server_version(session, kube.credentials)
        crds = [yaml.safe_load(path.read_text()) for path in sorted((ROOT / "crds").glob("*.yaml"))]
        for crd in crds:
            await kube.apply(crd)
        await wait_served(kube, crds)
        await kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        try:
            result, complete = await _measure(args, kube, session, kubeconfig, namespace,
                                              dict(processes or {}))
        finally:
            if target == "kubeconfig":  # a server we do not stop: leave nothing behind
                with contextlib.suppress(ApiError):
                    await kube.delete("Namespace", namespace)
    finally:
        await session.close()
        await kube.close()
    return {
        **header("operator_scale"),
        "target": target,
        "server_version": version,
        **result,
        "load_average_1m_before": load_before,
        "load_average_1m": round(os.getloadavg()[0], 2),
    }, complete


async def _measure(
    args: argparse.Namespace,
    kube: Kube,
    session: aiohttp.ClientSession,
    kubeconfig: str,
    namespace: str,
    processes: dict[str, int],
) -> tuple[dict[str, Any], bool]:
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
    log = Path(tempfile.mkdtemp(prefix="operator-scale-")) / "operator.log"
    operator = start_operator(kubeconfig, port, log, args.profile)
    processes = {"operator": operator.pid, **processes}
    deployments = Watcher(kube, "Deployment", namespace)
    services = Watcher(kube, "Service", namespace)
    statuses = Watcher(kube, "App", namespace,
                       lambda o: (o.get("status") or {}).get("observedGeneration") is not None)
    watchers = [deployments, services, statuses]
    tasks: dict[asyncio.Task[None], Watcher] = {}

    def check() -> None:
        for task, watcher in tasks.items():
            if task.done():
                exc = None if task.cancelled() else task.exception()
                raise BenchError(f"the watch on {watcher.kind.plural} ended: "
                                 f"{type(exc).__name__}: {exc}") from exc
        if operator.poll() is not None:
            raise BenchError(f"operator exited with {operator.returncode}; {log}:\n{tail(log)}")

    rss = None
    try:
        await asyncio.to_thread(wait_healthy, port, operator, log)
        tasks.update({asyncio.create_task(w.run(session)): w for w in watchers})
        if not await wait_until(lambda: all(w.ready.is_set() for w in watchers), 30.0, check):
            raise BenchError("the bench's watches did not start within 30 s")

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

        requests_before = await apiserver_requests(session, kube.credentials)
        cpu_before = {name: cpu_seconds(pid) for name, pid in processes.items()}
        bench_cpu_before = time.process_time()
        t0 = time.monotonic()
        creating = asyncio.gather(*(scheduled(i) for i in range(args.apps)))
        try:
            await asyncio.wait_for(creating, args.timeout + (args.apps / args.rate if args.rate else 0))
        except TimeoutError:
            raise BenchError(f"creating {args.apps} Apps took more than {args.timeout:g} s") from None
        created_s = time.monotonic() - t0
        complete = await wait_until(lambda: all(len(w.seen) >= args.apps for w in watchers),
                                    max(0.0, args.timeout - created_s), check)
        cpu: dict[str, float | None] = {"bench": round(time.process_time() - bench_cpu_before, 2)}
        waited: dict[str, float | None] = {}
        for name, pid in processes.items():
            before, after = cpu_before[name], cpu_seconds(pid)
            cpu[name] = round(after[0] - before[0], 2) if before and after else None
            waited[name] = round(after[1] - before[1], 2) if before and after else None
        done = max(max(w.seen.values(), default=t0) for w in watchers)
        rss = peak_rss_mb(operator.pid)
        requests = await apiserver_requests(session, kube.credentials) - requests_before
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        operator.terminate()
        try:
            operator.wait(timeout=20)
        except subprocess.TimeoutExpired:
            operator.kill()
            operator.wait(timeout=5)
    to_deployment = [(deployments.seen[n] - t) * 1000 for n, t in created.items() if n in deployments.seen]
    to_status = [(statuses.seen[n] - t) * 1000 for n, t in created.items() if n in statuses.seen]
    seconds_all = done - t0
    return {
        "apps": args.apps,
        "concurrency": args.concurrency,
        "rate": args.rate,
        "complete": complete,
        "seen": {"deployments": len(deployments.seen), "services": len(services.seen),
                 "statuses": len(statuses.seen)},
        "seconds_all": round(seconds_all, 2),
        "seconds_creating": round(created_s, 2),
        "create_to_deployment_ms": {"p50": round(percentile(to_deployment, 50), 1),
                                    "p99": round(percentile(to_deployment, 99), 1)},
        "create_to_status_ms": {"p50": round(percentile(to_status, 50), 1),
                                "p99": round(percentile(to_status, 99), 1)},
        "operator_peak_rss_mb": rss,
        "cpu_seconds": cpu,
        "runqueue_wait_seconds": waited,
        "apiserver_requests": {"total": requests.total(), **dict(requests.most_common(12))}
        if requests else None,
        "anchor_seconds": round(anchor, 2),
        "anchor_apply_seconds": round(anchor_apply, 2),
        "ratio": round(seconds_all / anchor, 2) if anchor else None,
        # A burst is judged by its total, a paced run by its p99 (a burst's p99 is its total).
        "goal": {"seconds_all_lt_10": None if args.rate else complete and seconds_all < 10,
                 "p99_lt_1s": complete and percentile(to_deployment, 99) < 1000 if args.rate else None,
                 "rss_lt_200mb": rss is not None and rss < 200},
        "operator_log": str(log),
    }, complete


def run(args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    if args.kubeconfig:
        if not os.environ.get("KUBECONFIG"):
            raise SystemExit("--kubeconfig needs $KUBECONFIG")
        return asyncio.run(bench(args, os.environ["KUBECONFIG"], "kubeconfig"))
    from tests.controlplane import CRDS, ControlPlane

    with tempfile.TemporaryDirectory(prefix="operator-scale-") as tmp:
        try:
            cp = ControlPlane.start(Path(tmp) / "controlplane", crds=CRDS)
        except RuntimeError as exc:
            raise BenchError(f"the control plane did not start: {exc}") from exc
        try:
            result, complete = asyncio.run(bench(
                args, str(cp.kubeconfig), "controlplane", version=cp.version,
                processes={name: p.pid for name, p in cp.processes.items()}))
        finally:
            cp.stop()
        return {**result, "controlplane_startup_seconds": round(cp.startup_seconds, 1)}, complete


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--apps", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=50, help="creates in flight")
    parser.add_argument("--rate", type=float, default=0,
                        help="create Apps at this many per second (default 0: all at once, as fast as "
                             "--concurrency allows)")
    parser.add_argument("--timeout", type=float, default=300,
                        help="give up when the Apps are not all done this many seconds after the first "
                             "create")
    parser.add_argument("--profile", metavar="FILE",
                        help="profile the operator into FILE: cProfile stats if it ends in .prof, "
                             "else pyinstrument's text report")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--controlplane", action="store_true",
                        help="start a real control plane (tests.controlplane: etcd, kube-apiserver, "
                             "kube-controller-manager) on 127.0.0.1 and stop it at the end (the default)")
    target.add_argument("--kubeconfig", action="store_true",
                        help="use the cluster $KUBECONFIG points at instead of a fresh control plane")
    args = parser.parse_args()
    try:
        result, complete = run(args)
    except (BenchError, ApiError) as exc:
        raise SystemExit(f"operator_scale: {exc}") from None
    print(json.dumps(result), flush=True)
    if not complete:
        raise SystemExit(f"operator_scale: not every App completed within {args.timeout:g} s: "
                         f"{result['seen']} of {args.apps}")


if __name__ == "__main__":
    main()
