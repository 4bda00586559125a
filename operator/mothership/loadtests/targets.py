"""Where a LoadTest may aim: resolving ``target`` and checking it is allowed.

A load tester is a weapon, and one tenant must not aim it at another. By
default a LoadTest may only hit Services of its own namespace; anything else
must match a host pattern the tenant's ``loadTests.allowedTargets`` or the
operator's ``--allowed-targets`` lists.

*In-namespace* is decided in two steps, because the name alone cannot decide it:

1. :func:`service_named` parses the host. It names a Service of namespace
   ``ns`` only in exactly three forms: ``svc.ns``, ``svc.ns.svc`` and
   ``svc.ns.svc.cluster.local`` (any case, one trailing dot allowed). A bare
   ``svc`` is not one of them (it resolves by search path), nor is an IP.
2. The caller GETs that Service and passes what the API said
   (:class:`ServiceLookup`) to :func:`check`. Only a Service that exists and is
   not ``ExternalName`` is in-namespace. ``anything.dev`` parses as Service
   ``anything`` of namespace ``dev``; in a pod of ``dev`` it resolves to that
   Service when it exists and to the public ``anything.dev`` when it does not.
   An ``ExternalName`` Service is a DNS alias that a tenant with ``edit`` can
   point anywhere.

Everything that is not in-namespace must match a pattern, and a refusal names
the host, why it is not in-namespace and the patterns it was checked against.
Pure functions: the handler supplies the namespace, the lookup and the patterns.
The local runner (``mothership loadtest run``) applies no allow-list at all.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import urlsplit

from mothership.api.loadtest import LoadTestSpec

SERVICE_PORT = 80
CLUSTER_DOMAIN = ("cluster", "local")
"""The cluster DNS domain the fully qualified form must end in; another domain needs a pattern."""
EXTERNAL_NAME = "ExternalName"

_SERVICE_NAME = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?\Z")
"""A Service name: an RFC 1035 label (what the API server accepts for Services)."""


class TargetNotAllowed(ValueError):
    """The target is not a Service of the namespace and matches no allowed pattern."""


@dataclass(frozen=True)
class ServiceLookup:
    """What the API said about the Service a target host names in the LoadTest's namespace."""

    name: str
    exists: bool
    type: str = "ClusterIP"
    external_name: str = ""

    @classmethod
    def of(cls, name: str, service: Mapping[str, Any] | None) -> ServiceLookup:
        """From the result of a GET: the Service manifest, or None (404)."""
        if service is None:
            return cls(name, exists=False)
        spec = service.get("spec") or {}
        return cls(name, exists=True, type=str(spec.get("type") or "ClusterIP"),
                   external_name=str(spec.get("externalName") or ""))

    @property
    def in_namespace(self) -> bool:
        """Load aimed at it stays in the namespace: it exists and is not a DNS alias."""
        return self.exists and self.type != EXTERNAL_NAME


def app_url(app_name: str, namespace: str) -> str:
    """The in-cluster URL of an App's Service (port 80, see apps.builders)."""
    return f"http://{app_name}.{namespace}.svc.{'.'.join(CLUSTER_DOMAIN)}:{SERVICE_PORT}"


def resolve(spec: LoadTestSpec, namespace: str) -> str:
    """The base URL workers aim at: ``target.url`` as given, or the App's Service URL."""
    if spec.target.app is not None:
        return app_url(spec.target.app, namespace)
    assert spec.target.url is not None  # the model guarantees exactly one
    return spec.target.url


def host_of(url: str) -> str:
    """The URL's host, lower case, as the workers' clients parse it ("" when there is none)."""
    return (urlsplit(url).hostname or "").lower()


def service_named(host: str, namespace: str) -> str | None:
    """The Service of ``namespace`` that ``host`` names, or None.

    Exactly ``svc.ns``, ``svc.ns.svc`` or ``svc.ns.svc.cluster.local``; any
    case; one trailing dot (the absolute form) allowed. Whether the Service
    exists is for the API to say: ``anything.dev`` parses as Service
    ``anything`` of namespace ``dev``.
    """
    host = host.lower()
    if host.endswith("."):
        host = host[:-1]
    name, *rest = host.split(".")
    namespace = namespace.lower()
    forms = ([namespace], [namespace, "svc"], [namespace, "svc", *CLUSTER_DOMAIN])
    if rest not in forms or not _SERVICE_NAME.match(name):
        return None
    return name


def matching_pattern(url: str, patterns: Sequence[str]) -> str | None:
    """The first pattern that admits ``url``'s host (``*.example.com``) or host:port (``127.0.0.1:8089``)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    port = parts.port or (443 if parts.scheme in ("https", "wss") else 80)
    for pattern in patterns:
        cleaned = pattern.strip().lower()
        if cleaned and (fnmatchcase(host, cleaned) or fnmatchcase(f"{host}:{port}", cleaned)):
            return pattern
    return None


def check(url: str, namespace: str, patterns: Sequence[str], service: ServiceLookup | None) -> None:
    """Raise TargetNotAllowed unless ``url`` aims at a Service of the namespace or matches a pattern.

    ``service`` is what the API said about the Service :func:`service_named`
    found in the host, or None when the host names none (then no lookup was
    needed). A lookup for another name than the host's counts as none.
    """
    host = host_of(url)
    if not host:
        raise TargetNotAllowed(f"target {url!r} has no host")
    named = service_named(host, namespace)
    if named is not None and service is not None and service.name == named and service.in_namespace:
        return
    if matching_pattern(url, patterns) is not None:
        return
    raise TargetNotAllowed(f"{why_not_in_namespace(host, namespace, named, service)}, and it matches "
                           f"no allowed target ({allowed_text(patterns)}). {HOW_TO_ALLOW}")


HOW_TO_ALLOW = ("Aim at a Service of this namespace (svc.ns, svc.ns.svc or svc.ns.svc.cluster.local), "
                "or ask the platform team to add the host to the Tenant's spec.loadTests.allowedTargets "
                "(or the operator's --allowed-targets).")


def allowed_text(patterns: Sequence[str]) -> str:
    shown = [p.strip() for p in patterns if p.strip()]
    return f"allowed: {', '.join(shown)}" if shown else "none are allowed"


def why_not_in_namespace(host: str, namespace: str, named: str | None,
                         service: ServiceLookup | None) -> str:
    """The first half of a refusal: the host, and the rule it fails."""
    if named is None:
        return (f"target host {host} is outside namespace {namespace}: it names no Service of "
                f"{namespace}")
    if service is None or service.name != named or not service.exists:
        return (f"target host {host} is not in namespace {namespace}: Service {named} in namespace "
                f"{namespace} does not exist")
    to = f" (to {service.external_name})" if service.external_name else ""
    return (f"target host {host} is not in namespace {namespace}: Service {named} is an "
            f"ExternalName Service{to}, a DNS alias that may lead anywhere")
