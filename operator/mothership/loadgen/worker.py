"""The worker process: one share of a load test, behind a small HTTP control contract.

Why this exists: the engine (``engine.run``) only knows how to apply load. A
worker wraps it so that N of them, on one machine or in N pods, can be told
*when* to start (the same instant for all: a true barrier), watched while they
run, and stopped, by a coordinator that knows nothing but their URLs and the
token. The contract, on one port::

    GET  /healthz            200 {"state", "index", "count"}            (open: probes)
    GET  /metrics            Prometheus exposition of the worker's stats (open: scrapes)
    GET  /snapshot           200 {"state", "index", "count", "loadtest", "startAt",
                                  "startedAt", "elapsed", "error", "snapshot"}  (token)
    POST /start?at=EPOCH     schedule the start; 200 again for the same ``at``,
                             409 for another one once scheduled                  (token)
    POST /stop               stop the run; after the run, release the worker      (token)

Token-guarded routes need ``Authorization: Bearer <token>``; the comparison is
constant-time and the token is never logged. States move one way::

    ready -> scheduled -> running -> done
      \\---------\\-----------\\------> stopped        (failed: the engine raised)

``elapsed`` is seconds since the actual start on the loop's monotonic clock,
frozen when the run ends, so rates over it are not diluted by lingering.
``startedAt`` is the wall time the engine was actually started, so skew
against ``startAt`` can be checked from outside. The snapshot is cumulative
since the start, so polling twice, or after a retry, is harmless.

When the run ends the worker writes a *summary envelope* (``envelope``) to its
summary file, which in a pod is ``/dev/termination-log``, the container's
termination message: results survive the worker and an operator restart. It
then lingers, serving ``/snapshot`` for a final read, until a ``POST /stop``
releases it or ``linger`` seconds pass, and exits 0 (1 if the engine failed).
A worker stopped before it ever ran has nothing to read back and exits at once.
A worker never started exits 3 after ``ready_timeout`` seconds, so a forgotten
Job does not hold its pods forever.

This module knows nothing of the coordinator beyond this contract, and
nothing of Kubernetes beyond the termination-log path.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import math
import os
import signal
import time
from collections.abc import Awaitable, Callable
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import yaml
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import ValidationError

from ..api.common import API_VERSION, error_lines
from ..api.loadtest import LoadTestSpec, load_spec
from .exposition import StatsCollector
from .histogram import check_layout
from .plan import WorkerShare, worker_share
from .stats import TERMINATION_MESSAGE_LIMIT, Stats, coarsen_step, compact

logger = logging.getLogger(__name__)

TERMINATION_LOG = Path("/dev/termination-log")
ENVELOPE_VERSION = 1

EXIT_OK = 0
EXIT_ENGINE_FAILED = 1
EXIT_USAGE = 2
EXIT_NEVER_STARTED = 3


class WorkerState(StrEnum):
    READY = "ready"
    """Listening, waiting for ``POST /start``."""
    SCHEDULED = "scheduled"
    """Told when to start; sleeping until then."""
    RUNNING = "running"
    """The engine is applying load."""
    DONE = "done"
    """The run ended on its own after duration + gracefulStop."""
    STOPPED = "stopped"
    """The run was stopped (or the worker was stopped before starting)."""
    FAILED = "failed"
    """The engine raised; ``error`` says why."""


FINAL_STATES = frozenset({WorkerState.DONE, WorkerState.STOPPED, WorkerState.FAILED})


class EngineRun(Protocol):
    def __call__(
        self, spec: LoadTestSpec, share: WorkerShare, stats: Stats, *, base_url: str, stop: asyncio.Event
    ) -> Awaitable[None]: ...


# --- the plan file ------------------------------------------------------------------


class PlanError(ValueError):
    """The plan file is missing, not YAML/JSON, or not a valid LoadTest; ``lines`` say where."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


