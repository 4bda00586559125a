"""``mothership loadtest run`` never passes a broken target (issue 12, section A), end to end.

Real worker processes against a listener that never answers and against the
demo target's ``/slow``: requests cut off at the end are ``interrupted``, a
run with thresholds that completed nothing fails as NoData with exit 1, and
the runner's request count equals what the target itself counted.
"""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from mothership.cli import app


def write_spec(tmp_path: Path, path: str, **spec: Any) -> Path:
    doc = {
        "apiVersion": "mothership.dev/v1alpha1", "kind": "LoadTest", "metadata": {"name": "honest"},
        "spec": {
            "target": {"url": "http://127.0.0.1:8089"}, "virtualUsers": 2, "duration": "1s",
            "gracefulStop": "200ms",
            "scenarios": [{"name": "browse", "requests": [{"path": path}]}],
            "thresholds": [{"metric": "http_req_duration", "stat": "p95", "lt": "20s"}],
            **spec,
        },
    }
    out = tmp_path / "test.yaml"
    out.write_text(yaml.safe_dump(doc))
    return out


def run(*args: str) -> Any:
    return CliRunner().invoke(app, ["loadtest", "run", "--no-live", "--workers", "1", *args],
                              catch_exceptions=False)


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A listener on 127.0.0.1 that accepts connections and never sends a byte (in a thread)."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        server.close()
        for conn in held:
            conn.close()


def test_a_target_that_never_answers_fails_as_no_data_with_exit_1(silent_url: str, tmp_path: Path) -> None:
    out = tmp_path / "summary.json"
    result = run("-f", str(write_spec(tmp_path, "/api/items")), "--target", silent_url, "--out", str(out))
    assert result.exit_code == 1, result.output
    assert "FAILED  NoData: no HTTP request got a response" in result.stdout
    body = json.loads(out.read_text())
    assert body["verdict"] == "failed" and body["noData"] is True
    summary = body["summary"]
    assert summary["requests"] == summary["errors"] == 2 and summary["errorRate"] == 1.0
    assert summary["errorsByClass"] == {"interrupted": 2}


def test_responses_slower_than_the_run_fail_and_match_the_targets_count(tmp_path: Path) -> None:
    """/slow?ms=9000 under the default 10 s timeout: every request is cut off by the end of the run."""
    out = tmp_path / "summary.json"
    result = run("-f", str(write_spec(tmp_path, "/slow?ms=9000")), "--demo-target", "--out", str(out))
    assert result.exit_code == 1, result.output
    assert "NoData" in result.stdout
    summary = json.loads(out.read_text())["summary"]
    assert summary["errorsByClass"] == {"interrupted": 2}
    assert f"demo target counted: {summary['requests']:,} HTTP requests" in result.stdout


def test_slow_responses_some_cut_off_are_all_counted_like_the_target_counted_them(tmp_path: Path) -> None:
    # per virtual user: 0-1.5 s answered, 1.5-3 s cut off at 2.2 s; so 4 requests, 2 interrupted
    spec = write_spec(tmp_path, "/slow?ms=1500", duration="2s",
                      thresholds=[{"metric": "errors", "stat": "rate", "lt": "60%"}])
    out = tmp_path / "summary.json"
    result = run("-f", str(spec), "--demo-target", "--out", str(out))
    assert result.exit_code == 0, result.output
    summary = json.loads(out.read_text())["summary"]
    assert summary["requests"] == 4 and summary["errorsByClass"] == {"interrupted": 2}
    assert re.search(r"demo target counted: 4 HTTP requests", result.stdout)
