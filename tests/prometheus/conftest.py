"""A real Prometheus on 127.0.0.1, scraping what the tests start, queried over its HTTP API.

``prometheus`` starts Debian's ``/usr/bin/prometheus`` (the apt package, 2.42;
``.ci/run`` installs it) with a temporary config and storage directory, a 1 s
scrape interval, and two jobs that mirror the chart's monitors:

- ``mothership-operator``: like the ServiceMonitor, ``honor_labels: true`` so the
  LoadTest gauges keep their own ``namespace`` label;
- ``mothership-workers``: like the PodMonitor, target labels ``namespace`` and
  ``pod`` come from service discovery, the series carry ``loadtest`` and ``worker``.

Targets are file-based service discovery, so a test adds them once it knows the
ports; Prometheus picks up the file change at once (inotify). Without the binary
the tests skip locally and fail in CI (``CI=true``): a skipped Prometheus test
must never pass for a green build.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

SCRAPE_INTERVAL = 1.0
"""Seconds between scrapes; Grafana's $__rate_interval is then max(4 x 1s, step + 1s)."""
RATE_INTERVAL = "4s"
JOBS = {"mothership-operator": True, "mothership-workers": False}
"""Job name -> honor_labels, as the ServiceMonitor and PodMonitor set them."""


def _binary(name: str) -> str | None:
    """On PATH, or where Debian's package puts it (root's PATH may lack /usr/bin in odd shells)."""
    debian = Path("/usr/bin") / name
    return shutil.which(name) or (str(debian) if debian.exists() else None)


def _required(name: str, message: str) -> str:
    """A Debian prometheus-package binary, or a skip (locally) / failure (CI) that says how to get it."""
    found = _binary(name)
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def prometheus_binary() -> str:
    return _required("prometheus", "Prometheus is not installed: apt-get install -y prometheus "
                                   "(Debian's package; .ci/run does it)")


def promtool_binary() -> str:
    return _required("promtool", "promtool is not installed: apt-get install -y prometheus ships it")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class QueryError(AssertionError):
    """Prometheus answered a query with status "error" (a parse or evaluation error)."""


@dataclass
class Prometheus:
    url: str
    workdir: Path
    process: subprocess.Popen[bytes]
    log: Path

    # --- targets ----------------------------------------------------------

    def set_targets(self, job: str, groups: list[dict[str, Any]]) -> None:
        """Replace the job's file_sd targets: ``[{"targets": ["127.0.0.1:9090"], "labels": {...}}]``."""
        path = self.workdir / f"{job}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(groups))
        tmp.replace(path)  # atomic: Prometheus never reads half a file

    def active_targets(self) -> list[dict[str, Any]]:
        data: dict[str, Any] = self.get("/api/v1/targets", state="active")
        return list(data["activeTargets"])

    # --- HTTP API ---------------------------------------------------------

    def get(self, path: str, **params: Any) -> Any:
        query = urllib.parse.urlencode(params, doseq=True)
        try:
            with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=10) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as error:  # 400/422 carry the error in the body
            body = json.loads(error.read() or b"{}")
        if body.get("status") != "success":
            raise QueryError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self.get("/api/v1/query", **params)
        return list(data["result"])

    def query_range(self, expr: str, start: float, end: float, step: float = 1.0) -> list[dict[str, Any]]:
        data = self.get("/api/v1/query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}",
                        step=f"{step:g}")
        return list(data["result"])

    def series(self, match: str, start: float, end: float) -> list[dict[str, str]]:
        params = {"match[]": match, "start": f"{start:.3f}", "end": f"{end:.3f}"}
        return list(self.get("/api/v1/series", **params))

    def label_values(self, label: str, match: str, start: float, end: float) -> list[str]:
        return list(self.get(f"/api/v1/label/{label}/values",
                             **{"match[]": match, "start": f"{start:.3f}", "end": f"{end:.3f}"}))

    def wait_for(self, what: str, predicate: Callable[[], Any], timeout: float = 20.0) -> Any:
        """Poll ``predicate`` until truthy; fail naming ``what`` and the server log's tail."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}\n{self.log_tail()}")
            time.sleep(0.1)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


def _config(workdir: Path) -> dict[str, Any]:
    return {
        "global": {
            "scrape_interval": f"{SCRAPE_INTERVAL:g}s",
            "scrape_timeout": f"{SCRAPE_INTERVAL:g}s",
            "evaluation_interval": f"{SCRAPE_INTERVAL:g}s",
        },
        "scrape_configs": [
            {
                "job_name": job,
                "honor_labels": honor,
                "metrics_path": "/metrics",
                "file_sd_configs": [{"files": [str(workdir / f"{job}.json")], "refresh_interval": "1s"}],
            }
            for job, honor in JOBS.items()
        ],
    }


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as response:
            return int(response.status) == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """A fresh Prometheus for one test module, stopped (and its storage dropped) afterwards."""
    binary = prometheus_binary()
    workdir = tmp_path_factory.mktemp("prometheus")
    for job in JOBS:
        (workdir / f"{job}.json").write_text("[]")
    config = workdir / "prometheus.yml"
    config.write_text(yaml.safe_dump(_config(workdir)))
    port = free_port()
    log = workdir / "prometheus.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h",
             "--log.level=warn"],
            stdout=out, stderr=subprocess.STDOUT, cwd=workdir,
        )
    server = Prometheus(url=f"http://127.0.0.1:{port}", workdir=workdir, process=process, log=log)
    try:
        server.wait_for("Prometheus to be ready", lambda: _ready(server.url), timeout=30)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
