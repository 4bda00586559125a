"""Thresholds: pass/fail rules checked against a merged snapshot.

Why this exists apart from the coordinator: the same check runs on every poll
(live state, ``abortOnFail``) and once more on the final merged snapshot, and
the operator rebuilds a result from termination messages with it too. A
threshold is parsed once by ``api.loadtest.Threshold`` (``.op``, ``.limit()``
in base units); the value comes from ``stats.stat_value`` (base units too:
seconds, 0..1 ratios, counts), so the comparison is a plain float compare.

A threshold with no data yet (no request made, no message received) holds:
its value is None and ``ok`` is True, as in k6, so a test is not failed by a
metric it never produced. Write ``{metric: http_reqs, stat: count, gt: 0}``
when "something must have happened" is the rule.

Aborting early (``abortOnFail``) needs a failure that cannot recover: a
``count`` checked with ``gt``/``gte`` only grows, so while it is short of the
bound it is "not met yet", not failed for good, and it does not abort the
run; it is judged at the end like any other threshold.

A threshold scoped to a ``scenario`` and/or a ``request`` name (k6's
``http_req_duration{scenario:browse}``) is judged on the merge of only those
per-request rows (``stats.scoped_snapshot``).

This module knows nothing of workers, HTTP or Kubernetes.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

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


def abort_reasons(thresholds: Sequence[Threshold], results: Sequence[ThresholdResult]) -> list[str]:
    """One line per ``abortOnFail`` threshold that failed for good (empty: keep running)."""
    return [
        describe(r)
        for t, r in zip(thresholds, results, strict=True)
        if t.abort_on_fail and not r.ok and not can_recover(t)
    ]


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
