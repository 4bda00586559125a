"""The coordinator against in-process workers that speak the real HTTP contract.

The workers' engine is scripted (conftest.scripted_engine) so counts are
known exactly; test_coordinator_processes.py runs real worker processes.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest

from mothership.api.loadtest import LoadTestSpec, load_spec
from mothership.loadgen.coordinator import Coordinator, Result, Verdict, result_from_summaries
from mothership.loadgen.worker import envelope
from tests.conftest import LOADTEST_DOC, TOKEN, scripted_engine

FAST = {"start_delay": 0.2, "poll_interval": 0.05, "ready_timeout": 2.0, "request_timeout": 1.0,
        "finish_grace": 2.0}


def spec_with(**changes: Any) -> LoadTestSpec:
    doc = {**LOADTEST_DOC, "spec": {**LOADTEST_DOC["spec"], **changes}}
    return load_spec(doc)


def closed_port() -> str:
    """A 127.0.0.1 URL nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def test_two_workers_start_together_and_their_counts_add_up(serve_worker) -> None:
    engines = [scripted_engine(requests=10, seconds=0.1), scripted_engine(requests=7, seconds=0.1)]
    workers = [await serve_worker(engine_run=e, index=i, count=2) for i, e in enumerate(engines)]
    seen_at_hook: list[tuple[float, list[str]]] = []
    updates: list[Result] = []

    async def on_start_at(start_at: float) -> None:
        seen_at_hook.append((start_at, [w.worker.state.value for w in workers]))

    # A start delay with room for the POSTs to land before the barrier even on a loaded machine.
    coordinator = Coordinator([w.url for w in workers], TOKEN, workers[0].worker.spec,
                              on_start_at=on_start_at, on_update=updates.append,
                              **{**FAST, "start_delay": 1.0})
    result = await coordinator.run()

    assert result.verdict is Verdict.PASSED and result.final
    assert result.summary.requests == 17
    assert [r.state for r in result.workers] == ["done", "done"]
    # The hook ran before any worker was told: restart safety.
    assert seen_at_hook == [(result.start_at, ["ready", "ready"])]
    # One barrier for all: every engine started within a few ms of it.
    assert result.start_at is not None
    skews = [e.calls[0] - result.start_at for e in engines]
    assert all(abs(s) < 0.01 for s in skews), skews
    assert max(skews) - min(skews) < 0.005, skews
    assert [r.started_at for r in result.workers] == pytest.approx([e.calls[0] for e in engines], abs=1e-3)
    assert updates[-1] == result and any(not u.final for u in updates)
    assert all(w.lifetime for w in workers)
    await asyncio.wait_for(asyncio.gather(*(w.lifetime for w in workers)), timeout=2)  # released


async def test_workers_not_ready_in_time_are_named_and_the_result_is_errored(serve_worker) -> None:
    ready = await serve_worker()
    missing = closed_port()
    coordinator = Coordinator([ready.url, missing], TOKEN, ready.worker.spec,
                              **{**FAST, "ready_timeout": 0.3})
    result = await coordinator.run()
    assert result.verdict is Verdict.ERRORED
    assert "workers not ready within 0.3s" in result.reason and f"worker 1 ({missing})" in result.reason
    assert [(f.index, f.reason) for f in result.failures] == [(1, "NotReady")]
    assert result.start_at is None
    assert await asyncio.wait_for(ready.lifetime, timeout=2) == 0  # the ready one was released


async def test_a_wrong_token_errors_at_once_without_waiting_for_the_timeout(serve_worker) -> None:
    w = await serve_worker()
    started = time.monotonic()
    result = await Coordinator([w.url], "not-the-token", w.worker.spec, **{**FAST, "ready_timeout": 10}).run()
    assert result.verdict is Verdict.ERRORED and "401 wrong token" in result.reason
    assert time.monotonic() - started < 2


async def test_stop_stops_every_worker_and_keeps_the_partial_summary(serve_worker, until) -> None:
    workers = [await serve_worker(engine_run=scripted_engine(requests=1000, seconds=100), index=i, count=2)
               for i in range(2)]
    coordinator = Coordinator([w.url for w in workers], TOKEN, workers[0].worker.spec, **FAST)
    task = asyncio.create_task(coordinator.run())
    await until(lambda: coordinator.result.summary.requests >= 4, timeout=3)
    coordinator.stop()
    result = await asyncio.wait_for(task, timeout=3)
    assert result.verdict is Verdict.STOPPED and result.reason == "stopped on request"
    assert [r.state for r in result.workers] == ["stopped", "stopped"]
    assert result.summary.requests >= 4
    assert result.summary.requests == sum(w.worker.stats.http_reqs_total() for w in workers)


async def test_abort_on_fail_stops_the_run_early_with_a_failed_verdict(serve_worker) -> None:
    spec = spec_with(duration="30s", thresholds=[
        {"metric": "http_req_duration", "stat": "p95", "lt": "1ms", "abortOnFail": True,
         "delayAbortEval": "0s"}])
    w = await serve_worker(spec=spec, engine_run=scripted_engine(requests=1000, seconds=30, latency=0.05))
    result = await asyncio.wait_for(Coordinator([w.url], TOKEN, spec, **FAST).run(), timeout=4)
    assert result.verdict is Verdict.FAILED
    assert result.reason.startswith("aborted: http_req_duration p95 ")
    assert result.aborted
    assert result.workers[0].state == "stopped" and result.elapsed < 2
    assert not result.thresholds[0].ok


