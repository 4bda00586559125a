"""``mothership loadtest run`` is a good citizen: whatever ends it, nothing outlives it.

Real processes only: the runner, its worker processes and its ``--demo-target``
child. SIGTERM and SIGHUP (what ``timeout``, CI cancellation and a closed
terminal send) stop the test like Ctrl-C, with a partial summary, ``--out``
written and exit 2; a second signal aborts. Even ``kill -9`` of the runner
leaves no child running, and no run writes a temporary file (``$TMPDIR``
stays empty throughout).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from tests.cli.test_loadtest_run import free_port_pair, write_spec

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def children_of(pid: int) -> set[int]:
    """Live (non-zombie) processes whose parent is ``pid``, from /proc."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if fields[0] != "Z" and int(fields[1]) == pid:
            found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


class Runner:
    """``mothership loadtest run --demo-target --workers 2`` as a real process, with its own TMPDIR."""

    def __init__(self, tmp_path: Path, **spec: object) -> None:
        self.spec = write_spec(tmp_path, **{"duration": "30s", **spec})
        self.out = tmp_path / "out" / "summary.json"
        self.out.parent.mkdir()
        self.tmpdir = tmp_path / "tmpdir"
        self.tmpdir.mkdir()
        self.process: asyncio.subprocess.Process | None = None
        self.metrics_port = free_port_pair()

    async def start(self) -> asyncio.subprocess.Process:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mothership", "loadtest", "run", "-f", str(self.spec), "--demo-target",
            "--workers", "2", "--no-live", "--out", str(self.out), "--metrics-port", str(self.metrics_port),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "TMPDIR": str(self.tmpdir)},
        )
        return self.process

    async def children(self, until, count: int = 3) -> set[int]:
        """Wait until the demo target and both workers run; their pids."""
        assert self.process is not None
        pid = self.process.pid

        def enough() -> set[int] | None:
            kids = children_of(pid)
            return kids if len(kids) >= count else None

        return await until(enough, timeout=30, interval=0.05, what="the runner's 3 children")

    async def loading(self, until) -> None:
        """Wait until worker 0's /metrics counts HTTP requests: the test is running, not starting."""
        import aiohttp

        async def requests() -> float:
            try:
                async with aiohttp.ClientSession() as http, \
                        http.get(f"http://127.0.0.1:{self.metrics_port}/metrics") as response:
                    text = await response.text()
            except (aiohttp.ClientError, OSError):
                return 0.0
            return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                       if line.startswith("mothership_loadtest_http_reqs_total{"))

        await until(requests, timeout=30, interval=0.1, what="worker 0 to count requests")

    def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()


@pytest.fixture
async def runner(tmp_path: Path):
    r = Runner(tmp_path)
    yield r
    r.kill()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
async def test_sigterm_and_sighup_stop_the_test_like_ctrl_c(
    runner: Runner, until, sig: signal.Signals
) -> None:
    process = await runner.start()
    kids = await runner.children(until)
    await runner.loading(until)
    assert not any(runner.tmpdir.iterdir()), "the runner wrote a temporary file"
    process.send_signal(sig)
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=20)

    assert process.returncode == 2, stderr.decode()
    assert f"STOPPED  stopped by {sig.name}" in stdout.decode()
    assert f"stopping on {sig.name} (again to abort)" in stderr.decode()
    body = json.loads(runner.out.read_text())
    assert body["verdict"] == "stopped" and body["summary"]["requests"] > 0 and body["elapsed"] < 20
    assert f"demo target counted: {body['summary']['requests']:,} HTTP requests" in stdout.decode()
    await until(lambda: not any(alive(k) for k in kids), timeout=5, what="children to exit")
    assert not any(runner.tmpdir.iterdir())
    assert sorted(p.name for p in runner.out.parent.iterdir()) == ["summary.json"]  # no temp file left


async def test_a_signal_while_the_workers_start_still_ends_stopped_with_out_written(
    runner: Runner, until
) -> None:
    process = await runner.start()
    await until(lambda: children_of(process.pid), timeout=30, interval=0.02, what="the first child")
    process.send_signal(signal.SIGTERM)
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 2, stderr.decode()
    assert "STOPPED  stopped by SIGTERM" in stdout.decode()
    assert json.loads(runner.out.read_text())["verdict"] == "stopped"


async def test_a_second_signal_aborts_at_once_and_leaves_no_child(tmp_path: Path, until) -> None:
    # Requests of 20 s and a grace of 25 s: the graceful stop would take 20 s; the abort must not.
    runner = Runner(tmp_path, gracefulStop="25s",
                    scenarios=[{"name": "slow", "requests": [{"path": "/slow?ms=20000", "timeout": "30s"}]}])
    process = await runner.start()
    try:
        kids = await runner.children(until)
        await asyncio.sleep(2)  # the slow requests are in flight (none completes in 20 s)
        process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=10)
    finally:
        runner.kill()
    assert process.returncode == 2
    assert stderr.decode().strip().splitlines()[-1] == "aborted"
    await until(lambda: not any(alive(k) for k in kids), timeout=5, what="children to exit")


async def test_kill_9_of_the_runner_takes_every_child_with_it(runner: Runner, until) -> None:
    process = await runner.start()
    kids = await runner.children(until)
    await runner.loading(until)
    assert all(alive(k) for k in kids)
    process.kill()
    await process.wait()
    # PR_SET_PDEATHSIG: the kernel kills them; nobody was left to ask.
    await until(lambda: not any(alive(k) for k in kids), timeout=5, what="children to die with the runner")
    assert not runner.out.exists()
    assert not any(runner.tmpdir.iterdir())
