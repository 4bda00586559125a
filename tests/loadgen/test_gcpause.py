"""FewerPauses: the collector's settings hold for the run only, also when runs overlap."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from mothership.loadgen.gcpause import THRESHOLDS, FewerPauses


@pytest.fixture(autouse=True)
def _known_settings() -> Iterator[None]:
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


def test_setup_objects_are_frozen_and_everything_is_restored_after() -> None:
    assert gc.get_freeze_count() == 0
    with FewerPauses():
        assert gc.get_threshold() == THRESHOLDS
        assert gc.get_freeze_count() > 0  # the modules, this test: alive before the run
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == 0


def test_overlapping_runs_restore_only_when_the_last_ends() -> None:
    first, second = FewerPauses(), FewerPauses()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert gc.get_threshold() == THRESHOLDS and gc.get_freeze_count() > 0
    second.__exit__(None, None, None)
    assert gc.get_threshold() == (700, 10, 10) and gc.get_freeze_count() == 0


def test_a_failing_run_restores_too() -> None:
    with pytest.raises(RuntimeError), FewerPauses():
        raise RuntimeError("load failed")
    assert gc.get_threshold() == (700, 10, 10) and gc.get_freeze_count() == 0
