"""The load-test report: one self-contained HTML page from a ``Result`` and the spec that ran.

Why this exists: a test ends with questions about time (when did latency climb,
did errors start at 300 users or 350), and a laptop has no Prometheus. The
same page serves ``loadtest run --report FILE``, the live ``--web`` dashboard
and ``loadtest report NAME`` for a cluster test.

Why plain SVG written here rather than a plotting library: four line charts
need axes, a few polylines and a crosshair; the page is about 30 KB for a
10 min test, where embedding a library that works offline (Plotly's bundle is
~3.5 MB, Bokeh's ~1 MB) would dominate every report. The page fetches
nothing: no external URL, styles and the ~60-line script are inline.

What the browser tests rely on (tests/browser):

* each chart is ``<svg class="chart" data-chart=ID>``; each series is a
  ``<path class="series" data-name=.. data-points=N data-values=JSON>`` whose
  ``d`` has one vertex per non-null value (a gap where a point had no data);
* the verdict is ``#verdict[data-verdict]``; table cells carry their raw value
  in ``data-value``; ``#totals`` carries the cumulative counts at the last
  point (``data-requests`` etc.), which equal the summary's;
* with ``live=True`` the page re-fetches itself every second and swaps its
  ``<main>`` until the page it gets is final.

This module renders only; it knows nothing of sockets or Kubernetes.
"""

from __future__ import annotations

import datetime
import html
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from itertools import accumulate
from typing import Any

import yaml

from ..api.loadtest import LoadTestSpec
from .coordinator import Result
from .live import format_ms, format_threshold_value
from .thresholds import SYMBOLS
from .timeseries import TimeSeries

WIDTH, HEIGHT = 880, 230
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 14, 30
COLORS = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777",
          "#4b5563", "#65a30d")


def rates(t: Sequence[float], deltas: Sequence[int]) -> list[float | None]:
    """Per-second rates of per-point deltas: each over its own length (``t[i] - t[i-1]``, from 0)."""
    out: list[float | None] = []
    prev = 0.0
    for end, n in zip(t, deltas, strict=True):
        out.append(round(n / (end - prev), 3) if end > prev else None)
        prev = end
    return out


Series = list[tuple[str, list[float | None]]]


def charts(ts: TimeSeries) -> list[tuple[str, str, str, Series]]:
    """(id, title, unit, [(series name, values)]) for every chart of the report."""
    t = ts.t
    throughput: Series = [("requests/s", rates(t, ts.requests))]
    throughput += [(f"errors/s {cls}", rates(t, values)) for cls, values in ts.errors.items()]
    if any(ts.dropped_iterations):
        throughput.append(("dropped iterations/s", rates(t, ts.dropped_iterations)))
    out: list[tuple[str, str, str, Series]] = [
        ("throughput", "Throughput and errors", "/s", throughput),
        ("latency", "HTTP latency", "ms", [("p50", list(ts.p50)), ("p95", list(ts.p95)),
                                           ("p99", list(ts.p99))]),
        ("users", "Virtual users and WebSocket connections", "", [
            ("virtual users", [float(v) for v in ts.virtual_users]),
            ("ws connections", [float(v) for v in ts.ws_connections])]),
        ("websocket", "WebSocket messages and sessions", "/s", [
            ("sent/s", rates(t, ts.ws_msgs_sent)), ("received/s", rates(t, ts.ws_msgs_received)),
            ("sessions/s", rates(t, ts.ws_sessions))]),
    ]
    if ts.by_request:
        out.append(("requests", "Requests per second by name (top)", "/s",
                    [(name, rates(t, row.requests)) for name, row in ts.by_request.items()]))
    return out


def _nice(value: float) -> float:
    """The smallest 1/2/5 x 10^k at or above ``value`` (an axis maximum)."""
    if value <= 0:
        return 1.0
    exp = math.floor(math.log10(value))
    for m in (1, 2, 2.5, 5, 10):
        if m * 10**exp >= value:
            return float(m * 10**exp)
    return float(10 ** (exp + 1))


def _divisions(ymax: float) -> int:
    """Grid steps for an axis up to ``_nice(...)``: 5 for 2.5 and 5 x 10^k (steps of 0.5 and 1), else 4."""
    mantissa = ymax / 10 ** math.floor(math.log10(ymax))
    return 5 if round(mantissa, 6) in (2.5, 5.0) else 4


def _num(v: float) -> str:
    if v >= 1000:
        return f"{v / 1000:g}k"
    return f"{v:g}"


