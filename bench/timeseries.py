"""Question: what does keeping the time series add to each coordinator poll, next to the merge itself?

Goal: < 25 % of the merge of the same poll at 50 workers, falling as workers grow
(the series costs the same per point whatever the worker count; docs/design.md, "Results over time"):
the coordinator merges every worker's snapshot on each poll, then
``timeseries.Recorder.observe`` takes the merged one (a point a second: the
cumulative totals, one histogram subtraction, three quantiles) and ``series()``
builds the columns the live result carries. Anchor, in the same process:
``merge_snapshots`` of the poll's worker snapshots. Measured with the book
nearly full (``MAX_POINTS - 1`` points), where ``series()`` costs the most.
Prints one JSON line.

    .venv/bin/python bench/timeseries.py [--workers 50] [--polls 40] [--repeat 5]
"""

from __future__ import annotations

import argparse
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
from mothership.loadgen.stats import Stats, merge_snapshots
from mothership.loadgen.timeseries import MAX_POINTS, Recorder


def polls(workers: int, count: int, samples: int) -> list[list[dict[str, Any]]]:
    """``count`` polls of ``workers`` cumulative snapshots, each poll ``samples`` latencies further on."""
    rng = random.Random(7)
    stats = [Stats(["home", "search", "cart", "checkout", "chat"]) for _ in range(min(workers, 10))]
    out = []
    for _ in range(count):
        for s in stats:
            for k in range(samples):
                s.http(k % 5, 200 if k % 50 else 503, rng.lognormvariate(-4, 1.2), 200, 1800)
                s.ws_received(64, rng.lognormvariate(-7, 1.0))
            s.error(rng.randrange(5), rng.choice(list(ErrorClass)), None)
            s.virtual_users = 1000
        snaps = [s.snapshot() for s in stats]
        out.append([snaps[k % len(snaps)] for k in range(workers)])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=50)
    parser.add_argument("--polls", type=int, default=40)
    parser.add_argument("--samples", type=int, default=2_000, help="latencies per worker per poll")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    worker_polls = polls(args.workers, args.polls, args.samples)
    merged = [merge_snapshots(p) for p in worker_polls]

    def full_book() -> Recorder:
        r = Recorder()
        for k in range(MAX_POINTS - 1 - args.polls):
            r.observe(merged[k % 2], float(k + 1))  # alternating: fills the book at equal cost
        r._last = r._last.__class__()  # a fresh baseline, so the timed deltas are all positive
        return r

    def merge_all() -> None:
        for p in worker_polls:
            merge_snapshots(p)

    def series_all(r: Recorder) -> None:
        base = r._last_t
        for k, m in enumerate(merged):
            r.observe(m, base + k + 1)
            r.series()

    def best(fn: Any, setup: Any = None) -> float:
        times = []
        for _ in range(args.repeat):
            arg = setup() if setup else None
            t = time.perf_counter()
            fn(arg) if setup else fn()
            times.append(time.perf_counter() - t)
        return min(times)

    merge_s = best(merge_all) / args.polls
    series_s = best(series_all, full_book) / args.polls
    check = Recorder()
    for k, m in enumerate(merged):
        check.observe(m, float(k + 1))
    ts = check.series()
    print(json.dumps({
        **header("timeseries"),
        "workers": args.workers,
        "points_in_book": MAX_POINTS - 1,
        "merge_ms_per_poll": round(merge_s * 1000, 3),
        "timeseries_ms_per_poll": round(series_s * 1000, 3),
        "ratio_timeseries_vs_merge": round(series_s / merge_s, 3),
        "goal_ratio": 0.25,
        "ok": series_s / merge_s < 0.25,
        "check_requests": sum(ts.requests),
        "check_merged_requests": sum(n for row in merged[-1]["http_reqs"].values() for n in row.values()),
    }))


if __name__ == "__main__":
    main()
