"""A small async Kubernetes client for the handlers: one aiohttp session, a static kind table.

Why not the ``kubernetes`` package's client: it is synchronous (a thread per call
under kopf), builds model objects we would turn straight back into dicts, and
opens a pool per ApiClient. The handlers need eight verbs on plain dicts, fast,
over one keep-alive session. Why not kopf's internal client: it is private API.
We still borrow the ``kubernetes`` package's *config loader*, exactly as kopf's
``login_via_client`` does (in-cluster first, then ``$KUBECONFIG``), so kopf and
this client always talk to the same server with the same credentials: bearer
token (refreshed through the loader's hook), client certificates, a CA bundle,
or plain ``http://``.

Every request goes through :meth:`Kube.request`, which knows the RBAC triple
it exercises (verb, API group, resource[/subresource]) and counts it in
:attr:`Kube.calls`; tests compare those triples with ``mothership.rbac.RULES``.
Plural names come from the static :data:`KINDS` table (no discovery per call):
these are the only kinds Mothership manages or reads.

Server-side apply is the write path for children (``apply``): deterministic
names plus SSA make create, update and drift repair one idempotent call, and
the response *is* the read-back. ``create`` exists for immutable children
(a Job) where 409 means "already there". Errors surface as :class:`ApiError`
carrying the HTTP status, the Status ``reason`` and the call; ``errors.py``
decides what kopf should do about them. This module does not import kopf.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import ssl
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp

from mothership.api.common import Manifest, parse_quantity

logger = logging.getLogger(__name__)

FIELD_MANAGER = "mothership"
"""The field manager of every server-side apply: ``kubectl get -o yaml --show-managed-fields`` shows it."""


@dataclass(frozen=True)
class Kind:
    """Where a kind lives in the API: enough to build its URLs and name its RBAC resource."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool = True

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str = "") -> str:
        """The URL path: ``/apis/apps/v1/namespaces/ns/deployments/web/status``."""
        base = f"/apis/{self.api_version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{quote(namespace, safe='')}"
        base += f"/{self.plural}"
        if name:
            base += f"/{quote(name, safe='')}"
            if subresource:
                base += f"/{subresource}"
        return base


_TABLE = [
    Kind("v1", "Namespace", "namespaces", namespaced=False),
    Kind("v1", "ResourceQuota", "resourcequotas"),
    Kind("v1", "LimitRange", "limitranges"),
    Kind("v1", "Service", "services"),
    Kind("v1", "ConfigMap", "configmaps"),
    Kind("v1", "Secret", "secrets"),
    Kind("v1", "Pod", "pods"),
    Kind("v1", "Event", "events"),
    Kind("apps/v1", "Deployment", "deployments"),
    Kind("apps/v1", "ReplicaSet", "replicasets"),
    Kind("batch/v1", "Job", "jobs"),
    Kind("networking.k8s.io/v1", "Ingress", "ingresses"),
    Kind("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies"),
    Kind("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings"),
    Kind("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers"),
    Kind("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets"),
    Kind("monitoring.coreos.com/v1", "PodMonitor", "podmonitors"),
    Kind("apiextensions.k8s.io/v1", "CustomResourceDefinition", "customresourcedefinitions",
         namespaced=False),
    Kind("mothership.dev/v1alpha1", "Tenant", "tenants", namespaced=False),
    Kind("mothership.dev/v1alpha1", "App", "apps"),
    Kind("mothership.dev/v1alpha1", "LoadTest", "loadtests"),
]

KINDS: dict[str, Kind] = {k.kind: k for k in _TABLE}
"""Every kind this client can address, by kind name (kinds are unique across our groups)."""


def kind_of(manifest: Mapping[str, Any]) -> Kind:
    """The table entry for a manifest; KeyError names the kind when it is not one we manage."""
    kind = KINDS[manifest["kind"]]
    if manifest.get("apiVersion", kind.api_version) != kind.api_version:
        raise KeyError(f"{manifest['kind']} in {manifest['apiVersion']} (we speak {kind.api_version})")
    return kind


@dataclass(frozen=True)
class Call:
    """One API request as the RBAC authorizer sees it."""

    verb: str
    group: str
    resource: str
    subresource: str = ""

    def __str__(self) -> str:
        res = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        return f"{self.verb} {res}.{self.group}" if self.group else f"{self.verb} {res}"


_METHODS = {
    "get": "GET", "list": "GET", "watch": "GET", "create": "POST", "update": "PUT",
    "patch": "PATCH", "delete": "DELETE", "deletecollection": "DELETE",
}


