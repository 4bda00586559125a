"""Thresholds: pass/fail rules checked against a merged snapshot.

Why this exists apart from the coordinator: the same check runs on every poll
(live state, ``abortOnFail``) and once more on the final merged snapshot, and
the operator rebuilds a result from termination messages with it too. A
threshold is parsed once by ``api.loadtest.Threshold`` (``.op``, ``.limit()``
in base units); the value comes from ``stats.stat_value`` (base units too:
seconds, 0..1 ratios, counts), so the comparison is a plain float compare.

A threshold with no data yet (no request made, no message received) holds:
its value is None and ``ok`` is True, as in k6, so a test is not failed by a
metric it never produced. A whole run with nothing to judge is another matter
(``no_data``): a test with thresholds in which no HTTP request got a response
and no WebSocket handshake completed ends Failed with reason NoData, so a
dead or hung target never passes. A count threshold on ``http_reqs`` or
``ws_sessions`` that holds at zero (``{metric: http_reqs, stat: count, lt: 1}``)
says "zero is fine" and lifts that rule.

Aborting early (``abortOnFail``) needs a failure that cannot recover: a
``count`` checked with ``gt``/``gte`` only grows, so while it is short of the
bound it is "not met yet", not failed for good, and it does not abort the
run; it is judged at the end like any other threshold. Nor is an abort
threshold judged before ``delayAbortEval`` (default 10 s, k6's name) has
passed, so the first second's handful of samples cannot end a test.

A threshold scoped to a ``scenario`` and/or a ``request`` name (k6's
``http_req_duration{scenario:browse}``) is judged on the merge of only those
per-request rows (``stats.scoped_snapshot``).

This module knows nothing of workers, HTTP or Kubernetes.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

from ..api.common import parse_duration
from ..api.loadtest import Threshold, ThresholdResult
from ..api.vocabulary import Stat
from .stats import scoped_snapshot, stat_value

COMPARE: dict[str, Callable[[float, float], bool]] = {
    "lt": operator.lt,
    "lte": operator.le,
    "gt": operator.gt,
    "gte": operator.ge,
}
"""The four comparisons a threshold may use, by their spec names."""
SYMBOLS: dict[str, str] = {"lt": "<", "lte": "<=", "gt": ">", "gte": ">="}
"""How each comparison is written for people."""


def evaluate_one(threshold: Threshold, snap: dict[str, Any], elapsed_seconds: float) -> ThresholdResult:
    """Check one threshold against a (merged) snapshot ``elapsed_seconds`` after the start barrier."""
    limit = threshold.limit()
    if threshold.scenario is not None or threshold.request is not None:
        snap = scoped_snapshot(snap, threshold.scenario, threshold.request)
    value = stat_value(snap, threshold.metric, threshold.stat, elapsed_seconds)
    ok = True if value is None else COMPARE[threshold.op](value, limit)
    return ThresholdResult(
        metric=threshold.metric,
        stat=threshold.stat.value,
        scenario=threshold.scenario,
        request=threshold.request,
        op=threshold.op,
        limit=limit,
        value=value,
        ok=ok,
    )


def evaluate(
    thresholds: Sequence[Threshold], snap: dict[str, Any], elapsed_seconds: float
) -> list[ThresholdResult]:
    """Check every threshold, in spec order (results line up with ``spec.thresholds``)."""
    return [evaluate_one(t, snap, elapsed_seconds) for t in thresholds]


def can_recover(threshold: Threshold | ThresholdResult) -> bool:
    """Whether a live failure of ``threshold`` may still turn into a pass (a count still growing)."""
    return threshold.stat == Stat.COUNT and threshold.op in ("gt", "gte")


def abort_reasons(thresholds: Sequence[Threshold], results: Sequence[ThresholdResult],
                  elapsed_seconds: float) -> list[str]:
    """One line per ``abortOnFail`` threshold that failed for good (empty: keep running).

    A threshold is not judged before its ``delayAbortEval`` of load has passed.
    """
    return [
        describe(r)
        for t, r in zip(thresholds, results, strict=True)
        if t.abort_on_fail and not r.ok and not can_recover(t)
        and elapsed_seconds >= parse_duration(t.delay_abort_eval)
    ]


ZERO_IS_FINE_METRICS = ("http_reqs", "ws_sessions")
"""A count threshold on one of these that holds at 0 lifts the NoData rule (see the module doc)."""


def completed(snap: dict[str, Any]) -> int:
    """Requests that got a response (any status) plus WebSocket handshakes that completed."""
    rows = snap.get("http_reqs", {}).values()
    responses = sum(int(n) for row in rows for key, n in row.items() if key != "none")
    return responses + int(snap.get("histograms", {}).get("ws_connecting", {}).get("count", 0))


def zero_is_fine(threshold: Threshold) -> bool:
    """Whether ``threshold`` says a run that completed nothing may pass (it holds at a zero count)."""
    return (threshold.metric in ZERO_IS_FINE_METRICS and threshold.stat == Stat.COUNT
            and COMPARE[threshold.op](0.0, threshold.limit()))


def no_data(thresholds: Sequence[Threshold], snap: dict[str, Any]) -> bool:
    """Whether a finished run must fail as NoData: thresholds to judge, nothing completed, no opt-out."""
    return bool(thresholds) and completed(snap) == 0 and not any(zero_is_fine(t) for t in thresholds)


def describe(result: ThresholdResult) -> str:
    """``http_req_duration p95 0.2513 !< 0.2`` style one-liner, base units; a scope shows k6-style,
    ``http_req_duration{scenario:shop,request:add-item}``."""
    value = "no data" if result.value is None else f"{result.value:.6g}"
    verdict = "" if result.ok else "!"
    return f"{scoped_name(result)} {result.stat} {value} {verdict}{SYMBOLS[result.op]} {result.limit:.6g}"


def scoped_name(result: Threshold | ThresholdResult) -> str:
    """The metric's name with its scope, if any: ``http_req_duration{request:add-item}``."""
    scope = [f"{k}:{v}" for k, v in (("scenario", result.scenario), ("request", result.request)) if v]
    return f"{result.metric}{{{','.join(scope)}}}" if scope else result.metric
