"""The local launcher: the same LoadTest, run by worker processes on 127.0.0.1.

Why this exists: ``mothership loadtest run -f test.yaml`` must behave like a
cluster run without a cluster. It differs from the operator only in how
workers are launched: here each is ``python -m mothership worker`` on a free
127.0.0.1 port (port 0; the worker announces the port it got on its first
stdout line), with a random token in a 0600 file; the ``Coordinator`` then
does exactly what it does for pods.

The launcher also watches the processes: one that exits before its run has
ended is reported to the coordinator at once (``worker_failed``) rather than
after missed polls. Workers run in their own sessions, so a Ctrl-C in the
terminal reaches only this process, which stops the test through the
coordinator and still collects the partial summary.

``--demo-target`` starts the bundled demo target the same way, so the
quickstart is a single command.

This module knows nothing of rendering (``live.py``) or Kubernetes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import secrets
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from ..api.loadtest import LoadTestSpec
from .coordinator import Coordinator, OnUpdate, Result

logger = logging.getLogger(__name__)

ANNOUNCE_TIMEOUT = 20.0
"""Seconds a spawned process may take to import and announce its URL."""
EXIT_TIMEOUT = 5.0
"""Seconds released processes get to exit before they are killed."""
_URL = re.compile(r"https?://\S+")


class CouldNotRun(RuntimeError):
    """The local run could not start (a worker or the demo target failed to come up)."""


@dataclass
class Spawned:
    """A child process that announced its base URL."""

    name: str
    process: asyncio.subprocess.Process
    url: str
    log: Path
    """Its stderr, kept for the failure message."""

    def log_tail(self, lines: int = 3) -> str:
        try:
            tail = self.log.read_text(errors="replace").strip().splitlines()[-lines:]
        except OSError:
            return ""
        return " | ".join(line.strip() for line in tail)


async def _drain(stream: asyncio.StreamReader) -> None:
    """Read and drop a child's stdout after its announcement, so it never blocks on a full pipe."""
    while await stream.read(65536):
        pass


async def spawn(name: str, args: list[str], log: Path) -> Spawned:
    """Start ``python -m mothership ARGS`` and wait for the URL it announces on its first stdout line."""
    with log.open("wb") as err:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mothership", *args,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=err,
            start_new_session=True,
        )
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), timeout=ANNOUNCE_TIMEOUT)
    except TimeoutError:
        line = b""
    except BaseException:  # cancelled (Ctrl-C twice): do not leave the process behind
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        raise
    match = _URL.search(line.decode(errors="replace"))
    spawned = Spawned(name, process, match.group(0) if match else "", log)
    if not match:
        await stop_processes([spawned])
        raise CouldNotRun(f"{name} did not start: {spawned.log_tail() or 'no output'}")
    asyncio.get_running_loop().create_task(_drain(process.stdout))
    return spawned


async def stop_processes(children: list[Spawned], timeout: float = EXIT_TIMEOUT) -> None:
    """SIGTERM the children (a worker stops gracefully and exits), wait ``timeout`` seconds, then kill."""
    for c in children:
        if c.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                c.process.terminate()
    waits = [asyncio.create_task(c.process.wait()) for c in children]
    if waits:
        _, pending = await asyncio.wait(waits, timeout=timeout)
        for c in children:
            if c.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    c.process.kill()
        if pending:
            await asyncio.wait(pending, timeout=timeout)


@contextlib.asynccontextmanager
async def demo_target_process(workdir: Path) -> AsyncIterator[Spawned]:
    """The bundled demo target as a child process on a free 127.0.0.1 port."""
    target = await spawn("demo target", ["demo-target", "--host", "127.0.0.1", "--port", "0"],
                         workdir / "demo-target.log")
    try:
        yield target
    finally:
        await stop_processes([target])


