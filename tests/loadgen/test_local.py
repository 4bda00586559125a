"""The local launcher: real worker processes on 127.0.0.1, a 0600 token, and processes watched."""

from __future__ import annotations

import asyncio
import signal
import stat
from pathlib import Path

import pytest

from mothership.api.loadtest import load_spec
from mothership.loadgen.coordinator import Coordinator, Verdict
from mothership.loadgen.local import CouldNotRun, Handoff, LocalRun, spawn, write_secret
from tests.conftest import LOADTEST_DOC, RunningDemoTarget


def test_the_token_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    write_secret(tmp_path / "token", "abc")
    assert stat.S_IMODE((tmp_path / "token").stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        write_secret(tmp_path / "token", "again")  # never reuses (or follows) an existing file


def test_a_handoff_is_a_sealed_in_memory_file_gone_when_closed() -> None:
    with Handoff() as handoff:
        path = handoff.add("token", b"s3cret")
        assert path.startswith("/dev/fd/") and Path(path).read_bytes() == b"s3cret"
        with pytest.raises(PermissionError), open(path, "wb"):
            pass  # sealed: a child cannot change what the others read
    assert handoff.fds == []


async def test_a_process_that_never_announces_is_could_not_run_with_its_stderr(tmp_path: Path) -> None:
    with pytest.raises(CouldNotRun) as info:
        await spawn("worker 0", ["worker", "--plan", str(tmp_path / "missing.yaml"), "--token-file", "x"])
    assert str(info.value).startswith("worker 0 did not start: mothership worker: ")
    assert "missing.yaml" in str(info.value)


async def test_a_worker_process_that_exits_mid_run_is_reported_at_once_by_the_launcher(
    demo_target: RunningDemoTarget, until
) -> None:
    spec = load_spec({**LOADTEST_DOC, "spec": {**LOADTEST_DOC["spec"], "duration": "20s",
                                              "toleratedWorkerFailures": 1}})
    coordinators: list[Coordinator] = []
    run = LocalRun(spec, demo_target.url, 2, poll_interval=0.1)
    task = asyncio.create_task(run.run(coordinators.append))
    await until(lambda: coordinators and coordinators[0].result.workers[1].state == "running", timeout=5)
    run.children[1].process.send_signal(signal.SIGKILL)
    await until(lambda: coordinators[0].result.failures, timeout=3)
    coordinators[0].stop()
    result = await asyncio.wait_for(task, timeout=5)
    [failure] = result.failures
    assert failure.index == 1 and failure.reason == "Exited"
    assert failure.message.startswith("process exited with code -9")
    assert result.verdict is Verdict.STOPPED


async def test_when_one_worker_cannot_start_the_others_are_stopped_too() -> None:
    spec = load_spec(LOADTEST_DOC)
    run = LocalRun(spec, "http://127.0.0.1:9", 2)
    original = run.worker_args

    def args(index: int, *rest: str) -> list[str]:
        out = original(index, *rest)
        return out if index == 0 else [*out, "--listen", "not-an-address"]

    run.worker_args = args  # type: ignore[method-assign]
    with pytest.raises(CouldNotRun, match="worker 1 did not start"):
        await run.run()
    [survivor] = run.children
    assert survivor.process.returncode is not None  # stopped, not orphaned