def svg_chart(chart_id: str, title: str, unit: str, t: Sequence[float],
              series: Sequence[tuple[str, Sequence[float | None]]], so_far: Sequence[int] = ()) -> str:
    """One line chart as inline SVG (the contract is in the module docstring).

    ``so_far``: running request totals per point, which the tooltip shows ("requests so far").
    """
    tmax = max(t, default=0.0) or 1.0
    ymax = _nice(max((v for _, vs in series for v in vs if v is not None), default=0.0) * 1.05)
    w, h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(sec: float) -> float:
        return round(LEFT + sec / tmax * w, 1)

    def y(v: float) -> float:
        return round(TOP + h - v / ymax * h, 1)

    parts = [f'<svg class="chart" data-chart="{chart_id}" viewBox="0 0 {WIDTH} {HEIGHT}" '
             f'data-t="{html.escape(json.dumps(list(t)))}" data-left="{LEFT}" data-width="{w}" '
             f'data-tmax="{tmax}" data-unit="{html.escape(unit)}" role="img" '
             + (f'data-so-far="{json.dumps(list(so_far))}" ' if so_far else "")
             + f'aria-label="{html.escape(title)}">']
    divisions = _divisions(ymax)
    for k in range(divisions + 1):
        v = ymax * k / divisions
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{LEFT + w}" y1="{y(v)}" y2="{y(v)}"/>'
                     f'<text class="tick" x="{LEFT - 6}" y="{y(v) + 4}" text-anchor="end">'
                     f'{_num(round(v, 6))}</text>')
    step = _nice(tmax / 6)
    k = 0
    while k * step <= tmax + 1e-9:
        parts.append(f'<text class="tick" x="{x(k * step)}" y="{HEIGHT - 10}" text-anchor="middle">'
                     f'{_num(round(k * step, 6))}s</text>')
        k += 1
    for n, (name, values) in enumerate(series):
        d: list[str] = []
        pen = "M"
        for sec, value in zip(t, values, strict=True):
            if value is None:
                pen = "M"
                continue
            d.append(f"{pen}{x(sec)},{y(value)}")
            pen = "L"
        count = sum(v is not None for v in values)
        parts.append(f'<path class="series" data-name="{html.escape(name)}" data-points="{count}" '
                     f'data-values="{html.escape(json.dumps(list(values)))}" '
                     f'stroke="{COLORS[n % len(COLORS)]}" '
                     f'd="{" ".join(d)}"/>')
    parts.append(f'<line class="crosshair" x1="0" x2="0" y1="{TOP}" y2="{TOP + h}" visibility="hidden"/>')
    parts.append("</svg>")
    legend = "".join(f'<span><i style="background:{COLORS[n % len(COLORS)]}"></i>{html.escape(name)}</span>'
                     for n, (name, _) in enumerate(series))
    return (f'<figure><figcaption>{html.escape(title)}{f" ({html.escape(unit)})" if unit else ""}'
            f'<span class="legend">{legend}</span></figcaption>{"".join(parts)}</figure>')


def _cell(value: Any, shown: str | None = None) -> str:
    raw = html.escape(json.dumps(value))
    return f'<td data-value="{raw}">{html.escape(shown if shown is not None else _show(value))}</td>'


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".") if not value.is_integer() else f"{value:,.0f}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_show(v)}" for k, v in value.items()) or "-"
    return str(value)


def _flatten(row: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in row.items():
        if isinstance(v, Mapping) and v and all(isinstance(x, Mapping) or not isinstance(x, dict)
                                                for x in v.values()) and not _is_counts(v):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _is_counts(v: Mapping[str, Any]) -> bool:
    """A map of counts (errors by class) stays one cell; a nested record (percentiles) is flattened."""
    return all(isinstance(x, int) for x in v.values()) and not {"p50", "p95", "count"} & set(v)


def table(rows: Iterable[Mapping[str, Any]], table_id: str) -> str:
    """Rows of wire dicts as an HTML table; nested records become ``a.b`` columns."""
    flat = [_flatten(r) for r in rows]
    columns: list[str] = []
    for r in flat:
        columns += [k for k in r if k not in columns]
    if not flat:
        return f'<p class="empty" id="{table_id}">none</p>'
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(_cell(r.get(c)) for c in columns) + "</tr>" for r in flat)
    return (f'<div class="wide"><table id="{table_id}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{body}</tbody></table></div>')


