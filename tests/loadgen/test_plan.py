"""Splitting a LoadTest across workers: every virtual user and every arrival lands on exactly one worker."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mothership.api.loadtest import LoadTestSpec
from mothership.loadgen.plan import (
    share_of,
    split,
    split_rate,
    split_weights,
    weighted_pattern,
    worker_share,
)

totals = st.integers(min_value=0, max_value=100_000)
counts = st.integers(min_value=1, max_value=300)


def spec_of(**fields: Any) -> LoadTestSpec:
    base: dict[str, Any] = {
        "target": {"url": "http://127.0.0.1:9"},
        "scenarios": [{"name": "browse", "requests": [{"path": "/ok"}]}],
        "duration": "10s",
    }
    base.update(fields)
    return LoadTestSpec.model_validate(base)


@given(totals, counts)
def test_the_split_sums_to_the_total_and_shares_differ_by_at_most_one(total: int, count: int) -> None:
    shares = [split(total, i, count) for i in range(count)]
    assert sum(shares) == total
    assert max(shares) - min(shares) <= 1
    assert shares == sorted(shares, reverse=True)


@given(totals, counts, st.integers(min_value=0, max_value=50))
def test_a_rotated_stripe_still_sums_to_the_total(total: int, count: int, offset: int) -> None:
    assert sum(share_of(total, i, count, offset) for i in range(count)) == total


@given(st.one_of(st.just(0.0), st.floats(min_value=1e-3, max_value=1e7)), counts)
def test_the_rate_split_sums_to_the_rate(rate: float, count: int) -> None:
    shares = [split_rate(rate, i, count) for i in range(count)]
    assert abs(sum(Fraction(s) for s in shares) - Fraction(rate)) <= Fraction(rate) * Fraction(1, 2**50)


@given(totals, st.lists(st.integers(min_value=1, max_value=1000), min_size=1, max_size=20))
def test_the_weighted_split_sums_to_the_total_and_follows_the_quota(total: int, weights: list[int]) -> None:
    parts = split_weights(total, weights)
    assert sum(parts) == total
    whole = sum(weights)
    for part, w in zip(parts, weights, strict=True):
        assert abs(Fraction(part) - Fraction(total * w, whole)) < 1


def test_the_weighted_pattern_interleaves_in_proportion() -> None:
    assert weighted_pattern([3, 1]) == (0, 0, 1, 0)
    pattern = weighted_pattern([5, 2, 1])
    assert [pattern.count(k) for k in range(3)] == [5, 2, 1]


def test_split_refuses_an_index_outside_the_workers() -> None:
    with pytest.raises(ValueError):
        split(10, 3, 3)


@given(st.integers(min_value=1, max_value=5000), st.integers(min_value=1, max_value=40),
       st.lists(st.integers(min_value=1, max_value=9), min_size=1, max_size=5))
def test_closed_model_virtual_users_land_on_exactly_one_worker(
    vus: int, count: int, weights: list[int]
) -> None:
    scenarios = [{"name": f"s{k}", "weight": w, "requests": [{}]} for k, w in enumerate(weights)]
    spec = spec_of(virtualUsers=vus, scenarios=scenarios)
    shares = [worker_share(spec, i, count) for i in range(count)]
    per_scenario = [sum(s.virtual_users[k] for s in shares) for k in range(len(weights))]
    assert per_scenario == split_weights(vus, weights)
    totals_ = [sum(s.virtual_users) for s in shares]
    assert sum(totals_) == vus
    assert max(totals_) - min(totals_) <= len(weights)


def test_a_ramp_is_exact_at_every_moment() -> None:
    spec = spec_of(stages=[{"duration": "10s", "target": 97}, {"duration": "5s", "target": 3}], duration=None,
                   scenarios=[{"name": "a", "weight": 2, "requests": [{}]},
                              {"name": "b", "weight": 1, "requests": [{}]}])
    shares = [worker_share(spec, i, 7) for i in range(7)]
    assert shares[0].duration_seconds == 15
    for tenth in range(0, 160):
        t = tenth / 10
        expected = int(shares[0].global_target_at(t) + 1e-9)
        assert sum(sum(s.virtual_users_at(t)) for s in shares) == expected
    assert sum(sum(s.virtual_users_at(10.0)) for s in shares) == 97
    assert sum(s.max_virtual_users for s in shares) >= 97


def test_open_model_arrivals_are_striped_so_the_total_is_exact() -> None:
    spec = spec_of(arrivalRate=10, stages=[{"duration": "2s", "target": 30}], duration="4s",
                   scenarios=[{"name": "a", "weight": 3, "requests": [{}]},
                              {"name": "b", "weight": 1, "requests": [{}]}])
    # global arrivals: ramp 10 -> 30 over 2 s (40) then 30/s for 2 s (60)
    workers = [list(worker_share(spec, i, 3).arrivals()) for i in range(3)]
    assert sum(len(w) for w in workers) == 100
    assert [len(w) for w in workers] == [34, 33, 33]
    times = sorted(t for w in workers for t, _ in w)
    assert times[0] == 0.0 and times[-1] < 4.0
    scenario_counts = [sum(1 for w in workers for _, s in w if s == k) for k in (0, 1)]
    assert abs(scenario_counts[0] - 75) <= 3 and sum(scenario_counts) == 100


def test_each_worker_cycles_through_every_scenario() -> None:
    spec = spec_of(arrivalRate=100, duration="1s",
                   scenarios=[{"name": "a", "requests": [{}]}, {"name": "b", "requests": [{}]}])
    for i in range(2):
        mine = [s for _, s in worker_share(spec, i, 2).arrivals()]
        assert mine.count(0) == mine.count(1) == 25


def test_arrival_times_follow_the_rate_integral() -> None:
    share = worker_share(spec_of(arrivalRate=4, duration="2s"), 0, 1)
    assert [share.arrival_time(j) for j in range(9)] == [0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, None]


def test_the_open_model_pool_is_split_with_at_least_one_each() -> None:
    spec = spec_of(arrivalRate=50, maxVirtualUsers=10)
    assert [worker_share(spec, i, 4).max_virtual_users for i in range(4)] == [3, 3, 2, 2]
    assert worker_share(spec_of(arrivalRate=50, maxVirtualUsers=1), 1, 2).max_virtual_users == 1


def test_the_share_carries_durations_in_seconds() -> None:
    share = worker_share(spec_of(virtualUsers=4, gracefulStop="1500ms"), 1, 2)
    assert share.duration_seconds == 10.0
    assert share.graceful_stop_seconds == 1.5
    assert share.virtual_users == (2,)
    assert share.scenarios == ("browse",)


def test_the_default_open_pool_is_two_seconds_of_the_peak_rate_capped() -> None:
    assert spec_of(arrivalRate=100).peak_virtual_users() == 200
    ramp = spec_of(arrivalRate=10, stages=[{"duration": "2s", "target": 30}], duration="4s")
    assert ramp.peak_virtual_users() == 60
    assert spec_of(arrivalRate=1_000_000).peak_virtual_users() == 100_000
    assert spec_of(arrivalRate=100, maxVirtualUsers=7).peak_virtual_users() == 7
    # fan-out follows the rate, not the mostly idle pool
    assert spec_of(arrivalRate=1500).worker_count() == 2
    assert spec_of(arrivalRate=1500, maxVirtualUsers=5000).worker_count() == 5
    assert sum(worker_share(spec_of(arrivalRate=1500), i, 2).max_virtual_users for i in range(2)) == 3000
