"""A stand-in kubelet (and scheduler): run a LoadTest's worker pods as local processes.

Why: the control plane of ``tests/controlplane`` (kube-apiserver and
kube-controller-manager) has no nodes and no kube-scheduler, so the Job
controller's pods would stay Pending forever. See docs/design.md, "A real
control plane".

What :class:`PodRunner` plays, for the pods of one namespace:

- a Node, ``podrunner-<namespace>`` (Ready, InternalIP 127.0.0.1), with its
  Lease in ``kube-node-lease`` and its Ready heartbeat renewed every
  ``heartbeat`` seconds, so the node lifecycle controller leaves it alone;
  both are deleted on close;
- the scheduler, for its own pods only: a worker pod (label
  ``mothership.dev/loadtest``) without ``spec.nodeName`` is bound to the Node
  through ``pods/binding``; pods on other nodes are left alone;
- the kubelet: it writes the plan ConfigMap and token Secret to a temporary
  directory and runs ``sys.executable -m mothership`` with the container's
  args, listening on a loopback address of its own (127.x.y.z, port 9090), its
  output in ``log_dir/<pod>.log``. It reports Running, then
  Ready once ``/healthz`` answers, then Succeeded or Failed with the exit code,
  reason and the ``--summary-file`` as the termination message;
- graceful deletion: a deleted pod's process gets SIGTERM, SIGKILL after its
  grace period (capped by ``grace_period``), its terminated status, then a
  delete with grace 0; a pod that vanishes has its process ended;
- the kubelet API for ``kubectl logs``: ``/containerLogs`` over HTTPS on
  127.0.0.1 (self-signed; the API server does not verify it), with ``follow``,
  ``tailLines``, ``sinceSeconds``/``sinceTime``, ``timestamps`` and
  ``limitBytes``;
- with ``run_app_pods``, an App's pods are bound and reported Running and Ready
  (at addresses in 198.18.0.0/15) without running anything, as kwok does; their
  "container" logs a start line naming pod and image, then a request line every
  ``app_log_interval`` seconds, served by the same kubelet API. An App pod whose
  image is in ``unpullable_images`` stays Pending with ``ImagePullBackOff`` (and
  the kubelet's ``Failed`` Event); one in ``crashing_images`` sits in
  ``CrashLoopBackOff`` with restarts, its last exit code and the lines it wrote
  before crashing (``previous``), and a ``BackOff`` Event.

Failures can be injected: :meth:`PodRunner.kill` SIGKILLs a worker (exit 137,
reason Error or OOMKilled), and ``image_pull_backoff`` keeps chosen indexes
Pending with ``ImagePullBackOff``.

What it does not do: resource accounting or admission against the Node's
capacity, probes after the first Ready, real restarts, most events, exec or port-forward.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import ipaddress
import itertools
import logging
import os
import platform
import random
import signal
import socket
import ssl
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
from aiohttp import web

from mothership import labels as std
from mothership.kube import KINDS, ApiError, Kind, Kube
from mothership.loadtests import builders
from mothership.loadtests.status import pod_index

log = logging.getLogger(__name__)

WORKER_PORT = builders.WORKER_PORT
TERMINATION_MESSAGE_LIMIT = 4096

NODE = Kind("v1", "Node", "nodes", namespaced=False)
"""Not in ``mothership.kube.KINDS`` on purpose: that table is what the operator may touch (RBAC)."""
LEASE = Kind("coordination.k8s.io/v1", "Lease", "leases")
NODE_LEASE_NAMESPACE = "kube-node-lease"
LEASE_SECONDS = 40
"""A kubelet's ``nodeLeaseDurationSeconds``; it renews every quarter of it (10 s)."""
APP_POD_SELECTOR = f"{std.MANAGED_BY}={std.MANAGER}"
APP_POD_NETWORK = ipaddress.ip_network("198.18.0.0/15")
"""App pods' IPs: the benchmarking range (RFC 2544); nothing listens there and nothing is sent there.
Not loopback: the EndpointSlice controller refuses loopback endpoints (workers have them: no Service
selects a worker)."""
_app_addresses = itertools.count(random.randrange(1, 2**16))

_addresses = itertools.count(random.randrange(0, 200 * 254))


def _free(address: str) -> bool:
    with socket.socket() as s:
        try:
            s.bind((address, WORKER_PORT))
        except OSError:
            return False
    return True


def next_address() -> str:
    """A loopback address, 127.x.y.z (x in 100..254), not used by this process and free on the worker port.

    The block starts at a random place per process, so concurrent or leftover test runs do not meet.
    """
    for _ in range(1000):
        n = next(_addresses) % (155 * 254 * 254)
        x, rest = divmod(n, 254 * 254)
        y, z = divmod(rest, 254)
        address = f"127.{x + 100}.{y + 1}.{z + 1}"
        if _free(address):
            return address
    raise RuntimeError("no free loopback address for a worker")


