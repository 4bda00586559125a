"""Run one worker's share of a LoadTest: the engine's single entry point.

``run`` starts load the moment it is called (the worker calls it at the
start barrier), applies it for ``share.duration_seconds``, then lets
in-flight iterations finish for up to ``share.graceful_stop_seconds`` and
cancels what is left: each request or WebSocket handshake still in flight then
counts as one ``interrupted`` error (a target that never answers must not look
like a target that was never asked). Setting ``stop`` ends the load early along the same
path. Everything is recorded into the given Stats; the caller snapshots it.

Clock: durations and latencies are read from one monotonic clock. Under
uvloop that is ``time.monotonic`` (uvloop's ``loop.time()`` is cached per
loop turn and only millisecond-precise, too coarse for sub-millisecond
latencies; both read CLOCK_MONOTONIC); on any other loop it is
``loop.time()``, so looptime can drive the models in tests.

Garbage collection: while load runs, the collector's thresholds are raised
and setup's objects frozen (``gcpause.FewerPauses``), so 20,000 held sessions
do not stop the loop for seconds at a time.

This module knows nothing of the coordinator, the worker's HTTP contract or
Kubernetes: it gets a spec, a share, a Stats and an Event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable

from ..api.loadtest import LoadTestSpec
from .gcpause import FewerPauses
from .http import parse_target, prepare
from .models import Context, Model, model_for
from .plan import WorkerShare
from .stats import Stats
from .ws import SeqIds, prepare_session

logger = logging.getLogger(__name__)


UNWIND_SECONDS = 1.0
"""How long the engine waits, after cancelling what was in flight at the end, for it to record itself."""


def clock_for(loop: asyncio.AbstractEventLoop) -> Callable[[], float]:
    """The engine's clock on ``loop``: time.monotonic under uvloop, else loop.time (see module doc)."""
    if type(loop).__module__.startswith("uvloop"):
        return time.monotonic
    return loop.time


def build_context(spec: LoadTestSpec, share: WorkerShare, stats: Stats, base_url: str,
                  loop: asyncio.AbstractEventLoop, ssl_context: ssl.SSLContext | None = None) -> Context:
    """Encode every scenario once: request bytes, WebSocket URLs and payloads.

    One ``SeqIds`` for all scenarios of this worker, striped by worker index, so
    every ``{seq}`` id of the test is unique (sessions of any scenario may share a room).
    Each request records into its Stats row (scenario, name), added here if
    ``stats`` was not made by ``Stats.for_scenarios``; so is each WebSocket row.
    """
    for i, sc in enumerate(spec.scenarios):
        if sc.websocket is not None:
            stats.ws_for(i, sc.websocket.path)
    target = parse_target(base_url, ssl_context)
    ids = SeqIds(share.index, share.count)
    return Context(
        share=share,
        stats=stats,
        target=target,
        requests=[[prepare(target, r, stats.row(i, r.row_name))
                   for r in sc.requests] for i, sc in enumerate(spec.scenarios)],
        sessions=[prepare_session(base_url, sc.websocket, ssl_context, ids) if sc.websocket else None
                  for sc in spec.scenarios],
        now=clock_for(loop),
        loop=loop,
    )


async def _first(*aws: asyncio.Future[object] | asyncio.Task[object], timeout: float) -> None:
    """Wait until any of ``aws`` is done or ``timeout`` seconds pass."""
    await asyncio.wait(aws, timeout=max(timeout, 0.0), return_when=asyncio.FIRST_COMPLETED)


async def run(spec: LoadTestSpec, share: WorkerShare, stats: Stats, *, base_url: str,
              stop: asyncio.Event, ssl_context: ssl.SSLContext | None = None) -> None:
    """Apply ``share`` of ``spec`` against ``base_url`` now; return within duration + gracefulStop.

    ``ssl_context`` overrides certificate verification for https/wss targets.
    """
    loop = asyncio.get_running_loop()
    ctx = build_context(spec, share, stats, base_url, loop, ssl_context)
    model = model_for(ctx)
    with FewerPauses():  # after setup: see gcpause.py
        await _run(ctx, model, stop)


async def _run(ctx: Context, model: Model, stop: asyncio.Event) -> None:
    share = ctx.share
    loop = ctx.loop
    start = ctx.now()
    logger.debug("worker %d/%d starting load for %.3fs", share.index, share.count, share.duration_seconds)
    stop_wait: asyncio.Task[object] = loop.create_task(stop.wait())
    try:
        model.start(start)
        await _first(stop_wait, timeout=share.duration_seconds)
        model.drain()
        idle_wait: asyncio.Task[object] = loop.create_task(model.idle.wait())
        try:
            await _first(idle_wait, timeout=share.graceful_stop_seconds)
        finally:
            idle_wait.cancel()
    finally:
        stop_wait.cancel()
        cancelled = model.abort()
        # let aborted transports and cancelled sessions run their callbacks: a cancelled handshake
        # records itself as interrupted, and the caller's final snapshot must include it
        with contextlib.suppress(asyncio.CancelledError):
            if cancelled:
                await asyncio.wait(cancelled, timeout=UNWIND_SECONDS)
            await asyncio.sleep(0)
    logger.debug("worker %d/%d done after %.3fs", share.index, share.count, ctx.now() - start)
