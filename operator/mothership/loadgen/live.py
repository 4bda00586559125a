"""What ``mothership loadtest run`` shows: the live view while a test runs, and the final summary.

Why the split: ``format_*`` functions are pure, from a coordinator ``Result``
(and the spec) to rich renderables or plain strings, so tests can render
them to text and check key lines; ``print_*`` functions and ``LiveView`` do
the I/O on a Console (the httpx ``_main.py`` split). Units follow the
``Summary``: latencies in milliseconds; threshold values arrive in base units
(seconds, ratios, counts) and are shown in the unit a person reads.

This module knows nothing of processes, HTTP or Kubernetes: it only renders.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from ..api.loadtest import LoadTestSpec, Percentiles, RequestStats, ThresholdResult, busiest
from ..api.vocabulary import BY_NAME, Stat, Unit
from .coordinator import Result, Verdict
from .thresholds import SYMBOLS, can_recover, scoped_name

VERDICT_STYLE = {
    Verdict.PASSED: "bold green",
    Verdict.FAILED: "bold red",
    Verdict.STOPPED: "bold yellow",
    Verdict.ERRORED: "bold red",
}


# --- pure formatting ---------------------------------------------------------------------


def format_ms(value: float | None) -> str:
    """Milliseconds for people: ``0.42ms``, ``12.3ms``, ``1.25s``; ``-`` without data."""
    if value is None:
        return "-"
    if value >= 1000:
        return f"{value / 1000:.2f}s"
    if value >= 100:
        return f"{value:.0f}ms"
    if value >= 10:
        return f"{value:.1f}ms"
    return f"{value:.2f}ms"


def format_threshold_value(metric: str, stat: str, value: float | None) -> str:
    """A threshold value or limit (base units) in the unit a person reads: ms, %, a count or a rate."""
    if value is None:
        return "no data"
    unit = BY_NAME[metric].unit
    if unit is Unit.SECONDS and stat not in (Stat.COUNT, Stat.RATE):
        return format_ms(value * 1000)
    if unit is Unit.RATIO and stat == Stat.RATE:
        return f"{value * 100:.2f}%"
    if stat == Stat.RATE:
        return f"{value:,.1f}/s"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.3f}"


def format_threshold(result: ThresholdResult) -> str:
    """``http_req_duration p95 < 250ms: 12.3ms`` (plain text, no verdict mark)."""
    limit = format_threshold_value(result.metric, result.stat, result.limit)
    value = format_threshold_value(result.metric, result.stat, result.value)
    return f"{scoped_name(result)} {result.stat} {SYMBOLS[result.op]} {limit}: {value}"


def format_thresholds(results: Iterable[ThresholdResult], *, final: bool) -> Table:
    """One row per threshold: its state and the rule with its value.

    Final: pass or FAIL. Live: ok, failing, or ``not yet`` for a count that
    must still grow to its bound (it is judged at the end).
    """
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(no_wrap=True)
    table.add_column()
    for r in results:
        if r.ok:
            mark = Text("pass" if final else "ok", style="green")
        elif not final and can_recover(r):
            mark = Text("not yet", style="yellow")
        else:
            mark = Text("FAIL" if final else "failing", style="bold red")
        table.add_row(mark, format_threshold(r))
    return table


def format_latency_row(name: str, p: Percentiles) -> list[str]:
    return [name, f"{p.count:,}", format_ms(p.p50), format_ms(p.p95), format_ms(p.p99), format_ms(p.max)]


def format_numbers(result: Result, *, live: bool) -> Table:
    """The headline numbers: requests and rps, errors by class, WebSocket activity."""
    s = result.summary
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    rps_label = "rps (last window)" if live else "rps (whole run)"
    table.add_row("requests", f"{s.requests:,}   {rps_label} {s.rps:,.1f}")
    by_class = ", ".join(f"{k} {v:,}" for k, v in s.errors_by_class.items()) or "none"
    table.add_row("errors", f"{s.errors:,} ({s.error_rate * 100:.2f}%)   {by_class}")
    ws = s.websocket
    if ws.sessions or result.ws_connections_now:
        open_now = f"{result.ws_connections_now:,} open now, " if live else ""
        table.add_row(
            "websocket",
            f"{ws.sessions:,} sessions ({open_now}peak {ws.connections:,}), messages sent "
            f"{ws.messages_sent:,} / received {ws.messages_received:,}",
        )
        if ws.handshake_failures or ws.abnormal_closures:
            table.add_row("", f"handshake failures {ws.handshake_failures:,}, "
                              f"abnormal closures {ws.abnormal_closures:,}")
    if live:
        table.add_row("virtual users", f"{result.virtual_users_now:,}")
    elif s.virtual_users:
        table.add_row("virtual users", f"peak {s.virtual_users:,}")
    if s.dropped_iterations:
        table.add_row("dropped", f"{s.dropped_iterations:,} iterations (all virtual users busy)")
    return table


def format_latencies(result: Result) -> Table:
    """p50/p95/p99/max of HTTP requests, WebSocket handshakes and message round trips."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("latency", "count", "p50", "p95", "p99", "max"):
        table.add_column(column, justify="left" if column == "latency" else "right")
    s = result.summary
    table.add_row(*format_latency_row("http request", s.http_req_duration))
    if s.websocket.sessions:
        table.add_row(*format_latency_row("ws connect", s.websocket.connecting))
        table.add_row(*format_latency_row("ws message", s.websocket.message_latency))
    return table


LIVE_ROWS = 15
"""Rows of the per-request table in the live view (the busiest); the final summary shows them all."""


