"""Question: how many HTTP requests per second does our engine make on one core, next to wrk?

Setup, all on loopback: nginx (``return 200``, keep-alive) pinned to core 0
(a small uvloop + httptools server instead when nginx is not installed);
each client pinned to core 1 with ``taskset``, 50 keep-alive connections,
run one after another against the same server in the same run:

* ``wrk -t1 -c50`` (when installed): the anchor the first goal refers to;
* ``locust`` (when ``import locust`` works here or a ``locust`` executable
  is on PATH): headless, one process, a ``FastHttpUser`` with one ``GET /``
  task and no wait time, 50 users spawned at once;
* ``k6`` (when a ``k6`` executable is on PATH): ``constant-vus`` 50 doing
  ``http.get``, usage reports off;
* ``bare``: a minimal uvloop + httptools client loop (pre-encoded request,
  resend on response complete, count): the floor of Python-side cost;
* ``engine``: ``mothership.loadgen.engine.run`` with a closed model of 50
  virtual users (stats, histograms, scenario bookkeeping included).

Goals: engine >= 0.8 x wrk and engine >= 5 x k6 (issue 5). Prints one JSON
line with rps for each, the ratios, and the engine's p50/p99 latency (its
client-side view). An anchor tool that is not installed gets null fields and
its name in ``missing``: no number is ever made up for it.

    .venv/bin/python bench/http_rps.py [--seconds 5] [--rounds 3] [--connections 50] [--profile]

Machines shared with other work make absolute rps noisy: the rounds are
interleaved and medians reported, and the CPU microseconds per request of
the two Python clients (load-independent) are printed alongside.

``--profile`` runs the engine under pyinstrument (if installed) and writes
bench/http_rps.profile.txt.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "operator"))
sys.path.insert(0, str(HERE))

from compare import header, k6_metrics  # noqa: E402

SERVER_CORE = "0"
CLIENT_CORE = "1" if (os.cpu_count() or 1) > 1 else "0"

NGINX_CONF = """
worker_processes 1;
daemon off;
master_process on;
user root;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 "ok"; }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_listening(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


@contextlib.contextmanager
def server() -> Iterator[tuple[str, str]]:
    """(url, kind): nginx pinned to SERVER_CORE, or the fallback Python server."""
    port = free_port()
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    with tempfile.TemporaryDirectory() as d:
        if nginx:
            conf = Path(d) / "nginx.conf"
            conf.write_text(NGINX_CONF.format(dir=d, port=port))
            cmd = ["taskset", "-c", SERVER_CORE, nginx, "-p", d, "-c", str(conf)]
            kind = "nginx"
        else:
            cmd = ["taskset", "-c", SERVER_CORE, sys.executable, __file__, "--serve", str(port)]
            kind = "python-uvloop-httptools"
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_listening(port)
            yield f"http://127.0.0.1:{port}/", kind
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


# --- clients (each run in its own pinned process) ---------------------------


def run_wrk(url: str, seconds: float, connections: int) -> float | None:
    wrk = shutil.which("wrk")
    if not wrk:
        return None
    cmd = ["taskset", "-c", CLIENT_CORE, wrk, "-t1", f"-c{connections}", f"-d{int(seconds)}s", url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30, check=True).stdout
    match = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    return float(match.group(1)) if match else None


LOCUSTFILE = """
from locust import FastHttpUser, constant, task


class Bench(FastHttpUser):
    wait_time = constant(0)

    @task
    def get(self):
        self.client.get("/")
"""

K6_HTTP_SCRIPT = """
import http from 'k6/http';

export const options = {{
    scenarios: {{
        bench: {{ executor: 'constant-vus', vus: {vus}, duration: '{seconds}s', gracefulStop: '2s' }},
    }},
}};

export default function () {{
    http.get('{url}');
}}
"""


def locust_command() -> list[str] | None:
    """How to start Locust: this interpreter's package if it has one, else a ``locust`` on PATH."""
    # find, don't import: importing locust monkey-patches this process with gevent
    if importlib.util.find_spec("locust") is not None:
        return [sys.executable, "-m", "locust"]
    exe = shutil.which("locust")
    return [exe] if exe else None


def run_locust(url: str, seconds: float, connections: int) -> dict[str, float] | None:
    """Locust's requests/s from its final JSON stats; None when Locust is not installed.

    The rate is Locust's own ``total_rps``: requests over the time from the
    stats' start to the last request. (Its CSV is written by a periodic
    greenlet and can miss the last interval, or every request on a short run.)
    """
    cmd = locust_command()
    if cmd is None:
        return None
    with tempfile.TemporaryDirectory() as d:
        locustfile = Path(d) / "locustfile.py"
        locustfile.write_text(LOCUSTFILE)
        stats = Path(d) / "stats"  # Locust appends ".json"
        # cwd is the temp dir so that no locust.conf / pyproject.toml of ours is picked up.
        out = subprocess.run(["taskset", "-c", CLIENT_CORE, *cmd, "-f", str(locustfile), "--headless",
                              "--host", url.rstrip("/"), "-u", str(connections), "-r", str(connections),
                              "-t", f"{max(1, round(seconds))}s", "--stop-timeout", "1",
                              "--json-file", str(stats), "--only-summary", "--loglevel", "WARNING"],
                             cwd=d, capture_output=True, text=True, timeout=seconds + 60)
        written = stats.with_suffix(".json")
        if not written.exists():  # exit code 1 only means "some requests failed": the stats decide
            raise RuntimeError(f"locust wrote no stats (exit {out.returncode}): {out.stderr[-2000:]}")
        entries: list[dict[str, Any]] = json.loads(written.read_text())
    n = sum(e["num_requests"] for e in entries)
    if not n:
        raise RuntimeError(f"locust made no requests: {out.stderr[-2000:]}")
    took = max(e["last_request_timestamp"] for e in entries) - min(e["start_time"] for e in entries)
    return {"rps": n / took, "errors": sum(e["num_failures"] for e in entries)}


def run_k6(url: str, seconds: float, connections: int) -> dict[str, float] | None:
    """k6's ``http_reqs.rate`` from ``--summary-export``; None when no ``k6`` is on PATH."""
    ran = k6_metrics(K6_HTTP_SCRIPT.format(vus=connections, seconds=seconds, url=url), seconds, CLIENT_CORE)
    if ran is None:
        return None
    metrics, _ = ran
    reqs = metrics["http_reqs"]
    failed = metrics.get("http_req_failed", {}).get("value", 0.0)  # fraction of requests that failed
    return {"rps": float(reqs["rate"]), "errors": round(failed * reqs["count"])}


def run_self(mode: str, url: str, seconds: float, connections: int, *extra: str) -> dict[str, Any]:
    out = subprocess.run(["taskset", "-c", CLIENT_CORE, sys.executable, __file__, f"--{mode}", url,
                          "--seconds", str(seconds), "--connections", str(connections), *extra],
                         capture_output=True, text=True, timeout=seconds + 60)
    if out.returncode != 0:
        raise RuntimeError(f"{mode} client failed: {out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


async def bare_client(url: str, seconds: float, connections: int) -> dict[str, Any]:
    """The anchor: the least a Python uvloop + httptools client can do per request."""
    import httptools

    host, port = re.match(r"http://([^:/]+):(\d+)", url).groups()  # type: ignore[union-attr]
    request = f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    loop = asyncio.get_running_loop()
    count = [0]
    stop = [False]

    class Client(asyncio.Protocol):
        def __init__(self) -> None:
            self.parser = httptools.HttpResponseParser(self)
            self.transport: asyncio.Transport | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport  # type: ignore[assignment]
            self.transport.write(request)  # type: ignore[union-attr]

        def data_received(self, data: bytes) -> None:
            self.parser.feed_data(data)

        def on_message_complete(self) -> None:
            count[0] += 1
            if not stop[0] and self.transport is not None:
                self.transport.write(request)

    transports = []
    for _ in range(connections):
        t, _ = await loop.create_connection(Client, host, int(port))
        transports.append(t)
    await asyncio.sleep(0.5)  # warm up
    start_count, start, cpu = count[0], time.perf_counter(), time.process_time()
    await asyncio.sleep(seconds)
    n, took, cpu = count[0] - start_count, time.perf_counter() - start, time.process_time() - cpu
    stop[0] = True
    for t in transports:
        t.close()
    return {"rps": n / took, "cpu_us_per_req": cpu / n * 1e6}


async def engine_client(url: str, seconds: float, connections: int) -> dict[str, Any]:
    from mothership.api.loadtest import LoadTestSpec
    from mothership.api.vocabulary import Stat
    from mothership.loadgen import engine
    from mothership.loadgen.plan import worker_share
    from mothership.loadgen.stats import Stats, stat_value

    spec = LoadTestSpec.model_validate({
        "target": {"url": url.rstrip("/")},
        "scenarios": [{"name": "bench", "requests": [{"path": "/"}]}],
        "virtualUsers": connections,
        "duration": f"{seconds}s",
        "gracefulStop": "1s",
    })
    stats = Stats(["bench"])
    start, cpu = time.perf_counter(), time.process_time()
    await engine.run(spec, worker_share(spec, 0, 1), stats, base_url=url.rstrip("/"), stop=asyncio.Event())
    took, cpu = time.perf_counter() - start, time.process_time() - cpu
    snap = stats.snapshot()
    p50 = stat_value(snap, "http_req_duration", Stat.P50, took)
    p99 = stat_value(snap, "http_req_duration", Stat.P99, took)
    return {
        "rps": stats.http_reqs_total() / took,
        "cpu_us_per_req": cpu / max(stats.http_reqs_total(), 1) * 1e6,
        "errors": stats.errors_total(),
        "p50_ms": round((p50 or 0) * 1000, 3),
        "p99_ms": round((p99 or 0) * 1000, 3),
    }


async def fallback_server(port: int) -> None:
    import httptools

    response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"

    class Server(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: asyncio.Transport = transport  # type: ignore[assignment]
            self.parser = httptools.HttpRequestParser(self)

        def data_received(self, data: bytes) -> None:
            self.parser.feed_data(data)

        def on_message_complete(self) -> None:
            self.transport.write(response)

    srv = await asyncio.get_running_loop().create_server(Server, "127.0.0.1", port, backlog=1024)
    await srv.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--bare", metavar="URL")
    parser.add_argument("--engine", metavar="URL")
    parser.add_argument("--serve", type=int, metavar="PORT")
    args = parser.parse_args()

    import uvloop

    if args.serve:
        uvloop.run(fallback_server(args.serve))
        return
    if args.bare:
        print(json.dumps(uvloop.run(bare_client(args.bare, args.seconds, args.connections))))
        return
    if args.engine:
        if args.profile:
            from pyinstrument import Profiler

            with Profiler(interval=0.0005) as prof:
                result = uvloop.run(engine_client(args.engine, args.seconds, args.connections))
            (HERE / "http_rps.profile.txt").write_text(prof.output_text(unicode=False, color=False))
        else:
            result = uvloop.run(engine_client(args.engine, args.seconds, args.connections))
        print(json.dumps(result))
        return

    # Rounds interleave the clients so that drifting background load hits all
    # of them alike; each figure is the median over the rounds.
    wrks: list[float] = []
    locusts: list[dict[str, float]] = []
    k6s: list[dict[str, float]] = []
    bares: list[dict[str, Any]] = []
    engines: list[dict[str, Any]] = []
    with server() as (url, kind):
        for _ in range(args.rounds):
            w = run_wrk(url, args.seconds, args.connections)
            if w is not None:
                wrks.append(w)
            for runner, results in ((run_locust, locusts), (run_k6, k6s)):
                r = runner(url, args.seconds, args.connections)
                if r is not None:
                    results.append(r)
            bares.append(run_self("bare", url, args.seconds, args.connections))
            engines.append(run_self("engine", url, args.seconds, args.connections,
                                    *(["--profile"] if args.profile else [])))
    wrk = statistics.median(wrks) if wrks else None
    loc = {k: statistics.median(r[k] for r in locusts) for k in locusts[0]} if locusts else None
    k6 = {k: statistics.median(r[k] for r in k6s) for k in k6s[0]} if k6s else None
    bare = {k: statistics.median(b[k] for b in bares) for k in bares[0]}
    eng = {k: statistics.median(e[k] for e in engines) for k in engines[0]}
    print(json.dumps({
        **header("http_rps"),
        "server": kind,
        "connections": args.connections,
        "seconds": args.seconds,
        "wrk_rps": round(wrk) if wrk else None,
        "locust_rps": round(loc["rps"]) if loc else None,
        "locust_errors": loc["errors"] if loc else None,
        "k6_rps": round(k6["rps"]) if k6 else None,
        "k6_errors": k6["errors"] if k6 else None,
        "bare_rps": round(bare["rps"]),
        "engine_rps": round(eng["rps"]),
        "engine_errors": eng["errors"],
        "engine_p50_ms": eng["p50_ms"],
        "engine_p99_ms": eng["p99_ms"],
        "ratio_engine_vs_wrk": round(eng["rps"] / wrk, 3) if wrk else None,
        "ratio_engine_vs_locust": round(eng["rps"] / loc["rps"], 3) if loc else None,
        "ratio_engine_vs_k6": round(eng["rps"] / k6["rps"], 3) if k6 else None,
        "ratio_engine_vs_bare": round(eng["rps"] / bare["rps"], 3),
        "bare_cpu_us_per_req": round(bare["cpu_us_per_req"], 2),
        "engine_cpu_us_per_req": round(eng["cpu_us_per_req"], 2),
        "rounds": args.rounds,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "missing": [name for name, got in (("wrk", wrks), ("locust", locusts), ("k6", k6s)) if not got],
        "goal": "engine >= 0.8 x wrk",
        "goal_k6": "engine >= 5 x k6",
    }))

if __name__ == "__main__":
    main()
