"""Fewer, shorter garbage-collector pauses while load runs.

Why: CPython's cyclic collector stops the event loop while it walks every
tracked object of the generations it collects. A worker holding 20,000
WebSocket sessions tracks hundreds of thousands of objects, on top of the
imports (pydantic, the API models, picows); with the default thresholds
(700, 10, 10) a fast ramp triggered 18 full collections of up to 2 s each
(``bench/ws_msgs.py --hold-vus 20000 --ramp 30``). During such a pause no
handshake is answered, so the server's handshake timeout closed thousands of
sessions, and every latency recorded across the pause grew by it.

What ``FewerPauses`` does, for the length of a run only:

* ``gc.freeze()`` after setup: everything alive before the load starts
  (modules, the spec, the prepared scenarios) moves to the permanent
  generation, which collections skip;
* thresholds raised to ``THRESHOLDS``: a full collection waits for far more
  promotions, while young collections stay short. Cycles still die young in
  generations 0 and 1, where most of them are made (futures, exceptions);
* on exit the previous thresholds are restored and the frozen objects
  unfrozen, so a worker process that runs again starts as it was.

Memory stays bounded because a finished session leaves no reference cycle:
a failed handshake's exception would (its frames hold it again), so
``ws.drop_tracebacks`` cuts them and the session is freed by its refcount
(tests/loadgen/test_ws.py checks it with the collector off).
"""

from __future__ import annotations

import gc
from types import TracebackType

THRESHOLDS = (10_000, 10, 1000)
"""gen0 allocations, gen1 and gen2 collection counts. Young collections stay short (their pause is
bounded by the objects they walk, at most about 10 x 10,000 survivors), and a full collection waits
for 10,000 young ones: about 100 million allocations, minutes of load, instead of every few seconds."""

_active = 0
"""Runs inside a ``FewerPauses`` now: the first in sets, the last out restores (runs may overlap)."""
_saved: tuple[int, int, int] = gc.get_threshold()


class FewerPauses:
    """Context manager: freeze what setup made, raise the collector's thresholds; undo both on exit.

    Re-entrant: overlapping runs on one loop share one setting, restored when the last one ends.
    """

    def __init__(self, thresholds: tuple[int, int, int] = THRESHOLDS) -> None:
        self.thresholds = thresholds

    def __enter__(self) -> FewerPauses:
        global _active, _saved
        if _active == 0:
            _saved = gc.get_threshold()
            gc.freeze()
            gc.set_threshold(*self.thresholds)
        _active += 1
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        global _active
        _active -= 1
        if _active == 0:
            gc.set_threshold(*_saved)
            gc.unfreeze()
