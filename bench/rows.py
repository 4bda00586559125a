"""Question: what do per-request rows cost a worker's snapshot and the coordinator, at the spec's limit?

The largest spec has 20 scenarios of 100 requests: 2,000 HTTP rows (plus up to 20 WebSocket
rows), each with its own histogram. A worker snapshots on every poll (every 2 s in the operator,
0.25 s locally), the coordinator merges every worker's snapshot and builds the per-request table.
Anchor, in the same process: ``json.loads`` of the same snapshots as JSON text, the cost the
coordinator pays anyway to read them off the wire. Prints one JSON line (milliseconds, medians).

    .venv/bin/python bench/rows.py [--rows 2000] [--workers 10] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "operator"))

from mothership.loadgen.stats import Stats, by_request, merge_snapshots


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    scenarios = max(1, args.rows // 100)
    stats = Stats([f"s{i}" for i in range(scenarios)],
                  [(r // 100, f"request-{r}", "http") for r in range(args.rows)])
    rng = random.Random(1)
    for row in range(args.rows):
        for _ in range(50):
            stats.http(row, 200, rng.lognormvariate(-4, 1), 100, 200)
    timings: dict[str, list[float]] = {"snapshot": [], "json_loads": [], "merge": [], "by_request": []}
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        snap = stats.snapshot()
        t1 = time.perf_counter()
        text = json.dumps(snap)
        t2 = time.perf_counter()
        snaps = [json.loads(text) for _ in range(args.workers)]
        t3 = time.perf_counter()
        merged = merge_snapshots(snaps)
        t4 = time.perf_counter()
        by_request(merged, 10.0)
        t5 = time.perf_counter()
        timings["snapshot"].append(t1 - t0)
        timings["json_loads"].append(t3 - t2)
        timings["merge"].append(t4 - t3)
        timings["by_request"].append(t5 - t4)
    out = {"bench": "rows", "rows": args.rows, "workers": args.workers, "snapshot_kib": len(text) // 1024,
           **{f"{k}_ms": round(statistics.median(v) * 1000, 1) for k, v in timings.items()}}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
