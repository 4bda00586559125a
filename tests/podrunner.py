"""Pods without a kubelet: run a LoadTest's worker pods as local processes.

See docs/design.md, "A real control plane".

Why this exists: the API emulator has no Job controller and no kubelet, and a
control plane without nodes has the first but not the second, so nothing
would ever run a worker pod. :class:`PodRunner` plays both, against any API
server the ``mothership.kube.Kube`` client can reach:

- the Job controller (switchable: ``job_controller=False`` when a real one
  exists): for each Indexed Job labelled ``mothership.dev/loadtest``, create
  pod ``<job>-<index>-<suffix>`` per index from the pod template, with the
  ``batch.kubernetes.io/job-completion-index`` annotation and label,
  ``JOB_COMPLETION_INDEX`` in the container's env and an ownerReference to the
  Job (so deleting the Job garbage-collects the pods); it also keeps the Job's
  ``status`` counts;
- the kubelet: for each such pod, materialise its plan ConfigMap and token
  Secret into a temporary directory and start ``sys.executable -m mothership``
  with the container's args, except ``--listen 127.a.b.c:9090`` (a distinct
  loopback address per pod: all of 127.0.0.0/8 routes to ``lo`` on Linux, so
  every pod keeps the worker port), the plan and token files, and a temporary
  ``--summary-file`` standing in for ``/dev/termination-log``. It writes the pod
  status back as a kubelet would: ``podIP``, phase Running, ``Ready`` once the
  worker's ``/healthz`` answers, then Succeeded or Failed with
  ``containerStatuses[0].state.terminated`` (exitCode, reason, and the summary
  file's content as the termination message).

Failures can be injected: :meth:`PodRunner.kill` SIGKILLs a worker (exit 137,
reason Error, whatever summary it had written), ``image_pull_backoff`` keeps
chosen indexes Pending with ``ImagePullBackOff`` and never starts them, and
``oom_kill`` reports a kill as ``OOMKilled``. A pod that disappears (or gets a
``deletionTimestamp``) has its process terminated. Leaving the ``async with``
ends every process, SIGTERM first, SIGKILL after a bound.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import itertools
import logging
import os
import random
import signal
import socket
import string
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp

from mothership.kube import ApiError, Kube
from mothership.loadtests import builders
from mothership.loadtests.status import INDEX_KEY, pod_index

log = logging.getLogger(__name__)

WORKER_PORT = builders.WORKER_PORT
TERMINATION_MESSAGE_LIMIT = 4096

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


def _suffix() -> str:
    return "".join(random.choices(string.ascii_lowercase + string.digits, k=5))


@dataclass
class RunningPod:
    """One pod this runner started (or keeps failing on purpose)."""

    namespace: str
    name: str
    index: int
    address: str
    workdir: Path
    process: asyncio.subprocess.Process | None = None
    watcher: asyncio.Task[None] | None = None
    killed_as: str | None = None
    """The termination reason to report when the test killed it (Error, OOMKilled)."""
    ended: bool = False
    terminating: asyncio.Task[None] | None = None

    @property
    def summary_file(self) -> Path:
        return self.workdir / "termination-log"

    @property
    def url(self) -> str:
        return f"http://{self.address}:{WORKER_PORT}"


@dataclass
class PodRunner:
    """Plays the Job controller (optional) and the kubelet for LoadTest worker pods in ``namespace``."""

    kube: Kube
    namespace: str
    job_controller: bool = True
    """Create the pods of Indexed Jobs; False where a real Job controller does that."""
    image_pull_backoff: set[int] = field(default_factory=set)
    """Worker indexes whose pods stay Pending with ImagePullBackOff and never run."""
    interval: float = 0.1
    """Seconds between listings of Jobs and pods."""
    grace_period: float = 2.0
    """Seconds between SIGTERM and SIGKILL for a deleted pod (terminationGracePeriodSeconds)."""
    log_dir: Path | None = None
    """Where each worker's stdout/stderr goes (``<pod>.log``); a temporary directory by default."""
    pods: dict[str, RunningPod] = field(default_factory=dict)
    """Pods this runner started, by name."""
    jobs_seen: set[str] = field(default_factory=set)
    _task: asyncio.Task[None] | None = None
    _tmp: tempfile.TemporaryDirectory[str] | None = None
    _session: aiohttp.ClientSession | None = None
    _failed_images: set[str] = field(default_factory=set)

    # --- lifecycle ---------------------------------------------------------------

    async def __aenter__(self) -> PodRunner:
        self._tmp = tempfile.TemporaryDirectory(prefix="podrunner-")
        if self.log_dir is None:
            self.log_dir = Path(self._tmp.name) / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1))
        self._task = asyncio.create_task(self._loop(), name=f"podrunner {self.namespace}")
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self, timeout: float = 5.0) -> None:
        """Stop playing controllers and end every process: SIGTERM, then SIGKILL after ``timeout``."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        await asyncio.gather(*(self._terminate(p, timeout) for p in self.pods.values()))
        for p in self.pods.values():
            for task in (p.watcher, p.terminating):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
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
                if self.job_controller:
                    await self._play_job_controller()
                await self._play_kubelet()
            except ApiError as exc:
                log.warning("pod runner: %s", exc)
            await asyncio.sleep(self.interval)

    async def _play_job_controller(self) -> None:
        jobs = await self.kube.list("Job", self.namespace, label_selector=builders.LOADTEST_LABEL)
        pods = await self.kube.list("Pod", self.namespace, label_selector=builders.LOADTEST_LABEL)
        by_job: dict[str, list[Mapping[str, Any]]] = {}
        for pod in pods:
            for ref in pod["metadata"].get("ownerReferences") or []:
                if ref.get("kind") == "Job":
                    by_job.setdefault(ref["name"], []).append(pod)
        for job in jobs:
            meta = job["metadata"]
            if meta.get("deletionTimestamp"):
                continue
            name = meta["name"]
            if name not in self.jobs_seen:
                self.jobs_seen.add(name)
                spec = job["spec"]
                for index in range(int(spec.get("completions") or 1)):
                    await self.kube.create(self._pod_for(job, index))
            await self._job_status(job, by_job.get(name, []))

    def _pod_for(self, job: Mapping[str, Any], index: int) -> dict[str, Any]:
        """What the Job controller creates for ``index`` of an Indexed Job."""
        meta = job["metadata"]
        template = job["spec"]["template"]
        spec = dict(template.get("spec") or {})
        containers = []
        for c in spec.get("containers") or []:
            c = dict(c)
            c["env"] = [*(c.get("env") or []), {"name": "JOB_COMPLETION_INDEX", "value": str(index)}]
            containers.append(c)
        spec["containers"] = containers
        labels = {**(template.get("metadata") or {}).get("labels", {}), INDEX_KEY: str(index),
                  "batch.kubernetes.io/job-name": meta["name"], "job-name": meta["name"]}
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{meta['name']}-{index}-{_suffix()}",
                "namespace": meta["namespace"],
                "labels": labels,
                "annotations": {INDEX_KEY: str(index)},
                "ownerReferences": [{
                    "apiVersion": "batch/v1", "kind": "Job", "name": meta["name"], "uid": meta["uid"],
                    "controller": True, "blockOwnerDeletion": True,
                }],
            },
            "spec": spec,
        }

    async def _job_status(self, job: Mapping[str, Any], pods: list[Mapping[str, Any]]) -> None:
        phases = [(p.get("status") or {}).get("phase") for p in pods]
        active = sum(ph in (None, "Pending", "Running") for ph in phases)
        succeeded = phases.count("Succeeded")
        failed = phases.count("Failed")
        status: dict[str, Any] = {"active": active, "succeeded": succeeded, "failed": failed}
        completions = int(job["spec"].get("completions") or 1)
        if succeeded == completions:
            status["conditions"] = [{"type": "Complete", "status": "True", "lastTransitionTime": _now()}]
            status["completionTime"] = _now()
        elif failed:
            status["conditions"] = [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                                     "message": "Job has reached the specified backoff limit",
                                     "lastTransitionTime": _now()}]
        current = job.get("status") or {}
        if any(current.get(k) != v for k, v in status.items() if k not in ("conditions", "completionTime")) \
                or ("conditions" in status) != bool(current.get("conditions")):
            with contextlib.suppress(ApiError):
                await self.kube.patch_status("Job", job["metadata"]["name"], self.namespace, status)

    async def _play_kubelet(self) -> None:
        pods = await self.kube.list("Pod", self.namespace, label_selector=builders.LOADTEST_LABEL)
        present = set()
        for pod in pods:
            meta = pod["metadata"]
            name = meta["name"]
            present.add(name)
            if meta.get("deletionTimestamp"):
                if name in self.pods:
                    self._kill_soon(self.pods[name])
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
        """What a kubelet does to a deleted pod: SIGTERM, then SIGKILL after the grace period."""
        if p.terminating is None:
            p.terminating = asyncio.create_task(self._terminate(p, self.grace_period),
                                                name=f"kubelet kill {p.name}")

    async def _image_pull_backoff(self, pod: Mapping[str, Any]) -> None:
        image = pod["spec"]["containers"][0].get("image", "")
        await self._patch(pod["metadata"]["name"], {
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": _now()},
                           {"type": "Ready", "status": "False", "reason": "ContainersNotReady",
                            "lastTransitionTime": _now()}],
            "containerStatuses": [{
                "name": "worker", "image": image, "imageID": "", "ready": False, "restartCount": 0,
                "started": False,
                "state": {"waiting": {"reason": "ImagePullBackOff",
                                      "message": f'Back-off pulling image "{image}"'}},
            }],
        })

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
                       workdir=workdir)
        self.pods[name] = p
        container = pod["spec"]["containers"][0]
        args = self._args(container, mounts, p.address, p.summary_file)
        env = {**os.environ, "JOB_COMPLETION_INDEX": str(index), "PYTHONUNBUFFERED": "1"}
        for var in container.get("env") or []:
            if "value" in var:
                env[var["name"]] = str(var["value"])
        out = (self.log_dir / f"{name}.log").open("ab")
        started = _now()
        await self._patch(name, {
            "phase": "Running", "podIP": p.address, "podIPs": [{"ip": p.address}], "hostIP": "127.0.0.1",
            "startTime": started,
            "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": started},
                           {"type": "Initialized", "status": "True", "lastTransitionTime": started},
                           {"type": "ContainersReady", "status": "False", "lastTransitionTime": started},
                           {"type": "Ready", "status": "False", "lastTransitionTime": started}],
            "containerStatuses": [{
                "name": container["name"], "image": container.get("image", ""), "imageID": "",
                "ready": False, "restartCount": 0, "started": True,
                "state": {"running": {"startedAt": started}},
            }],
        })
        try:
            p.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "mothership", *args, env=env, stdout=out, stderr=out,
                stdin=asyncio.subprocess.DEVNULL,
            )
        finally:
            out.close()
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
            if not ready and await self._healthy(p):
                ready = True
                now = _now()
                await self._patch(p.name, {
                    "conditions": [
                        {"type": "PodScheduled", "status": "True", "lastTransitionTime": started},
                        {"type": "Initialized", "status": "True", "lastTransitionTime": started},
                        {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
                        {"type": "Ready", "status": "True", "lastTransitionTime": now}],
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
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": started},
                {"type": "Initialized", "status": "True", "lastTransitionTime": started},
                {"type": "ContainersReady", "status": "False", "reason": "PodCompleted",
                 "lastTransitionTime": finished},
                {"type": "Ready", "status": "False", "reason": "PodCompleted",
                 "lastTransitionTime": finished}],
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


def indexes(pods: Iterable[RunningPod]) -> list[int]:
    return sorted(p.index for p in pods)
