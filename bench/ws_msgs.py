"""Questions: how many WebSocket echo messages per second does our engine drive on one core,
next to a bare picows client loop? And can one worker hold 20,000 WebSocket virtual users
in under 1 GiB?

Setup, all on loopback: a picows echo server pinned to core 0; each client
pinned to core 1 with ``taskset``, run one after another (interleaved rounds,
medians) against the same server:

* ``bare``: a minimal picows + uvloop client, 50 connections, each sending
  the next message as soon as the echo of the last arrives (the anchor);
* ``engine``: ``mothership.loadgen.engine.run``, closed model, 50 virtual
  users each holding a session with ``interval: 0s``, ``expect: echo``
  (latency histogram, counters and echo check included);
* ``k6`` (when a ``k6`` executable is on PATH): ``k6/ws``, ``constant-vus``
  50, each session sending the next message as soon as the echo arrives,
  echoes counted by a custom Counter read from ``--summary-export``; usage
  reports off. Absent, its fields are null and ``missing`` names it.

Goals: engine >= 0.9 x bare and engine >= 2.5 x k6 (issue 5). ``--message`` sets the payload
of the bare and engine clients: ``'x{seq}'`` measures the cost of sequence ids (the bare client
sends the text with ``{seq}`` left as is, so it stays the anchor).

``--hold-vus N`` instead ramps N virtual users (default goal 20,000) that each hold one quiet
session (a message every 30 s), and reports the worker's peak RSS and open connections (goal
< 1 GiB), the connects/s reached, the longest event-loop stall and the garbage collector's
pauses, and what the server saw: sessions it accepted, handshakes it timed out and peers that
vanished without a close frame. So an abnormal closure is traced to the side that caused it.
``--sources K`` spreads the sessions over K server addresses 127.0.0.1..K (K ``engine.run``
calls on one loop, in one process): one client address talking to one server address can open
only as many connections as there are ephemeral ports free of TIME_WAIT.
Everything is bounded in time. Prints one JSON line.

    .venv/bin/python bench/ws_msgs.py [--seconds 5] [--rounds 3] [--message 'x{seq}']
    .venv/bin/python bench/ws_msgs.py --hold-vus 20000 --ramp 30 --hold 15 [--sources 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
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
MESSAGE = b"x" * 32
message = MESSAGE
"""What the bare and engine clients send (``--message``)."""


def raise_fd_limit(want: int) -> None:
    """Allow ``want`` open files (20k sessions need 20k sockets); root may raise the hard limit too."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for limits in ((want, max(want, hard)), (min(want, hard), hard)):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, limits)
            return


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def addresses(sources: int) -> list[str]:
    return [f"127.0.0.{i + 1}" for i in range(sources)]