def format_by_request(rows: Sequence[RequestStats], *, limit: int | None = None) -> Table:
    """The per-request table, Locust-style: name, requests, fails, p50/p95/p99 (ms) and rps per row.

    With ``limit``, only the ``limit`` busiest rows, in table order, and a last line
    saying how many more there are.
    """
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("scenario", "name", "reqs", "fails", "p50", "p95", "p99", "rps"):
        table.add_column(column, justify="left" if column in ("scenario", "name") else "right")
    shown = list(rows) if limit is None else busiest(rows, limit)
    for r in shown:
        fails = f"{r.errors:,}" + (f" ({r.error_rate * 100:.1f}%)" if r.errors else "")
        table.add_row(r.scenario, r.name, f"{r.requests:,}", fails, format_ms(r.duration.p50),
                      format_ms(r.duration.p95), format_ms(r.duration.p99), f"{r.rps:,.1f}")
    if len(shown) < len(rows):
        table.add_row("", f"... {len(rows) - len(shown):,} more (all in the final table and --out)")
    return table


def format_progress(result: Result, duration_seconds: float) -> Table:
    """A progress bar of elapsed load time over the spec's duration."""
    elapsed = min(result.elapsed, duration_seconds)
    row = Table(box=None, show_header=False, pad_edge=False)
    row.add_column(no_wrap=True)
    row.add_column(ratio=1)
    row.add_row(f"{elapsed:5.1f}s / {duration_seconds:g}s ",
                ProgressBar(total=max(duration_seconds, 1e-9), completed=elapsed))
    return row


def format_workers(result: Result) -> Text:
    """``workers: 2 running`` or, with failures, which worker failed and why."""
    states: dict[str, int] = {}
    for w in result.workers:
        states[w.state] = states.get(w.state, 0) + 1
    text = Text("workers: " + ", ".join(f"{n} {state}" for state, n in states.items()))
    for f in result.failures:
        text.append(f"\n  worker {f.index} {f.reason}: {f.message}", style="red")
    return text


def format_live(result: Result, spec: LoadTestSpec, *, title: str) -> RenderableType:
    """The live view: progress, numbers, latencies, thresholds and workers, refreshed each poll."""
    parts: list[RenderableType] = [
        Text(title, style="bold"),
        format_progress(result, spec.duration_seconds()),
        format_numbers(result, live=True),
        format_latencies(result),
    ]
    if result.by_request:
        parts.append(format_by_request(result.by_request, limit=LIVE_ROWS))
    if result.thresholds:
        parts += [Text("thresholds", style="bold"), format_thresholds(result.thresholds, final=False)]
    parts.append(format_workers(result))
    return Group(*parts)


def format_verdict(result: Result) -> Text:
    """``PASSED  all 2 thresholds passed``, with a warning when open-model arrivals were dropped.

    Dropped iterations mean the pool of virtual users could not keep the
    arrival rate, so the target saw less load than asked: a pass is weaker
    than it reads. Threshold ``dropped_iterations count < 1`` to fail on it.
    """
    verdict = result.verdict or Verdict.ERRORED
    text = Text.assemble((verdict.value.upper(), VERDICT_STYLE[verdict]), f"  {result.reason}")
    dropped = result.summary.dropped_iterations
    if dropped:
        text.append(f"  (warning: {dropped:,} iterations dropped, all virtual users busy)",
                    style="bold yellow")
    return text


def format_summary(result: Result, *, title: str) -> RenderableType:
    """The final summary: verdict, numbers over the whole run, latencies, thresholds, workers."""
    parts: list[RenderableType] = [
        Text(f"{title}: {result.elapsed:.1f}s of load", style="bold"),
        format_numbers(result, live=False),
        format_latencies(result),
    ]
    if result.by_request:
        parts.append(format_by_request(result.by_request))
        if result.by_request_missing:
            parts.append(Text("some workers' per-request rows were lost: the rows undercount",
                              style="yellow"))
    if result.thresholds:
        parts += [Text("thresholds", style="bold"), format_thresholds(result.thresholds, final=True)]
    parts += [format_workers(result), format_verdict(result)]
    return Group(*parts)


def format_target_stats(stats: dict[str, Any]) -> Text:
    """What the demo target itself counted, to compare with the totals above."""
    http = stats.get("http", {})
    ws = stats.get("websocket", {})
    return Text(
        f"demo target counted: {http.get('requests', 0):,} HTTP requests, "
        f"{ws.get('sessions', 0):,} WebSocket sessions, {ws.get('messagesReceived', 0):,} messages "
        f"received / {ws.get('messagesSent', 0):,} sent",
        style="dim",
    )


def format_spec_errors(source: str, lines: Iterable[str]) -> str:
    """One line per error, naming the file and then the field: ``test.yaml: spec.duration: ...``
    (a line about the whole file already starts with its name)."""
    return "\n".join(line if line.startswith(f"{source}: ") else f"{source}: {line}" for line in lines)


# --- I/O ---------------------------------------------------------------------------------


def print_summary(console: Console, result: Result, *, title: str) -> None:
    console.print(format_summary(result, title=title))


class LiveView:
    """The refreshing live view, or nothing when ``enabled`` is False (not a terminal, ``--no-live``)."""

    def __init__(self, console: Console, spec: LoadTestSpec, *, title: str, enabled: bool) -> None:
        self.console = console
        self.spec = spec
        self.title = title
        self._live = Live(console=console, refresh_per_second=4, transient=True) if enabled else None

    def update(self, result: Result) -> None:
        if self._live is not None and not result.final:
            self._live.update(format_live(result, self.spec, title=self.title))

    def __enter__(self) -> LiveView:
        if self._live is not None:
            self._live.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._live is not None:
            self._live.__exit__(exc_type, exc, tb)
