"""Question: how long does the coordinator take to merge 1,000 worker snapshots?

Goal: < 100 ms for 1,000 realistic snapshots (docs/design.md, "The LoadTest flow":
the coordinator merges every snapshot again on each poll, every 2 s in the operator
and every 0.25 s in the local runner). Anchor, in the same process: ``json.loads``
of the same 1,000 snapshots as JSON text, the cost the coordinator pays anyway to
read them off the wire. Prints one JSON line.

Realistic: each snapshot is a worker that ran 5 scenarios for a while, with
HTTP latencies spread over four decades (lognormal), WebSocket message
latencies and connect times, every error class and status class. Twenty
distinct workers are recorded, then reused (merge cost does not depend on the
counts' values, only on the bucket runs' lengths).

    .venv/bin/python bench/merge.py [--snapshots 1000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "operator"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare import header
from mothership.api.vocabulary import ErrorClass
from mothership.loadgen.stats import Stats, merge_snapshots, summarize


def worker_snapshot(seed: int, samples: int) -> dict[str, Any]:
    rng = random.Random(seed)
    lognorm = rng.lognormvariate
    s = Stats(["home", "search", "cart", "checkout", "chat"])
    for k in range(samples):
        status = 200 if k % 50 else rng.choice((404, 500, 503))
        s.http(k % 5, status, lognorm(-4, 1.2), 200, 1800)
        s.ws_received(64, lognorm(-7, 1.0))
    for _ in range(samples // 20):
        s.ws_session_started(4)
        s.ws_connected(lognorm(-6, 0.7))
        s.ws_sent(64)
    for c in ErrorClass:
        s.error(rng.randrange(5), c, 10.0 if c is ErrorClass.TIMEOUT else None)
    s.virtual_users = 1000
    s.dropped_iterations = rng.randrange(100)
    return s.snapshot()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snapshots", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=20_000, help="latencies recorded per worker")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    distinct = [worker_snapshot(seed, args.samples) for seed in range(20)]
    snaps = [copy.deepcopy(distinct[k % len(distinct)]) for k in range(args.snapshots)]
    texts = [json.dumps(s) for s in snaps]
    buckets = sum(len(h["counts"]) for s in snaps for h in s["histograms"].values())

    def best(fn: Any) -> float:
        times = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return min(times)

    merge_s = best(lambda: merge_snapshots(snaps))
    loads_s = best(lambda: [json.loads(t) for t in texts])
    merged = merge_snapshots(snaps)
    summary = summarize(merged, 60.0)
    print(json.dumps({
        **header("merge"),
        "snapshots": args.snapshots,
        "bucket_values": buckets,
        "json_bytes_per_snapshot": sum(map(len, texts)) // len(texts),
        "merge_ms": round(merge_s * 1000, 2),
        "json_loads_ms": round(loads_s * 1000, 2),
        "ratio_merge_vs_json_loads": round(merge_s / loads_s, 3),
        "goal_merge_ms": 100,
        "ok": merge_s < 0.100,
        "check_requests": summary.requests,
        "check_p99_ms": summary.http_req_duration.p99,
    }))


if __name__ == "__main__":
    main()
