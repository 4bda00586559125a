"""Question: what does one connect() cost as the connections from one client address to one
server address:port grow? (Why ``ws_msgs.py --hold-vus`` needs ``--sources`` past ~14k sessions.)

Linux picks a connect()'s ephemeral port from ``ip_local_port_range`` per (source, destination)
pair, trying even ports first; once those are taken, each connect() searches the rest of the
range in the kernel. A blocking client holds N connections to a listener in another process
(which accepts and holds them) and times each next 1,000 connects, wall and system CPU.
Bounded: stops at ``--max`` connections, on the first 20 s step, or at the open-file limit.
Prints one JSON line.

    .venv/bin/python bench/connect_cost.py [--max 19000]
"""

from __future__ import annotations

import argparse
import json
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from compare import header  # noqa: E402

STEP = 1000


def serve() -> None:
    """Accept and hold every connection until killed."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    print(listener.getsockname()[1], flush=True)
    held = []
    while True:
        try:
            held.append(listener.accept()[0])
        except OSError:  # out of files: the client stops soon
            time.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max", type=int, default=19000)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.serve:
        serve()
        return
    ports = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    server = subprocess.Popen([sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    port = int(server.stdout.readline())
    held: list[socket.socket] = []
    steps = []
    try:
        for target in range(STEP, min(args.max, hard - 64) + 1, STEP):
            wall, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_stime
            while len(held) < target:
                s = socket.socket()
                s.connect(("127.0.0.1", port))
                held.append(s)
            wall = time.perf_counter() - wall
            cpu = resource.getrusage(resource.RUSAGE_SELF).ru_stime - cpu
            steps.append({"held": target, "us_per_connect": round(wall / STEP * 1e6),
                          "sys_us_per_connect": round(cpu / STEP * 1e6)})
            if wall > 20:
                break
    finally:
        for s in held:
            s.close()
        server.kill()
        server.wait(5)
    print(json.dumps({**header("connect_cost"), "ip_local_port_range": [int(p) for p in ports],
                      "steps": steps}))


if __name__ == "__main__":
    main()