def request_rows(result: Result) -> list[dict[str, Any]]:
    """The per-request table: one row per ``Result.by_request`` entry, in its order, the columns a
    reader compares (latency in ms; WebSocket message counts only when a WebSocket row exists)."""
    ws = any(r.protocol == "ws" for r in result.by_request)
    out = []
    for r in result.by_request:
        d = r.duration
        row: dict[str, Any] = {"scenario": r.scenario, "name": r.name, "protocol": r.protocol,
                               "requests": r.requests, "rps": r.rps, "errors": r.errors,
                               "error rate": r.error_rate, "p50 ms": d.p50, "p95 ms": d.p95,
                               "p99 ms": d.p99, "max ms": d.max}
        if ws:
            row |= {"ws sent": r.messages_sent, "ws received": r.messages_received}
        out.append(row)
    return out


def _threshold_rows(result: Result) -> str:
    if not result.thresholds:
        return '<p class="empty" id="thresholds">no thresholds</p>'
    body = []
    for r in result.thresholds:
        state = "pass" if r.ok else "FAIL"
        body.append(
            f'<tr class="{"ok" if r.ok else "bad"}">'
            + _cell(r.ok, state) + _cell(r.metric) + _cell(r.stat)
            + _cell(r.limit, f"{SYMBOLS[r.op]} {format_threshold_value(r.metric, r.stat, r.limit)}")
            + _cell(r.value, format_threshold_value(r.metric, r.stat, r.value)) + "</tr>")
    return ('<table id="thresholds"><thead><tr><th>state</th><th>metric</th><th>stat</th><th>limit</th>'
            f'<th>value</th></tr></thead><tbody>{"".join(body)}</tbody></table>')


def _headline(result: Result) -> str:
    s = result.summary
    ts = result.time_series
    items = [
        ("requests", f"{s.requests:,}"), ("requests/s", f"{s.rps:,.1f}"),
        ("errors", f"{s.errors:,} ({s.error_rate * 100:.2f}%)"),
        ("p50", format_ms(s.http_req_duration.p50)), ("p95", format_ms(s.http_req_duration.p95)),
        ("p99", format_ms(s.http_req_duration.p99)), ("peak virtual users", f"{s.virtual_users:,}"),
        ("ws sessions", f"{s.websocket.sessions:,}"),
        ("ws messages", f"{s.websocket.messages_sent:,} sent, {s.websocket.messages_received:,} received"),
        ("dropped iterations", f"{s.dropped_iterations:,}"),
    ]
    cells = "".join(f"<div><b>{html.escape(v)}</b><small>{html.escape(k)}</small></div>" for k, v in items)
    totals = (f'<div id="totals" data-points="{len(ts)}" data-requests="{sum(ts.requests)}" '
              f'data-errors="{sum(sum(v) for v in ts.errors.values())}" '
              f'data-ws-msgs-received="{sum(ts.ws_msgs_received)}" '
              f'data-interval="{ts.interval:g}" hidden></div>')
    return f'<section class="numbers">{cells}</section>{totals}'


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "not started"
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def render(result: Result, spec: LoadTestSpec | None, *, title: str, live: bool = False) -> str:
    """The whole page. ``live``: it re-fetches itself every second until it shows a final result."""
    verdict = result.verdict.value if result.verdict is not None else "running"
    ts = result.time_series
    so_far = list(accumulate(ts.requests))
    chart_html = "".join(svg_chart(cid, ctitle, unit, ts.t, series, so_far if cid == "throughput" else ())
                         for cid, ctitle, unit, series in charts(ts))
    workers = table(({"index": w.index, "state": w.state, "elapsed": w.elapsed,
                      "startedAt": _when(w.started_at) if w.started_at else None}
                     for w in result.workers), "workers")
    failures = table((f.wire() for f in result.failures), "failures")
    spec_text = yaml.safe_dump(spec.wire(), sort_keys=False) if spec is not None else "(not known)"
    interval = f"{ts.interval:g} s" if len(ts) else "-"
    main = f"""<main data-final="{str(result.final).lower()}">
<header><h1>{html.escape(title)}</h1>
<p><span id="verdict" class="verdict {verdict}" data-verdict="{verdict}">{verdict}</span>
<span id="reason">{html.escape(result.reason)}</span></p>
<p class="meta">started {_when(result.start_at)} &middot; {result.elapsed:g} s of load &middot;
{len(result.workers)} worker{"s" * (len(result.workers) != 1)} &middot; {len(ts)} points of {interval}</p>
</header>
{_headline(result)}
<h2>Thresholds</h2>{_threshold_rows(result)}
<h2>Over time</h2>{chart_html or '<p class="empty">no data yet</p>'}
<h2>Requests</h2>{table(request_rows(result), "requests")}
<h2>Workers</h2>{workers}
<h2>Failures</h2>{failures}
<h2>Spec</h2><pre id="spec">{html.escape(spec_text)}</pre>
</main>"""
    return PAGE.format(title=html.escape(title), style=STYLE, script=SCRIPT, main=main,
                       live=str(live).lower())


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{title}</title><style>{style}</style></head>
<body data-live="{live}">{main}
<div id="tip" hidden></div>
<footer>Made by <code>mothership loadtest</code>: one self-contained file, nothing fetched.</footer>
<script>{script}</script></body></html>
"""

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0 auto;max-width:920px;padding:16px;color:#111;background:#fff}
h1{font-size:20px;margin:0 0 6px}h2{font-size:16px;margin:22px 0 8px;border-bottom:1px solid #ddd}
.verdict{display:inline-block;padding:2px 10px;border-radius:4px;color:#fff;font-weight:600;margin-right:8px}
.passed{background:#16a34a}.failed,.errored{background:#dc2626}.stopped{background:#ca8a04}
.running{background:#2563eb}.meta{color:#555;margin:4px 0}
.numbers{display:grid;grid-template-columns:repeat(5,1fr);gap:8px}
.numbers div{background:#f4f4f5;border-radius:6px;padding:6px 8px}.numbers b{display:block;font-size:15px}
.numbers small{color:#555}table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:3px 6px;border-bottom:1px solid #eee;white-space:nowrap}
.wide{overflow-x:auto}tr.bad td{color:#b91c1c}
figure{margin:10px 0}figcaption{font-weight:600;display:flex;gap:12px;flex-wrap:wrap}
.legend{font-weight:400;display:flex;gap:10px;flex-wrap:wrap}.legend i{display:inline-block;width:10px;
height:10px;margin-right:4px;border-radius:2px}svg.chart{width:100%;height:auto;display:block}
.grid{stroke:#e5e7eb}.tick{font-size:11px;fill:#555}.series{fill:none;stroke-width:1.8}
.crosshair{stroke:#111;stroke-dasharray:3 3}pre{background:#f4f4f5;padding:8px;overflow:auto;font-size:12px}
#tip{position:absolute;background:#111;color:#fff;padding:4px 8px;border-radius:4px;font-size:12px;
pointer-events:none;white-space:pre}.empty{color:#555}footer{color:#777;margin-top:24px;font-size:12px}
"""