async def fetch_json(url: str, timeout: float = 3.0) -> dict[str, Any] | None:
    """GET a JSON object from ``url``, or None if that fails (used for the demo target's /stats)."""
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http, \
                http.get(url) as resp:
            body = await resp.json()
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def write_secret(path: Path, text: str) -> None:
    """Write ``text`` to a new file only its owner can read (0600), as a Secret volume would be."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


@dataclass
class LocalRun:
    """One local run's settings; ``run`` does it."""

    spec: LoadTestSpec
    base_url: str
    """Where the load goes (spec.target.url, --target or the demo target)."""
    workers: int
    loadtest: str = "local"
    start_delay: float = 0.5
    """Seconds from picking the barrier to the barrier: on one machine the POSTs land in microseconds."""
    poll_interval: float = 0.25
    ready_timeout: float = 30.0
    metrics_port: int | None = None
    """Worker i listens on 127.0.0.1:(metrics_port + i), so Prometheus can be told the targets up
    front; None picks free ports."""
    on_update: OnUpdate | None = None
    children: list[Spawned] = field(default_factory=list)
    """The worker processes of the current run, in index order."""

    async def run(self, workdir: Path, on_coordinator: Callable[[Coordinator], None] | None = None) -> Result:
        """Spawn the workers, coordinate them, collect the result, and make sure every child is gone.

        ``on_coordinator`` receives the coordinator before the run, so the caller
        can wire Ctrl-C to ``stop()``.
        """
        token = secrets.token_urlsafe(32)
        token_file = workdir / "token"
        write_secret(token_file, token)
        plan = workdir / "plan.json"
        plan.write_text(json.dumps({"apiVersion": "mothership.dev/v1alpha1", "kind": "LoadTest",
                                    "metadata": {"name": self.loadtest}, "spec": self.spec.wire()}))
        watchers: list[asyncio.Task[None]] = []
        spawns = [
            asyncio.create_task(spawn(f"worker {i}", self.worker_args(i, plan, token_file, workdir),
                                      workdir / f"worker-{i}.log"))
            for i in range(self.workers)
        ]
        try:
            await asyncio.wait(spawns)
            # Keep every process that came up, so the finally below stops it even if another did not.
            self.children = children = [t.result() for t in spawns if t.exception() is None]
            errors = [e for t in spawns if (e := t.exception()) is not None]
            if errors:
                raise errors[0]
            coordinator = Coordinator(
                [c.url for c in children], token, self.spec,
                start_delay=self.start_delay, poll_interval=self.poll_interval,
                ready_timeout=self.ready_timeout, on_update=self.on_update,
            )
            if on_coordinator is not None:
                on_coordinator(coordinator)
            watchers = [asyncio.create_task(self._watch(coordinator, i, c)) for i, c in enumerate(children)]
            return await coordinator.run()
        finally:
            for task in (*spawns, *watchers):
                task.cancel()  # a spawn cancelled while waiting kills its own process
            await stop_processes(self.children)

    def worker_args(self, index: int, plan: Path, token_file: Path, workdir: Path) -> list[str]:
        return [
            "worker", "--plan", str(plan), "--index", str(index), "--count", str(self.workers),
            "--listen", f"127.0.0.1:{self.metrics_port + index if self.metrics_port else 0}",
            "--token-file", str(token_file), "--loadtest", self.loadtest,
            "--target", self.base_url, "--summary-file", str(workdir / f"summary-{index}.json"),
            "--linger", "30", "--ready-timeout", str(self.ready_timeout + 30),
        ]

    @staticmethod
    async def _watch(coordinator: Coordinator, index: int, child: Spawned) -> None:
        code = await child.process.wait()
        tail = child.log_tail()
        coordinator.worker_failed(index, "Exited", f"process exited with code {code}"
                                  + (f": {tail}" if tail else ""))


async def run_local(
    spec: LoadTestSpec,
    *,
    base_url: str | None,
    workers: int,
    loadtest: str = "local",
    demo_target: bool = False,
    metrics_port: int | None = None,
    on_update: OnUpdate | None = None,
    on_coordinator: Callable[[Coordinator], None] | None = None,
) -> tuple[Result, dict[str, Any] | None]:
    """Run ``spec`` with ``workers`` local processes; returns the result and, with ``demo_target``,
    what the demo target counted (its ``/stats``) so totals can be compared."""
    with tempfile.TemporaryDirectory(prefix="mothership-") as tmp:
        workdir = Path(tmp)
        if not demo_target:
            if base_url is None:
                raise CouldNotRun("spec.target.app needs --target URL (or --demo-target) to run locally")
            run = LocalRun(spec, base_url, workers, loadtest, metrics_port=metrics_port, on_update=on_update)
            return await run.run(workdir, on_coordinator), None
        async with demo_target_process(workdir) as target:
            run = LocalRun(spec, target.url, workers, loadtest, metrics_port=metrics_port,
                           on_update=on_update)
            result = await run.run(workdir, on_coordinator)
            return result, await fetch_json(target.url + "/stats")
