"""``EmulatorThread``: an Emulator on its own event loop in a daemon thread.

Synchronous tests, subprocess-based tests (``mothership operator`` with KUBECONFIG)
and tests that run kopf on another loop all need the server to keep serving while the
test's own thread blocks; a background loop gives them that without a subprocess.
"""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType
from typing import Any

from .server import Emulator


class EmulatorThread:
    def __init__(self, **emulator_options: Any) -> None:
        self.emulator = Emulator(**emulator_options)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return self.emulator.url

    def start(self) -> str:
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self.emulator.start())
            except BaseException as e:  # surface bind errors in the caller's thread
                failure.append(e)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.emulator.stop())
            loop.close()

        self._thread = threading.Thread(target=serve, name="kubeemu", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]
        return self.emulator.url

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._thread = None

    def call(self, coro: Any) -> Any:
        """Run a coroutine on the emulator's loop and wait for its result."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def __enter__(self) -> EmulatorThread:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