class ApiError(Exception):
    """The API server answered with an error status (or could not be reached: ``status`` 0)."""

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        *,
        call: Call,
        namespace: str | None = None,
        name: str | None = None,
        details: Mapping[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status} {reason}: {message} ({call}"
                         + (f" {namespace}/{name}" if namespace else f" {name}" if name else "") + ")")
        self.status = status
        self.reason = reason
        self.message = message
        self.call = call
        self.namespace = namespace
        self.name = name
        self.details: Mapping[str, Any] = details or {}
        self.retry_after = retry_after


# --- Configuration -----------------------------------------------------------


@dataclass
class Credentials:
    """What the config loader found, reduced to what an HTTP client needs."""

    server: str
    authorization: str | None = None
    ca_path: str | None = None
    cert_path: str | None = None
    key_path: str | None = None
    insecure: bool = False
    refresh: Any = None  # the kubernetes Configuration, when its token can be refreshed
    refresh_every: float = 60.0
    """Seconds between calls of the loader's refresh hook (it may re-read files or run a plugin)."""
    _refreshed_at: float = -1e9

    def header(self) -> str | None:
        if self.refresh is not None and time.monotonic() - self._refreshed_at > self.refresh_every:
            cfg = self.refresh
            value = cfg.get_api_key_with_prefix("BearerToken") or cfg.get_api_key_with_prefix(
                "authorization")
            self.authorization = str(value) if value else self.authorization
            self._refreshed_at = time.monotonic()
        return self.authorization

    def ssl_context(self) -> ssl.SSLContext | bool:
        if not self.server.startswith("https"):
            return False
        ctx = ssl.create_default_context(cafile=self.ca_path)
        if self.cert_path:
            ctx.load_cert_chain(self.cert_path, self.key_path)
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx


def load_credentials(context: str | None = None, kubeconfig: str | None = None) -> Credentials:
    """In-cluster ServiceAccount first, then ``$KUBECONFIG`` (or ``~/.kube/config``), as kopf does.

    An explicit ``kubeconfig`` path (kubectl's ``--kubeconfig``) wins over both.
    """
    from kubernetes import client, config

    cfg = client.Configuration()
    try:
        if kubeconfig:
            raise config.ConfigException("an explicit kubeconfig was given")
        config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    except config.ConfigException:
        # $KUBECONFIG is read here, not when the kubernetes package was imported, so a
        # process (or a test) that sets it later is still honoured.
        kubeconfig = kubeconfig or os.environ.get("KUBECONFIG") or None  # paths merge, as kubectl's do
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, context=context, client_configuration=cfg
        )
    auth = cfg.get_api_key_with_prefix("BearerToken") or cfg.get_api_key_with_prefix("authorization")
    if not auth and cfg.username:
        auth = cfg.get_basic_auth_token()
    return Credentials(
        server=cfg.host.rstrip("/"),
        authorization=auth or None,
        ca_path=cfg.ssl_ca_cert,
        cert_path=cfg.cert_file,
        key_path=cfg.key_file,
        insecure=not cfg.verify_ssl,
        refresh=cfg if cfg.refresh_api_key_hook else None,
    )


# --- The client --------------------------------------------------------------


