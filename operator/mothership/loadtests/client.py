"""The user's side of a cluster LoadTest: follow its status live, and render its results.

Why this exists: CI gates on ``mothership loadtest wait NAME`` (exit 0 when the
thresholds passed, 1 when one failed, 2 for anything else), and people read
``mothership loadtest results NAME``. The CLI stays a thin shell over this
module, in httpx's ``_main.py`` manner: :func:`follow` does the I/O (a watch
on the one LoadTest, resumed from its resourceVersion, falling back to a GET
when the watch breaks), and the ``format_*`` functions return text that the
CLI prints. Nothing here decides a phase; it reads what ``status.compute`` wrote.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import json
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp

from mothership.api.common import Manifest
from mothership.api.loadtest import (
    FINAL_PHASES,
    LoadTestConditionType,
    LoadTestPhase,
    LoadTestSpec,
    LoadTestStatus,
    RequestStats,
)
from mothership.kube import KINDS, ApiError, Call, Kube
from mothership.loadgen.coordinator import Result, Verdict, WorkerReport
from mothership.loadgen.thresholds import SYMBOLS, scoped_name
from mothership.loadgen.timeseries import unpack
from mothership.loadtests.builders import RESULTS_KEY, SERIES_KEY, results_name
from mothership.loadtests.status import condition, read_status

EXIT_PASSED = 0
EXIT_FAILED = 1
EXIT_OTHER = 2
"""Errored, Stopped, not found, or timed out."""



class NotFound(LookupError):
    """The LoadTest does not exist (or was deleted while we waited)."""


def exit_code(phase: LoadTestPhase | None) -> int:
    """0 Passed, 1 Failed, 2 for every other ending (Errored, Stopped) or none."""
    if phase is LoadTestPhase.PASSED:
        return EXIT_PASSED
    if phase is LoadTestPhase.FAILED:
        return EXIT_FAILED
    return EXIT_OTHER


async def get_loadtest(kube: Kube, namespace: str, name: str) -> Manifest:
    """The LoadTest object; :class:`NotFound` when it does not exist."""
    body = await kube.get("LoadTest", name, namespace)
    if body is None:
        raise NotFound(f"loadtest {name} not found in namespace {namespace}")
    return body


async def get_status(kube: Kube, namespace: str, name: str) -> tuple[LoadTestStatus, str]:
    """The LoadTest's status and resourceVersion; :class:`NotFound` when it does not exist."""
    body = await get_loadtest(kube, namespace, name)
    return read_status(body.get("status")), str(body["metadata"].get("resourceVersion", ""))


async def follow(
    kube: Kube,
    namespace: str,
    name: str,
    *,
    timeout: float,
    on_status: Callable[[LoadTestStatus], None] | None = None,
) -> LoadTestStatus:
    """Follow the LoadTest until its phase is final; return that status.

    ``on_status`` sees every distinct status on the way. Raises TimeoutError
    after ``timeout`` seconds and :class:`NotFound` if the test is (or goes) missing.
    """
    last: list[LoadTestStatus] = []

    def seen(status: LoadTestStatus) -> bool:
        if not last or status != last[-1]:
            last[:] = [status]
            if on_status is not None:
                on_status(status)
        return status.phase in FINAL_PHASES

    async def loop() -> LoadTestStatus:
        status, version = await get_status(kube, namespace, name)
        if seen(status):
            return status
        while True:
            try:
                async for event in _watch(kube, namespace, name, version):
                    kind = event.get("type")
                    obj = event.get("object") or {}
                    if kind == "DELETED":
                        raise NotFound(f"loadtest {name} was deleted in namespace {namespace}")
                    if kind == "ERROR":
                        break  # expired resourceVersion (410) or similar: re-read, re-watch
                    version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                    if kind in ("ADDED", "MODIFIED"):
                        status = read_status(obj.get("status"))
                        if seen(status):
                            return status
            except (aiohttp.ClientError, OSError, ValueError):
                await asyncio.sleep(1.0)  # the watch broke: fall back to a GET, then watch again
            status, version = await get_status(kube, namespace, name)
            if seen(status):
                return status

    return await asyncio.wait_for(loop(), timeout=timeout)


async def _watch(kube: Kube, namespace: str, name: str, version: str) -> Any:
    """Watch events of one LoadTest from ``version``, one JSON object per line."""
    creds = kube.credentials
    kind = KINDS["LoadTest"]
    url = creds.server + kind.path(namespace)
    params = {"watch": "true", "fieldSelector": f"metadata.name={name}", "allowWatchBookmarks": "true",
              "timeoutSeconds": "300"}
    if version:
        params["resourceVersion"] = version
    headers = {"Accept": "application/json"}
    auth = creds.header()
    if auth:
        headers["Authorization"] = auth
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=330)
    connector = aiohttp.TCPConnector(ssl=creds.ssl_context())
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session, session.get(
            url, params=params, headers=headers) as response:
        if response.status >= 400:
            raise ApiError(response.status, response.reason or "", await response.text(),
                           call=Call("watch", kind.group, kind.plural))
        async for line in response.content:
            if line.strip():
                yield json.loads(line)


