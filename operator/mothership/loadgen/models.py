"""Load models: who starts an iteration, and when.

Closed model (``virtualUsers``, ramping ``stages``): a fixed population of
virtual users loops over its scenario, each starting its next iteration when
the last one (and its think time) is done. Ramps follow
``WorkerShare.virtual_users_at``: new virtual users start at once; surplus
ones finish their current iteration and park. A slow target slows a closed
model down, which is the point of a closed model and why it cannot measure
queueing.

Open model (``arrivalRate`` with stages): iterations start on a fixed
schedule whatever the target does (``WorkerShare.arrivals``: this worker's
stripe of the global schedule). Each arrival takes an idle virtual user from
a bounded pool (this worker's share of ``maxVirtualUsers``; by default the
peak arrival rate x 2 s, at most 100,000: ``LoadTestSpec.peak_virtual_users``).
When every virtual user is busy, the arrival is **dropped**: it is not queued
and never sent, only counted in ``dropped_iterations``. So a target slower
than ``pool / rate`` seconds gets fewer requests than the rate asks, and the
latencies describe only the iterations that ran: dropped arrivals would have
waited longest. That is why ``dropped_iterations`` is shown in the live view,
the summary, the status and on the verdict line, and can be thresholded
(``{metric: dropped_iterations, stat: count, lt: 1}``).

Latency of the iterations that run is measured from their scheduled arrival
time, not from when the request was finally written (a timer firing a little
early is clamped to the actual send, so no latency is negative): if the event
loop falls behind, the delay shows up in ``http_req_duration`` instead of
silently lowering the request rate.

Time is read from the engine's clock (``Context.now``) and waited on with the
loop's timers, so looptime can run a 60-second model in milliseconds.

This module knows nothing of the coordinator, the worker's HTTP server or Kubernetes.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from .http import HttpClient, PreparedRequest, Target, connect_backoff
from .plan import WorkerShare
from .stats import Stats
from .ws import PreparedSession, StopSignal, WsSession

Clock = Callable[[], float]


@dataclass
class Context:
    """What every virtual user of one worker shares: the prepared scenarios, Stats, clock and stop flag."""

    share: WorkerShare
    stats: Stats
    target: Target
    requests: list[list[PreparedRequest]]
    """Per scenario, its requests encoded once."""
    sessions: list[PreparedSession | None]
    """Per scenario, its WebSocket session, if any."""
    now: Clock
    loop: asyncio.AbstractEventLoop
    stopping: StopSignal = field(default_factory=StopSignal)
    """Set at the end of the duration (or on stop): no new iterations; WebSocket sessions close."""


class VirtualUser:
    """Runs iterations of scenarios: the HTTP requests (callback-driven), then the WebSocket session.

    Keeps one HttpClient per scenario it has run, so keep-alive connections
    survive across iterations.
    """

    __slots__ = ("_clients", "_on_done", "_pause", "_repeat", "_scenario", "_scheduled", "_session", "_task",
                 "_ws_backoff", "busy", "ctx", "slot")

    def __init__(self, ctx: Context, slot: int = 0) -> None:
        self.ctx = ctx
        self.slot = slot
        """Closed model: this virtual user's rank within its scenario on this worker."""
        self.busy = False
        self._clients: dict[int, HttpClient] = {}
        self._task: asyncio.Task[None] | None = None
        self._on_done: Callable[[VirtualUser], None] | None = None
        self._scenario = 0
        self._scheduled = 0.0
        self._repeat: Callable[[float], bool] | None = None
        """The closed model's keep-going predicate for this virtual user (made once)."""
        self._session: WsSession | None = None
        self._ws_backoff = 0.0
        """Like HttpClient's connect backoff, for WebSocket handshakes that failed in a row."""
        self._pause: asyncio.TimerHandle | None = None

    def iterate(self, scenario: int, scheduled: float, on_done: Callable[[VirtualUser], None],
                repeat: Callable[[float], bool] | None = None) -> None:
        """Start one iteration of ``scenario`` due at ``scheduled``; ``on_done(self)`` when it ends.

        ``repeat`` (closed model, HTTP-only scenarios) lets the HttpClient loop
        on its own while ``repeat(clock time)`` is true; see HttpClient.repeat.
        """
        self.busy = True
        self._scenario = scenario
        self._on_done = on_done
        ctx = self.ctx
        if ctx.requests[scenario]:
            client = self._clients.get(scenario)
            if client is None:
                client = self._clients[scenario] = HttpClient(
                    ctx.target, ctx.requests[scenario], ctx.stats, ctx.now, ctx.loop)
            client.repeat = repeat if ctx.sessions[scenario] is None else None
            client.iterate(scheduled, self._after_http)
        else:
            self._after_http()

    def _after_http(self) -> None:
        ctx = self.ctx
        session = ctx.sessions[self._scenario]
        if session is not None and not ctx.stopping.is_set():
            ws = self._session = WsSession(session, self._scenario, ctx.stats, ctx.now, ctx.stopping)
            self._task = ctx.loop.create_task(ws.run())
            self._task.add_done_callback(self._after_ws)
        else:
            self._done()

    def _after_ws(self, task: asyncio.Task[None]) -> None:
        self._task = None
        session, self._session = self._session, None
        if not task.cancelled():
            task.exception()  # retrieve it; a failed session was already counted
            if session is not None and session.transport is None and session.errored:
                # the handshake failed (refused, rejected, timed out): pause before the next
                # iteration, as HttpClient does after a failed connect (each attempt counted)
                self._ws_backoff, pause = connect_backoff(self._ws_backoff)
                self._pause = self.ctx.loop.call_later(pause, self._done)
                return
            self._ws_backoff = 0.0
            self._done()

    def _done(self) -> None:
        self._pause = None
        self.busy = False
        on_done = self._on_done
        if on_done is not None:
            on_done(self)

    def abort(self) -> asyncio.Task[None] | None:
        """Cancel whatever is in flight (after gracefulStop); return the cancelled session task, if any.

        In-flight requests are recorded as ``interrupted`` here (HttpClient.close);
        a pending WebSocket handshake records it when its cancelled task runs.
        """
        self._on_done = None
        if self._pause is not None:
            self._pause.cancel()
            self._pause = None
        for client in self._clients.values():
            client.close()
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
        else:
            task = None
        self.busy = False
        return task


