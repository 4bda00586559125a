"""The histogram's algebra and accuracy: every summary number rests on these properties."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mothership.loadgen.histogram import (
    BUCKETS,
    HIGHEST,
    LAYOUT,
    LOWEST,
    RELATIVE_ERROR,
    Histogram,
    LayoutMismatch,
    bucket_index,
    bucket_lower,
    bucket_upper,
    rank_of,
)

in_range = st.floats(min_value=1e-6, max_value=60.0, allow_nan=False, allow_infinity=False)
any_duration = st.one_of(
    in_range, st.floats(min_value=0.0, max_value=1e-6), st.floats(min_value=60.0, max_value=1e4)
)
samples = st.lists(any_duration, max_size=200)


def histogram_of(values: list[float]) -> Histogram:
    h = Histogram()
    for v in values:
        h.record(v)
    return h


def merged(*parts: Histogram) -> Histogram:
    out = Histogram()
    for p in parts:
        out.merge(p)
    return out


def test_the_layout_names_its_parameters() -> None:
    assert LAYOUT.startswith("loglin-v1:")
    assert "sub=64" in LAYOUT
    assert RELATIVE_ERROR <= 0.01


def test_the_in_range_span_covers_one_microsecond_to_sixty_seconds() -> None:
    assert LOWEST <= 1e-6
    assert HIGHEST >= 60.0
    assert bucket_index(1e-6) >= 0
    assert bucket_index(60.0) < BUCKETS


@given(in_range)
def test_every_value_lies_inside_its_bucket(value: float) -> None:
    i = bucket_index(value)
    assert bucket_lower(i) <= value < bucket_upper(i)


def test_bucket_bounds_tile_the_range_without_gaps() -> None:
    assert bucket_lower(0) == LOWEST
    assert bucket_upper(BUCKETS - 1) == HIGHEST
    for i in range(BUCKETS - 1):
        assert bucket_upper(i) == bucket_lower(i + 1)


def test_an_empty_histogram_reports_nothing() -> None:
    h = Histogram()
    assert h.count == 0
    assert h.min is None and h.max is None and h.mean is None
    assert h.quantile(0.5) is None


@given(samples, samples, samples)
def test_merging_is_associative(a: list[float], b: list[float], c: list[float]) -> None:
    ha, hb, hc = histogram_of(a), histogram_of(b), histogram_of(c)
    left = merged(merged(ha, hb), hc)
    right = merged(ha, merged(hb, hc))
    assert left == right
    assert left.counts == right.counts and left.count == right.count


@given(samples, samples)
def test_merging_is_commutative(a: list[float], b: list[float]) -> None:
    ha, hb = histogram_of(a), histogram_of(b)
    assert merged(ha, hb) == merged(hb, ha)


@given(samples, st.integers(min_value=1, max_value=7))
def test_merging_the_parts_equals_the_whole(values: list[float], parts: int) -> None:
    pieces = [histogram_of(values[k::parts]) for k in range(parts)]
    whole = histogram_of(values)
    combined = merged(*pieces)
    assert combined == whole
    assert combined.min == whole.min and combined.max == whole.max and combined.count == len(values)
    for q in (0.5, 0.9, 0.99, 0.999):
        assert combined.quantile(q) == whole.quantile(q)


QS = st.sampled_from([0.001, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999])


@settings(max_examples=200)
@given(st.lists(in_range, min_size=1, max_size=300), QS)
def test_a_quantile_is_within_the_error_bound_of_the_exact_one(values: list[float], q: float) -> None:
    h = histogram_of(values)
    exact = sorted(values)[rank_of(q, len(values)) - 1]
    got = h.quantile(q)
    assert got is not None
    assert abs(got - exact) <= exact * RELATIVE_ERROR * (1 + 1e-12)
    assert abs(got - exact) <= exact * 0.01


@given(st.lists(any_duration, min_size=1, max_size=100))
def test_min_max_count_and_the_extreme_quantiles_are_exact(values: list[float]) -> None:
    h = histogram_of(values)
    assert h.min == min(values) and h.max == max(values) and h.count == len(values)
    assert h.quantile(0) == min(values) and h.quantile(1) == max(values)
    assert h.mean is not None and math.isclose(h.mean, sum(values) / len(values), rel_tol=1e-9, abs_tol=1e-12)


def test_values_outside_the_range_go_to_underflow_and_overflow_and_report_exact_extremes() -> None:
    h = histogram_of([0.0, 1e-9, 500.0, 1000.0])
    assert h.underflow == 2 and h.overflow == 2 and sum(h.counts) == 0
    assert h.quantile(0.25) == 0.0
    assert h.quantile(0.99) == 1000.0


def test_the_nearest_rank_is_exact_for_decimal_quantiles() -> None:
    assert rank_of(0.95, 100) == 95
    assert rank_of(0.999, 1000) == 999
    assert rank_of(0.5, 1) == 1


@given(samples)
def test_the_wire_form_round_trips_through_json(values: list[float]) -> None:
    h = histogram_of(values)
    again = Histogram.from_wire(json.loads(json.dumps(h.to_wire())))
    assert again == h
    assert again.quantile(0.99) == h.quantile(0.99)


def test_the_wire_form_is_a_trimmed_run_of_buckets() -> None:
    wire = histogram_of([0.010, 0.011, 0.012]).to_wire()
    assert wire["layout"] == LAYOUT
    assert wire["counts"][0] and wire["counts"][-1]
    assert sum(wire["counts"]) == 3
    assert len(wire["counts"]) < 20


def test_a_histogram_from_another_layout_is_refused() -> None:
    wire = histogram_of([0.1]).to_wire()
    wire["layout"] = "loglin-v1:base=2:sub=128:lo=2^-20s:hi=2^8s"
    with pytest.raises(LayoutMismatch):
        Histogram.from_wire(wire)