async def get_results(kube: Kube, namespace: str, name: str) -> dict[str, Any] | None:
    """The LoadTest's ``results.json`` from its ConfigMap ``<name>-results``, or None when there is
    none (not written yet, deleted after the TTL, unreadable, or no permission to read it)."""
    try:
        body = await kube.get("ConfigMap", results_name(name), namespace)
    except ApiError:
        return None
    return stored_document((body or {}).get("data") or {})


def stored_document(data: Mapping[str, str]) -> dict[str, Any] | None:
    """``results.json`` from a results ConfigMap's ``data``; None if missing or not a JSON object."""
    try:
        document = json.loads(data.get(RESULTS_KEY) or "null")
    except (ValueError, TypeError):
        return None
    return document if isinstance(document, dict) else None


# --- the report -------------------------------------------------------------------------------


def result_from_status(status: LoadTestStatus) -> Result:
    """A Result from what the LoadTest's status keeps: verdict, summary, thresholds, failed workers.

    The fallback when the results ConfigMap is gone: the report then has no
    charts (they are empty) and only the status's busiest rows of the per-request table.
    """
    verdicts = {LoadTestPhase.PASSED: Verdict.PASSED, LoadTestPhase.FAILED: Verdict.FAILED,
                LoadTestPhase.STOPPED: Verdict.STOPPED, LoadTestPhase.ERRORED: Verdict.ERRORED}
    verdict = verdicts.get(status.phase)
    completed = condition(status, LoadTestConditionType.COMPLETED)
    reason = completed.message if completed is not None and completed.status == "True" else status.phase.value
    start_at = None
    if status.start_at:
        with contextlib.suppress(ValueError):
            start_at = datetime.datetime.fromisoformat(status.start_at.replace("Z", "+00:00")).timestamp()
    failed = {f.index: f for f in status.workers.failures}
    workers = [WorkerReport(index=i, state="failed" if i in failed else "done" if verdict else "unknown",
                            elapsed=status.summary.duration_seconds) for i in range(status.workers.total)]
    return Result(verdict=verdict, reason=reason, final=verdict is not None, start_at=start_at,
                  elapsed=status.summary.duration_seconds, summary=status.summary,
                  thresholds=status.thresholds, workers=workers, failures=status.workers.failures,
                  by_request=status.by_request)


def apply_stored(result: Result, data: Mapping[str, str], binary: Mapping[str, str]) -> Result:
    """``result`` completed from a results ConfigMap's ``data`` and ``binaryData`` (base64), where present:
    the whole per-request table from ``results.json``, the time series from its packed key."""
    document = stored_document(data) or {}
    rows = document.get("byRequest")
    if isinstance(rows, list):
        with contextlib.suppress(ValueError, TypeError):
            result.by_request = [RequestStats.model_validate(r) for r in rows]
            result.by_request_missing = bool(document.get("byRequestMissing"))
    packed = binary.get(SERIES_KEY)
    if packed:
        # An unreadable series leaves the report without charts, not without results.
        with contextlib.suppress(ValueError):
            result.time_series = unpack(base64.b64decode(packed))
    return result


async def read_report(kube: Kube, namespace: str, name: str) -> tuple[Result, LoadTestSpec | None]:
    """The final (or latest) Result of a cluster LoadTest and its spec: the results ConfigMap over status.

    :class:`NotFound` when the LoadTest does not exist; a missing ConfigMap
    (never written, or deleted with the test's children) falls back to status.
    """
    body = await get_loadtest(kube, namespace, name)
    spec: LoadTestSpec | None
    try:
        spec = LoadTestSpec.model_validate(body.get("spec") or {})
    except ValueError:
        spec = None
    result = result_from_status(read_status(body.get("status")))
    stored = await kube.get("ConfigMap", results_name(name), namespace)
    if stored is not None:
        result = apply_stored(result, stored.get("data") or {}, stored.get("binaryData") or {})
    return result, spec


# --- rendering --------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}ms" if value < 1000 else f"{value / 1000:.2f}s"


def format_progress(status: LoadTestStatus) -> str:
    """One line per change while waiting: phase, workers, live rps, p95, error rate."""
    w = status.workers
    s = status.summary
    line = (f"{status.phase.value:<9} workers {w.ready}/{w.total} ready, {w.running} running, "
            f"{w.succeeded} done, {w.failed} failed")
    if s.requests or s.websocket.sessions:
        line += (f" | {s.requests} requests, {s.rps:.1f}/s, p95 {_ms(s.http_req_duration.p95)}, "
                 f"errors {s.error_rate:.2%}")
    return line