class Model:
    """Common lifecycle: ``start`` at a clock time, ``drain`` at the end, ``abort`` after gracefulStop."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.users: list[VirtualUser] = []
        self.idle = asyncio.Event()
        """Set when no iteration is in flight after ``drain``."""
        self.start_time = 0.0

    def start(self, start_time: float) -> None:
        raise NotImplementedError

    def busy_count(self) -> int:
        return sum(1 for vu in self.users if vu.busy)

    def drain(self) -> None:
        """Start no new iterations; ``idle`` is set once the in-flight ones are done."""
        self.ctx.stopping.set()
        self._check_idle()

    def _check_idle(self) -> None:
        if self.ctx.stopping.is_set() and not any(vu.busy for vu in self.users):
            self.idle.set()

    def abort(self) -> list[asyncio.Task[None]]:
        """Cancel every iteration in flight; return the WebSocket session tasks it cancelled (await
        them so their records are in)."""
        cancelled = [t for t in (vu.abort() for vu in self.users) if t is not None]
        self.ctx.stats.virtual_users = 0
        self.idle.set()
        return cancelled


class ClosedModel(Model):
    """Virtual users loop over their scenario; their number follows the share's ramp."""

    RAMP_TICK = 0.05
    """Seconds between re-reading the ramp target (only when the profile ramps)."""

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        n = len(ctx.share.scenarios)
        self.by_scenario: list[list[VirtualUser]] = [[] for _ in range(n)]
        self.target: list[int] = [0] * n
        self.active = 0
        self.end_time = 0.0
        """No iteration starts at or after this clock time (start + duration)."""
        self._ticker: asyncio.Task[None] | None = None

    def start(self, start_time: float) -> None:
        self.start_time = start_time
        self.end_time = start_time + self.ctx.share.duration_seconds
        self._retarget()
        ramps = any(seg.start_value != seg.end_value for seg in self.ctx.share.profile)
        if ramps:
            self._ticker = self.ctx.loop.create_task(self._tick())

    async def _tick(self) -> None:
        ctx = self.ctx
        while not ctx.stopping.is_set():
            await asyncio.sleep(self.RAMP_TICK)
            if not ctx.stopping.is_set():
                self._retarget()

    def _retarget(self) -> None:
        ctx = self.ctx
        now = ctx.now()
        self.target[:] = ctx.share.virtual_users_at(now - self.start_time)  # in place: keep_going reads it
        for s, want in enumerate(self.target):
            pool = self.by_scenario[s]
            while len(pool) < want:
                vu = VirtualUser(ctx, slot=len(pool))
                pool.append(vu)
                self.users.append(vu)
            for vu in pool[:want]:
                if not vu.busy:
                    self._activate(vu, s, now)

    def _activate(self, vu: VirtualUser, scenario: int, now: float) -> None:
        self.active += 1
        self.ctx.stats.virtual_users = self.active
        if vu._repeat is None:
            slot, target = vu.slot, self.target

            def keep_going(t: float) -> bool:
                return t < self.end_time and slot < target[scenario]

            vu._repeat = keep_going
        vu.iterate(scenario, now, self._again, vu._repeat)

    def _again(self, vu: VirtualUser) -> None:
        ctx = self.ctx
        scenario = vu._scenario
        now = ctx.now()
        if not ctx.stopping.is_set() and vu.slot < self.target[scenario] and now < self.end_time:
            vu.iterate(scenario, now, self._again, vu._repeat)
            return
        self.active -= 1
        ctx.stats.virtual_users = self.active
        self._check_idle()

    def drain(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        self.end_time = -math.inf  # every keep_going answers no from now on
        super().drain()

    def abort(self) -> list[asyncio.Task[None]]:
        if self._ticker is not None:
            self._ticker.cancel()
        self.end_time = -math.inf
        self.active = 0
        return super().abort()


class OpenModel(Model):
    """Iterations start on this worker's arrival schedule, each on an idle virtual user of a bounded pool."""

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.free: list[VirtualUser] = []
        self.in_flight = 0
        self._scheduler: asyncio.Task[None] | None = None

    def start(self, start_time: float) -> None:
        self.start_time = start_time
        self._scheduler = self.ctx.loop.create_task(self._schedule())

    async def _schedule(self) -> None:
        ctx = self.ctx
        now = ctx.now
        start = self.start_time
        pool_size = ctx.share.max_virtual_users
        for offset, scenario in ctx.share.arrivals():
            due = start + offset
            delay = due - now()
            if delay > 0:
                await asyncio.sleep(delay)
            if ctx.stopping.is_set():
                return
            if self.free:
                vu = self.free.pop()
            elif len(self.users) < pool_size:
                vu = VirtualUser(ctx, slot=len(self.users))
                self.users.append(vu)
            else:
                ctx.stats.dropped_iterations += 1
                continue
            self.in_flight += 1
            ctx.stats.virtual_users = self.in_flight
            vu.iterate(scenario, due, self._finished)

    def _finished(self, vu: VirtualUser) -> None:
        self.in_flight -= 1
        self.ctx.stats.virtual_users = self.in_flight
        self.free.append(vu)
        self._check_idle()

    def drain(self) -> None:
        if self._scheduler is not None:
            self._scheduler.cancel()
        super().drain()

    def abort(self) -> list[asyncio.Task[None]]:
        if self._scheduler is not None:
            self._scheduler.cancel()
        self.in_flight = 0
        return super().abort()


def model_for(ctx: Context) -> Model:
    return OpenModel(ctx) if ctx.share.open_model else ClosedModel(ctx)
