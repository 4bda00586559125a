"""The HTTP face of the emulator: routing, query parameters, watches, kubeconfig.

``Emulator`` serves the Kubernetes REST paths (``/api/v1/...``, ``/apis/g/v/...``,
discovery, ``/version``) with aiohttp on 127.0.0.1, translating each request into one
registry call and each ``ApiError`` into a ``Status`` body. Watches stream
newline-delimited JSON events over a chunked response, fed by the store's per-type
history (to resume from a resourceVersion) and live fan-out. ``calls`` counts requests
per (verb, group, resource, subresource), with RBAC verbs, so tests can assert what
an operator did without a per-request log.

The in-process accessors (``get``, ``list``) read the store directly, under its lock,
and return copies: safe from a test thread while the server runs on its own loop.
"""

from __future__ import annotations

import asyncio
import builtins
import collections
import contextlib
import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import yaml
from aiohttp import web

from . import errors, resources, tables
from .controllers import Controllers
from .errors import ApiError
from .merge import clone
from .registry import APPLY, Registry
from .resources import ResourceType
from .selectors import Matcher, combine, parse_fields, parse_labels
from .store import CLOSED, Store, Watcher

Obj = dict[str, Any]
CallKey = tuple[str, str, str, str]
VERSION = {
    "major": "1", "minor": "32", "gitVersion": "v1.32.0-kubeemu", "gitCommit": "kubeemu",
    "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.23",
    "compiler": "gc", "platform": "linux/amd64",
}
#: Request bodies the emulator decodes. Protobuf (which ``kubectl create <kind>`` sends
#: for built-ins) is answered with 415; ``kubectl apply|create -f`` send JSON.
BODY_TYPES = ("application/json", "application/yaml", "")
MAX_BODY = 16 * 1024 * 1024  # bytes; CRDs with large schemas exceed aiohttp's 1 MiB default
logger = logging.getLogger(__name__)


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=_dumps(obj), status=status, content_type="application/json")


