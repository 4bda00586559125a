"""Question: what does ``engine.run`` do at the edges where a verdict used to lie (issue 12, section A)?

Figures, each from a 5 s closed-model run of 10 virtual users in this process:

* ``closed_port_http_attempts`` / ``closed_port_ws_sessions``: connect attempts
  against a port nobody listens on (HTTP requests, WebSocket sessions). Without
  a backoff one worker drew ~25k attempts/s; with it, a few per virtual user
  per second (the anchor: 10 VUs x 5 s at the 0.5 s ceiling is ~100-200).
* ``think_time_min_ms``: the smallest ``http_req_duration`` with a 7 ms
  ``thinkTime`` against the demo target; it was negative (-0.2 to -0.6 ms)
  when a think-time timer fired early, and must be >= 0.
* ``hung_interrupted``: requests in flight at the end against a listener that
  never answers, counted as ``interrupted`` (was 0: "0 requests, 0 errors").

    .venv/bin/python bench/edges.py [--seconds 5] [--vus 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "operator"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import uvloop

from compare import header
from mothership.api.loadtest import LoadTestSpec
from mothership.loadgen import engine
from mothership.loadgen.demo_target import serve
from mothership.loadgen.plan import worker_share
from mothership.loadgen.stats import Stats


async def run(spec: dict[str, Any]) -> Stats:
    s = LoadTestSpec.model_validate(spec)
    stats = Stats([x.name for x in s.scenarios])
    assert s.target.url is not None
    await engine.run(s, worker_share(s, 0, 1), stats, base_url=s.target.url, stop=asyncio.Event())
    return stats


async def main(seconds: float, vus: int) -> dict[str, Any]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    base = {"virtualUsers": vus, "duration": f"{seconds:g}s", "gracefulStop": "0s"}
    http = await run({**base, "target": {"url": closed},
                      "scenarios": [{"name": "a", "requests": [{"path": "/"}]}]})
    ws = await run({**base, "target": {"url": closed},
                    "scenarios": [{"name": "a", "websocket": {"path": "/"}}]})
    async with serve() as (url, _):
        think = await run({**base, "target": {"url": url}, "scenarios": [
            {"name": "a", "requests": [{"path": "/api/items", "thinkTime": "7ms"}]}]})
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    hung_url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    hung = await run({**base, "duration": "1s", "target": {"url": hung_url},
                      "scenarios": [{"name": "a", "requests": [{"path": "/"}]}]})
    server.close()
    for writer in held:
        writer.transport.abort()
    return {
        **header("edges"),
        "seconds": seconds,
        "virtual_users": vus,
        "closed_port_http_attempts": http.http_reqs_total(),
        "closed_port_ws_sessions": ws.ws_sessions,
        "think_time_requests": think.http_reqs_total(),
        "think_time_min_ms": round(think.http_req_duration.to_wire()["min"] * 1000, 4),
        "hung_requests": hung.http_reqs_total(),
        "hung_interrupted": hung.snapshot()["errors"].get("a", {}).get("interrupted", 0),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--vus", type=int, default=10)
    args = parser.parse_args()
    print(json.dumps(uvloop.run(main(args.seconds, args.vus))))