MAX_PLAN_BYTES = 4 * 1024 * 1024
"""Largest LoadTest file read: far above any valid spec (the CRD keeps the scenarios to 48 Ki
characters), small enough that a wrong file is refused before it is parsed."""
MAX_YAML_NODES = 10_000
"""Most YAML nodes a plan may expand to through aliases (``*ref``), so a "billion laughs" file of a
few hundred bytes is refused instead of being validated and echoed. Nodes written out are not
counted against it; only what aliases add is."""
ECHO_LIMIT = 1000
"""Longest error line printed: a safety net, so no echoed value can flood the terminal."""


def echo(value: object, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters: what error messages show of the user's input."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _clip(line: str) -> str:
    return line if len(line) <= ECHO_LIMIT else line[: ECHO_LIMIT - 3] + "..."


def validation_lines(exc: ValidationError) -> list[str]:
    """One ``field.path: message`` line per pydantic error, e.g. ``spec.scenarios[0].weight: ...``."""
    return [_clip(line) for line in error_lines(exc)]


def _alias_growth(root: yaml.Node, budget: int) -> int:
    """How many nodes aliases add to the document, counted up to just past ``budget``.

    A node reached a second time (an alias) counts with everything under it,
    as if expanded; the walk stops once the budget is exceeded, so a bomb is
    judged in time proportional to the budget, not to its expansion.
    """
    seen: set[int] = set()
    added = 0
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack and added <= budget:
        node, aliased = stack.pop()
        if aliased:
            added += 1
        else:
            aliased = id(node) in seen
            seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            stack.extend((child, aliased) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            stack.extend((part, aliased) for pair in node.value for part in pair)
    return added


def load_yaml(text: str, source: str, budget: int = MAX_YAML_NODES) -> Any:
    """Parse one YAML (or JSON) document safely, refusing alias expansion beyond ``budget`` nodes."""
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = exc.problem or exc.context
            raise PlanError([_clip(f"{source}: not valid YAML or JSON: {problem}{where}")]) from exc
        except yaml.YAMLError as exc:
            raise PlanError([_clip(f"{source}: not valid YAML or JSON: {exc}".replace("\n", " "))]) from exc
        if node is None:
            return None
        if _alias_growth(node, budget) > budget:
            raise PlanError([f"{source}: YAML aliases expand to more than {budget:,} nodes; write the "
                             "values out"])
        return loader.construct_document(node)
    finally:
        loader.dispose()


def read_plan(path: Path) -> tuple[LoadTestSpec, str | None]:
    """The validated spec in a LoadTest file (a whole document or a bare spec) and its metadata.name.

    Every refusal is a ``PlanError`` whose lines each name the file or the
    field and echo at most a cut value: a file over ``MAX_PLAN_BYTES``, not
    UTF-8, not YAML, an alias bomb, a whole document without ``spec`` or with
    another ``kind`` or ``apiVersion``, or an invalid spec.
    """
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_PLAN_BYTES + 1)
    except OSError as exc:
        raise PlanError([f"{path}: {exc.strerror or exc}"]) from exc
    if len(raw) > MAX_PLAN_BYTES:
        raise PlanError([f"{path}: larger than {MAX_PLAN_BYTES // 2**20} MiB; not a LoadTest"])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PlanError([f"{path}: not valid UTF-8 text"]) from exc
    document = load_yaml(text, str(path))
    if not isinstance(document, dict):
        raise PlanError([f"{path}: expected a LoadTest document (a mapping), got {type(document).__name__}"])
    if WHOLE_DOCUMENT_KEYS & document.keys():
        kind = document.get("kind")
        if kind != "LoadTest":
            raise PlanError(["kind: required (LoadTest)" if kind is None else
                             f"kind: expected LoadTest, got {echo(kind)}"])
        version = document.get("apiVersion")
        if version is not None and version != API_VERSION:
            raise PlanError([f"apiVersion: expected {API_VERSION}, got {echo(version)}"])
        if document.get("spec") is None:
            raise PlanError(["spec: required"])
    try:
        spec = load_spec(document)
    except ValidationError as exc:
        raise PlanError(validation_lines(exc)) from exc
    metadata = document.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return spec, name if isinstance(name, str) else None


WHOLE_DOCUMENT_KEYS = frozenset({"apiVersion", "kind", "metadata", "spec"})
"""Keys that make a plan a whole LoadTest document rather than a bare spec."""


def read_token(path: Path) -> str:
    """The control token in ``path`` (surrounding whitespace dropped); ValueError when empty."""
    token = path.read_text().strip()
    if not token:
        raise ValueError(f"{path} holds no token")
    return token


def default_summary_file() -> Path | None:
    """``/dev/termination-log`` when it can be written (in a pod), else no summary file."""
    if TERMINATION_LOG.exists() and os.access(TERMINATION_LOG, os.W_OK):
        return TERMINATION_LOG
    return None


def envelope(state: str, index: int, count: int, elapsed: float, start_at: float | None,
             snapshot: dict[str, Any], error: str | None = None,
             limit: int = TERMINATION_MESSAGE_LIMIT) -> str:
    """The summary file's text: one JSON object with the compacted snapshot (``stats.compact``).

    Shape: ``{"v": 1, "state", "index", "count", "elapsed", "startAt", "error"?,
    "snapshot": "mss1:..."}``. The coordinator's ``result_from_summaries`` reads it.

    Over ``limit`` bytes, the kubelet would truncate it and the result could
    not be rebuilt, so the snapshot's histograms are coarsened one step at a
    time (``stats.coarsen_step``: 64 -> 32 -> 16 -> 8 sub-buckets, the longest
    run first) until it fits. That is exact, so counts, sums, min and max are
    unchanged and only the quantile bound widens (0.8 % -> 1.6, 3.1, 6.2 %).
    The per-request rows coarsen next (``coarsen_step``); if it still does not
    fit, the rows are left out and the snapshot says ``by_request_missing``
    (totals stay exact; the coordinator's polled snapshots normally carry the
    rows anyway). A text that still does not fit is returned as is; the caller warns.
    """
    body: dict[str, Any] = {
        "v": ENVELOPE_VERSION, "state": state, "index": index, "count": count,
        "elapsed": round(elapsed, 3), "startAt": start_at,
    }
    if error:
        body["error"] = error[:300]
    snap: dict[str, Any] | None = snapshot
    while snap is not None:
        body["snapshot"] = compact(snap)
        text = json.dumps(body, separators=(",", ":"))
        if len(text.encode()) <= limit:
            break
        step = coarsen_step(snap)
        if step is None and snap.get("rows"):
            logger.warning("worker %d: per-request rows dropped from the summary to fit %d bytes",
                           index, limit)
            step = {**snap, "rows": [], "by_request_missing": True}
        snap = step
    if snap is not snapshot and snap is not None:
        logger.info("worker %d: summary coarsened to fit %d bytes: %s", index, limit, ", ".join(
            f"{name} sub={check_layout(w['layout'])}" for name, w in snap["histograms"].items()))
    return text


# --- the worker -----------------------------------------------------------------------


class Worker:
    """One worker: its share, its stats, its state machine and its control app."""

    def __init__(
        self,
        spec: LoadTestSpec,
        index: int,
        count: int,
        *,
        token: str,
        base_url: str,
        loadtest: str = "local",
        summary_file: Path | None = None,
        linger: float = 60.0,
        ready_timeout: float = 600.0,
        engine_run: EngineRun | None = None,
    ) -> None:
        if not token:
            raise ValueError("a worker needs a non-empty token")
        self.spec = spec
        self.index = index
        self.count = count
        self.share = worker_share(spec, index, count)
        self.stats = Stats.for_scenarios(spec.scenarios)
        self.base_url = base_url
        self.loadtest = loadtest
        self.summary_file = summary_file
        self.linger = linger
        self.ready_timeout = ready_timeout
        self._token = token.encode()
        self._engine_run = engine_run
        self.state = WorkerState.READY
        self.start_at: float | None = None
        """Wall-clock epoch seconds the coordinator asked to start at."""
        self.started_at: float | None = None
        """Wall-clock epoch seconds the engine was actually started."""
        self.error: str | None = None
        self.stop_event = asyncio.Event()
        self._released = asyncio.Event()
        self._exit_when_done = False
        self._started_loop: float | None = None
        self._ended_loop: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self.registry = CollectorRegistry()
        """What ``GET /metrics`` exposes: this worker's Stats, read at scrape time."""
        self.registry.register(StatsCollector(self.stats, loadtest, index))

    # --- reading ------------------------------------------------------------

    def elapsed(self) -> float:
        """Seconds since the actual start, on the loop clock; frozen once the run ended."""
        if self._started_loop is None:
            return 0.0
        end = self._ended_loop if self._ended_loop is not None else asyncio.get_running_loop().time()
        return max(0.0, end - self._started_loop)

    def status(self) -> dict[str, Any]:
        return {"state": self.state.value, "index": self.index, "count": self.count}

    def snapshot(self) -> dict[str, Any]:
        return {
            **self.status(),
            "loadtest": self.loadtest,
            "startAt": self.start_at,
            "startedAt": self.started_at,
            "elapsed": self.elapsed(),
            "error": self.error,
            "snapshot": self.stats.snapshot(),
        }

    # --- transitions --------------------------------------------------------

    def _move(self, state: WorkerState) -> None:
        logger.info("worker %d/%d: %s -> %s", self.index, self.count, self.state.value, state.value)
        self.state = state
        self._changed.set()

    def schedule(self, at: float) -> bool:
        """Schedule the start at wall time ``at``; False if already scheduled for another time."""
        if self.start_at is not None or self.state is not WorkerState.READY:
            return self.start_at == at
        self.start_at = at
        self._move(WorkerState.SCHEDULED)
        self._task = asyncio.create_task(self._run(at), name=f"worker-{self.index}-run")
        return True

    def stop(self) -> None:
        """Stop the run (or the schedule); once the run has ended, release the worker to exit."""
        if self.state in FINAL_STATES:
            self._released.set()
            return
        self.stop_event.set()
        if self.state in (WorkerState.READY, WorkerState.SCHEDULED):
            # Never ran: there is nothing to read back, so no reason to linger either.
            if self._task is not None:
                self._task.cancel()
            self._finish(WorkerState.STOPPED)
            self._released.set()

    def terminate(self) -> None:
        """SIGTERM/SIGINT: stop, and exit as soon as the summary is written (no linger).

        A pod being deleted gets one SIGTERM and then SIGKILL after its grace
        period; lingering for /snapshot would only hold the pod until then.
        """
        self._exit_when_done = True
        self.stop()
        if self.state in FINAL_STATES:
            self._released.set()

    async def _run(self, at: float) -> None:
        loop = asyncio.get_running_loop()
        # Convert the wall-clock barrier to the loop's monotonic clock once, then sleep on it.
        delay = at - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        self._started_loop = loop.time()
        self.started_at = time.time()
        self._move(WorkerState.RUNNING)
        if self.started_at - at > 0.05:
            logger.warning("worker %d started %.3fs after the barrier", self.index, self.started_at - at)
        try:
            await self._engine()(self.spec, self.share, self.stats, base_url=self.base_url,
                                 stop=self.stop_event)
        except Exception as exc:
            logger.exception("worker %d: the engine failed", self.index)
            self.error = f"{type(exc).__name__}: {exc}"
            self._finish(WorkerState.FAILED)
            return
        self._finish(WorkerState.STOPPED if self.stop_event.is_set() else WorkerState.DONE)

    def _engine(self) -> EngineRun:
        if self._engine_run is None:
            from .engine import run

            self._engine_run = run
        return self._engine_run

    def _finish(self, state: WorkerState) -> None:
        if self.state in FINAL_STATES:
            return
        if self._started_loop is not None:
            self._ended_loop = asyncio.get_running_loop().time()
        self._move(state)
        self.write_summary()
        if self._exit_when_done:
            self._released.set()

    def write_summary(self) -> None:
        """Write the envelope to the summary file, if any; never fails the worker."""
        if self.summary_file is None:
            return
        text = envelope(self.state.value, self.index, self.count, self.elapsed(), self.start_at,
                        self.stats.snapshot(), self.error)
        if len(text.encode()) > TERMINATION_MESSAGE_LIMIT:
            logger.warning("worker %d: summary is %d bytes, over the %d a termination message keeps",
                           self.index, len(text), TERMINATION_MESSAGE_LIMIT)
        try:
            self.summary_file.write_text(text)
        except OSError as exc:
            logger.warning("worker %d: could not write %s: %s", self.index, self.summary_file, exc)

    # --- lifetime -----------------------------------------------------------

    async def lifetime(self) -> int:
        """Wait until the worker should exit and return its exit code (see the module docstring)."""
        try:
            await asyncio.wait_for(self._reach(lambda: self.state is not WorkerState.READY),
                                   timeout=self.ready_timeout)
        except TimeoutError:
            logger.error("worker %d: not started within %.0fs; exiting", self.index, self.ready_timeout)
            return EXIT_NEVER_STARTED
        await self._reach(lambda: self.state in FINAL_STATES)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._released.wait(), timeout=self.linger)
        return EXIT_ENGINE_FAILED if self.state is WorkerState.FAILED else EXIT_OK

    async def _reach(self, predicate: Callable[[], bool]) -> None:
        """Return once ``predicate`` holds; re-checked on every state transition."""
        while not predicate():
            self._changed.clear()
            await self._changed.wait()

    async def close(self) -> None:
        """Cancel a run still in progress (used when the process is torn down)."""
        self.stop_event.set()
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # --- HTTP -----------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/snapshot", self._snapshot)
        app.router.add_post("/start", self._start)
        app.router.add_post("/stop", self._stop)
        return app

    OPEN_PATHS = frozenset({"/healthz", "/metrics"})

    @web.middleware
    async def _auth(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path not in self.OPEN_PATHS:
            header = request.headers.get("Authorization", "")
            scheme, _, presented = header.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), self._token):
                return web.json_response({"error": "missing or wrong bearer token"}, status=401,
                                         headers={"WWW-Authenticate": "Bearer"})
        return await handler(request)

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response(self.status())

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _snapshot(self, request: web.Request) -> web.Response:
        return web.json_response(self.snapshot())

    async def _start(self, request: web.Request) -> web.Response:
        try:
            at = float(request.query["at"])
        except (KeyError, ValueError):
            return web.json_response({"error": "POST /start?at=<unix epoch seconds>"}, status=400)
        if not math.isfinite(at):
            return web.json_response({"error": "at must be a finite number of epoch seconds"}, status=400)
        if not self.schedule(at):
            return web.json_response(
                {**self.status(), "error": f"already scheduled at {self.start_at}, or stopped",
                 "startAt": self.start_at},
                status=409,
            )
        return web.json_response({**self.status(), "startAt": self.start_at})

    async def _stop(self, request: web.Request) -> web.Response:
        self.stop()
        return web.json_response(self.status())


# --- process entry point --------------------------------------------------------------


async def serve(worker: Worker, host: str, port: int, announce: Callable[[str], None],
                *, handle_signals: bool = True) -> int:
    """Serve the control app on host:port until the worker's lifetime ends; return the exit code.

    With ``handle_signals``, SIGTERM and SIGINT stop the run gracefully: the
    summary is still written, then the process exits without lingering.
    """
    loop = asyncio.get_running_loop()
    if handle_signals:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.terminate)
    runner = web.AppRunner(worker.app(), access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            why = os.strerror(exc.errno) if exc.errno else str(exc)
            raise ListenError(f"cannot listen on {host}:{port}: {why}") from None
        bound_host, bound_port = runner.addresses[0][:2]
        announce(f"http://{bound_host}:{bound_port}")
        return await worker.lifetime()
    finally:
        await worker.close()
        await runner.cleanup()


class ListenError(OSError):
    """The control port could not be bound (in use, not an address of this host): one line to print."""


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6) into its parts; ValueError if malformed."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--listen must be HOST:PORT, not {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)
