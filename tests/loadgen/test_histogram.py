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
    OCTAVES,
    RELATIVE_ERROR,
    SUB_BUCKETS,
    SUB_LEVELS,
    Histogram,
    LayoutMismatch,
    bucket_index,
    bucket_lower,
    bucket_upper,
    check_layout,
    coarsen_wire,
    downsample_run,
    layout_of,
    rank_of,
    relative_error,
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


# --- nested coarser layouts -----------------------------------------------------

COARSER = st.sampled_from(SUB_LEVELS[1:])


def test_every_layout_names_its_sub_count_and_the_default_is_the_finest() -> None:
    assert layout_of(SUB_BUCKETS) == LAYOUT and SUB_LEVELS[0] == SUB_BUCKETS == 64
    assert SUB_LEVELS == (64, 32, 16, 8)
    for sub in SUB_LEVELS:
        assert f":sub={sub}:" in layout_of(sub)
        assert check_layout(layout_of(sub)) == sub
    assert [round(relative_error(sub) * 100, 1) for sub in SUB_LEVELS] == [0.8, 1.6, 3.1, 6.2]


@pytest.mark.parametrize("layout", [
    "loglin-v2:base=2:sub=32:lo=2^-20s:hi=2^8s",   # another family
    "loglin-v1:base=10:sub=32:lo=2^-20s:hi=2^8s",  # another base
    "loglin-v1:base=2:sub=32:lo=2^-30s:hi=2^8s",   # another range
    "loglin-v1:base=2:sub=32:lo=2^-20s:hi=2^10s",
    "loglin-v1:base=2:sub=128:lo=2^-20s:hi=2^8s",  # finer than the default
    "loglin-v1:base=2:sub=48:lo=2^-20s:hi=2^8s",   # does not nest
    "loglin-v1:base=2:sub=4:lo=2^-20s:hi=2^8s",    # coarser than we ever go
    "hdr:sigfig=2", "", None, 64,
])
def test_a_layout_outside_the_nested_family_is_refused(layout: object) -> None:
    with pytest.raises(LayoutMismatch):
        check_layout(layout)
    wire = histogram_of([0.1]).to_wire()
    wire["layout"] = layout
    with pytest.raises(LayoutMismatch):
        Histogram.from_wire(wire)


@given(in_range, COARSER)
def test_every_value_lies_inside_its_coarse_bucket(value: float, sub: int) -> None:
    i = bucket_index(value, sub)
    assert bucket_lower(i, sub) <= value < bucket_upper(i, sub)
    assert i == bucket_index(value) // (SUB_BUCKETS // sub)
    assert bucket_upper(OCTAVES * sub - 1, sub) == HIGHEST


@given(samples, COARSER)
def test_each_coarse_bucket_counts_exactly_the_fine_buckets_it_unites(values: list[float], sub: int) -> None:
    fine = histogram_of(values)
    coarse = fine.coarsened(sub)
    factor = SUB_BUCKETS // sub
    assert coarse.sub == sub and coarse.layout == layout_of(sub) and len(coarse.counts) == OCTAVES * sub
    assert coarse.counts == [sum(fine.counts[j * factor:(j + 1) * factor]) for j in range(OCTAVES * sub)]
    if sub == 32:
        pairs = zip(coarse.counts, fine.counts[0::2], fine.counts[1::2], strict=True)
        assert all(c == even + odd for c, even, odd in pairs)
    assert (coarse.count, coarse.sum, coarse.min, coarse.max) == (fine.count, fine.sum, fine.min, fine.max)
    assert (coarse.underflow, coarse.overflow) == (fine.underflow, fine.overflow)
    assert coarse.quantile(0) == fine.quantile(0) and coarse.quantile(1) == fine.quantile(1)


@given(samples, samples, COARSER)
def test_downsampling_commutes_with_merging(a: list[float], b: list[float], sub: int) -> None:
    ha, hb = histogram_of(a), histogram_of(b)
    both = Histogram(sub)
    both.merge(ha.coarsened(sub))
    both.merge(hb.coarsened(sub))
    assert merged(ha, hb).coarsened(sub) == both


@given(samples)
def test_coarsening_step_by_step_equals_coarsening_at_once(values: list[float]) -> None:
    h = histogram_of(values)
    assert h.coarsened(32).coarsened(16).coarsened(8) == h.coarsened(8)
    assert h.coarsened(64) == h and h.coarsened(16).coarsened(16) == h.coarsened(16)


@settings(max_examples=200)
@given(st.lists(in_range, min_size=1, max_size=300), QS, COARSER)
def test_a_quantile_of_a_coarsened_histogram_is_within_the_coarser_bound(
    values: list[float], q: float, sub: int
) -> None:
    h = histogram_of(values).coarsened(sub)
    exact = sorted(values)[rank_of(q, len(values)) - 1]
    got = h.quantile(q)
    assert got is not None
    assert h.relative_error == relative_error(sub) == 1 / (2 * sub)
    assert abs(got - exact) <= exact * relative_error(sub) * (1 + 1e-12)


@given(samples, COARSER)
def test_a_coarse_wire_form_says_its_layout_and_round_trips(values: list[float], sub: int) -> None:
    h = histogram_of(values)
    wire = coarsen_wire(h.to_wire(), sub)
    assert wire == h.coarsened(sub).to_wire()
    assert wire["layout"] == layout_of(sub)
    again = Histogram.from_wire(json.loads(json.dumps(wire)))
    assert again == h.coarsened(sub) and again.sub == sub
    if wire["counts"]:
        assert wire["counts"][0] and wire["counts"][-1]  # still a trimmed run


@given(st.lists(st.integers(min_value=0, max_value=9), max_size=40), st.integers(0, 100),
       st.sampled_from([1, 2, 4, 8]))
def test_downsampling_a_run_at_any_offset_matches_downsampling_the_whole_row(
    run: list[int], offset: int, factor: int
) -> None:
    row = [0] * offset + run + [0] * 9
    row += [0] * (-len(row) % factor)
    whole = [sum(row[k:k + factor]) for k in range(0, len(row), factor)]
    new_offset, coarse = downsample_run(run, offset, factor)
    assert sum(coarse) == sum(run)
    rebuilt = [0] * len(whole)
    rebuilt[new_offset:new_offset + len(coarse)] = coarse
    assert rebuilt == whole


def test_histograms_of_different_layouts_do_not_merge_without_coarsening_and_never_refine() -> None:
    fine, coarse = histogram_of([0.1, 0.2]), histogram_of([0.3]).coarsened(16)
    with pytest.raises(LayoutMismatch):
        fine.merge(coarse)
    with pytest.raises(LayoutMismatch):
        coarse.coarsened(32)
    with pytest.raises(LayoutMismatch):
        Histogram(48)
    fine.coarsened(16).merge(coarse)
