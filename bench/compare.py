"""Run every bench in one go and print their JSON lines plus one line of ratios against the goals.

Also the shared header every bench line starts with (commit, python, cpu),
so lines from different commits and machines can be compared.

    .venv/bin/python bench/compare.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10, check=True)
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "operator", "bench"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def header(bench: str) -> dict[str, Any]:
    """The fields every bench line starts with."""
    return {
        "bench": bench,
        "commit": _commit(),
        "python": platform.python_version(),
        "cpu": _cpu(),
        "cores": os.cpu_count(),
    }


def k6_metrics(script: str, seconds: float, core: str) -> tuple[dict[str, Any], str] | None:
    """Run a k6 script pinned to ``core``; its ``--summary-export`` metrics and stderr, or None
    when no ``k6`` is on PATH. Usage reports are off, so every packet stays on 127.0.0.1."""
    k6 = shutil.which("k6")
    if not k6:
        return None
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "bench.js"
        path.write_text(script)
        summary = Path(d) / "summary.json"
        out = subprocess.run(["taskset", "-c", core, k6, "run", "--quiet", "--no-usage-report",
                              "--summary-export", str(summary), str(path)],
                             cwd=d, capture_output=True, text=True, timeout=seconds + 60,
                             env={**os.environ, "K6_NO_USAGE_REPORT": "true"})
        if not summary.exists():
            raise RuntimeError(f"k6 wrote no summary (exit {out.returncode}): {out.stderr[-2000:]}")
        return json.loads(summary.read_text())["metrics"], out.stderr


def _run(script: str, *args: str, timeout: float = 300) -> dict[str, Any]:
    out = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args],
                         capture_output=True, text=True, timeout=timeout, check=True)
    line = out.stdout.strip().splitlines()[-1]
    print(line, flush=True)
    result: dict[str, Any] = json.loads(line)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs (noisier)")
    args = parser.parse_args()
    seconds = "3" if args.quick else "5"
    http = _run("http_rps.py", "--seconds", seconds)
    ws = _run("ws_msgs.py", "--seconds", seconds)
    vus = _run("ws_msgs.py", "--hold-vus", "20000", "--ramp", "90", "--hold", "10", timeout=900)
    merge = _run("merge.py")
    series = _run("timeseries.py")
    print(json.dumps({
        **header("compare"),
        "http_engine_vs_wrk": http.get("ratio_engine_vs_wrk"),
        "http_engine_vs_bare": http.get("ratio_engine_vs_bare"),
        "http_engine_vs_k6": http.get("ratio_engine_vs_k6"),
        "http_engine_vs_locust": http.get("ratio_engine_vs_locust"),
        "ws_engine_vs_bare": ws.get("ratio_engine_vs_bare"),
        "ws_engine_vs_k6": ws.get("ratio_engine_vs_k6"),
        "ws_20k_vus_rss_mib": vus.get("rss_mib"),
        "merge_1000_ms": merge.get("merge_ms"),
        "timeseries_vs_merge_50": series.get("ratio_timeseries_vs_merge"),
        "missing": sorted({*http.get("missing", []), *ws.get("missing", [])}),
        "goals": {"http_engine_vs_wrk": ">= 0.8", "http_engine_vs_k6": ">= 5",
                  "ws_engine_vs_bare": ">= 0.9", "ws_engine_vs_k6": ">= 2.5",
                  "ws_20k_vus_rss_mib": "< 1024", "merge_1000_ms": "< 100",
                  "timeseries_vs_merge_50": "< 0.25"},
    }))


if __name__ == "__main__":
    main()
