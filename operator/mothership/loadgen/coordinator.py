"""The coordinator: one barrier, one merge, one verdict, for any number of workers.

Why this exists: the local runner and the operator launch workers differently
(processes on 127.0.0.1, an Indexed Job), but a test must be started, watched,
judged and stopped the same way. The coordinator does that through the
worker's HTTP contract (``worker.py``) and knows only worker base URLs, the
token and the spec. It knows nothing of Kubernetes, processes or the live view.

A run, step by step (``Coordinator.run``):

1. Wait until every worker answers ``GET /snapshot`` in state ``ready``;
   after ``ready_timeout`` seconds the result is *errored*, naming the
   missing workers and why (refused, timed out, 401, ...).
2. Pick ``start_at = now + start_delay`` (wall clock), await the
   ``on_start_at`` hook (the operator writes it to status first, so a
   restart re-attaches instead of starting twice), then POST it to *all*
   workers at once (``asyncio.gather``): every worker sleeps until the same
   instant, so start skew does not grow with N (k6-operator's sequential
   unpause does).
3. Every ``poll_interval`` seconds, GET every worker's snapshot, keep the
   latest per worker, and merge all of them again. Snapshots are cumulative,
   so a repeated or retried poll changes nothing. The live ``rps`` is the
   difference in requests over the last ``rps_window`` seconds; thresholds
   are evaluated on the merged snapshot; ``on_update(result)`` is awaited.
4. Stop early on ``stop()`` (the operator calls it on ``spec.stop``; the
   local runner on Ctrl-C) or when an ``abortOnFail`` threshold fails for
   good: POST /stop to all, then keep polling until every worker has ended.
5. When every worker has ended (or is lost), POST /stop once more to
   release them, and return the final ``Result``.

A worker that stops answering for ``lost_after`` consecutive polls (or that
a launcher reports with ``worker_failed``) is *lost*: it is reported with its
index and the reason, its last snapshot still counts (those requests did
happen), and the run goes on with the rest. More lost workers than
``spec.toleratedWorkerFailures`` make the verdict *errored*, with the summary
still produced.

``attach(start_at)`` re-attaches to workers that were already told to start
(after an operator restart): no new start time is picked; a worker still
``ready`` is sent the *same* ``start_at`` (``/start`` is idempotent for the
same value), which closes the window between persisting ``start_at`` and
POSTing it.

Durations (``elapsed``) are seconds of load since the barrier as the workers
measure them on their monotonic clocks (frozen when their run ended); wall
time is used only for ``start_at``.

The Result's JSON shape (``Result.wire()``, camelCase)::

    {"verdict": "passed|failed|stopped|errored" (null while running),
     "reason": "a sentence", "final": true, "aborted": false, "noData": false,
     "startAt": 1730000000.0, "elapsed": 10.02,
     "summary": {...api.loadtest.Summary...},
     "byRequest": [{...api.loadtest.RequestStats...}], "byRequestMissing": false,
     "thresholds": [{...api.loadtest.ThresholdResult...}],
     "workers": [{"index", "url", "state", "elapsed", "startedAt"}],
     "failures": [{"index", "reason", "message"}],
     "virtualUsersNow": 0, "wsConnectionsNow": 0,
     "timeSeries": {...loadgen.timeseries.TimeSeries: "t", "requests", "p95", ... one entry per point}}
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from enum import StrEnum
from typing import Any

import aiohttp

from ..api.common import Model, parse_duration
from ..api.loadtest import (
    LoadTestPhase,
    LoadTestSpec,
    RequestStats,
    Summary,
    ThresholdResult,
    WorkerCounts,
    WorkerFailure,
)
from .stats import by_request, empty_snapshot, expand, merge_snapshots, summarize
from .thresholds import abort_reasons, describe, evaluate, no_data
from .timeseries import Recorder, TimeSeries

logger = logging.getLogger(__name__)

FINAL_WORKER_STATES = frozenset({"done", "stopped", "failed"})
LOST = "lost"
"""The state the coordinator gives a worker it can no longer reach (or a launcher reported dead)."""


class Verdict(StrEnum):
    PASSED = "passed"
    """Every threshold held."""
    FAILED = "failed"
    """A threshold failed (at the end, or an abortOnFail one during the run), or NoData: the run
    had thresholds and nothing completed (``thresholds.no_data``)."""
    STOPPED = "stopped"
    """Stopped on request before the end; thresholds are reported on the partial data."""
    ERRORED = "errored"
    """Could not run as asked: workers never ready, or more lost than tolerated."""

    @property
    def phase(self) -> LoadTestPhase:
        """The LoadTest phase this verdict ends in."""
        return LoadTestPhase(self.value.capitalize())


class WorkerReport(Model):
    """What the coordinator last knew of one worker."""

    index: int
    url: str = ""
    state: str = "unknown"
    """ready, scheduled, running, done, stopped, failed; lost when unreachable; unknown before contact."""
    elapsed: float = 0.0
    """Seconds of load this worker has run since the barrier."""
    started_at: float | None = None
    """Wall-clock epoch seconds the worker actually started (compare with startAt for skew)."""


class Result(Model):
    """The live or final outcome of a run (JSON shape in the module docstring)."""

    verdict: Verdict | None = None
    """passed, failed, stopped or errored; None while the run is in progress."""
    reason: str = ""
    """A sentence saying why: the failed thresholds, the lost workers, or who stopped it."""
    final: bool = False
    """False for live updates, True for the result of the whole run."""
    aborted: bool = False
    """True when an abortOnFail threshold ended the run early."""
    no_data: bool = False
    """True when the run failed as NoData: thresholds to judge, and no request or handshake completed."""
    start_at: float | None = None
    """Wall-clock epoch seconds of the start barrier."""
    elapsed: float = 0.0
    """Seconds of load since the barrier (the longest any worker has run)."""
    summary: Summary = Summary()
    by_request: list[RequestStats] = []
    """The per-request table: one row per (scenario, request name) and per WebSocket scenario."""
    by_request_missing: bool = False
    """Some worker's rows were lost (a summary too big for its termination message): rows undercount."""
    thresholds: list[ThresholdResult] = []
    workers: list[WorkerReport] = []
    failures: list[WorkerFailure] = []
    virtual_users_now: int = 0
    """Virtual users active at the last poll, summed over workers."""
    ws_connections_now: int = 0
    """WebSocket connections open at the last poll, summed over workers."""
    time_series: TimeSeries = TimeSeries()
    """The merged results per interval (``loadgen.timeseries``); empty when rebuilt from summaries."""

    def worker_counts(self) -> WorkerCounts:
        """The LoadTest ``status.workers`` block."""
        states = [w.state for w in self.workers]
        return WorkerCounts(
            total=len(states),
            ready=sum(s in ("ready", "scheduled") for s in states),
            running=states.count("running"),
            succeeded=sum(s in ("done", "stopped") for s in states),
            failed=sum(s in ("failed", LOST) for s in states),
            failures=self.failures,
        )