SCRIPT = """
(function(){
var tip=document.getElementById('tip');
function near(t,sec){var b=0;
  for(var i=1;i<t.length;i++){if(Math.abs(t[i]-sec)<Math.abs(t[b]-sec))b=i;}return b;}
document.addEventListener('mousemove',function(e){
  var svg=e.target.closest&&e.target.closest('svg.chart');
  document.querySelectorAll('svg.chart .crosshair').forEach(function(l){
    l.setAttribute('visibility','hidden');});
  if(!svg){tip.hidden=true;return;}
  var t=JSON.parse(svg.dataset.t);if(!t.length){tip.hidden=true;return;}
  var p=new DOMPoint(e.clientX,e.clientY).matrixTransform(svg.getScreenCTM().inverse());
  var left=+svg.dataset.left,w=+svg.dataset.width,tmax=+svg.dataset.tmax;
  var i=near(t,(p.x-left)/w*tmax),x=left+t[i]/tmax*w;
  var line=svg.querySelector('.crosshair');line.setAttribute('x1',x);line.setAttribute('x2',x);
  line.setAttribute('visibility','visible');
  var text=t[i]+' s';
  svg.querySelectorAll('.series').forEach(function(s){var v=JSON.parse(s.dataset.values)[i];
    text+='\\n'+s.dataset.name+': '+(v===null?'-':(+v.toFixed(3))+(svg.dataset.unit==='ms'?' ms':''));});
  if(svg.dataset.soFar){text+='\\nrequests so far: '+JSON.parse(svg.dataset.soFar)[i];}
  tip.textContent=text;tip.hidden=false;tip.style.left=(e.pageX+14)+'px';tip.style.top=(e.pageY+10)+'px';
});
function poll(){
  fetch(location.pathname,{cache:'no-store'}).then(function(r){return r.text();}).then(function(text){
    var doc=new DOMParser().parseFromString(text,'text/html'),main=doc.querySelector('main');
    if(main){document.querySelector('main').replaceWith(main);}
    document.body.dataset.updates=(+(document.body.dataset.updates||0))+1;
  }).catch(function(){}).then(function(){
    if(document.querySelector('main').dataset.final!=='true'){setTimeout(poll,1000);}
  });
}
if(document.body.dataset.live==='true'&&document.querySelector('main').dataset.final!=='true'){
  setTimeout(poll,1000);}
})();
"""
