"""pytest fixtures for the API emulator; registered from tests/conftest.py.

``kube`` is function-scoped: each test gets an empty cluster (four namespaces, no
CRDs) served from a background thread, with a kubeconfig in ``tmp_path`` at
``kube.kubeconfig``. Point KUBECONFIG at it to run kopf, kubectl or ``mothership
operator`` against it; read objects back with ``kube.get(...)`` / ``kube.list(...)``,
and what a client did with ``kube.calls``.

Running kopf in-process (``kopf.testing.KopfRunner``): ``kubernetes.config`` reads
$KUBECONFIG when it is imported, so setting it in a test is too late for kopf's
default ``login_via_client``; register ``kopf.login_with_kubeconfig`` as an
``@kopf.on.login()`` handler (test_with_clients.py shows how), or run the operator
as a subprocess with KUBECONFIG in its environment.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .server import Emulator
from .threaded import EmulatorThread


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[Emulator]:
    with EmulatorThread() as thread:
        thread.emulator.write_kubeconfig(tmp_path / "kubeconfig.yaml")
        yield thread.emulator
