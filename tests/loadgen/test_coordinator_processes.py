"""The coordinator with real ``mothership worker`` processes and the real engine, against the demo target.

What only real processes show: totals equal what the target itself counted,
every process starts within a few milliseconds of the barrier, and a worker
killed mid-run is reported while the rest still produce a summary.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mothership.api.loadtest import LoadTestSpec, load_spec
from mothership.loadgen.coordinator import Coordinator, Verdict, result_from_summaries
from mothership.loadgen.local import LocalRun, Spawned, spawn, stop_processes, write_secret
from tests.conftest import RunningDemoTarget


def mixed_spec(url: str, **changes: Any) -> LoadTestSpec:
    return load_spec({
        "kind": "LoadTest", "metadata": {"name": "procs"},
        "spec": {
            "target": {"url": url}, "virtualUsers": 4, "duration": "1s", "gracefulStop": "1s",
            "scenarios": [
                {"name": "browse", "requests": [{"path": "/api/items", "thinkTime": "10ms"},
                                                {"method": "POST", "path": "/api/items", "body": "{}",
                                                 "expectStatus": [201]}]},
                {"name": "echo", "websocket": {"path": "/ws/echo", "interval": "50ms", "hold": "400ms"}},
            ],
            "thresholds": [{"metric": "errors", "stat": "rate", "lt": "1%"}],
            **changes,
        },
    })


@pytest.fixture
async def workers(tmp_path: Path) -> AsyncIterator[Any]:
    """Factory: spawn N real worker processes for a spec; yields (urls, token, processes)."""
    spawned: list[Spawned] = []

    async def start(spec: LoadTestSpec, count: int) -> tuple[list[str], str, list[Spawned]]:
        token = secrets.token_urlsafe(16)
        write_secret(tmp_path / "token", token)
        run = LocalRun(spec, spec.target.url or "", count)
        plan = tmp_path / "plan.json"
        plan.write_text(spec.model_dump_json(by_alias=True, exclude_none=True))
        children = await asyncio.gather(*(
            spawn(f"worker {i}", run.worker_args(i, str(plan), str(tmp_path / "token"),
                                                 str(tmp_path / f"summary-{i}.json")))
            for i in range(count)))
        spawned.extend(children)
        return [c.url for c in children], token, list(children)

    yield start
    await stop_processes(spawned, timeout=2)


FAST = {"start_delay": 0.5, "poll_interval": 0.1, "ready_timeout": 10.0}


async def test_two_worker_processes_start_together_and_totals_match_the_target(
    demo_target: RunningDemoTarget, workers: Any, tmp_path: Path
) -> None:
    spec = mixed_spec(demo_target.url)
    urls, token, _ = await workers(spec, 2)
    # A start delay with room for the POSTs to land before the barrier even on a loaded machine.
    result = await Coordinator(urls, token, spec, **{**FAST, "start_delay": 1.0}).run()

    assert result.verdict is Verdict.PASSED, result.reason
    served = demo_target.target.stats()
    s = result.summary
    assert s.requests > 0 and s.websocket.sessions > 0 and s.websocket.messages_sent > 0
    assert s.requests == served["http"]["requests"]
    assert s.websocket.sessions == served["websocket"]["sessions"]
    assert s.websocket.messages_sent == served["websocket"]["messagesReceived"]
    assert s.websocket.messages_received == served["websocket"]["messagesSent"]
    # A true barrier: both processes started at the one start_at they were all sent.
    assert result.start_at is not None
    skews = [w.started_at - result.start_at for w in result.workers if w.started_at is not None]
    # Each process sleeps on its own clock until the one shared start time; what is left is OS
    # scheduling, which on a loaded 2-core CI machine reaches tens of milliseconds. A sequential
    # unpause would instead add one full request per worker; the shared `at` is asserted above.
    assert len(skews) == 2 and all(-0.002 < skew < 0.05 for skew in skews), skews
    assert max(skews) - min(skews) < 0.05, skews
    # Each worker's termination message rebuilds the same totals.
    texts = [(tmp_path / f"summary-{i}.json").read_text() for i in range(2)]
    rebuilt = result_from_summaries(texts, spec)
    assert rebuilt.verdict is Verdict.PASSED and rebuilt.summary.requests == s.requests


async def test_a_worker_process_killed_mid_run_is_reported_and_a_summary_is_still_produced(
    demo_target: RunningDemoTarget, workers: Any, until
) -> None:
    spec = mixed_spec(demo_target.url, duration="2s")
    urls, token, children = await workers(spec, 2)
    coordinator = Coordinator(urls, token, spec, lost_after=2, **FAST)
    task = asyncio.create_task(coordinator.run())
    await until(lambda: coordinator.result.workers[1].state == "running"
                and coordinator.result.summary.requests > 0, timeout=5)
    children[1].process.send_signal(signal.SIGKILL)
    result = await asyncio.wait_for(task, timeout=5)

    assert result.verdict is Verdict.ERRORED
    [failure] = result.failures
    assert failure.index == 1 and failure.reason == "Unreachable"
    assert "Cannot connect" in failure.message or "Connect" in failure.message
    assert [w.state for w in result.workers] == ["done", "lost"]
    assert result.summary.requests > 0 and result.elapsed >= 2
    assert "1 of 2 workers failed (worker 1:" in result.reason