NO_DATA_REASON = ("NoData: no HTTP request got a response and no WebSocket handshake completed, so there "
                  "is nothing to judge the thresholds on (a threshold like http_reqs count < 1 allows this)")
"""The reason of a NoData failure; it starts with the word the operator's condition uses."""


def decide(
    *, errored: str | None, aborted: list[str], stopped: str | None, thresholds: Sequence[ThresholdResult],
    no_data: bool = False,
) -> tuple[Verdict, str]:
    """The one rule for a verdict: errored, then aborted (failed), then stopped, then NoData (failed),
    then the thresholds."""
    if errored:
        return Verdict.ERRORED, errored
    if aborted:
        return Verdict.FAILED, "aborted: " + "; ".join(aborted)
    if stopped:
        return Verdict.STOPPED, stopped
    failed = [describe(r) for r in thresholds if not r.ok]
    if no_data:
        also = f"; {len(failed)} of {len(thresholds)} thresholds failed too: " if failed else ""
        return Verdict.FAILED, NO_DATA_REASON + also + "; ".join(failed)
    if failed:
        return Verdict.FAILED, f"{len(failed)} of {len(thresholds)} thresholds failed: " + "; ".join(failed)
    return Verdict.PASSED, f"all {len(thresholds)} thresholds passed" if thresholds else "finished"


def too_many_failures(failures: Sequence[WorkerFailure], count: int, spec: LoadTestSpec) -> str | None:
    """The errored reason when more workers failed than ``toleratedWorkerFailures``, else None."""
    if not failures or (len(failures) <= spec.tolerated_worker_failures and len(failures) < count):
        return None
    lines = "; ".join(f"worker {f.index}: {f.message or f.reason}" for f in failures)
    return f"{len(failures)} of {count} workers failed ({lines})"