class NotYet(Exception):
    """A volume's ConfigMap or Secret does not exist yet; the kubelet retries, so do we."""


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _micro_now() -> str:
    """A MicroTime (Lease ``renewTime``)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _rfc3339nano(at: float) -> str:
    """A log line's timestamp as a kubelet prints it (``--timestamps``)."""
    moment = datetime.datetime.fromtimestamp(at, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}000Z"


def node_name_for(namespace: str) -> str:
    """``podrunner-<namespace>``, cut to 63 characters: it is also the ``kubernetes.io/hostname`` label."""
    return f"podrunner-{namespace}"[:63].rstrip("-.")


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1")


@dataclass
class RunningPod:
    """One pod this runner started (or keeps failing on purpose)."""

    namespace: str
    name: str
    index: int
    address: str
    workdir: Path
    uid: str = ""
    process: asyncio.subprocess.Process | None = None
    watcher: asyncio.Task[None] | None = None
    killed_as: str | None = None
    """The termination reason to report when the test killed it (Error, OOMKilled)."""
    ended: bool = False
    terminating: asyncio.Task[None] | None = None
    log: Path | None = None
    """The container's output, as read from the process (``log_dir/<pod>.log``)."""
    log_start: int = 0
    """Where this container's output starts in ``log``."""
    stamps: dict[int, float] = field(default_factory=dict)
    """Offset in ``log`` of each line's start -> when it was read (for ``timestamps``, ``sinceSeconds``)."""
    pump: asyncio.Task[None] | None = None
    output_ended: bool = False

    @property
    def summary_file(self) -> Path:
        return self.workdir / "termination-log"

    @property
    def url(self) -> str:
        return f"http://{self.address}:{WORKER_PORT}"


