"""Helpers for the ``mothership app`` / ``tenant`` tests on the real control plane.

The CLI runs in-process (typer's runner: no interpreter start per command), or as a
subprocess where it must run alongside something else (``logs -f`` through a
rollout). The kubelet stand-in runs on a thread of its own, with its own event
loop, so the tests stay synchronous, as a user at a shell is.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from typer.testing import CliRunner, Result

from mothership.cli import app as cli
from mothership.kube import Kube
from tests.podrunner import PodRunner

CRASHING = "ghcr.io/acme/crash:1.0"
"""An image whose container exits at once (the stand-in puts its pods in CrashLoopBackOff)."""
MISSING = "ghcr.io/acme/missing:1.0"
"""An image that cannot be pulled (the stand-in keeps its pods in ImagePullBackOff)."""


def mothership(kubeconfig: Path, *args: str) -> Result:
    """``mothership ARGS --kubeconfig KUBECONFIG``, in-process; stdout and stderr apart."""
    return CliRunner().invoke(cli, [*args, "--kubeconfig", str(kubeconfig)], catch_exceptions=False)


@contextlib.contextmanager
def kubelet(kubeconfig: Path, namespace: str, **options: Any) -> Iterator[PodRunner]:
    """The kubelet stand-in for ``namespace``'s App pods, on a thread with its own event loop."""
    started = threading.Event()
    state: dict[str, Any] = {}

    async def main() -> None:
        stop = asyncio.Event()
        try:
            async with Kube.connect(kubeconfig=str(kubeconfig)) as kube, PodRunner(
                    kube, namespace, run_app_pods=True, grace_period=1, **options) as runner:
                state.update(runner=runner, loop=asyncio.get_running_loop(), stop=stop)
                started.set()
                await stop.wait()
        except BaseException as exc:
            state["error"] = exc
            started.set()

    thread = threading.Thread(target=asyncio.run, args=(main(),), name=f"kubelet {namespace}", daemon=True)
    thread.start()
    started.wait(60)
    if "error" in state or "runner" not in state:
        raise AssertionError(f"the kubelet stand-in did not start: {state.get('error')!r}")
    try:
        yield state["runner"]
    finally:
        state["loop"].call_soon_threadsafe(state["stop"].set)
        thread.join(30)


def user_kubeconfig(controlplane: Any, user: str, directory: Path) -> Path:
    """A kubeconfig for ``user`` on the built control plane: a client certificate signed by its CA."""
    import datetime

    import yaml
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    from tests.controlplane import kubeconfig

    pki = controlplane.pki
    ca = x509.load_pem_x509_certificate(pki.path("ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key(pki.path("ca.key").read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, user)]))
            .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]
    leaf = user.replace("@", "-at-")
    (directory / f"{leaf}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / f"{leaf}.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption()))
    config = kubeconfig(controlplane.server, pki, "admin")
    config["users"] = [{"name": user, "user": {"client-certificate": str(directory / f"{leaf}.crt"),
                                               "client-key": str(directory / f"{leaf}.key")}}]
    config["contexts"][0]["context"]["user"] = user
    path = directory / f"{leaf}.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


def kube_call(kubeconfig: Path, fn: Callable[[Kube], Any]) -> Any:
    """Run ``await fn(kube)`` as the admin, from synchronous test code."""

    async def main() -> Any:
        async with Kube.connect(kubeconfig=str(kubeconfig)) as kube:
            return await fn(kube)

    return asyncio.run(main())


def eventually(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "") -> Any:
    """Poll ``predicate`` until truthy (tests wait on conditions, not on time)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate!r}")
        time.sleep(0.2)
