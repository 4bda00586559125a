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
