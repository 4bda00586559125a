"""The local launcher: the same LoadTest, run by worker processes on 127.0.0.1.

Why this exists: ``mothership loadtest run -f test.yaml`` must behave like a
cluster run without a cluster. It differs from the operator only in how
workers are launched: here each is ``python -m mothership worker`` on a free
127.0.0.1 port (port 0; the worker announces the port it got on its first
stdout line); the ``Coordinator`` then does exactly what it does for pods.

A good citizen leaves nothing behind, whatever ends it:

- The plan and the random control token reach the workers as sealed
  in-memory files (``memfd``) inherited by the children and read through
  ``/dev/fd/N``, so nothing is written to disk (``Handoff``; where memfd does
  not exist, a 0700 temporary directory that is always removed). Workers write
  no summary file (``/dev/null``): the coordinator reads ``/snapshot``.
  Children's stderr goes to a pipe whose last lines are kept for failure
  messages, not to a log file.
- Every child (workers, the demo target) is started by ``spawn`` with
  ``PR_SET_PDEATHSIG`` = SIGKILL (Linux), so it dies with the launcher even
  when the launcher is killed with SIGKILL and cannot clean up.
- A child that exits before its run has ended is reported to the coordinator
  at once (``worker_exited``) rather than after missed polls.
- Children run in their own sessions, so a Ctrl-C in the terminal reaches only
  this process; the CLI turns SIGINT, SIGTERM and SIGHUP alike into a graceful
  stop through the coordinator and still collects the partial summary.

``--demo-target`` starts the bundled demo target the same way, so the
quickstart is a single command.

This module knows nothing of rendering (``live.py``) or Kubernetes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import json
import logging
import os
import re
import secrets
import shutil
import signal
import sys
import tempfile
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from ..api.common import API_VERSION
from ..api.loadtest import LoadTestSpec
from .coordinator import Coordinator, OnUpdate, Result

logger = logging.getLogger(__name__)

ANNOUNCE_TIMEOUT = 20.0
"""Seconds a spawned process may take to import and announce its URL."""
EXIT_TIMEOUT = 5.0
"""Seconds released processes get to exit before they are killed."""
STDERR_LINES = 20
"""Lines of a child's stderr kept for its failure message."""
_URL = re.compile(r"https?://\S+")
_PR_SET_PDEATHSIG = 1


class CouldNotRun(RuntimeError):
    """The local run could not start (a worker or the demo target failed to come up)."""


# --- children that die with their parent ------------------------------------------------


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGKILL when this process dies (Linux only).

    ``PR_SET_PDEATHSIG`` survives ``exec`` and fires however the parent ends,
    SIGKILL included. If the parent died between ``fork`` and ``prctl`` the
    child has already been re-parented, so it exits at once instead. The
    signal is tied to the forking thread: spawn from the event loop's thread.
    None where ``prctl`` does not exist.
    """
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


class Handoff:
    """Read-only files handed to the children, by path, with nothing left on disk.

    On Linux each is a sealed ``memfd`` inherited by the children (``pass_fds``)
    and opened as ``/dev/fd/N``; it vanishes with the last process holding it.
    Elsewhere they go to a 0700 temporary directory that ``close`` removes.
    """

    def __init__(self) -> None:
        self.fds: list[int] = []
        self._dir: Path | None = None

    def add(self, name: str, data: bytes) -> str:
        """Hand over ``data``; returns the path a child opens it by."""
        if hasattr(os, "memfd_create"):
            fd = os.memfd_create(f"mothership-{name}", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK
                        | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE)
            self.fds.append(fd)
            return f"/dev/fd/{fd}"
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="mothership-"))
        path = self._dir / name
        write_secret(path, data.decode())
        return str(path)

    def close(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds.clear()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> Handoff:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class Spawned:
    """A child process that announced its base URL."""

    name: str
    process: asyncio.subprocess.Process
    url: str
    stderr: deque[str] = field(default_factory=lambda: deque(maxlen=STDERR_LINES))
    """Its last lines of stderr, kept for the failure message."""
    reader: asyncio.Task[None] | None = None
    """Drains stderr into ``stderr`` until the process closes it."""

    async def log_tail(self, lines: int = 3) -> str:
        """The last ``lines`` of stderr, joined; waits briefly for an exited child's last words."""
        if self.reader is not None and self.process.returncode is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self.reader), timeout=1.0)
        tail = [line.strip() for line in self.stderr if line.strip()][-lines:]
        return " | ".join(tail)


async def _drain(stream: asyncio.StreamReader) -> None:
    """Read and drop a child's stdout after its announcement, so it never blocks on a full pipe."""
    while await stream.read(65536):
        pass


async def _keep_tail(stream: asyncio.StreamReader, tail: deque[str]) -> None:
    """Read a child's stderr to its end, keeping the last lines (so it never blocks on a full pipe)."""
    while line := await stream.readline():
        tail.append(line.decode(errors="replace").rstrip()[:500])