class Emulator:
    """A single-process, in-memory Kubernetes API server for tests and benchmarks."""

    def __init__(self, *, history: int = 10_000, bookmark_interval: float = 60.0) -> None:
        self.store = Store(history=history)
        self.registry = Registry(self.store)
        self.controllers = Controllers(self.registry)
        self.calls: collections.Counter[CallKey] = collections.Counter()
        self.bookmark_interval = bookmark_interval
        self.url = ""
        self.kubeconfig: Path | None = None
        self._runner: web.ServerRunner | None = None
        self._controller_task: asyncio.Task[None] | None = None

    # --- lifecycle -----------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        loop = asyncio.get_running_loop()

        def request_factory(message: Any, payload: Any, protocol: Any, writer: Any,
                            task: Any) -> web.BaseRequest:
            return web.BaseRequest(message, payload, protocol, writer, task, loop,
                                   client_max_size=MAX_BODY)

        # A bare web.Server: one handler for every path, no router or middlewares to pay for.
        server = web.Server(self._handle, request_factory=request_factory,
                            handler_cancellation=True, access_log=None)
        self._runner = web.ServerRunner(server, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        bound = sockets[0].getsockname()[1] if sockets else port
        self.url = f"http://{host}:{bound}"
        self._controller_task = asyncio.create_task(self.controllers.run(), name="kubeemu-controllers")
        return self.url

    async def stop(self) -> None:
        self.store.close_all()
        if self._controller_task is not None:
            self._controller_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._controller_task
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def settled(self) -> None:
        """Wait until garbage collection and namespace/CRD cleanup have caught up."""
        await self.controllers.settled()

    def write_kubeconfig(self, path: str | Path) -> Path:
        path = Path(path)
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "kubeemu", "cluster": {"server": self.url}}],
            "users": [{"name": "kubeemu", "user": {"token": "kubeemu-token"}}],
            "contexts": [{"name": "kubeemu", "context": {
                "cluster": "kubeemu", "user": "kubeemu", "namespace": "default"}}],
            "current-context": "kubeemu",
            "preferences": {},
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.kubeconfig = path
        return path

    # --- in-process access -----------------------------------------------------------

    def _type(self, group_version: str, plural: str) -> ResourceType | None:
        group, _, version = group_version.rpartition("/")
        return self.registry.find(group, version, plural)

    def get(self, group_version: str, plural: str, name: str,
            namespace: str | None = None) -> Obj | None:
        rt = self._type(group_version, plural)
        if rt is None:
            return None
        with self.store.lock:
            obj = self.store.get(rt.storage_key, namespace or "", name)
            return clone(self.registry.render(rt, obj)) if obj is not None else None

    def list(self, group_version: str, plural: str,
             namespace: str | None = None) -> builtins.list[Obj]:
        rt = self._type(group_version, plural)
        if rt is None:
            return []
        with self.store.lock:
            return [clone(self.registry.render(rt, o))
                    for o in self.store.iter(rt.storage_key, namespace)]

    # --- HTTP ------------------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        try:
            return await self._dispatch(request)
        except ApiError as e:
            return _json(e.status(), e.code)

    async def _dispatch(self, request: web.BaseRequest) -> web.StreamResponse:
        parts = [unquote(p) for p in request.path.split("/") if p]
        types = self.registry.types()
        if not parts:
            return _json({"paths": ["/api", "/api/v1", "/apis", "/version"]})
        if parts == ["version"]:
            return _json(VERSION)
        if parts[0] in ("healthz", "livez", "readyz"):
            return web.Response(text="ok")
        if parts == ["api"]:
            return _json({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": request.host}]})
        if parts == ["apis"]:
            return _json(resources.group_list(types))
        if parts[0] == "api" and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[0] == "apis" and len(parts) >= 2:
            if len(parts) == 2:
                doc = resources.group(types, parts[1])
                if doc is None:
                    raise errors.path_not_found()
                return _json(doc)
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise errors.path_not_found()
        if not rest:
            doc = resources.resource_list(types, f"{group}/{version}" if group else version)
            if doc is None:
                raise errors.path_not_found()
            return _json(doc)
        return await self._resource(request, group, version, rest)

    def _route(self, group: str, version: str, rest: builtins.list[str]) -> tuple[
            bool, str | None, ResourceType, str | None, str | None]:
        """(watch prefix, namespace, type, name, subresource) of a resource path."""
        watch = rest[0] == "watch"
        if watch:
            rest = rest[1:]
        namespace = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            inner = self.registry.find(group, version, rest[2])
            if inner is not None and inner.namespaced:
                namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            raise errors.path_not_found()
        rt = self.registry.type(group, version, rest[0])
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if namespace is not None and not rt.namespaced:
            raise errors.path_not_found()
        if rt.namespaced and name is not None and namespace is None:
            raise errors.path_not_found()
        allowed = {None, "status" if rt.status else None, "scale" if rt.scale_paths else None,
                   "finalize" if rt.storage_key == resources.NAMESPACES_KEY else None}
        if sub not in allowed:
            raise errors.path_not_found()
        return watch, namespace, rt, name, sub

    async def _resource(self, request: web.BaseRequest, group: str, version: str,
                        rest: builtins.list[str]) -> web.StreamResponse:
        watch, namespace, rt, name, sub = self._route(group, version, rest)
        query = request.query
        watch = watch or query.get("watch") in ("true", "1")
        method = request.method
        verb = _verb(method, name, watch)
        if verb is None:
            raise errors.method_not_allowed("the server does not allow this method on the "
                                            "requested resource")
        self.calls[(verb, rt.group, rt.plural, sub or "")] += 1
        dry_run = query.get("dryRun") == "All"
        strict = query.get("fieldValidation") == "Strict"
        agent = request.headers.get("User-Agent", "").split("/")[0] or "unknown"
        manager = query.get("fieldManager") or agent
        if verb in ("list", "watch", "deletecollection"):
            matches = combine(
                parse_labels(query.get("labelSelector")),
                parse_fields(query.get("fieldSelector"), rt.field_labels),
                parse_fields(f"metadata.name={name}", ()) if name else None,
            )
            if verb == "watch":
                return await self._watch(request, rt, namespace, matches)
            if verb == "deletecollection":
                options = await self._delete_options(request)
                return _json(self.registry.delete_collection(rt, namespace, matches, options,
                                                             dry_run=dry_run))
            limit = int(query["limit"]) if query.get("limit", "").isdigit() else None
            listed = self.registry.list(rt, namespace, matches, limit, query.get("continue"))
            if tables.wants_table(request.headers.get("Accept", "")):
                return _json(tables.table(rt, listed["items"], listed["metadata"]))
            return _json(listed)
        assert name is not None or verb == "create"
        if verb == "get":
            if sub == "scale":
                return _json(self.registry.read_scale(rt, namespace, name or ""))
            obj = self.registry.read(rt, namespace, name or "")
            if tables.wants_table(request.headers.get("Accept", "")):
                return _json(tables.table(rt, [obj], {"resourceVersion": obj["metadata"]["resourceVersion"]}))
            return _json(obj)
        if verb == "delete":
            options = await self._delete_options(request)
            body, code = self.registry.delete(rt, namespace, name or "", options, dry_run=dry_run)
            return _json(body, code)
        raw = await request.read()
        if verb == "patch":
            content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
            force = query.get("force") in ("true", "1")
            if sub == "scale":
                current = self.registry.read_scale(rt, namespace, name or "")
                patched, _ = _patch_scale(current, raw, content_type)
                return _json(self.registry.write_scale(rt, namespace, name or "", patched, manager))
            if content_type == APPLY and not query.get("fieldManager"):
                manager = ""
            obj, created = self.registry.patch(
                rt, namespace, name or "", raw, content_type, subresource=sub,
                manager=manager or None, force=force, dry_run=dry_run, strict=strict,
            )
            return _json(obj, 201 if created else 200)
        content_type = request.headers.get("Content-Type", "application/json").split(";")[0].strip()
        if content_type not in BODY_TYPES:  # e.g. protobuf, which kubectl tries for built-ins
            raise errors.unsupported_media_type(content_type, list(BODY_TYPES))
        body = _decode(raw)
        if verb == "create":
            return _json(self.registry.create(rt, namespace, body, dry_run=dry_run,
                                              strict=strict), 201)
        if sub == "scale":
            return _json(self.registry.write_scale(rt, namespace, name or "", body, manager))
        if sub == "finalize":
            return _json(self.registry.finalize_namespace(name or "", body))
        return _json(self.registry.replace(rt, namespace, name or "", body, subresource=sub,
                                           manager=manager, dry_run=dry_run, strict=strict))

    async def _delete_options(self, request: web.BaseRequest) -> Obj:
        options: Obj = {}
        raw = await request.read()
        if raw.strip():
            body = _decode(raw)
            if isinstance(body, dict):
                options.update(body)
        query = request.query
        if "propagationPolicy" in query:
            options["propagationPolicy"] = query["propagationPolicy"]
        if "orphanDependents" in query:
            options["orphanDependents"] = query["orphanDependents"] == "true"
        policy = options.get("propagationPolicy")
        if policy is not None and policy not in ("Orphan", "Background", "Foreground"):
            raise errors.invalid("meta.k8s.io", "DeleteOptions", "", [errors.Cause(
                errors.Cause.NOT_SUPPORTED, "propagationPolicy",
                f'Unsupported value: "{policy}": supported values: "Foreground", "Background", '
                '"Orphan", "nil"')])
        return options

    # --- watches ---------------------------------------------------------------------

    async def _watch(self, request: web.BaseRequest, rt: ResourceType, namespace: str | None,
                     matches: Matcher | None) -> web.StreamResponse:
        query = request.query
        since = query.get("resourceVersion") or ""
        initial_events = query.get("sendInitialEvents") == "true"
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
        timeout = float(query["timeoutSeconds"]) if query.get("timeoutSeconds") else None
        if since not in ("", "0") and not since.isdigit():
            raise errors.bad_request(f'invalid resource version "{since}"')
        loop = asyncio.get_running_loop()
        watcher = Watcher(namespace, matches, asyncio.Queue(), loop)
        key = rt.storage_key
        expired: Obj | None = None
        with self.store.lock:
            if initial_events or since in ("", "0"):
                for obj in self.store.iter(key, namespace):
                    if matches is None or matches(obj):
                        watcher.queue.put_nowait(("ADDED", obj))
                if initial_events and bookmarks:
                    watcher.queue.put_nowait(("INITIAL-END", {}))
            else:
                events = self.store.since(key, int(since))
                if events is None:
                    expired = errors.expired(
                        f"too old resource version: {since} ({self.store.revision})").status()
                else:
                    for _, etype, obj, old in events:
                        watcher.offer(etype, obj, old)
            if expired is None:
                self.store.subscribe(key, watcher)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            if expired is not None:
                await response.write(_dumps({"type": "ERROR", "object": expired}) + b"\n")
                return response
            await self._stream(response, watcher, rt, timeout, bookmarks)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.store.unsubscribe(key, watcher)
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response

    async def _stream(self, response: web.StreamResponse, watcher: Watcher, rt: ResourceType,
                      timeout: float | None, bookmarks: bool) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout is not None else None
        while True:
            wait = self.bookmark_interval if bookmarks else None
            if deadline is not None:
                left = deadline - loop.time()
                if left <= 0:
                    return
                wait = min(wait, left) if wait is not None else left
            try:
                etype, obj = await asyncio.wait_for(watcher.queue.get(), wait)
            except TimeoutError:
                if bookmarks and (deadline is None or loop.time() < deadline):
                    await response.write(_dumps({"type": "BOOKMARK", "object": self._bookmark(rt)}) + b"\n")
                continue
            if obj is CLOSED:
                return
            if etype == "INITIAL-END":
                mark = self._bookmark(rt)
                mark["metadata"]["annotations"] = {"k8s.io/initial-events-end": "true"}
                await response.write(_dumps({"type": "BOOKMARK", "object": mark}) + b"\n")
                continue
            event = {"type": etype, "object": self.registry.render(rt, obj)}
            await response.write(_dumps(event) + b"\n")

    def _bookmark(self, rt: ResourceType) -> Obj:
        return {"kind": rt.kind, "apiVersion": rt.group_version,
                "metadata": {"resourceVersion": str(self.store.revision)}}


def _verb(method: str, name: str | None, watch: bool) -> str | None:
    if method == "GET":
        return "watch" if watch else ("get" if name else "list")
    if method == "POST":
        return None if name else "create"
    if method == "DELETE":
        return "delete" if name else "deletecollection"
    if name is None:
        return None
    return {"PUT": "update", "PATCH": "patch"}.get(method)


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        try:  # kubectl and some clients may send YAML bodies
            return yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise errors.bad_request(f"the object provided is unrecognized: {e}") from None


def _patch_scale(current: Obj, raw: bytes, content_type: str) -> tuple[Obj, bool]:
    from . import merge

    try:
        patch = json.loads(raw)
    except ValueError as e:
        raise errors.bad_request(f"error decoding patch: {e}") from None
    if content_type == "application/json-patch+json":
        try:
            return merge.json_patch(current, patch), False
        except merge.PatchError as e:
            raise errors.unprocessable(str(e)) from None
    return merge.merge_patch(current, patch), False