@dataclass
class PodRunner:
    """Plays a Node's kubelet, and the scheduler for its own pods, for the pods of ``namespace``."""

    kube: Kube
    namespace: str
    run_app_pods: bool = False
    """Also bind Apps' pods and report them Running and Ready without running them."""
    image_pull_backoff: set[int] = field(default_factory=set)
    """Worker indexes whose pods stay Pending with ImagePullBackOff and never run."""
    unpullable_images: set[str] = field(default_factory=set)
    """App images that cannot be pulled: their pods stay Pending with ImagePullBackOff."""
    crashing_images: set[str] = field(default_factory=set)
    """App images whose container exits at once: their pods sit in CrashLoopBackOff."""
    app_log_interval: float = 0.5
    """Seconds between the log lines an App pod writes."""
    interval: float = 0.1
    """Seconds between listings of pods."""
    grace_period: float = 2.0
    """The most seconds between SIGTERM and SIGKILL for a deleted pod (its own grace period, if shorter)."""
    heartbeat: float = 10.0
    """Seconds between renewals of the node's Lease and Ready heartbeat (a kubelet's)."""
    capacity: dict[str, str] = field(default_factory=lambda: {"cpu": "64", "memory": "256Gi", "pods": "250"})
    """The Node's capacity and allocatable: generous, since nothing here admits against it."""
    log_dir: Path | None = None
    """Where each worker's stdout/stderr goes (``<pod>.log``); a temporary directory by default."""
    node_name: str = ""
    """The Node's name; ``podrunner-<namespace>`` by default."""
    pods: dict[str, RunningPod] = field(default_factory=dict)
    """Pods this runner started, by name."""
    app_pods: dict[str, str] = field(default_factory=dict)
    """App pods reported running, by name -> their pod IP."""
    app_started: dict[str, tuple[float, str]] = field(default_factory=dict)
    """App pods reported running, by name -> (when, image): what their logs say."""
    kubelet_port: int = 0
    """The port of the kubelet API (container logs) on 127.0.0.1."""
    _task: asyncio.Task[None] | None = None
    _heartbeat_task: asyncio.Task[None] | None = None
    _tmp: tempfile.TemporaryDirectory[str] | None = None
    _session: aiohttp.ClientSession | None = None
    _web: web.AppRunner | None = None
    _failed_images: set[str] = field(default_factory=set)
    _deleting: set[str] = field(default_factory=set)
    """UIDs of pods this runner is ending or has deleted."""
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _output: asyncio.Condition | None = None
    _registered_at: str = ""
    _registered: bool = False

    # --- lifecycle ---------------------------------------------------------------

    async def __aenter__(self) -> PodRunner:
        self._tmp = tempfile.TemporaryDirectory(prefix="podrunner-")
        if self.log_dir is None:
            self.log_dir = Path(self._tmp.name) / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._output = asyncio.Condition()
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1))
        try:
            self.node_name = self.node_name or node_name_for(self.namespace)
            await self._serve_kubelet_api()
            await self._register()
            self._heartbeat_task = asyncio.create_task(self._beat(), name=f"node {self.node_name}")
        except BaseException:
            await self.close()
            raise
        self._task = asyncio.create_task(self._loop(), name=f"podrunner {self.namespace}")
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self, timeout: float = 5.0) -> None:
        """Stop playing the kubelet and end every process: SIGTERM, then SIGKILL after ``timeout``.

        Each ended pod's terminated status is still written; the Node and its Lease are deleted.
        """
        for task in (self._task, self._heartbeat_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._task = self._heartbeat_task = None
        await asyncio.gather(*(self._terminate(p, timeout) for p in self.pods.values()))
        for p in self.pods.values():
            for task in (p.watcher, p.pump):  # the terminated status, the last of the output
                if task is not None:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await asyncio.wait_for(task, timeout=timeout)
        ending = [t for t in (*(p.terminating for p in self.pods.values()), *self._tasks) if t is not None]
        for task in ending:  # a deletion under way still ends with its delete (grace 0)
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout=timeout)
        if self._registered:
            with contextlib.suppress(ApiError):
                await self.kube.delete(LEASE, self.node_name, NODE_LEASE_NAMESPACE)
            with contextlib.suppress(ApiError):
                await self.kube.delete(NODE, self.node_name)
            self._registered = False
        if self._web is not None:
            await self._web.cleanup()
            self._web = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    # --- what tests call ------------------------------------------------------------

    def pod(self, index: int, loadtest: str | None = None) -> RunningPod:
        """The running pod of worker ``index`` (of ``loadtest``, when several run in the namespace)."""
        for p in self.pods.values():
            prefix = builders.job_name(loadtest) + "-" if loadtest else ""
            if p.index == index and p.name.startswith(prefix):
                return p
        raise KeyError(f"no pod for worker {index}")

    async def kill(self, index: int, loadtest: str | None = None, *, reason: str = "Error") -> None:
        """SIGKILL worker ``index``; its pod ends Failed with exit code 137 and ``reason``."""
        p = self.pod(index, loadtest)
        p.killed_as = reason
        if p.process is not None and p.process.returncode is None:
            p.process.send_signal(signal.SIGKILL)

    async def wait_ready(self, count: int, timeout: float = 20.0) -> None:
        """Until ``count`` pods answered /healthz (helpful before killing one)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while sum(1 for p in self.pods.values() if p.process is not None) < count or not all(
                [await self._healthy(p) for p in self.pods.values() if p.process is not None]):
            if loop.time() > deadline:
                raise AssertionError(f"{count} worker pods not ready within {timeout}s")
            await asyncio.sleep(0.05)

    # --- the loop ---------------------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            try:
                # Worker pods carry the managed-by label too: one listing serves both kinds of pod.
                selector = APP_POD_SELECTOR if self.run_app_pods else builders.LOADTEST_LABEL
                pods = await self.kube.list("Pod", self.namespace, label_selector=selector)
                worker = [builders.LOADTEST_LABEL in (p["metadata"].get("labels") or {}) for p in pods]
                await self._play_kubelet([p for p, w in zip(pods, worker, strict=True) if w])
                if self.run_app_pods:
                    await self._play_app_kubelet([p for p, w in zip(pods, worker, strict=True) if not w])
            except ApiError as exc:
                log.warning("pod runner: %s", exc)
            await asyncio.sleep(self.interval)

    async def _play_kubelet(self, pods: list[dict[str, Any]]) -> None:
        present = set()
        for pod in pods:
            meta = pod["metadata"]
            name = meta["name"]
            if not await self._mine(pod):
                continue
            present.add(name)
            if meta.get("deletionTimestamp"):
                self._end_deleted(pod)
                continue
            if name in self.pods or name in self._failed_images:
                continue
            index = pod_index(pod)
            if index is None:
                continue
            if index in self.image_pull_backoff:
                self._failed_images.add(name)
                await self._image_pull_backoff(pod)
                continue
            await self._start(pod, index)
        for name, p in list(self.pods.items()):
            if name not in present and not p.ended:
                self._kill_soon(p)

    def _kill_soon(self, p: RunningPod) -> None:
        """A pod gone from the API: SIGTERM, SIGKILL after the grace period."""
        if p.terminating is None:
            p.terminating = asyncio.create_task(self._terminate(p, self.grace_period),
                                                name=f"kubelet kill {p.name}")

    async def _image_pull_backoff(self, pod: Mapping[str, Any]) -> None:
        container = pod["spec"]["containers"][0]
        image = container.get("image", "")
        await self._patch(pod["metadata"]["name"], {
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": _now()},
                           {"type": "Ready", "status": "False", "reason": "ContainersNotReady",
                            "lastTransitionTime": _now()}],
            "containerStatuses": [{
                "name": container["name"], "image": image, "imageID": "", "ready": False, "restartCount": 0,
                "started": False,
                "state": {"waiting": {"reason": "ImagePullBackOff",
                                      "message": f'Back-off pulling image "{image}"'}},
            }],
        })

    # --- the Node: registration, heartbeat, scheduling, deletion ------------------------

    def _node_conditions(self) -> list[dict[str, Any]]:
        now = _now()
        since = self._registered_at or now

        def condition(type_: str, status: str, reason: str, message: str) -> dict[str, Any]:
            return {"type": type_, "status": status, "reason": reason, "message": message,
                    "lastHeartbeatTime": now, "lastTransitionTime": since}

        return [
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory",
                      "kubelet has sufficient memory available"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID",
                      "kubelet has sufficient PID available"),
            condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ]

    async def _register(self) -> None:
        """Create the Node, as a kubelet registers (the API server keeps the status of a created Node)."""
        self._registered_at = _now()
        machine = platform.machine().lower()
        arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)
        node = {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": self.node_name, "labels": {
                "kubernetes.io/hostname": self.node_name, "kubernetes.io/os": "linux",
                "kubernetes.io/arch": arch}},
            "spec": {},
            "status": {
                "capacity": dict(self.capacity), "allocatable": dict(self.capacity),
                "conditions": self._node_conditions(),
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": self.kubelet_port}},
                "nodeInfo": {"machineID": "", "systemUUID": "", "bootID": "",
                             "kernelVersion": platform.release(), "osImage": "tests/podrunner.py",
                             "containerRuntimeVersion": "podrunner://local-processes",
                             "kubeletVersion": "", "kubeProxyVersion": "",
                             "operatingSystem": "linux", "architecture": arch},
            },
        }
        created = await self.kube.request("create", NODE, body=node)
        self._registered = True
        await self._renew_lease(created["metadata"]["uid"])

    async def _renew_lease(self, node_uid: str | None = None) -> None:
        """Renew ``kube-node-lease/<node>`` (create it the first time, owned by the Node as a kubelet's)."""
        try:
            await self.kube.patch(LEASE, self.node_name, NODE_LEASE_NAMESPACE,
                                  {"spec": {"renewTime": _micro_now()}})
            return
        except ApiError as exc:
            if exc.status != 404:
                raise
        if node_uid is None:
            node_uid = ((await self.kube.get(NODE, self.node_name) or {}).get("metadata") or {}).get("uid")
        meta: dict[str, Any] = {"name": self.node_name, "namespace": NODE_LEASE_NAMESPACE}
        if node_uid:
            meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": self.node_name,
                                        "uid": node_uid}]
        await self.kube.request("create", LEASE, namespace=NODE_LEASE_NAMESPACE, body={
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta,
            "spec": {"holderIdentity": self.node_name, "leaseDurationSeconds": LEASE_SECONDS,
                     "renewTime": _micro_now()}})

    async def _beat(self) -> None:
        """Every ``heartbeat`` seconds: renew the Lease and the Ready condition's heartbeat."""
        while True:
            await asyncio.sleep(self.heartbeat)
            try:
                await self._renew_lease()
                try:
                    await self.kube.patch(NODE, self.node_name, None,
                                          {"status": {"conditions": self._node_conditions()}},
                                          subresource="status")
                except ApiError as exc:
                    if exc.status != 404:
                        raise
                    log.warning("pod runner: node %s was deleted; registering again", self.node_name)
                    await self._register()
            except ApiError as exc:
                log.warning("pod runner: heartbeat: %s", exc)

    async def _mine(self, pod: dict[str, Any]) -> bool:
        """Whether ``pod`` is on this runner's Node, binding it there if it is on none (the scheduler)."""
        bound = (pod.get("spec") or {}).get("nodeName")
        if bound:
            return bool(bound == self.node_name)
        meta = pod["metadata"]
        if meta.get("deletionTimestamp"):
            return False  # the API server deletes an unscheduled pod at once
        try:
            await self.kube.request("create", KINDS["Pod"], namespace=self.namespace, name=meta["name"],
                                    subresource="binding", body={
                                        "apiVersion": "v1", "kind": "Binding",
                                        "metadata": {"name": meta["name"], "namespace": self.namespace,
                                                     "uid": meta.get("uid")},
                                        "target": {"apiVersion": "v1", "kind": "Node",
                                                   "name": self.node_name}})
        except ApiError as exc:
            if exc.status in (404, 409):  # gone, or bound meanwhile: the next listing tells
                return False
            raise
        pod["spec"]["nodeName"] = self.node_name
        return True

    def _end_deleted(self, pod: Mapping[str, Any]) -> None:
        """A pod on this Node got a ``deletionTimestamp``: end it as a kubelet does, once."""
        uid = pod["metadata"].get("uid", "")
        if uid in self._deleting:
            return
        self._deleting.add(uid)
        p = self.pods.get(pod["metadata"]["name"])
        task = asyncio.create_task(self._end(pod, p), name=f"kubelet delete {pod['metadata']['name']}")
        if p is not None and p.terminating is None:
            p.terminating = task
        else:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _grace(self, pod: Mapping[str, Any]) -> float:
        seconds = pod["metadata"].get("deletionGracePeriodSeconds")
        if seconds is None:
            seconds = (pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
        return max(0.0, min(float(seconds), self.grace_period))

    async def _end(self, pod: Mapping[str, Any], p: RunningPod | None) -> None:
        """SIGTERM, SIGKILL after the grace period, the terminated status, then delete with grace 0."""
        meta = pod["metadata"]
        name = meta["name"]
        try:
            if p is not None:
                await self._terminate(p, self._grace(pod))
                if p.watcher is not None:  # it writes the terminated status
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(asyncio.shield(p.watcher), timeout=10)
            elif name in self.app_pods:
                await self._patch(name, self._app_pod_status(pod, self.app_pods[name], terminated=True))
            await self.kube.request("delete", KINDS["Pod"], namespace=self.namespace, name=name,
                                    params={"gracePeriodSeconds": "0"},
                                    body={"apiVersion": "v1", "kind": "DeleteOptions",
                                          "gracePeriodSeconds": 0, "preconditions": {"uid": meta.get("uid")}})
        except ApiError as exc:
            if exc.status not in (404, 409):  # gone already, or a namesake
                log.warning("pod runner: ending %s: %s", name, exc)
                self._deleting.discard(meta.get("uid", ""))  # the next listing tries again
        self.app_pods.pop(name, None)
        self.app_started.pop(name, None)

    # --- App pods (kwok-style: reported, never run) --------------------------------------

    async def _play_app_kubelet(self, pods: list[dict[str, Any]]) -> None:
        for pod in pods:
            if not await self._mine(pod):
                continue
            name = pod["metadata"]["name"]
            if pod["metadata"].get("deletionTimestamp"):
                self._end_deleted(pod)
            elif name not in self.app_pods and name not in self._failed_images:
                image = pod["spec"]["containers"][0].get("image", "")
                if image in self.unpullable_images:
                    self._failed_images.add(name)
                    await self._image_pull_backoff(pod)
                    await self._event(pod, "Warning", "Failed", f'Failed to pull image "{image}": '
                                      f'rpc error: code = NotFound desc = "{image}": not found')
                    continue
                address = str(APP_POD_NETWORK[next(_app_addresses) % (APP_POD_NETWORK.num_addresses - 2) + 1])
                status = self._app_pod_status(pod, address)
                if image in self.crashing_images:
                    status = self._crash_loop(status)
                await self._patch(name, status)
                self.app_pods[name] = address
                self.app_started[name] = (time.time(), image)
                if image in self.crashing_images:
                    await self._event(pod, "Warning", "BackOff",
                                      f"Back-off restarting failed container app in pod {name}")

    @staticmethod
    def _crash_loop(status: dict[str, Any]) -> dict[str, Any]:
        """A container that exited with code 1 three times and waits to be restarted again."""
        now = _now()
        status["conditions"] = [{**c, "status": "False"} if c["type"] in ("Ready", "ContainersReady") else c
                                for c in status["conditions"]]
        for c in status["containerStatuses"]:
            c.update(ready=False, started=False, restartCount=3,
                     state={"waiting": {"reason": "CrashLoopBackOff", "message": (
                         f"back-off 40s restarting failed container={c['name']}")}},
                     lastState={"terminated": {"exitCode": 1, "reason": "Error", "startedAt": now,
                                               "finishedAt": now}})
        return status

    async def _event(self, pod: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        """An Event about ``pod`` from this kubelet, as a real one reports pulls and back-offs."""
        meta = pod["metadata"]
        with contextlib.suppress(ApiError):
            await self.kube.request("create", KINDS["Event"], namespace=self.namespace, body={
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"generateName": f"{meta['name']}.", "namespace": self.namespace},
                "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"],
                                   "namespace": self.namespace, "uid": meta.get("uid")},
                "reason": reason, "message": message, "type": type_, "count": 1,
                "source": {"component": "kubelet", "host": self.node_name},
                "firstTimestamp": _now(), "lastTimestamp": _now()})

    def _app_log(self, name: str, start: int) -> list[tuple[float, bytes]]:
        """An App pod's output from line ``start`` until now: a start line, then one request a tick.

        A crashing image writes three lines and ends.
        """
        started, image = self.app_started[name]
        if image in self.crashing_images:
            lines = [f"starting {image} in {name}", "connecting to the database",
                     "fatal: DATABASE_URL is not set; exiting with code 1"]
            return [(started, f"{text}\n".encode()) for text in lines][start:]
        count = 1 + int((time.time() - started) / self.app_log_interval)
        return [(started + i * self.app_log_interval,
                 (f"{name} listening on :8080 (image {image})\n" if i == 0
                  else f"{name} GET / 200 request={i}\n").encode())
                for i in range(start, count)]

    def _app_pod_status(self, pod: Mapping[str, Any], address: str, *,
                        terminated: bool = False) -> dict[str, Any]:
        now = _now()
        started = (pod.get("status") or {}).get("startTime") or now
        ready = "False" if terminated else "True"
        statuses = []
        for c in pod["spec"].get("containers") or []:
            state: dict[str, Any] = {"running": {"startedAt": started}}
            if terminated:
                state = {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": started,
                                        "finishedAt": now}}
            statuses.append({"name": c["name"], "image": c.get("image", ""), "imageID": "",
                             "containerID": f"podrunner://{pod['metadata'].get('uid', '')}-{c['name']}",
                             "ready": not terminated, "restartCount": 0, "started": not terminated,
                             "state": state})
        status: dict[str, Any] = {
            "phase": "Succeeded" if terminated else "Running",
            "podIP": address, "podIPs": [{"ip": address}], "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}], "startTime": started,
            "conditions": [
                {"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": started},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": started},
                {"type": "Initialized", "status": "True", "lastTransitionTime": started},
                {"type": "ContainersReady", "status": ready, "lastTransitionTime": now},
                {"type": "Ready", "status": ready, "lastTransitionTime": now}],
            "containerStatuses": statuses,
        }
        return status

    # --- the kubelet API: container logs -------------------------------------------------

    def _certificate(self, directory: Path) -> tuple[Path, Path]:
        """A self-signed serving certificate for 127.0.0.1 (nobody verifies it: see the module docstring)."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.node_name)])
        now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=2))
                .add_extension(x509.SubjectAlternativeName([
                    x509.DNSName(self.node_name), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                    critical=False)
                .sign(key, hashes.SHA256()))
        cert_path, key_path = directory / "kubelet.crt", directory / "kubelet.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.TraditionalOpenSSL,
                                               serialization.NoEncryption()))
        return cert_path, key_path

    async def _serve_kubelet_api(self) -> None:
        assert self._tmp is not None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*self._certificate(Path(self._tmp.name)))
        app = web.Application()
        app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self._container_logs)
        app.router.add_get("/healthz", self._healthz)
        self._web = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._web.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))  # loopback only: the requests are not authenticated
        self.kubelet_port = int(sock.getsockname()[1])
        await web.SockSite(self._web, sock, ssl_context=context).start()

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _container_logs(self, request: web.Request) -> web.StreamResponse:
        namespace, name = request.match_info["namespace"], request.match_info["pod"]
        container = request.match_info["container"]
        q = request.query
        if namespace != self.namespace or (name not in self.pods and name not in self.app_pods
                                           and name not in self._failed_images):
            return web.Response(status=404, text=f'pod "{namespace}/{name}" does not exist\n')
        crashed = name in self.app_started and self.app_started[name][1] in self.crashing_images
        if _truthy(q.get("previous")) and not crashed:
            return web.Response(status=400, text=(
                f'previous terminated container "{container}" in pod "{name}" not found\n'))
        p = self.pods.get(name)
        if name in self._failed_images or (name not in self.app_pods and (p is None or p.log is None)):
            return web.Response(status=400, text=(
                f'container "{container}" in pod "{name}" is waiting to start: trying and failing to pull '
                'image\n' if name in self._failed_images else
                f'container "{container}" in pod "{name}" is waiting to start: ContainerCreating\n'))
        try:
            tail = int(q["tailLines"]) if "tailLines" in q else None
            limit = int(q["limitBytes"]) if "limitBytes" in q else None
            since = time.time() - int(q["sinceSeconds"]) if "sinceSeconds" in q else None
            if "sinceTime" in q:
                since = datetime.datetime.fromisoformat(q["sinceTime"]).timestamp()
        except ValueError as exc:
            return web.Response(status=400, text=f"{exc}\n")
        stamped = _truthy(q.get("timestamps"))
        follow = _truthy(q.get("follow"))
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        sent = 0

        async def send(lines: list[tuple[float, bytes]]) -> bool:
            """Write ``lines``; False once ``limitBytes`` is reached."""
            nonlocal sent
            for at, line in lines:
                if since is not None and at < since:
                    continue
                chunk = (_rfc3339nano(at).encode() + b" " if stamped else b"") + line
                if limit is not None:
                    chunk = chunk[:limit - sent]
                await response.write(chunk)
                sent += len(chunk)
                if limit is not None and sent >= limit:
                    return False
            return True

        try:
            if p is None:  # an App's pod: its synthetic output, until it goes
                lines = self._app_log(name, 0)
                offset = len(lines)
                more = await send(lines[-tail:] if tail else [] if tail == 0 else lines)
                while follow and more and name in self.app_started and not crashed:
                    await asyncio.sleep(self.app_log_interval / 2)
                    if name not in self.app_started:
                        break
                    lines = self._app_log(name, offset)
                    offset += len(lines)
                    more = await send(lines)
                await response.write_eof()
                return response
            ended = p.output_ended
            lines, offset = self._log_lines(p, p.log_start)
            if tail is not None:
                lines = lines[-tail:] if tail > 0 else []
            more = await send(lines)
            while follow and more and not ended:
                assert self._output is not None
                async with self._output:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._output.wait(), timeout=1.0)
                ended = p.output_ended
                lines, offset = self._log_lines(p, offset)
                more = await send(lines)
            await response.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            pass  # the reader went away, or the runner is closing
        return response

    @staticmethod
    def _log_lines(p: RunningPod, start: int) -> tuple[list[tuple[float, bytes]], int]:
        """Lines of ``p``'s output from byte ``start`` with when each was read; a last partial line
        only once the output ended. Returns them and where the next read starts."""
        assert p.log is not None
        with p.log.open("rb") as f:
            f.seek(start)
            data = f.read()
        lines: list[tuple[float, bytes]] = []
        position = 0
        while position < len(data):
            end = data.find(b"\n", position)
            if end == -1:
                if not p.output_ended:
                    break
                end = len(data) - 1
            lines.append((p.stamps.get(start + position, time.time()), data[position:end + 1]))
            position = end + 1
        return lines, start + position

    async def _pump(self, p: RunningPod, stream: asyncio.StreamReader) -> None:
        """Copy the process's output to its log file, noting when each line began."""
        assert p.log is not None and self._output is not None
        offset = p.log_start
        line_start = True
        try:
            with p.log.open("ab") as out:
                while chunk := await stream.read(65536):
                    now = time.time()
                    if line_start:
                        p.stamps[offset] = now
                    newline = chunk.find(b"\n")
                    while newline != -1 and newline + 1 < len(chunk):
                        p.stamps[offset + newline + 1] = now
                        newline = chunk.find(b"\n", newline + 1)
                    line_start = chunk.endswith(b"\n")
                    out.write(chunk)
                    out.flush()
                    offset += len(chunk)
                    async with self._output:
                        self._output.notify_all()
        finally:
            p.output_ended = True
            async with self._output:
                self._output.notify_all()

    # --- running one pod -----------------------------------------------------------------

    async def _materialise(self, pod: Mapping[str, Any], workdir: Path) -> dict[str, Path]:
        """Write each configMap/secret volume's keys as files; return volume name -> directory."""
        mounts: dict[str, Path] = {}
        for volume in pod["spec"].get("volumes") or []:
            directory = workdir / volume["name"]
            directory.mkdir(parents=True, exist_ok=True)
            if "configMap" in volume:
                cm = await self.kube.get("ConfigMap", volume["configMap"]["name"], self.namespace)
                if cm is None:
                    raise NotYet(volume["configMap"]["name"])
                for key, value in ((cm or {}).get("data") or {}).items():
                    (directory / key).write_text(value)
            elif "secret" in volume:
                secret = await self.kube.get("Secret", volume["secret"]["secretName"], self.namespace)
                if secret is None:
                    raise NotYet(volume["secret"]["secretName"])
                for key, value in ((secret or {}).get("data") or {}).items():
                    (directory / key).write_bytes(base64.b64decode(value))
            mounts[volume["name"]] = directory
        return mounts

    def _args(self, container: Mapping[str, Any], mounts: dict[str, Path], address: str,
              summary: Path) -> list[str]:
        """The container's args with in-pod paths mapped to the materialised files."""
        paths: dict[str, Path] = {}
        for mount in container.get("volumeMounts") or []:
            if mount["name"] in mounts:
                paths[mount["mountPath"].rstrip("/")] = mounts[mount["name"]]

        def local(path: str) -> str:
            for prefix, directory in paths.items():
                if path.startswith(prefix + "/"):
                    return str(directory / path[len(prefix) + 1:])
            return path

        args = list(container.get("args") or [])
        out: list[str] = []
        it = iter(args)
        for arg in it:
            if arg in ("--listen", "--summary-file", "--plan", "--token-file"):
                value = next(it, "")
                if arg == "--listen":
                    value = f"{address}:{WORKER_PORT}"
                elif arg == "--summary-file":
                    value = str(summary)
                else:
                    value = local(value)
                out += [arg, value]
            else:
                out.append(arg)
        return out

    @staticmethod
    def _conditions(started: str, ready: str, since: str,
                    reason: str | None = None) -> list[dict[str, Any]]:
        """A pod's conditions: scheduled and initialized at ``started``; ``ready`` since ``since``."""
        last = [{"type": "ContainersReady", "status": ready, "lastTransitionTime": since},
                {"type": "Ready", "status": ready, "lastTransitionTime": since}]
        if reason:
            for c in last:
                c["reason"] = reason
        return [{"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": started},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": started},
                {"type": "Initialized", "status": "True", "lastTransitionTime": started}, *last]

    async def _start(self, pod: Mapping[str, Any], index: int) -> None:
        assert self._tmp is not None and self.log_dir is not None
        name = pod["metadata"]["name"]
        workdir = Path(self._tmp.name) / name
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            mounts = await self._materialise(pod, workdir)
        except NotYet:
            return  # retried on the next listing
        p = RunningPod(namespace=self.namespace, name=name, index=index, address=next_address(),
                       workdir=workdir, uid=pod["metadata"].get("uid", ""))
        self.pods[name] = p
        container = pod["spec"]["containers"][0]
        args = self._args(container, mounts, p.address, p.summary_file)
        env = {**os.environ, "JOB_COMPLETION_INDEX": str(index), "PYTHONUNBUFFERED": "1"}
        for var in container.get("env") or []:
            if "value" in var:
                env[var["name"]] = str(var["value"])
        started = _now()
        await self._patch(name, {
            "phase": "Running", "podIP": p.address, "podIPs": [{"ip": p.address}], "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}], "startTime": started,
            "conditions": self._conditions(started, "False", started),
            "containerStatuses": [{
                "name": container["name"], "image": container.get("image", ""), "imageID": "",
                "ready": False, "restartCount": 0, "started": True,
                "state": {"running": {"startedAt": started}},
            }],
        })
        p.log = self.log_dir / f"{name}.log"
        p.log_start = p.log.stat().st_size if p.log.exists() else 0
        p.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mothership", *args, env=env, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL,
        )
        assert p.process.stdout is not None
        p.pump = asyncio.create_task(self._pump(p, p.process.stdout), name=f"kubelet logs {name}")
        p.watcher = asyncio.create_task(self._watch(p, container, started), name=f"kubelet {name}")

    async def _healthy(self, p: RunningPod) -> bool:
        if self._session is None:
            return False
        try:
            async with self._session.get(f"{p.url}/healthz") as response:
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False

    async def _watch(self, p: RunningPod, container: Mapping[str, Any], started: str) -> None:
        """Report Ready once /healthz answers, then the termination when the process exits."""
        assert p.process is not None
        ready = False
        while p.process.returncode is None:
            if not ready and p.terminating is None and await self._healthy(p):
                ready = True
                now = _now()
                await self._patch(p.name, {
                    "conditions": self._conditions(started, "True", now),
                    "containerStatuses": [{
                        "name": container["name"], "image": container.get("image", ""), "imageID": "",
                        "ready": True, "restartCount": 0, "started": True,
                        "state": {"running": {"startedAt": started}},
                    }],
                })
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(p.process.wait(), timeout=0.1 if not ready else 1.0)
        code = p.process.returncode
        exit_code = 128 - code if code < 0 else code  # a signal N shows as 128 + N, as a kubelet reports
        reason = p.killed_as or ("Completed" if exit_code == 0 else "Error")
        message = ""
        with contextlib.suppress(OSError):
            message = p.summary_file.read_bytes()[:TERMINATION_MESSAGE_LIMIT].decode(errors="replace")
        finished = _now()
        terminated: dict[str, Any] = {"exitCode": exit_code, "reason": reason, "startedAt": started,
                                      "finishedAt": finished}
        if message:
            terminated["message"] = message
        p.ended = True
        await self._patch(p.name, {
            "phase": "Succeeded" if exit_code == 0 else "Failed",
            "conditions": self._conditions(started, "False", finished, "PodCompleted"),
            "containerStatuses": [{
                "name": container["name"], "image": container.get("image", ""), "imageID": "",
                "ready": False, "restartCount": 0, "started": False,
                "state": {"terminated": terminated},
            }],
        })

    async def _patch(self, name: str, status: dict[str, Any]) -> None:
        try:
            await self.kube.patch_status("Pod", name, self.namespace, status)
        except ApiError as exc:
            if exc.status != 404:  # the pod was deleted meanwhile
                raise

    async def _terminate(self, p: RunningPod, timeout: float) -> None:
        process = p.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), timeout=timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), timeout=2.0)