async def spawn(name: str, args: list[str], *, pass_fds: Sequence[int] = ()) -> Spawned:
    """Start ``python -m mothership ARGS`` and wait for the URL it announces on its first stdout line.

    The child dies with this process (``die_with_parent``), runs in its own
    session (a terminal's Ctrl-C is ours to handle), inherits only
    ``pass_fds``, and its stderr is kept in memory (``Spawned.stderr``).
    """
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mothership", *args,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        start_new_session=True, pass_fds=tuple(pass_fds), preexec_fn=die_with_parent(),
    )
    assert process.stdout is not None and process.stderr is not None
    spawned = Spawned(name, process, "")
    spawned.reader = asyncio.get_running_loop().create_task(_keep_tail(process.stderr, spawned.stderr))
    try:
        line = await asyncio.wait_for(process.stdout.readline(), timeout=ANNOUNCE_TIMEOUT)
    except TimeoutError:
        line = b""
    except BaseException:  # cancelled (Ctrl-C twice): do not leave the process behind
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        raise
    match = _URL.search(line.decode(errors="replace"))
    if not match:
        await stop_processes([spawned])
        raise CouldNotRun(f"{name} did not start: {await spawned.log_tail() or 'no output'}")
    spawned.url = match.group(0)
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
async def demo_target_process() -> AsyncIterator[Spawned]:
    """The bundled demo target as a child process on a free 127.0.0.1 port."""
    target = await spawn("demo target", ["demo-target", "--host", "127.0.0.1", "--port", "0"])
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

    async def run(self, on_coordinator: Callable[[Coordinator], None] | None = None) -> Result:
        """Spawn the workers, coordinate them, collect the result, and make sure every child is gone.

        ``on_coordinator`` receives the coordinator before the run, so the caller
        can wire Ctrl-C to ``stop()``.
        """
        token = secrets.token_urlsafe(32)
        watchers: list[asyncio.Task[None]] = []
        spawns: list[asyncio.Task[Spawned]] = []
        with Handoff() as handoff:
            try:
                token_path = handoff.add("token", token.encode())
                plan = handoff.add("plan", json.dumps({
                    "apiVersion": API_VERSION, "kind": "LoadTest", "metadata": {"name": self.loadtest},
                    "spec": self.spec.wire()}).encode())
            except OSError as exc:  # e.g. a file-size limit (ulimit -f) smaller than the plan
                raise CouldNotRun(f"cannot hand the plan to the workers: {exc.strerror or exc}") from None
            try:
                spawns = [
                    asyncio.create_task(spawn(f"worker {i}", self.worker_args(i, plan, token_path),
                                              pass_fds=handoff.fds))
                    for i in range(self.workers)
                ]
                await asyncio.wait(spawns)
                # Keep every process that came up, so the finally below stops it even if another did not.
                self.children = children = [t.result() for t in spawns if t.exception() is None]
                errors = [e for t in spawns if (e := t.exception()) is not None]
                if errors:
                    raise errors[0]
                handoff.close()  # the workers have read both; nothing of them stays in this process
                coordinator = Coordinator(
                    [c.url for c in children], token, self.spec,
                    start_delay=self.start_delay, poll_interval=self.poll_interval,
                    ready_timeout=self.ready_timeout, on_update=self.on_update,
                )
                if on_coordinator is not None:
                    on_coordinator(coordinator)
                watchers = [asyncio.create_task(self._watch(coordinator, i, c))
                            for i, c in enumerate(children)]
                return await coordinator.run()
            finally:
                for task in (*spawns, *watchers):
                    task.cancel()  # a spawn cancelled while waiting kills its own process
                # Every process that announced, even if a second Ctrl-C came before self.children was set.
                announced = {id(c): c for c in self.children}
                announced.update((id(c), c) for t in spawns
                                 if t.done() and not t.cancelled() and t.exception() is None
                                 for c in [t.result()])
                await stop_processes(list(announced.values()))

    def worker_args(self, index: int, plan: str, token: str, summary_file: str = os.devnull) -> list[str]:
        """``mothership worker`` arguments for worker ``index``; ``plan`` and ``token`` are paths.

        No summary file by default: the coordinator reads ``/snapshot``, and a file would outlive us.
        """
        return [
            "worker", "--plan", plan, "--index", str(index), "--count", str(self.workers),
            "--listen", f"127.0.0.1:{self.metrics_port + index if self.metrics_port else 0}",
            "--token-file", token, "--loadtest", self.loadtest,
            "--target", self.base_url, "--summary-file", summary_file,
            "--linger", "30", "--ready-timeout", str(self.ready_timeout + 30),
        ]

    @staticmethod
    async def _watch(coordinator: Coordinator, index: int, child: Spawned) -> None:
        code = await child.process.wait()
        tail = await child.log_tail()
        coordinator.worker_exited(index, code, f"process exited with code {code}"
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
    if not demo_target:
        if base_url is None:
            raise CouldNotRun("spec.target.app needs --target URL (or --demo-target) to run locally")
        run = LocalRun(spec, base_url, workers, loadtest, metrics_port=metrics_port, on_update=on_update)
        return await run.run(on_coordinator), None
    async with demo_target_process() as target:
        run = LocalRun(spec, target.url, workers, loadtest, metrics_port=metrics_port, on_update=on_update)
        result = await run.run(on_coordinator)
        return result, await fetch_json(target.url + "/stats")