@contextlib.contextmanager
def server(sources: int = 1, seen: dict[str, Any] | None = None) -> Iterator[str]:
    """The echo server on core 0, listening on ``sources`` loopback addresses; yields the first URL.

    On exit it is asked (SIGTERM) for what it saw, put into ``seen``.
    """
    port = free_port()
    proc = subprocess.Popen(["taskset", "-c", SERVER_CORE, sys.executable, __file__, "--serve", str(port),
                             "--sources", str(sources)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "ready"
        if "ready" not in line:
            raise RuntimeError(f"echo server did not start: {proc.stderr.read() if proc.stderr else ''}")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate(timeout=5)
        if seen is not None and out.strip():
            seen.update(json.loads(out.strip().splitlines()[-1]))


class _Count(logging.Handler):
    """Counts picows's log records by message shape (handshake timeouts and the like)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.counts: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        key = " ".join(str(record.msg).split()[:4])
        self.counts[key] = self.counts.get(key, 0) + 1


async def echo_server(port: int, sources: int) -> None:
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest, ws_create_server

    seen = {"sessions": 0, "open": 0, "peak_open": 0, "client_closed": 0, "vanished": 0}

    class Echo(WSListener):
        closed = False

        def on_ws_connected(self, transport: WSTransport) -> None:
            seen["open"] += 1
            seen["peak_open"] = max(seen["peak_open"], seen["open"])

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type is WSMsgType.CLOSE:
                self.closed = True
                transport.send_close(frame.get_close_code(), frame.get_close_message())
                transport.disconnect()
            elif frame.msg_type is WSMsgType.PING:
                transport.send_pong(frame.get_payload_as_bytes())
            else:
                transport.send(frame.msg_type, frame.get_payload_as_memoryview())

        def on_ws_disconnected(self, transport: WSTransport) -> None:
            seen["open"] -= 1
            seen["client_closed" if self.closed else "vanished"] += 1

    def listener_factory(request: WSUpgradeRequest) -> Echo:
        seen["sessions"] += 1
        return Echo()

    counter = _Count()
    logging.getLogger().addHandler(counter)
    logging.getLogger().setLevel(logging.DEBUG)
    logging.getLogger("asyncio").setLevel(logging.WARNING)
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, lambda: done.done() or done.set_result(None))
    srv = await ws_create_server(listener_factory, addresses(sources), port, backlog=4096,
                                 read_buffer_init_size=2048)
    print("ready", flush=True)
    await done
    srv.close()
    print(json.dumps({**seen, "log": counter.counts}), flush=True)


def run_self(mode: str, url: str, *extra: str, timeout: float = 120) -> dict[str, Any]:
    out = subprocess.run(["taskset", "-c", CLIENT_CORE, sys.executable, __file__, f"--{mode}", url, *extra],
                         capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"{mode} client failed: {out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


K6_WS_SCRIPT = """
import ws from 'k6/ws';
import {{ Counter }} from 'k6/metrics';

const echoes = new Counter('bench_ws_echoes');

export const options = {{
    scenarios: {{
        bench: {{ executor: 'constant-vus', vus: {vus}, duration: '{seconds}s', gracefulStop: '2s' }},
    }},
}};

export default function () {{
    ws.connect('{url}', null, function (socket) {{
        socket.on('open', function () {{ socket.send('{message}'); }});
        socket.on('message', function (data) {{ echoes.add(1); socket.send(data); }});
        socket.setTimeout(function () {{ socket.close(); }}, {close_ms});
    }});
}}
"""


def run_k6(url: str, seconds: float, connections: int) -> dict[str, float] | None:
    """k6's echoed messages/s (the custom Counter's rate); None when no ``k6`` is on PATH."""
    script = K6_WS_SCRIPT.format(vus=connections, seconds=seconds, message=MESSAGE.decode(),
                                 url=url.replace("http://", "ws://") + "/", close_ms=int(seconds * 1000))
    ran = k6_metrics(script, seconds, CLIENT_CORE)
    if ran is None:
        return None
    metrics, stderr = ran
    if "bench_ws_echoes" not in metrics:
        raise RuntimeError(f"k6 echoed no message: {stderr[-2000:]}")
    return {"msgs_per_s": float(metrics["bench_ws_echoes"]["rate"])}


async def bare_client(url: str, seconds: float, connections: int) -> dict[str, Any]:
    """The anchor: picows + uvloop, send the next message when the echo arrives, count."""
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

    count = [0]
    stop = [False]

    class Client(WSListener):
        def on_ws_connected(self, transport: WSTransport) -> None:
            transport.send(WSMsgType.TEXT, message)

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type is WSMsgType.TEXT:
                count[0] += 1
                if not stop[0]:
                    transport.send(WSMsgType.TEXT, message)

    ws_url = url.replace("http://", "ws://") + "/"
    transports = [(await ws_connect(Client, ws_url))[0] for _ in range(connections)]
    await asyncio.sleep(0.5)
    start_count, start, cpu = count[0], time.perf_counter(), time.process_time()
    await asyncio.sleep(seconds)
    n, took, cpu = count[0] - start_count, time.perf_counter() - start, time.process_time() - cpu
    stop[0] = True
    for t in transports:
        t.disconnect()
    return {"msgs_per_s": n / took, "cpu_us_per_msg": cpu / n * 1e6}


def _spec(url: str, **fields: Any) -> Any:
    from mothership.api.loadtest import LoadTestSpec

    return LoadTestSpec.model_validate({"target": {"url": url}, "gracefulStop": "2s", **fields})


async def engine_client(url: str, seconds: float, connections: int) -> dict[str, Any]:
    from mothership.api.vocabulary import Stat
    from mothership.loadgen import engine
    from mothership.loadgen.plan import worker_share
    from mothership.loadgen.stats import Stats, stat_value

    spec = _spec(url, virtualUsers=connections, duration=f"{seconds + 0.5}s", scenarios=[{
        "name": "echo",
        "websocket": {"path": "/", "message": message.decode(), "interval": "0s", "expect": "echo",
                      "hold": f"{seconds + 10}s"},
    }])
    stats = Stats(["echo"])
    loop = asyncio.get_running_loop()
    marks: dict[str, float] = {}

    def mark_start() -> None:  # skip the first 0.5 s (connects), as the bare client does
        marks.update(n=stats.ws_msgs_received, t=time.perf_counter(), cpu=time.process_time())

    def mark_end() -> None:
        marks.update(n2=stats.ws_msgs_received, t2=time.perf_counter(), cpu2=time.process_time())

    loop.call_later(0.5, mark_start)
    loop.call_later(0.5 + seconds, mark_end)
    await engine.run(spec, worker_share(spec, 0, 1), stats, base_url=url, stop=asyncio.Event())
    n = marks["n2"] - marks["n"]
    snap = stats.snapshot()
    p50 = stat_value(snap, "ws_msg_latency", Stat.P50, seconds)
    p99 = stat_value(snap, "ws_msg_latency", Stat.P99, seconds)
    return {
        "msgs_per_s": n / (marks["t2"] - marks["t"]),
        "cpu_us_per_msg": (marks["cpu2"] - marks["cpu"]) / max(n, 1) * 1e6,
        "errors": stats.errors_total(),
        "p50_ms": round((p50 or 0) * 1000, 3),
        "p99_ms": round((p99 or 0) * 1000, 3),
    }


class GcPauses:
    """The garbage collector's pauses, timed by ``gc.callbacks``: the longest and the total."""

    def __init__(self) -> None:
        self.max = [0.0, 0.0, 0.0]
        self.total = 0.0
        self.full = 0
        self._t = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t = time.perf_counter()
            return
        took = time.perf_counter() - self._t
        gen = info["generation"]
        self.max[gen] = max(self.max[gen], took)
        self.total += took
        self.full += info["generation"] == 2


async def hold_client(url: str, vus: int, ramp: float, hold: float, sources: int) -> dict[str, Any]:
    from mothership.loadgen import engine
    from mothership.loadgen.plan import worker_share
    from mothership.loadgen.stats import Stats, errors_by_class

    port = url.rsplit(":", 1)[1]
    shares = [vus // sources + (i < vus % sources) for i in range(sources)]
    runs = []
    for share, address in zip(shares, addresses(sources), strict=True):
        stages = [{"duration": f"{ramp}s", "target": share}, {"duration": f"{hold}s", "target": share}]
        spec = _spec(f"http://{address}:{port}", stages=stages,
                     scenarios=[{"name": "hold", "websocket": {
                         "path": "/", "message": "hi", "interval": "30s", "expect": "echo",
                         "hold": f"{ramp + hold + 30}s", "connectTimeout": "30s"}}])
        runs.append((spec, Stats(["hold"])))
    loop = asyncio.get_running_loop()
    peak = {"connections": 0, "rss_kib": 0, "lag": 0.0, "rate": 0.0, "at": 0.0}
    started = time.perf_counter()
    last = [started, 0]
    first_abnormal: list[float] = []

    def total(name: str) -> int:
        return sum(getattr(stats, name) for _, stats in runs)

    def sample(due: float) -> None:
        now = time.perf_counter()
        peak["lag"] = max(peak["lag"], now - due)
        open_now = total("ws_connections")
        if open_now > peak["connections"]:
            peak["connections"], peak["at"] = open_now, now - started
        peak["rate"] = max(peak["rate"], (open_now - last[1]) / (now - last[0]))
        last[:] = [now, open_now]
        if not first_abnormal and total("ws_abnormal_closures"):
            first_abnormal.append(now - started)
        peak["rss_kib"] = max(peak["rss_kib"], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        loop.call_later(0.5, sample, time.perf_counter() + 0.5)

    baseline_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # imports, spec, loop
    pauses = GcPauses()
    gc.callbacks.append(pauses)
    sample(time.perf_counter())
    await asyncio.gather(*(engine.run(spec, worker_share(spec, 0, 1), stats, base_url=spec.target.url,
                                      stop=asyncio.Event()) for spec, stats in runs))
    gc.callbacks.remove(pauses)
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    per_session_kib = (rss_kib - baseline_kib) / max(peak["connections"], 1)
    errors: dict[str, int] = {}
    for _, stats in runs:
        for name, n in errors_by_class(stats.snapshot()).items():
            errors[name] = errors.get(name, 0) + n
    return {
        "virtual_users": vus,
        "sources": sources,
        "peak_connections": peak["connections"],
        "seconds_to_peak": round(peak["at"], 1),
        "connects_per_s": round(peak["connections"] / max(peak["at"], 1e-9)),
        "peak_connects_per_s": round(peak["rate"]),
        "rss_mib": round(rss_kib / 1024, 1),
        "baseline_rss_mib": round(baseline_kib / 1024, 1),
        "kib_per_session": round(per_session_kib, 1),
        "handshake_failures": total("ws_handshake_failures"),
        "errors": sum(stats.errors_total() for _, stats in runs),
        "errors_by_class": errors,
        "abnormal_closures": total("ws_abnormal_closures"),
        "first_abnormal_closure_s": round(first_abnormal[0], 1) if first_abnormal else None,
        "msgs_received": total("ws_msgs_received"),
        "max_loop_stall_ms": round(peak["lag"] * 1000, 1),
        "gc_pause_max_ms": round(max(pauses.max) * 1000, 1),
        "gc_pause_max_ms_by_generation": [round(m * 1000, 1) for m in pauses.max],
        "gc_pause_total_ms": round(pauses.total * 1000, 1),
        "gc_full_collections": pauses.full,
        "seconds": round(time.perf_counter() - started, 1),
        "cpu_user_s": round(resource.getrusage(resource.RUSAGE_SELF).ru_utime, 1),
        "cpu_sys_s": round(resource.getrusage(resource.RUSAGE_SELF).ru_stime, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--hold-vus", type=int, metavar="N", help="measure RSS with N held sessions instead")
    parser.add_argument("--ramp", type=float, default=10.0, help="--hold-vus: seconds to ramp up")
    parser.add_argument("--hold", type=float, default=5.0, help="--hold-vus: seconds to hold all")
    parser.add_argument("--sources", type=int, default=1,
                        help="--hold-vus: spread sessions over this many server addresses 127.0.0.1..K")
    parser.add_argument("--message", default=MESSAGE.decode(),
                        help="payload of the echo clients; put {seq} in it to measure sequence ids")
    parser.add_argument("--serve", type=int, metavar="PORT")
    parser.add_argument("--bare", metavar="URL")
    parser.add_argument("--engine", metavar="URL")
    parser.add_argument("--holder", metavar="URL")
    args = parser.parse_args()

    import uvloop

    global message
    message = args.message.encode()
    raise_fd_limit(max(4096, (args.hold_vus or 0) + 1024))
    if args.serve:
        raise_fd_limit(65536)  # the server holds every session of --hold-vus too
        uvloop.run(echo_server(args.serve, args.sources))
        return
    if args.bare:
        print(json.dumps(uvloop.run(bare_client(args.bare, args.seconds, args.connections))))
        return
    if args.engine:
        print(json.dumps(uvloop.run(engine_client(args.engine, args.seconds, args.connections))))
        return
    if args.holder:
        held = uvloop.run(hold_client(args.holder, args.hold_vus, args.ramp, args.hold, args.sources))
        print(json.dumps(held))
        return

    if args.hold_vus:
        # Each session is a socket in this client and in the server: if the hard
        # limit on open files is lower than that, hold what fits, say so, and
        # extrapolate the RSS from the measured cost per session.
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        fits = hard - 64 if hard != resource.RLIM_INFINITY else args.hold_vus
        vus = min(args.hold_vus, fits)
        seen: dict[str, Any] = {}
        with server(args.sources, seen) as url:
            held = run_self("holder", url, "--hold-vus", str(vus), "--ramp", str(args.ramp),
                            "--hold", str(args.hold), "--sources", str(args.sources),
                            timeout=args.ramp + args.hold + 120)
        estimate = held["baseline_rss_mib"] + held["kib_per_session"] * args.hold_vus / 1024
        print(json.dumps({
            **header("ws_vus"), **held,
            "requested_virtual_users": args.hold_vus,
            "fd_limited": vus < args.hold_vus,
            "fd_hard_limit": hard,
            "rss_mib_at_requested": round(max(estimate, held["rss_mib"]), 1),
            "server": seen,
            "goal": "rss_mib < 1024 with every session open",
            "ok": estimate < 1024 and held["rss_mib"] < 1024 and held["peak_connections"] == vus,
            "load_average_1m": round(os.getloadavg()[0], 2),
        }))
        return

    bares: list[dict[str, Any]] = []
    engines: list[dict[str, Any]] = []
    k6s: list[dict[str, float]] = []
    common = ("--seconds", str(args.seconds), "--connections", str(args.connections),
              "--message", args.message)
    with server() as url:
        for _ in range(args.rounds):
            k = run_k6(url, args.seconds, args.connections)
            if k is not None:
                k6s.append(k)
            bares.append(run_self("bare", url, *common))
            engines.append(run_self("engine", url, *common))
    k6 = statistics.median(k["msgs_per_s"] for k in k6s) if k6s else None
    bare = {k: statistics.median(b[k] for b in bares) for k in bares[0]}
    eng = {k: statistics.median(e[k] for e in engines) for k in engines[0]}
    print(json.dumps({
        **header("ws_msgs"),
        "connections": args.connections,
        "seconds": args.seconds,
        "message": args.message,
        "k6_msgs_per_s": round(k6) if k6 else None,
        "bare_msgs_per_s": round(bare["msgs_per_s"]),
        "engine_msgs_per_s": round(eng["msgs_per_s"]),
        "engine_errors": eng["errors"],
        "engine_p50_ms": eng["p50_ms"],
        "engine_p99_ms": eng["p99_ms"],
        "ratio_engine_vs_bare": round(eng["msgs_per_s"] / bare["msgs_per_s"], 3),
        "ratio_engine_vs_k6": round(eng["msgs_per_s"] / k6, 3) if k6 else None,
        "bare_cpu_us_per_msg": round(bare["cpu_us_per_msg"], 2),
        "engine_cpu_us_per_msg": round(eng["cpu_us_per_msg"], 2),
        "rounds": args.rounds,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "missing": [] if k6s else ["k6"],
        "goal": "engine >= 0.9 x bare",
        "goal_k6": "engine >= 2.5 x k6",
    }))


if __name__ == "__main__":
    main()
