"""pytest plumbing for the real control plane; registered from tests/conftest.py.

``controlplane`` is session-scoped and lazy: it starts (and, the first time on
a machine, builds) only when a test asks for it, and one control plane then
serves the whole run; tests isolate themselves by namespace. Without Go the
tests that need it skip, saying why, except under ``CI=true``, where a missing
toolchain is a failure rather than a silently smaller suite.

The build runs in ``pytest_collection_finish``, before any test starts, so a
first build (minutes) is not charged to one test's timeout.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest

from tests.controlplane import CRDS, ControlPlane, binary, go_available


def wanted(session: pytest.Session) -> bool:
    """Whether a selected test runs on the control plane (marked so, or asking for the fixture)."""
    return any(item.get_closest_marker("controlplane")
               or {"controlplane", "apiserver"} & set(getattr(item, "fixturenames", ()))
               for item in session.items)


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly or not wanted(session) or not go_available():
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if binary(build=False) is None and reporter is not None:
        reporter.write_line("controlplane: building kube-apiserver, kube-controller-manager and etcd "
                            "from Go modules (cached afterwards)")
    binary()


def say(config: pytest.Config, line: str) -> None:
    """A line on the terminal now, past pytest's output capture (fixtures' output is captured)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
        reporter.write_line(f"\n{line}")


def _require_binary() -> None:
    if binary(build=False) is None and not go_available():
        message = "no Go toolchain: the real control plane (tests/controlplane) cannot be built"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def apiserver(request: pytest.FixtureRequest,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """etcd and kube-apiserver only, with our CRDs: a real API that no controller or operator acts on.

    For tests of a client (``mothership.kube``, ``mothership loadtest wait``) that write
    status themselves and must not race the operator the ``controlplane`` runs.
    """
    _require_binary()
    cp = ControlPlane.start(tmp_path_factory.mktemp("apiserver"), controller_manager=False, crds=CRDS)
    say(request.config, f"apiserver: kube-apiserver {cp.version} and etcd (no controllers) ready in "
                        f"{cp.startup_seconds:.1f} s at {cp.server}")
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture(scope="session")
def controlplane(request: pytest.FixtureRequest,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """etcd, kube-apiserver and kube-controller-manager for this run (see tests/controlplane)."""
    _require_binary()
    # Our CRDs are there before the controllers start, as in a cluster where they are old news.
    cp = ControlPlane.start(tmp_path_factory.mktemp("controlplane"), crds=CRDS)
    say(request.config, f"controlplane: kube-apiserver {cp.version} with kube-controller-manager and etcd "
                        f"ready in {cp.startup_seconds:.1f} s at {cp.server}")
    try:
        yield cp
    finally:
        cp.stop()