async def test_a_threshold_failing_at_the_end_fails_the_run_and_says_which(serve_worker) -> None:
    spec = spec_with(thresholds=[{"metric": "http_reqs", "stat": "count", "gte": "5"},
                                 {"metric": "http_reqs", "stat": "count", "gt": "100"}])
    w = await serve_worker(spec=spec, engine_run=scripted_engine(requests=5, seconds=0.05))
    result = await Coordinator([w.url], TOKEN, spec, **FAST).run()
    assert result.verdict is Verdict.FAILED
    assert [t.ok for t in result.thresholds] == [True, False]
    assert result.reason == "1 of 2 thresholds failed: http_reqs count 5 !> 100"


@pytest.mark.parametrize(("tolerated", "verdict"), [(0, Verdict.ERRORED), (1, Verdict.PASSED)])
async def test_a_worker_that_dies_is_reported_and_the_rest_still_produce_a_summary(
    serve_worker, until, tolerated: int, verdict: Verdict
) -> None:
    spec = spec_with(toleratedWorkerFailures=tolerated)
    survivor = await serve_worker(spec=spec, engine_run=scripted_engine(requests=20, seconds=0.4), count=2)
    doomed = await serve_worker(spec=spec, engine_run=scripted_engine(requests=1000, seconds=100),
                                index=1, count=2)
    coordinator = Coordinator([survivor.url, doomed.url], TOKEN, spec, **{**FAST, "lost_after": 2})
    task = asyncio.create_task(coordinator.run())
    await until(lambda: coordinator.result.workers[1].state == "running"
                and coordinator.result.summary.requests > 0, timeout=3)
    doomed.lifetime.cancel()  # the worker's server goes away mid-run
    result = await asyncio.wait_for(task, timeout=4)
    assert result.verdict is verdict
    [failure] = result.failures
    assert failure.index == 1 and failure.reason == "Unreachable" and "no snapshot" in failure.message
    assert [r.state for r in result.workers] == ["done", "lost"]
    assert result.summary.requests >= 20  # the survivor's 20 plus what the lost one did before
    if verdict is Verdict.ERRORED:
        assert "1 of 2 workers failed (worker 1: no snapshot in 2 polls" in result.reason


async def test_a_launcher_can_report_a_dead_worker_without_waiting_for_polls(serve_worker, until) -> None:
    a = await serve_worker(engine_run=scripted_engine(requests=5, seconds=0.1), count=2)
    b = await serve_worker(engine_run=scripted_engine(requests=1000, seconds=100), index=1, count=2)
    coordinator = Coordinator([a.url, b.url], TOKEN, a.worker.spec, **FAST)
    task = asyncio.create_task(coordinator.run())
    await until(lambda: coordinator.result.workers[1].state == "running", timeout=3)
    coordinator.worker_failed(1, "Exited", "process exited with code -9")
    result = await asyncio.wait_for(task, timeout=3)
    assert [(f.index, f.reason, f.message) for f in result.failures] == [
        (1, "Exited", "process exited with code -9")]


async def test_attach_reuses_the_known_start_time_and_starts_only_workers_still_ready(
    serve_worker, until
) -> None:
    engines = [scripted_engine(requests=3, seconds=0.1), scripted_engine(requests=4, seconds=0.1)]
    workers = [await serve_worker(engine_run=e, index=i, count=2) for i, e in enumerate(engines)]
    start_at = time.time() + 0.2
    workers[0].worker.schedule(start_at)  # told before the "restart"; worker 1 never was
    picked: list[float] = []
    coordinator = Coordinator([w.url for w in workers], TOKEN, workers[0].worker.spec,
                              on_start_at=picked.append, **FAST)
    result = await coordinator.attach(start_at)
    assert picked == [] and result.start_at == start_at
    assert [w.worker.start_at for w in workers] == [start_at, start_at]
    assert result.verdict is Verdict.PASSED and result.summary.requests == 7


async def test_live_rps_is_over_the_last_window_and_the_final_rps_over_the_run(serve_worker) -> None:
    w = await serve_worker(engine_run=scripted_engine(requests=40, seconds=0.4))
    live: list[float] = []
    coordinator = Coordinator([w.url], TOKEN, w.worker.spec, on_update=lambda r: live.append(r.summary.rps),
                              **{**FAST, "rps_window": 0.2})
    result = await coordinator.run()
    assert result.summary.rps == pytest.approx(40 / result.elapsed, rel=5e-3)  # elapsed is rounded to ms
    assert max(live) > 50  # about 100/s while requests flow


