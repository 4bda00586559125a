"""Where a LoadTest may aim: resolving ``target`` and checking it is allowed.

A load tester is a weapon, and one tenant must not aim it at another. By
default a LoadTest may only hit Services in its own namespace; anything else
must match a host pattern the tenant's ``loadTests.allowedTargets`` or the
operator's ``--allowed-targets`` lists. Pure functions: the handler supplies
the namespace, the tenant's patterns and the operator's.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from urllib.parse import urlsplit

from mothership.api.loadtest import LoadTestSpec

SERVICE_PORT = 80


class TargetNotAllowed(ValueError):
    """The target host is outside the namespace and matches no allowed pattern."""


def app_url(app_name: str, namespace: str) -> str:
    """The in-cluster URL of an App's Service (port 80, see apps.builders)."""
    return f"http://{app_name}.{namespace}.svc.cluster.local:{SERVICE_PORT}"


def resolve(spec: LoadTestSpec, namespace: str) -> str:
    """The base URL workers aim at: ``target.url`` as given, or the App's Service URL."""
    if spec.target.app is not None:
        return app_url(spec.target.app, namespace)
    assert spec.target.url is not None  # the model guarantees exactly one
    return spec.target.url


def in_namespace(host: str, namespace: str) -> bool:
    """Whether ``host`` names a Service in ``namespace`` (svc, svc.ns, svc.ns.svc[.cluster.local])."""
    parts = host.lower().rstrip(".").split(".")
    if len(parts) < 2:
        return False  # a bare name resolves by search path; too ambiguous to trust
    suffix = parts[1:]
    return suffix in ([namespace], [namespace, "svc"], [namespace, "svc", "cluster", "local"])


def check(url: str, namespace: str, patterns: list[str]) -> None:
    """Raise TargetNotAllowed unless ``url``'s host is in the namespace or matches a pattern.

    A pattern matches the host (``*.example.com``) or host:port (``127.0.0.1:8089``).
    """
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not host:
        raise TargetNotAllowed(f"target {url!r} has no host")
    if in_namespace(host, namespace):
        return
    port = parts.port or (443 if parts.scheme in ("https", "wss") else 80)
    for pattern in patterns:
        pattern = pattern.strip().lower()
        if pattern and (fnmatchcase(host, pattern) or fnmatchcase(f"{host}:{port}", pattern)):
            return
    allowed = ", ".join(patterns) if patterns else "none"
    raise TargetNotAllowed(
        f"target host {host} is outside namespace {namespace} and matches no allowed target "
        f"(allowed: {allowed}); ask the platform team to add it to the Tenant's "
        f"spec.loadTests.allowedTargets"
    )