class Kube:
    """An async client for the kinds in :data:`KINDS`; one session, reused for every call.

    Create with :meth:`connect` (loads credentials) or with explicit :class:`Credentials`;
    close with :meth:`close` or ``async with``.
    """

    def __init__(self, credentials: Credentials, *, timeout: float = 30.0, limit: int = 64) -> None:
        self.credentials = credentials
        self.calls: Counter[Call] = Counter()
        """Requests made, by RBAC triple: compared with ``rbac.RULES`` in tests."""
        self._timeout = aiohttp.ClientTimeout(total=timeout, connect=min(10.0, timeout))
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def connect(cls, context: str | None = None, kubeconfig: str | None = None, **kwargs: Any) -> Kube:
        return cls(load_credentials(context, kubeconfig), **kwargs)

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                ssl=self.credentials.ssl_context(), limit=self._limit, keepalive_timeout=60
            )
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Kube:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _auth(self) -> dict[str, str]:
        """The ``Authorization`` header, when the credentials carry one (a token is refreshed as due)."""
        auth = self.credentials.header()
        return {"Authorization": auth} if auth else {}

    async def request(
        self,
        verb: str,
        kind: Kind,
        *,
        namespace: str | None = None,
        name: str | None = None,
        subresource: str = "",
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Manifest:
        """The one door to the API: counts the RBAC triple, sends, decodes or raises :class:`ApiError`."""
        call = Call(verb, kind.group, kind.plural, subresource)
        self.calls[call] += 1
        headers = {"Accept": "application/json", **self._auth()}
        data: bytes | None = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = _dumps(body).encode()
        url = self.credentials.server + kind.path(namespace, name, subresource)
        try:
            async with self._open().request(
                _METHODS[verb], url, params=params, data=data, headers=headers
            ) as response:
                raw = await response.read()
                if response.status < 400:
                    return json.loads(raw) if raw else {}
                raise _api_error(response.status, raw, response.headers, call, namespace, name)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise ApiError(0, "ConnectionError", f"{type(exc).__name__}: {exc}", call=call,
                           namespace=namespace, name=name) from exc

    # --- verbs -------------------------------------------------------------

    async def apply(self, manifest: Manifest, field_manager: str = FIELD_MANAGER) -> Manifest:
        """Server-side apply (force): create or converge the object; returns the object as stored."""
        kind = kind_of(manifest)
        meta = manifest["metadata"]
        return await self.request(
            "patch", kind, namespace=meta.get("namespace"), name=meta["name"],
            params={"fieldManager": field_manager, "force": "true"},
            body=manifest, content_type="application/apply-patch+yaml",
        )

    async def get(self, kind: Kind | str, name: str, namespace: str | None = None) -> Manifest | None:
        """The object, or None when it does not exist."""
        kind = KINDS[kind] if isinstance(kind, str) else kind
        try:
            return await self.request("get", kind, namespace=namespace, name=name)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def list(
        self,
        kind: Kind | str,
        namespace: str | None = None,
        *,
        label_selector: str | Mapping[str, str] | None = None,
        page: int = 500,
    ) -> list[Manifest]:
        """Every matching object (all namespaces when ``namespace`` is None), following ``continue``."""
        kind = KINDS[kind] if isinstance(kind, str) else kind
        params: dict[str, str] = {"limit": str(page)}
        if label_selector:
            params["labelSelector"] = (
                label_selector if isinstance(label_selector, str)
                else ",".join(f"{k}={v}" for k, v in sorted(label_selector.items()))
            )
        items: list[Manifest] = []
        while True:
            result = await self.request("list", kind, namespace=namespace, params=params)
            items.extend(result.get("items") or [])
            token = (result.get("metadata") or {}).get("continue")
            if not token:
                return items
            params["continue"] = token

    async def delete(
        self,
        kind: Kind | str,
        name: str,
        namespace: str | None = None,
        *,
        propagation_policy: str = "Background",
        missing_ok: bool = True,
    ) -> bool:
        """Delete; True if it existed. ``Orphan`` leaves dependents, ``Foreground`` waits for them."""
        kind = KINDS[kind] if isinstance(kind, str) else kind
        try:
            await self.request(
                "delete", kind, namespace=namespace, name=name,
                body={"apiVersion": "v1", "kind": "DeleteOptions",
                      "propagationPolicy": propagation_policy},
            )
        except ApiError as exc:
            if exc.status == 404 and missing_ok:
                return False
            raise
        return True

    async def patch(
        self, kind: Kind | str, name: str, namespace: str | None, patch: Manifest, *, subresource: str = "",
        field_manager: str | None = None,
    ) -> Manifest:
        """JSON merge patch (RFC 7386): ``None`` values delete keys; lists are replaced whole.

        ``field_manager`` names who owns the changed fields (an ``Update`` entry in managedFields).
        """
        kind = KINDS[kind] if isinstance(kind, str) else kind
        return await self.request(
            "patch", kind, namespace=namespace, name=name, subresource=subresource,
            params={"fieldManager": field_manager} if field_manager else None,
            body=patch, content_type="application/merge-patch+json",
        )

    async def version(self) -> Manifest:
        """The server's ``/version`` (``gitVersion``...): the cheapest proof that it is reachable."""
        call = Call("get", "", "version")
        self.calls[call] += 1
        headers = {"Accept": "application/json", **self._auth()}
        try:
            async with self._open().get(self.credentials.server + "/version", headers=headers) as response:
                raw = await response.read()
                if response.status < 400:
                    return dict(json.loads(raw))
                raise _api_error(response.status, raw, response.headers, call, None, None)
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            raise ApiError(0, "ConnectionError", f"{type(exc).__name__}: {exc}", call=call) from exc

    async def stream(
        self, kind: Kind | str, name: str, namespace: str | None, *, subresource: str = "log",
        params: Mapping[str, str] | None = None,
    ) -> AsyncIterator[bytes]:
        """The lines of a streamed GET (``pods/NAME/log?follow=true``), as they arrive; no total timeout.

        Why not :meth:`request`: it reads the whole body, and its session has a total timeout.
        """
        kind = KINDS[kind] if isinstance(kind, str) else kind
        call = Call("get", kind.group, kind.plural, subresource)
        self.calls[call] += 1
        headers = self._auth()
        url = self.credentials.server + kind.path(namespace, name, subresource)
        timeout = aiohttp.ClientTimeout(total=None, connect=self._timeout.connect, sock_read=None)
        try:
            async with self._open().get(url, params=params, headers=headers, timeout=timeout) as response:
                if response.status >= 400:
                    raise _api_error(response.status, await response.read(), response.headers, call,
                                     namespace, name)
                buffer = b""
                async for chunk in response.content.iter_any():
                    buffer += chunk
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        yield line + b"\n"
                if buffer:
                    yield buffer
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise ApiError(0, "ConnectionError", f"{type(exc).__name__}: {exc}", call=call,
                           namespace=namespace, name=name) from exc

    async def patch_status(
        self, kind: Kind | str, name: str, namespace: str | None, status: Manifest
    ) -> Manifest:
        """Merge-patch the status subresource with ``{"status": status}``."""
        return await self.patch(kind, name, namespace, {"status": status}, subresource="status")

    async def create(self, manifest: Manifest) -> Manifest | None:
        """Create an immutable object; None when it already exists (409), so retries are harmless."""
        kind = kind_of(manifest)
        try:
            return await self.request(
                "create", kind, namespace=manifest["metadata"].get("namespace"), body=manifest
            )
        except ApiError as exc:
            if exc.status == 409 and exc.reason == "AlreadyExists":
                return None
            raise

    async def post_event(
        self,
        involved: Mapping[str, Any],
        *,
        reason: str,
        message: str,
        type: str = "Normal",
        action: str = "Reconcile",
    ) -> Manifest | None:
        """A core/v1 Event about ``involved``; best effort: a failure is logged, never raised.

        Cluster-scoped objects (a Tenant) get their events in ``default``, as kubectl looks there.
        """
        meta = involved.get("metadata", {})
        namespace = meta.get("namespace") or "default"
        now = _now()
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta.get('name', 'mothership')}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": involved.get("apiVersion"),
                "kind": involved.get("kind"),
                "name": meta.get("name"),
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
            },
            "reason": reason,
            "message": message[:1024],
            "type": type,
            "action": action,
            "source": {"component": FIELD_MANAGER},
            "reportingComponent": FIELD_MANAGER,
            "reportingInstance": FIELD_MANAGER,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            return await self.request("create", KINDS["Event"], namespace=namespace, body=event)
        except ApiError as exc:
            logger.warning("could not post event %s on %s: %s", reason, meta.get("name"), exc)
            return None


