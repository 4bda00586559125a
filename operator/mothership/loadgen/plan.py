"""Each worker's share of a LoadTest: pure functions of (spec, index, count).

Why this exists: a worker must work out its own share without asking anyone,
and the shares must add up exactly, at every moment of a ramp, so that N
workers apply exactly the load the spec asks for. The idea is k6's execution
segments (lib/execution_segment.go): rounding never loses a virtual user.

How the split stays exact:

* Virtual users (closed model). At any moment the spec asks for ``V`` virtual
  users in total. ``split_weights(V, weights)`` gives each scenario its exact
  count by largest remainder, then the ``j``-th virtual user of scenario ``s``
  belongs to worker ``(j + s) % count`` (striping, rotated per scenario so
  small scenarios do not all land on worker 0). Every virtual user lands on
  exactly one worker, and a worker's total differs from another's by at most
  the number of scenarios (by at most 1 with one scenario).
* Arrivals (open model). The global arrival schedule is fixed by the rate and
  its stages: arrival ``j`` (0-based) happens when the integral of the rate
  reaches ``j``. Worker ``i`` makes arrivals ``j`` with ``j % count == i``, so
  every arrival is made by exactly one worker, and the per-worker rates
  (``split_rate``) are for display. Scenario of an arrival: the worker's
  ``k``-th arrival takes entry ``(k + i) % W`` of a smooth weighted round-robin
  pattern of length ``W = sum(weights)``, so each worker cycles through all
  scenarios in proportion.

This module knows nothing of sockets, clocks, the coordinator or Kubernetes;
it only reads ``api.loadtest.LoadTestSpec``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from ..api.common import parse_duration
from ..api.loadtest import LoadTestSpec


def share_of(total: int, index: int, count: int, offset: int = 0) -> int:
    """How many of ``j`` in ``0..total-1`` satisfy ``(j + offset) % count == index``."""
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"index {index} not in 0..{count - 1}")
    if total <= 0:
        return 0
    first = (index - offset) % count  # smallest j striped to this worker
    return 0 if first >= total else (total - 1 - first) // count + 1


def split(total: int, index: int, count: int) -> int:
    """Worker ``index`` of ``count``'s share of ``total``: shares sum to total and differ by at most 1.

    The remainder goes to the lowest indexes (the striping in the module docstring).
    """
    return share_of(total, index, count, 0)


def split_rate(rate: float, index: int, count: int) -> float:
    """Worker ``index``'s share of an arrival rate (per second): ``rate / count``, computed on fractions.

    Arrivals themselves are striped (arrival ``j`` to worker ``j % count``), so
    the total count is exact whatever float rounding does to these figures.
    """
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"index {index} not in 0..{count - 1}")
    return float(Fraction(rate) / count)


def split_weights(total: int, weights: list[int]) -> list[int]:
    """``total`` split in proportion to ``weights`` by largest remainder; sums exactly to total.

    Ties in the remainder go to the earlier weight.
    """
    if not weights or any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"weights must be non-negative with a positive sum, not {weights}")
    whole = sum(weights)
    parts = [total * w // whole for w in weights]
    left = total - sum(parts)
    order = sorted(range(len(weights)), key=lambda k: (-(total * weights[k] % whole), k))
    for k in order[:left]:
        parts[k] += 1
    return parts


def weighted_pattern(weights: list[int]) -> tuple[int, ...]:
    """A smooth weighted round-robin sequence of scenario indexes, one cycle of length sum(weights).

    For weights [3, 1] it is (0, 0, 1, 0): every prefix is within one of its
    proportional count (nginx's smooth weighted round robin).
    """
    current = [0] * len(weights)
    whole = sum(weights)
    out: list[int] = []
    for _ in range(whole):
        for k, w in enumerate(weights):
            current[k] += w
        best = max(range(len(weights)), key=lambda k: (current[k], -k))
        current[best] -= whole
        out.append(best)
    return tuple(out)


@dataclass(frozen=True)
class Segment:
    """One linear piece of the load profile: from ``start_value`` at ``start`` to ``end_value`` at ``end``.

    Times are seconds since the start barrier; values are global virtual users
    (closed model) or global arrivals per second (open model).
    """

    start: float
    end: float
    start_value: float
    end_value: float

    def value_at(self, t: float) -> float:
        if self.end <= self.start:
            return self.end_value
        f = (t - self.start) / (self.end - self.start)
        return self.start_value + (self.end_value - self.start_value) * f

    def area(self) -> float:
        """Arrivals in the segment when values are rates: the integral of the line."""
        return (self.start_value + self.end_value) / 2 * (self.end - self.start)


@dataclass(frozen=True)
class ScaledStage:
    """A stage as this worker runs it: its share at the stage's end, per scenario."""

    duration_seconds: float
    virtual_users: tuple[int, ...]
    """Closed model: this worker's virtual users per scenario at the end of the stage."""
    arrival_rate: tuple[float, ...]
    """Open model: this worker's arrivals per second per scenario at the end of the stage."""


@dataclass(frozen=True)
class WorkerShare:
    """What worker ``index`` of ``count`` runs. Immutable; the same on every call for the same spec."""

    index: int
    count: int
    scenarios: tuple[str, ...]
    weights: tuple[int, ...]
    open_model: bool
    virtual_users: tuple[int, ...]
    """Closed model: virtual users per scenario at the start (throughout, without stages)."""
    arrival_rate: tuple[float, ...]
    """Open model: this worker's arrivals per second per scenario at the start."""
    stages: tuple[ScaledStage, ...]
    """The spec's stages scaled to this worker (for display; the models use ``profile``)."""
    duration_seconds: float
    """Seconds of load after the start barrier."""
    graceful_stop_seconds: float
    """After the duration, in-flight iterations may finish for this long."""
    max_virtual_users: int
    """Closed: the most virtual users this worker runs at once. Open: its pool of virtual users."""
    profile: tuple[Segment, ...]
    """The global load profile (virtual users or arrivals/s over time) every worker derives its share from."""

    # --- closed model -----------------------------------------------------

    def global_target_at(self, t: float) -> float:
        """The global virtual users (closed) or arrivals per second (open) ``t`` seconds after the start."""
        for seg in self.profile:
            if t < seg.end:
                return seg.value_at(max(t, seg.start))
        return self.profile[-1].end_value if self.profile else 0.0

    def virtual_users_at(self, t: float) -> tuple[int, ...]:
        """Closed model: this worker's virtual users per scenario at ``t``.

        Summed over all workers, they equal the floor of the global target exactly.
        """
        total = math.floor(self.global_target_at(t) + 1e-9)
        return self._scaled_virtual_users(total)

    def _scaled_virtual_users(self, total: int) -> tuple[int, ...]:
        per_scenario = split_weights(total, list(self.weights))
        return tuple(share_of(n, self.index, self.count, s) for s, n in enumerate(per_scenario))

    # --- open model -------------------------------------------------------

    def arrival_time(self, j: int) -> float | None:
        """Seconds after the start at which global arrival ``j`` (0-based) is due; None if past the end."""
        done = 0.0
        for seg in self.profile:
            area = seg.area()
            if done + area > j:
                t = _solve_in_segment(seg, j - done)
                return t if t < self.duration_seconds else None
            done += area
        return None

    def arrivals(self) -> _ArrivalSchedule:
        """This worker's arrivals, in order, as (seconds after start, scenario index) pairs."""
        return _ArrivalSchedule(self)


def _solve_in_segment(seg: Segment, need: float) -> float:
    """The time within ``seg`` at which ``need`` arrivals have accumulated since its start."""
    r0, r1 = seg.start_value, seg.end_value
    length = seg.end - seg.start
    if need <= 0:
        return seg.start
    if length <= 0:
        return seg.start
    slope = (r1 - r0) / length
    if abs(slope) < 1e-12:
        return seg.start + need / r0
    # r0 * x + slope / 2 * x**2 = need, the root in [0, length]
    disc = r0 * r0 + 2 * slope * need
    x = (-r0 + math.sqrt(max(disc, 0.0))) / slope
    return seg.start + min(max(x, 0.0), length)


class _ArrivalSchedule:
    """Iterates one worker's striped arrivals ``j = index, index + count, ...`` with their scenarios.

    Walks the profile once (amortised O(1) per arrival), so a 50k/s open
    model does not re-scan the stages per arrival.
    """

    def __init__(self, share: WorkerShare) -> None:
        self._share = share
        self._pattern = weighted_pattern(list(share.weights))
        self._j = share.index
        self._k = 0
        self._seg = 0
        self._done = 0.0  # arrivals accumulated before segment self._seg

    def __iter__(self) -> _ArrivalSchedule:
        return self

    def __next__(self) -> tuple[float, int]:
        share = self._share
        profile = share.profile
        j = self._j
        while self._seg < len(profile):
            seg = profile[self._seg]
            area = seg.area()
            if self._done + area > j:
                t = _solve_in_segment(seg, j - self._done)
                break
            self._done += area
            self._seg += 1
        else:
            raise StopIteration
        if t >= share.duration_seconds:
            raise StopIteration
        scenario = self._pattern[(self._k + share.index) % len(self._pattern)]
        self._j += share.count
        self._k += 1
        return t, scenario


def _profile(spec: LoadTestSpec) -> tuple[Segment, ...]:
    """The global load profile: the start value, the stages as linear ramps, then a hold to the duration."""
    duration = spec.duration_seconds()
    value = float(spec.arrival_rate or 0.0) if spec.is_open else float(spec.virtual_users or 0)
    segments: list[Segment] = []
    t = 0.0
    for stage in spec.stages:
        length = parse_duration(stage.duration)
        segments.append(Segment(t, t + length, value, float(stage.target)))
        t += length
        value = float(stage.target)
    if t < duration or not segments:
        segments.append(Segment(t, max(duration, t), value, value))
    return tuple(segments)


def worker_share(spec: LoadTestSpec, index: int, count: int) -> WorkerShare:
    """Worker ``index`` of ``count``'s share of ``spec`` (see the module docstring for exactness)."""
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"index {index} not in 0..{count - 1}")
    weights = tuple(s.weight for s in spec.scenarios)
    profile = _profile(spec)
    whole = sum(weights)

    def scaled_vus(total: int) -> tuple[int, ...]:
        return tuple(share_of(n, index, count, s)
                     for s, n in enumerate(split_weights(total, list(weights))))

    def scaled_rate(rate: float) -> tuple[float, ...]:
        mine = Fraction(rate) / count
        return tuple(float(mine * w / whole) for w in weights)

    start_value = profile[0].start_value if profile else 0.0
    stages = tuple(
        ScaledStage(
            duration_seconds=parse_duration(stage.duration),
            virtual_users=() if spec.is_open else scaled_vus(stage.target),
            arrival_rate=scaled_rate(stage.target) if spec.is_open else (),
        )
        for stage in spec.stages
    )
    if spec.is_open:
        pool = max(1, split(spec.peak_virtual_users(), index, count))
        virtual_users: tuple[int, ...] = ()
        arrival_rate = scaled_rate(start_value)
    else:
        peak = max([start_value, *(s.end_value for s in profile)])
        pool = sum(scaled_vus(math.floor(peak)))
        virtual_users = scaled_vus(math.floor(start_value))
        arrival_rate = ()
    return WorkerShare(
        index=index,
        count=count,
        scenarios=tuple(s.name for s in spec.scenarios),
        weights=weights,
        open_model=spec.is_open,
        virtual_users=virtual_users,
        arrival_rate=arrival_rate,
        stages=stages,
        duration_seconds=spec.duration_seconds(),
        graceful_stop_seconds=parse_duration(spec.graceful_stop),
        max_virtual_users=pool,
        profile=profile,
    )
