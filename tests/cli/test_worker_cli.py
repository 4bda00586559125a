"""``mothership worker``: usage errors exit 2 before listening; a worker never started exits 3."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import yaml
from typer.testing import CliRunner

from mothership.cli import app
from tests.conftest import LOADTEST_DOC


def files(tmp_path: Path, **spec: object) -> tuple[Path, Path]:
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump({**LOADTEST_DOC, "spec": {**LOADTEST_DOC["spec"], **spec}}))
    token = tmp_path / "token"
    token.write_text("t0ken\n")
    return plan, token


def worker(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["worker", *args], catch_exceptions=False)
    return result.exit_code, result.stderr


def test_an_index_outside_the_count_exits_2(tmp_path: Path) -> None:
    plan, token = files(tmp_path)
    code, err = worker("--plan", str(plan), "--token-file", str(token), "--index", "2", "--count", "2",
                       "--listen", "127.0.0.1:0")
    assert code == 2 and "must be in 0..1" in err


def test_an_invalid_plan_exits_2_naming_the_field(tmp_path: Path) -> None:
    plan, token = files(tmp_path, virtualUsers=0)
    code, err = worker("--plan", str(plan), "--token-file", str(token), "--listen", "127.0.0.1:0")
    assert code == 2 and "spec.virtualUsers: Input should be greater than or equal to 1" in err


def test_an_empty_token_file_exits_2(tmp_path: Path) -> None:
    plan, token = files(tmp_path)
    token.write_text("\n")
    code, err = worker("--plan", str(plan), "--token-file", str(token), "--listen", "127.0.0.1:0")
    assert code == 2 and "holds no token" in err


def test_an_app_target_needs_the_resolved_url(tmp_path: Path) -> None:
    plan, token = files(tmp_path, target={"app": "shop"})
    code, err = worker("--plan", str(plan), "--token-file", str(token), "--listen", "127.0.0.1:0")
    assert code == 2 and "--target URL" in err


async def test_a_worker_takes_its_index_from_the_job_and_exits_3_when_never_started(tmp_path: Path) -> None:
    plan, token = files(tmp_path)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mothership", "worker", "--plan", str(plan), "--token-file", str(token),
        "--count", "2", "--listen", "127.0.0.1:0", "--ready-timeout", "0.2",
        env={**os.environ, "JOB_COMPLETION_INDEX": "1"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=10)
    assert process.returncode == 3, stderr.decode()
    assert stdout.decode().startswith("worker 1/2 listening on http://127.0.0.1:")
    assert "not started within" in stderr.decode() and "t0ken" not in stderr.decode()


async def test_sigterm_mid_run_writes_the_summary_and_exits_without_lingering(
    tmp_path: Path, demo_target: object
) -> None:
    """A deleted pod gets one SIGTERM, then SIGKILL: the summary must be out before that."""
    import json
    import signal
    import time

    import aiohttp

    plan, token = files(tmp_path, target={"url": demo_target.url}, duration="30s")  # type: ignore[attr-defined]
    summary = tmp_path / "summary"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mothership", "worker", "--plan", str(plan), "--token-file", str(token),
        "--listen", "127.0.0.1:0", "--summary-file", str(summary), "--linger", "60",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=10)).decode()
        url = line.strip().rsplit(" ", 1)[-1]
        headers = {"Authorization": "Bearer t0ken"}
        async with aiohttp.ClientSession(headers=headers) as http:
            async with http.post(f"{url}/start", params={"at": str(time.time())}) as response:
                assert response.status == 200
            for _ in range(100):  # bounded: until the engine has run a moment
                async with http.get(f"{url}/snapshot") as response:
                    body = await response.json()
                if body["state"] == "running" and (body["elapsed"] or 0) > 0.3:
                    break
                await asyncio.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), timeout=10)  # the linger is 60 s
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0
    envelope = json.loads(summary.read_text())
    assert envelope["state"] == "stopped" and envelope["snapshot"]