# --- Pure helpers -------------------------------------------------------------


def carries(observed: Any, desired: Any) -> bool:
    """Whether the live object still carries every field we apply (drift detection).

    The server adds defaults and status, so "equal" is wrong; "desired is a subset
    of observed" is right. Lists must match in length and element-wise (the
    server never adds list elements to what we applied, but a hand edit might).
    Quantities compare by value (``0.5`` == ``500m``), as the server normalises them.
    """
    if isinstance(desired, Mapping):
        if not isinstance(observed, Mapping):
            return False
        return all(k in observed and carries(observed[k], v) for k, v in desired.items())
    if isinstance(desired, list):
        if not isinstance(observed, list) or len(observed) != len(desired):
            return False
        return all(carries(o, d) for o, d in zip(observed, desired, strict=True))
    if desired == observed:
        return True
    if isinstance(desired, (str, int)) and isinstance(observed, (str, int)) and not isinstance(
        desired, bool
    ):
        try:
            return parse_quantity(desired) == parse_quantity(observed)
        except ValueError:
            return False
    return False


def managers_of(obj: Mapping[str, Any], *path: str) -> set[str]:
    """The field managers that own the field at ``path`` (``"spec", "replicas"``), from managedFields."""
    owners: set[str] = set()
    for entry in (obj.get("metadata") or {}).get("managedFields") or []:
        fields: Any = entry.get("fieldsV1") or {}
        for key in path:
            fields = fields.get(f"f:{key}") if isinstance(fields, Mapping) else None
        if fields is not None and entry.get("manager"):
            owners.add(str(entry["manager"]))
    return owners


def merge_patch(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> Manifest:
    """A merge patch turning ``old`` into ``new`` at the top level: keys that vanished become None."""
    patch: Manifest = dict(new)
    for key in old or {}:
        if key not in new:
            patch[key] = None
    return patch


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _api_error(
    status: int, raw: bytes, headers: Mapping[str, str], call: Call, namespace: str | None,
    name: str | None,
) -> ApiError:
    try:
        body = json.loads(raw)
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    retry_after: float | None = None
    if "Retry-After" in headers:
        try:
            retry_after = float(headers["Retry-After"])
        except ValueError:
            retry_after = None
    details = body.get("details") or {}
    if retry_after is None and details.get("retryAfterSeconds"):
        retry_after = float(details["retryAfterSeconds"])
    return ApiError(
        status,
        body.get("reason") or _REASONS.get(status, "Unknown"),
        body.get("message") or raw[:200].decode(errors="replace"),
        call=call, namespace=namespace, name=name, details=details, retry_after=retry_after,
    )


_REASONS = {
    400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed",
    409: "Conflict", 410: "Expired", 415: "UnsupportedMediaType", 422: "Invalid",
    429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout",
}