def _threshold_line(result: Any) -> str:
    symbol = SYMBOLS.get(result.op, result.op)
    value = "no data" if result.value is None else f"{result.value:.6g}"
    mark = "ok  " if result.ok else "FAIL"
    return f"    {mark} {scoped_name(result)} {result.stat} {symbol} {result.limit:.6g} (got {value})"


def format_by_request(status: LoadTestStatus, results: dict[str, Any] | None) -> list[str]:
    """The per-request table: every row from the results ConfigMap, else the busiest rows the status keeps."""
    if results is not None and isinstance(results.get("byRequest"), list):
        rows = [RequestStats.model_validate(r) for r in results["byRequest"]]
        total = int(results.get("byRequestRows") or len(rows))
        note = f" ({len(rows)} of {total} rows: a ConfigMap holds 1 MiB)" if len(rows) < total else ""
    else:
        rows, total = status.by_request, status.by_request_rows
        note = f" (the {len(rows)} busiest of {total}; all were in the results ConfigMap)" \
            if len(rows) < total else ""
    if not rows:
        return []
    width = max(len(f"{r.scenario} {r.name}") for r in rows)
    head = (f"    {'scenario name':<{width}}  {'reqs':>8} {'fails':>7} {'p50':>9} {'p95':>9} "
            f"{'p99':>9} {'rps':>8}")
    lines = [f"  by request{note}", head]
    for r in rows:
        d = r.duration
        label = f"{r.scenario} {r.name}"
        lines.append(f"    {label:<{width}}  {r.requests:>8} {r.errors:>7} {_ms(d.p50):>9} "
                     f"{_ms(d.p95):>9} {_ms(d.p99):>9} {r.rps:>8.1f}")
    return lines


def format_results(namespace: str, name: str, status: LoadTestStatus,
                   results: dict[str, Any] | None = None) -> str:
    """The results as a small table for people: verdict, workers, summary, per-request table,
    thresholds, failures. ``results`` is the results ConfigMap's document (``get_results``)."""
    s = status.summary
    completed = condition(status, LoadTestConditionType.COMPLETED)
    why = f" ({completed.reason}: {completed.message})" if completed and completed.status == "True" else ""
    lines = [f"LoadTest {namespace}/{name}: {status.phase.value}{why}"]
    if status.start_at:
        lines.append(f"  start       {status.start_at}"
                     + (f", completed {status.completion_time}" if status.completion_time else ""))
    w = status.workers
    lines.append(f"  workers     {w.total} total, {w.succeeded} succeeded, {w.failed} failed")
    lines.append(f"  duration    {s.duration_seconds:.1f}s")
    lines.append(f"  requests    {s.requests} ({s.rps:.1f}/s), errors {s.errors} ({s.error_rate:.2%})")
    if s.errors_by_class:
        lines.append("  errors by   " + ", ".join(f"{k} {v}" for k, v in sorted(s.errors_by_class.items())))
    d = s.http_req_duration
    if d.count:
        lines.append(f"  latency     p50 {_ms(d.p50)}  p90 {_ms(d.p90)}  p95 {_ms(d.p95)}  "
                     f"p99 {_ms(d.p99)}  max {_ms(d.max)}")
    ws = s.websocket
    if ws.sessions:
        lines.append(f"  websocket   {ws.sessions} sessions, {ws.handshake_failures} handshake failures, "
                     f"{ws.abnormal_closures} abnormal closures, {ws.messages_sent} sent, "
                     f"{ws.messages_received} received, p95 {_ms(ws.message_latency.p95)}")
    lines.append(f"  data        {s.data_sent} bytes sent, {s.data_received} bytes received")
    lines.extend(format_by_request(status, results))
    if status.thresholds:
        lines.append("  thresholds")
        lines.extend(_threshold_line(t) for t in status.thresholds)
    if w.failures:
        lines.append("  failed workers")
        lines.extend(f"    worker {f.index}: {f.reason}" + (f" ({f.message})" if f.message else "")
                     for f in w.failures)
    return "\n".join(lines)


def format_json(namespace: str, name: str, status: LoadTestStatus,
                results: dict[str, Any] | None = None) -> str:
    """The results as JSON: the LoadTest's name and namespace with its status (camelCase, as stored);
    with the results ConfigMap, ``byRequest`` is its whole table (plus byRequestOmitted/Missing)."""
    body: dict[str, Any] = {"namespace": namespace, "name": name, **status.wire()}
    if results is not None and isinstance(results.get("byRequest"), list):
        body["byRequest"] = results["byRequest"]
        body["byRequestRows"] = results.get("byRequestRows", len(results["byRequest"]))
        body["byRequestOmitted"] = results.get("byRequestOmitted", 0)
        body["byRequestMissing"] = results.get("byRequestMissing", False)
    return json.dumps(body, indent=2)