@pytest.mark.parametrize(("thresholds", "verdict", "no_data"), [
    ([{"metric": "http_req_duration", "stat": "p95", "lt": "1s"}], Verdict.FAILED, True),
    ([{"metric": "errors", "stat": "rate", "lt": "1%"}, {"metric": "http_reqs", "stat": "count", "lt": "1"}],
     Verdict.PASSED, False),  # zero is fine, the spec says so
    ([], Verdict.PASSED, False),  # nothing to judge: no verdict to withhold
])
async def test_a_run_that_completed_nothing_fails_as_no_data_unless_a_threshold_allows_it(
    serve_worker, thresholds: list[dict[str, str]], verdict: Verdict, no_data: bool,
) -> None:
    spec = spec_with(thresholds=thresholds)
    w = await serve_worker(spec=spec, engine_run=scripted_engine(requests=0))
    result = await asyncio.wait_for(Coordinator([w.url], TOKEN, spec, **FAST).run(), timeout=4)
    assert (result.verdict, result.no_data) == (verdict, no_data)
    assert result.reason.startswith("NoData: ") is no_data
    assert result.wire()["noData"] is no_data


def test_a_rebuilt_result_fails_as_no_data_when_only_errors_were_recorded() -> None:
    from mothership.api.vocabulary import ErrorClass
    from mothership.loadgen.stats import Stats

    spec = spec_with(thresholds=[{"metric": "http_req_duration", "stat": "p95", "lt": "20s"}])
    stats = Stats(["browse"])
    stats.error(0, ErrorClass.INTERRUPTED, 15.0)  # a hung target: asked, never answered
    result = result_from_summaries([envelope("done", 0, 1, 15.0, 100.0, stats.snapshot())], spec)
    assert result.thresholds[0].ok and result.verdict is Verdict.FAILED and result.no_data
    assert result.summary.errors_by_class == {"interrupted": 1} and result.summary.error_rate == 1.0


def test_result_from_summaries_reports_missing_and_unreadable_messages() -> None:
    spec = spec_with(toleratedWorkerFailures=2,
                     thresholds=[{"metric": "http_reqs", "stat": "count", "gte": "1"}])
    from mothership.loadgen.stats import Stats

    stats = Stats(["browse"])
    stats.http(0, 200, 0.01, 1, 1)
    good = envelope("done", 0, 3, 1.5, 100.0, stats.snapshot())
    result = result_from_summaries([good, None, "garbage"], spec)
    assert result.verdict is Verdict.PASSED and result.summary.requests == 1
    assert [(f.index, f.reason) for f in result.failures] == [(1, "NoSummary"), (2, "BadSummary")]
    assert result.start_at == 100.0 and result.elapsed == 1.5
    assert result.worker_counts().failed == 2 and result.worker_counts().succeeded == 1
    assert result_from_summaries([None], spec).verdict is Verdict.ERRORED


def test_result_shape_is_camel_case_json_and_verdicts_map_to_phases() -> None:
    wire = Result(verdict=Verdict.STOPPED, final=True).wire()
    assert {"verdict", "reason", "final", "elapsed", "summary", "thresholds", "workers", "failures",
            "virtualUsersNow", "wsConnectionsNow"} <= set(wire)
    assert [v.phase.value for v in Verdict] == ["Passed", "Failed", "Stopped", "Errored"]


async def test_a_worker_process_that_exits_0_obeying_a_stop_before_its_start_is_stopped_not_lost(
    serve_worker, until
) -> None:
    """Stopped while scheduled, a worker has nothing to read back and exits at once: that is its
    final state, so a test stopped in the start delay ends stopped, not errored."""
    workers = [await serve_worker(engine_run=scripted_engine(requests=5, seconds=5), index=i, count=2)
               for i in range(2)]
    coordinator = Coordinator([w.url for w in workers], TOKEN, workers[0].worker.spec,
                              **{**FAST, "start_delay": 2.0})
    task = asyncio.create_task(coordinator.run())
    await until(lambda: all(w.state == "scheduled" for w in coordinator.result.workers), timeout=3)
    coordinator.stop("stopped by SIGTERM")
    for i, w in enumerate(workers):  # what the local launcher's watcher reports as each process ends
        await asyncio.wait_for(w.lifetime, timeout=3)
        coordinator.worker_exited(i, 0, "process exited with code 0")
    result = await asyncio.wait_for(task, timeout=5)
    assert result.verdict is Verdict.STOPPED and result.failures == []
    assert [w.state for w in result.workers] == ["stopped", "stopped"]


async def test_a_worker_process_that_exits_on_its_own_is_lost_whatever_its_code(serve_worker, until) -> None:
    w = await serve_worker(engine_run=scripted_engine(requests=1000, seconds=100))
    coordinator = Coordinator([w.url], TOKEN, w.worker.spec, **FAST)
    task = asyncio.create_task(coordinator.run())
    await until(lambda: coordinator.result.workers[0].state == "running", timeout=3)
    coordinator.worker_exited(0, 0, "process exited with code 0")  # no stop was asked
    result = await asyncio.wait_for(task, timeout=5)
    assert [(f.reason, f.message) for f in result.failures] == [("Exited", "process exited with code 0")]
    assert result.verdict is Verdict.ERRORED