class _Worker:
    """The coordinator's book on one worker."""

    def __init__(self, index: int, url: str) -> None:
        self.index = index
        self.url = url.rstrip("/")
        self.state = "unknown"
        self.snapshot: dict[str, Any] | None = None
        self.elapsed = 0.0
        self.started_at: float | None = None
        self.misses = 0
        self.last_error = ""
        self.failure: WorkerFailure | None = None
        self.gone = False
        """Its process exited as asked (``Coordinator.worker_exited``): nothing left to poll."""

    @property
    def ended(self) -> bool:
        return self.state in FINAL_WORKER_STATES or self.state == LOST

    def report(self) -> WorkerReport:
        return WorkerReport(index=self.index, url=self.url, state=self.state, elapsed=self.elapsed,
                            started_at=self.started_at)


OnUpdate = Callable[["Result"], Awaitable[None] | None]
OnStartAt = Callable[[float], Awaitable[None] | None]


class Coordinator:
    """Starts, watches, judges and stops one load test's workers through their HTTP contract."""

    def __init__(
        self,
        endpoints: Sequence[str],
        token: str,
        spec: LoadTestSpec,
        *,
        start_delay: float = 2.0,
        poll_interval: float = 1.0,
        ready_timeout: float = 60.0,
        request_timeout: float = 5.0,
        rps_window: float = 3.0,
        lost_after: int = 3,
        finish_grace: float = 30.0,
        on_start_at: OnStartAt | None = None,
        on_update: OnUpdate | None = None,
    ) -> None:
        """
        ``endpoints``: worker base URLs, in index order. ``start_delay``: seconds
        between picking the barrier and the barrier itself (room for the POSTs to
        land). ``poll_interval``: seconds between snapshot polls. ``ready_timeout``:
        seconds to wait for every worker to be ready. ``request_timeout``: seconds
        per control request. ``rps_window``: seconds the live rps is averaged
        over. ``lost_after``: consecutive failed polls before a worker is lost.
        ``finish_grace``: seconds past duration + gracefulStop before the
        coordinator stops the workers itself, and again before it gives up on them.
        """
        if not endpoints:
            raise ValueError("a coordinator needs at least one worker endpoint")
        self.spec = spec
        self.workers = [_Worker(i, url) for i, url in enumerate(endpoints)]
        self._headers = {"Authorization": f"Bearer {token}"}
        self.start_delay = start_delay
        self.poll_interval = poll_interval
        self.ready_timeout = ready_timeout
        self.request_timeout = request_timeout
        self.rps_window = rps_window
        self.lost_after = lost_after
        self.finish_grace = finish_grace
        self.on_start_at = on_start_at
        self.on_update = on_update
        self.stop_event = asyncio.Event()
        """Set (or call ``stop()``) to stop the run early; the verdict is then *stopped*."""
        self.stop_reason = "stopped on request"
        self.start_at: float | None = None
        self.result = Result(workers=[w.report() for w in self.workers])
        """The latest result: live while running, final once ``run``/``attach`` returned."""
        self._aborted: list[str] = []
        self._stop_sent = False
        self._history: deque[tuple[float, int]] = deque()
        self.series = Recorder(interval=max(1.0, poll_interval))
        """The time series of the merged snapshots (one point per second of load, or per poll if slower)."""
        self._session: aiohttp.ClientSession | None = None

    # --- public controls ----------------------------------------------------

    def stop(self, reason: str = "stopped on request") -> None:
        """Stop the run early: every worker is told to stop; the verdict is *stopped*."""
        if not self.stop_event.is_set():
            self.stop_reason = reason
            self.stop_event.set()

    def worker_failed(self, index: int, reason: str, message: str = "") -> None:
        """A launcher reports worker ``index`` dead (process exited, pod failed); it is lost at once.

        Ignored once the worker's run has ended: exiting after the run is what workers do.
        """
        w = self.workers[index]
        if not w.ended:
            self._lose(w, reason, message)

    def worker_exited(self, index: int, code: int | None, message: str = "") -> None:
        """A launcher reports worker ``index``'s process gone: lost, unless it was obeying a stop.

        A worker stopped before its run began has nothing to read back and
        exits 0 at once; after ``stop()`` that is the worker's final state
        (``stopped``), not a failure that would turn a stopped test into an
        errored one.
        """
        w = self.workers[index]
        if w.ended:
            return
        if code == 0 and self.stop_event.is_set() and w.state in ("unknown", "ready", "scheduled"):
            w.state = "stopped"
            w.gone = True
            return
        self._lose(w, "Exited", message)

    # --- runs ---------------------------------------------------------------

    async def run(self) -> Result:
        """Wait for every worker, start them behind one barrier, watch, and return the final result."""
        async with self._client():
            missing = await self._wait_ready()
            if missing:
                await self._release()
                errored = "workers not ready within {:g}s: {}".format(
                    self.ready_timeout, "; ".join(f"worker {w.index} ({w.url}): {w.last_error}"
                                                  for w in missing))
                for w in missing:
                    self._lose(w, "NotReady", w.last_error or "did not become ready")
                return await self._finish(errored=errored)
            if self.stop_event.is_set():
                await self._release()
                return await self._finish()
            start_at = time.time() + self.start_delay
            if self.on_start_at is not None:
                await _maybe_await(self.on_start_at(start_at))
            await self._start_all(start_at, only_ready=False)
            return await self._watch()

    async def attach(self, start_at: float) -> Result:
        """Re-attach to workers already told to start at ``start_at``; never picks a new start time."""
        async with self._client():
            await self._poll_all()
            await self._start_all(start_at, only_ready=True)
            return await self._watch()

    # --- steps --------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _client(self) -> AsyncIterator[aiohttp.ClientSession]:
        timeout = aiohttp.ClientTimeout(total=self.request_timeout)
        connector = aiohttp.TCPConnector(limit=200)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector, headers=self._headers) as s:
            self._session = s
            try:
                yield s
            finally:
                self._session = None

    async def _request(self, w: _Worker, method: str, path: str) -> tuple[int, dict[str, Any]]:
        assert self._session is not None
        async with self._session.request(method, w.url + path) as resp:
            try:
                body = await resp.json(content_type=None)
            except (ValueError, aiohttp.ContentTypeError):
                body = {}
            return resp.status, body if isinstance(body, dict) else {}

    async def _wait_ready(self) -> list[_Worker]:
        """Poll until every worker is ready; return the ones that were not by the timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ready_timeout
        while True:
            await self._poll_all(count_misses=False)
            waiting = [w for w in self.workers if w.state != "ready"]
            if not waiting or self.stop_event.is_set():
                return []
            rejected = [w for w in waiting if w.last_error.startswith("401")]
            if rejected or loop.time() >= deadline:
                return waiting
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop_event.wait(),
                                       timeout=min(self.poll_interval / 4, max(0.0, deadline - loop.time())))

    async def _start_all(self, start_at: float, *, only_ready: bool) -> None:
        """POST the same ``start_at`` to every worker concurrently: the barrier."""
        self.start_at = start_at
        self.result.start_at = start_at
        targets = [w for w in self.workers if not w.ended and (not only_ready or w.state == "ready")]
        results = await asyncio.gather(
            *(self._request(w, "POST", f"/start?at={start_at!r}") for w in targets), return_exceptions=True
        )
        for w, outcome in zip(targets, results, strict=True):
            if isinstance(outcome, BaseException):
                self._lose(w, "StartFailed", f"POST /start failed: {_why(outcome)}")
            elif outcome[0] != 200:
                status, body = outcome
                message = f"POST /start answered {status}: {body.get('error', '')}"
                self._lose(w, "StartFailed", message.strip())
            else:
                w.state = outcome[1].get("state", "scheduled")
        late = time.time() - start_at
        if late > 0 and not only_ready:
            logger.warning("the start POSTs finished %.3fs after the barrier; workers started late "
                           "(raise start_delay)", late)
        logger.info("start barrier at %.3f sent to %d workers", start_at, len(targets))

    async def _poll_one(self, w: _Worker, count_misses: bool) -> None:
        try:
            status, body = await self._request(w, "GET", "/snapshot")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            w.last_error = _why(exc)
        else:
            if status == 200 and isinstance(body.get("snapshot"), dict):
                w.misses = 0
                w.last_error = ""
                w.state = body.get("state", "unknown")
                w.snapshot = body["snapshot"]
                w.elapsed = float(body.get("elapsed") or 0.0)
                w.started_at = body.get("startedAt")
                if w.state == "failed" and w.failure is None:
                    w.failure = WorkerFailure(index=w.index, reason="EngineFailed",
                                              message=str(body.get("error") or "the engine failed"))
                return
            w.last_error = f"{status} {'wrong token' if status == 401 else body.get('error', '')}".strip()
        if count_misses:
            w.misses += 1
            if w.misses >= self.lost_after:
                self._lose(w, "Unreachable", f"no snapshot in {w.misses} polls: {w.last_error}")

    async def _poll_all(self, count_misses: bool = True) -> None:
        live = [w for w in self.workers if w.state != LOST and not w.gone]
        await asyncio.gather(*(self._poll_one(w, count_misses) for w in live))

    def _lose(self, w: _Worker, reason: str, message: str) -> None:
        if w.state == LOST:
            return
        logger.warning("worker %d (%s) lost: %s", w.index, w.url, message)
        w.state = LOST
        w.failure = WorkerFailure(index=w.index, reason=reason, message=message)

    async def _watch(self) -> Result:
        """Poll until every worker has ended, stopping them on request, on abort, or past the deadline."""
        loop = asyncio.get_running_loop()
        assert self.start_at is not None
        run_seconds = self.spec.duration_seconds() + _graceful_stop(self.spec)
        deadline = loop.time() + max(0.0, self.start_at - time.time()) + run_seconds + self.finish_grace
        stop_deadline: float | None = None
        while True:
            await self._poll_all()
            result = self._evaluate(final=False)
            self.result = result
            if self.on_update is not None:
                await _maybe_await(self.on_update(result))
            if all(w.ended for w in self.workers):
                break
            if not self._stop_sent:
                if not self._aborted:
                    reasons = abort_reasons(self.spec.thresholds, result.thresholds, result.elapsed)
                    if reasons:
                        self._aborted = reasons
                        logger.warning("abortOnFail: %s", "; ".join(reasons))
                if self._aborted or self.stop_event.is_set() or loop.time() >= deadline:
                    await self._send_stop()
                    stop_deadline = loop.time() + _graceful_stop(self.spec) + self.finish_grace
            elif stop_deadline is not None and loop.time() >= stop_deadline:
                for w in self.workers:
                    if not w.ended:
                        self._lose(w, "DidNotStop", f"still {w.state} after being told to stop")
                break
            with contextlib.suppress(TimeoutError):
                # Wake early on stop() so the stop is sent within one loop turn.
                waiter = self.stop_event.wait() if not self._stop_sent else asyncio.sleep(self.poll_interval)
                await asyncio.wait_for(waiter, timeout=self.poll_interval)
        await self._release()
        return await self._finish()

    async def _send_stop(self) -> None:
        self._stop_sent = True
        await self._post_all("/stop", [w for w in self.workers if not w.ended])

    async def _release(self) -> None:
        """POST /stop to every reachable worker: ended ones exit instead of lingering."""
        await self._post_all("/stop", [w for w in self.workers if w.state != LOST])

    async def _post_all(self, path: str, workers: Sequence[_Worker]) -> None:
        results = await asyncio.gather(*(self._request(w, "POST", path) for w in workers),
                                       return_exceptions=True)
        for w, outcome in zip(workers, results, strict=True):
            if isinstance(outcome, BaseException):
                logger.debug("POST %s to worker %d failed: %s", path, w.index, _why(outcome))

    # --- results ------------------------------------------------------------

    def _merged(self) -> dict[str, Any]:
        snaps = [w.snapshot for w in self.workers if w.snapshot is not None]
        return merge_snapshots(snaps) if snaps else empty_snapshot([s.name for s in self.spec.scenarios])

    def _evaluate(self, *, final: bool) -> Result:
        merged = self._merged()
        elapsed = max((w.elapsed for w in self.workers), default=0.0)
        summary = summarize(merged, elapsed)
        if not final:
            summary.rps = round(self._windowed_rps(elapsed, summary.requests), 3)
        thresholds = evaluate(self.spec.thresholds, merged, elapsed)
        failures = [w.failure for w in self.workers if w.failure is not None]
        gauges = merged.get("gauges", {})
        if final:
            self.series.close(merged, elapsed)
        else:
            self.series.observe(merged, elapsed)
        result = Result(
            start_at=self.start_at,
            elapsed=round(elapsed, 3),
            summary=summary,
            by_request=by_request(merged, elapsed),
            by_request_missing=bool(merged.get("by_request_missing")),
            thresholds=thresholds,
            workers=[w.report() for w in self.workers],
            failures=failures,
            virtual_users_now=gauges.get("virtual_users", {}).get("current", 0),
            ws_connections_now=gauges.get("ws_connections", {}).get("current", 0),
            time_series=self.series.series(),
            final=final,
        )
        if final:
            stopped = self.stop_reason if self.stop_event.is_set() else None
            if any(w.ended and w.state != LOST for w in self.workers) or self.start_at is None:
                errored = too_many_failures(failures, len(self.workers), self.spec)
            else:
                errored = "no worker finished"
            missing = no_data(self.spec.thresholds, merged)
            result.verdict, result.reason = decide(errored=errored, aborted=self._aborted,
                                                   stopped=stopped, thresholds=thresholds, no_data=missing)
            result.aborted = result.verdict is Verdict.FAILED and bool(self._aborted)
            result.no_data = result.verdict is Verdict.FAILED and not result.aborted and missing
        return result

    def _windowed_rps(self, elapsed: float, requests: int) -> float:
        """Requests per second over the last ``rps_window`` seconds of load (by workers' elapsed)."""
        history = self._history
        if not history or elapsed > history[-1][0]:
            history.append((elapsed, requests))
        while len(history) > 2 and history[1][0] <= elapsed - self.rps_window:
            history.popleft()
        t0, n0 = history[0]
        return (requests - n0) / (elapsed - t0) if elapsed > t0 else 0.0

    async def _finish(self, errored: str | None = None) -> Result:
        result = self._evaluate(final=True)
        if errored:
            result.verdict, result.reason = Verdict.ERRORED, errored
        self.result = result
        logger.info("load test %s: %s", result.verdict, result.reason)
        if self.on_update is not None:
            await _maybe_await(self.on_update(result))
        return result


def result_from_summaries(
    texts: Sequence[str | None], spec: LoadTestSpec, *, start_at: float | None = None
) -> Result:
    """Rebuild the final result from the workers' summary files (termination messages), in index order.

    Each text is a worker's envelope (``worker.envelope``) or a bare compact
    snapshot; None or an unreadable one is a failure of that worker. Whether
    the run was stopped is read from the workers' states; it counts as aborted
    when an abortOnFail threshold fails on the merged data.
    """
    reports: list[WorkerReport] = []
    failures: list[WorkerFailure] = []
    snaps: list[dict[str, Any]] = []
    for position, text in enumerate(texts):
        if not text:
            reports.append(WorkerReport(index=position, state=LOST))
            failures.append(WorkerFailure(index=position, reason="NoSummary",
                                          message="the worker left no summary"))
            continue
        try:
            body = json.loads(text) if text.lstrip().startswith("{") else {"snapshot": text}
            snap = expand(body["snapshot"])
        except (ValueError, KeyError, TypeError) as exc:
            reports.append(WorkerReport(index=position, state=LOST))
            failures.append(WorkerFailure(index=position, reason="BadSummary",
                                          message=f"unreadable summary: {exc}"))
            continue
        index = int(body.get("index", position))
        state = str(body.get("state", "done"))
        snaps.append(snap)
        reports.append(WorkerReport(index=index, state=state, elapsed=float(body.get("elapsed") or 0.0)))
        if start_at is None and body.get("startAt") is not None:
            start_at = float(body["startAt"])
        if state == "failed":
            failures.append(WorkerFailure(index=index, reason="EngineFailed",
                                          message=str(body.get("error") or "the engine failed")))
    merged = merge_snapshots(snaps) if snaps else empty_snapshot([s.name for s in spec.scenarios])
    elapsed = max((r.elapsed for r in reports), default=0.0)
    thresholds = evaluate(spec.thresholds, merged, elapsed)
    stopped = any(r.state == "stopped" for r in reports)
    errored = too_many_failures(failures, len(texts), spec) if snaps else "no worker left a summary"
    aborted = abort_reasons(spec.thresholds, thresholds, elapsed) if stopped else []
    missing = no_data(spec.thresholds, merged)
    verdict, reason = decide(
        errored=errored,
        aborted=aborted,
        stopped="stopped before the end" if stopped else None,
        thresholds=thresholds,
        no_data=missing,
    )
    return Result(
        verdict=verdict, reason=reason, final=True, aborted=verdict is Verdict.FAILED and bool(aborted),
        no_data=verdict is Verdict.FAILED and not aborted and missing,
        start_at=start_at, elapsed=round(elapsed, 3),
        summary=summarize(merged, elapsed), thresholds=thresholds, workers=reports, failures=failures,
        by_request=by_request(merged, elapsed), by_request_missing=bool(merged.get("by_request_missing")),
    )


# --- helpers -----------------------------------------------------------------------------


def _graceful_stop(spec: LoadTestSpec) -> float:
    return parse_duration(spec.graceful_stop)


def _why(exc: BaseException) -> str:
    """A short reason for a failed request: the exception type and its message, never the token."""
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text


async def _maybe_await(value: Awaitable[None] | None) -> None:
    if inspect.isawaitable(value):
        await value
