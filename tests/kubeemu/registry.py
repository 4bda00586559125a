"""The API's rules for reading and writing objects, on top of the store.

Each public method is one REST verb on one resource type, with the semantics the
real kube-apiserver documents: system metadata (uid, resourceVersion,
creationTimestamp, generation, generateName), optimistic concurrency, the status
subresource's split of ownership, finalizers and deletionTimestamp, propagation
policies, name validation, structural schemas of custom resources, and the four
patch types. Per-type defaulting and validation live in strategies.py. Every write
ends in ``_put`` or ``_remove``, which also keep CRD registration in sync. HTTP
parsing lives in server.py; the asynchronous controllers (garbage collector,
namespace and CRD cleanup) live in controllers.py and call back into this module.
"""

from __future__ import annotations

import base64
import json
import random
import uuid
from collections.abc import Callable
from typing import Any

import yaml

from . import errors, merge, resources, schema, strategies
from .errors import ApiError, Cause
from .merge import FieldSet, Path, clone
from .objects import (
    CRD_CLEANUP,
    FOREGROUND,
    ORPHAN,
    finalizers_of,
    is_deleting,
    meta_of,
    now,
    set_condition,
)
from .resources import CRD_STORAGE_KEY, NAMESPACES_KEY, ResourceType, StorageKey
from .selectors import Matcher, field_value
from .store import Store

Obj = dict[str, Any]

MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"
PATCH_TYPES = [JSON_PATCH, MERGE, STRATEGIC, APPLY]

#: Owner of the fields of an object that no one has applied yet. Ownership is tracked
#: lazily, from an object's first apply on: until then the emulator skips the cost,
#: and a first apply sees every existing field as owned by this manager, which is
#: what the real server reports for objects without managedFields.
BEFORE_FIRST_APPLY = "before-first-apply"
INITIAL_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")

_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # k8s.io/apimachinery/pkg/util/rand
_SYSTEM_META = (
    "uid", "resourceVersion", "creationTimestamp", "deletionTimestamp",
    "deletionGracePeriodSeconds", "generation", "managedFields", "selfLink",
)


def _system_path(path: Path) -> bool:
    if path[:1] in (("apiVersion",), ("kind",)):
        return True
    return path[:1] == ("metadata",) and len(path) > 1 and path[1] in (
        "name", "namespace", *_SYSTEM_META
    )


class Registry:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        self._by_key: dict[StorageKey, ResourceType] = {}
        self._crd_types: dict[str, list[ResourceType]] = {}
        self._owners: dict[str, dict[str, FieldSet]] = {}  # uid -> manager -> owned paths
        self._next_ip = 0
        self._rebuild_types()
        for name in INITIAL_NAMESPACES:
            self.create(self.type("", "v1", "namespaces"), None, {"metadata": {"name": name}})

    # --- resource types ------------------------------------------------------------

    def _rebuild_types(self) -> None:
        everything = list(resources.BUILTINS)
        for types in self._crd_types.values():
            everything.extend(types)
        self._types = {(rt.group, rt.version, rt.plural): rt for rt in everything}
        self._by_key = {}
        for rt in everything:
            self._by_key.setdefault(rt.storage_key, rt)

    def types(self) -> list[ResourceType]:
        return list(self._types.values())

    def find(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._types.get((group, version, plural))

    def type(self, group: str, version: str, plural: str) -> ResourceType:
        rt = self.find(group, version, plural)
        if rt is None:
            raise errors.path_not_found()
        return rt

    def type_of(self, key: StorageKey) -> ResourceType | None:
        return self._by_key.get(key)

    def crd_of(self, key: StorageKey) -> Obj | None:
        rt = self._by_key.get(key)
        if rt is None or rt.crd_name is None:
            return None
        return self.store.get(CRD_STORAGE_KEY, "", rt.crd_name)

    def keys_of(self, rt: ResourceType) -> Callable[[tuple[str, ...]], resources.ListKeys]:
        return lambda names: resources.list_keys(rt, names)

    # --- output --------------------------------------------------------------------

    @staticmethod
    def render(rt: ResourceType, obj: Obj) -> Obj:
        """The object as served at this version (CRD versions share one storage)."""
        if obj.get("apiVersion") == rt.group_version:
            return obj
        return {**obj, "apiVersion": rt.group_version}

    # --- reads ---------------------------------------------------------------------

    def read(self, rt: ResourceType, namespace: str | None, name: str) -> Obj:
        obj = self.store.get(rt.storage_key, namespace or "", name)
        if obj is None:
            raise errors.not_found(rt.group, rt.plural, name)
        return self.render(rt, obj)

    def list(
        self,
        rt: ResourceType,
        namespace: str | None,
        matches: Matcher | None,
        limit: int | None = None,
        token: str | None = None,
    ) -> Obj:
        with self.store.lock:
            revision = str(self.store.revision)
            start: tuple[str, str] | None = None
            if token:
                try:
                    decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
                    revision, start = str(decoded["rv"]), tuple(decoded["start"])
                except (ValueError, KeyError, TypeError):
                    raise errors.bad_request(f"continue key is not valid: {token}") from None
            items: list[Obj] = []
            more = False
            for obj in self.store.iter(rt.storage_key, namespace):
                if start is not None and _position(obj) <= start:
                    continue
                if matches is not None and not matches(obj):
                    continue
                if limit and len(items) == limit:
                    more = True
                    break
                items.append(obj)
        meta: Obj = {"resourceVersion": revision}
        if more:
            last = json.dumps({"rv": revision, "start": _position(items[-1])})
            meta["continue"] = base64.urlsafe_b64encode(last.encode()).decode()
        if rt.builtin:  # typed lists carry no per-item TypeMeta
            rendered = [{k: v for k, v in o.items() if k not in ("apiVersion", "kind")} for o in items]
        else:
            rendered = [self.render(rt, o) for o in items]
        return {"kind": f"{rt.kind}List", "apiVersion": rt.group_version, "metadata": meta,
                "items": rendered}

    # --- create --------------------------------------------------------------------

    def create(
        self,
        rt: ResourceType,
        namespace: str | None,
        body: Any,
        *,
        dry_run: bool = False,
        strict: bool = False,
        owners: dict[str, FieldSet] | None = None,
    ) -> Obj:
        """POST. Field ownership starts untracked unless ``owners`` (from an apply)."""
        obj = self._accept_body(rt, body, namespace)
        meta = obj["metadata"]
        if meta.get("resourceVersion"):
            raise errors.bad_request("resourceVersion should not be set on objects to be created")
        for field in _SYSTEM_META:
            meta.pop(field, None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = self._generate_name(rt, str(meta["generateName"]), obj)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now()
        if rt.generation:
            meta["generation"] = 1
        if rt.status:
            obj.pop("status", None)
        obj = self._prepare(rt, obj, None, strict)
        self._validate(rt, obj, None)
        ns = str(meta.get("namespace") or "")
        if rt.namespaced:
            space = self.store.get(NAMESPACES_KEY, "", ns)
            if space is None:
                raise errors.not_found("", "namespaces", ns)
            if is_deleting(space):
                raise errors.forbidden(
                    rt.group, rt.plural, meta["name"],
                    f"unable to create new content in namespace {ns} because it is being terminated",
                    {"reason": "NamespaceTerminating", "field": "metadata.namespace",
                     "message": f"namespace {ns} is being terminated"},
                )
        crd = self.crd_of(rt.storage_key)
        if crd is not None and is_deleting(crd):
            raise errors.method_not_allowed(
                "create not allowed while custom resource definition is terminating"
            )
        if self.store.get(rt.storage_key, ns, meta["name"]) is not None:
            raise errors.already_exists(rt.group, rt.plural, meta["name"])
        if dry_run:
            return self.render(rt, obj)
        stored = self._put(rt, obj, owners or {})
        return self.render(rt, stored)

    def _generate_name(self, rt: ResourceType, base: str, obj: Obj) -> str:
        ns = str(meta_of(obj).get("namespace") or "")
        for _ in range(8):
            name = base[:58] + "".join(random.choices(_NAME_CHARS, k=5))
            if self.store.get(rt.storage_key, ns, name) is None:
                return name
        return name

    # --- update and patch ------------------------------------------------------------

    def replace(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        body: Any,
        *,
        subresource: str | None,
        manager: str,
        dry_run: bool = False,
        strict: bool = False,
    ) -> Obj:
        old = self._existing(rt, namespace, name)
        new = self._accept_body(rt, body, namespace, name)
        return self._update(rt, old, new, subresource=subresource, manager=manager,
                            dry_run=dry_run, strict=strict)

    def patch(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        raw: bytes,
        content_type: str,
        *,
        subresource: str | None,
        manager: str | None,
        force: bool,
        dry_run: bool = False,
        strict: bool = False,
    ) -> tuple[Obj, bool]:
        """Apply a patch; returns (object, created). Only apply patches may create."""
        if content_type not in PATCH_TYPES:
            raise errors.unsupported_media_type(content_type, PATCH_TYPES)
        if content_type == STRATEGIC and not rt.builtin:
            raise errors.unsupported_media_type(content_type, [JSON_PATCH, MERGE, APPLY])
        if content_type == APPLY:
            if not manager:
                raise errors.invalid("meta.k8s.io", "PatchOptions", "", [Cause(
                    Cause.REQUIRED, "fieldManager", "Required value: is required for apply patch"
                )])
            return self._apply(rt, namespace, name, raw, subresource, manager, force, dry_run,
                               strict)
        if force:
            raise errors.invalid("meta.k8s.io", "PatchOptions", "", [Cause(
                Cause.FORBIDDEN, "force", "Forbidden: may not be specified for non-apply patch"
            )])
        old = self._existing(rt, namespace, name)
        try:
            patch = json.loads(raw or b"null")
        except ValueError as e:
            raise errors.bad_request(f"error decoding patch: {e}") from None
        current = self.render(rt, old)
        try:
            if content_type == JSON_PATCH:
                if not merge.valid_json_patch(patch):
                    raise errors.bad_request(
                        "json: cannot unmarshal object into Go value of type jsonpatch.Patch"
                    )
                result = merge.json_patch(current, patch)
            elif content_type == MERGE:
                result = merge.merge_patch(current, patch)
            else:
                result = merge.strategic_merge(current, patch, self.keys_of(rt))
        except merge.PatchError as e:
            raise errors.unprocessable(str(e)) from None
        if not isinstance(result, dict):
            raise errors.invalid(rt.group, rt.kind, name, [Cause(
                Cause.INVALID, "patch", "Invalid value: the patched object is not a JSON object"
            )])
        new = self._accept_body(rt, result, namespace, name)
        updated = self._update(rt, old, new, subresource=subresource, manager=manager or "unknown",
                               dry_run=dry_run, strict=strict)
        return updated, False

    def _apply(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        raw: bytes,
        subresource: str | None,
        manager: str,
        force: bool,
        dry_run: bool,
        strict: bool,
    ) -> tuple[Obj, bool]:
        try:
            config = _load_apply_body(raw)
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise errors.bad_request(f"error decoding YAML: {e}") from None
        if not isinstance(config, dict):
            raise errors.bad_request("error decoding YAML: the body is not an object")
        if not config.get("apiVersion") or not config.get("kind"):
            raise errors.bad_request(
                "invalid object type: apiVersion and kind are required in an apply configuration"
            )
        self._check_type_meta(rt, config)
        old = self.store.get(rt.storage_key, namespace or "", name)
        live: Obj = self.render(rt, old) if old is not None else {}
        table: dict[str, FieldSet] = {}
        if old is not None:
            table = self._owners.get(meta_of(old)["uid"]) or merge.update_ownership(
                {}, BEFORE_FIRST_APPLY, {}, old, self.keys_of(rt), _system_path
            )

        def ignored(path: Path) -> bool:
            if _system_path(path):
                return True
            if subresource == "status":
                return path[:1] != ("status",)
            return rt.status and path[:1] == ("status",)

        try:
            result, table = merge.apply(live, config, manager, table, self.keys_of(rt),
                                        force=force, ignored=ignored)
        except merge.ApplyConflict as e:
            raise _apply_conflict(rt, name, e) from None
        meta = result.setdefault("metadata", {})
        if meta.get("name") not in (None, name):
            raise errors.bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})"
            )
        meta["name"] = name
        if old is None:
            if subresource:
                raise errors.not_found(rt.group, rt.plural, name)
            return self.create(rt, namespace, result, dry_run=dry_run, strict=strict,
                               owners=table), True
        new = self._accept_body(rt, result, namespace, name)
        updated = self._update(rt, old, new, subresource=subresource, manager=manager,
                               dry_run=dry_run, strict=strict, owners=table)
        return updated, False

    def _update(
        self,
        rt: ResourceType,
        old: Obj,
        new: Obj,
        *,
        subresource: str | None,
        manager: str,
        dry_run: bool = False,
        strict: bool = False,
        owners: dict[str, FieldSet] | None = None,
    ) -> Obj:
        meta, old_meta = new["metadata"], meta_of(old)
        if meta.get("resourceVersion") and meta["resourceVersion"] != old_meta["resourceVersion"]:
            raise errors.conflict(rt.group, rt.plural, old_meta["name"], errors.STALE)
        if meta.get("uid") and meta["uid"] != old_meta["uid"]:
            raise errors.conflict(
                rt.group, rt.plural, old_meta["name"],
                f"Precondition failed: UID in precondition: {meta['uid']}, "
                f"UID in object meta: {old_meta['uid']}",
            )
        if subresource == "status":
            status = new.get("status")
            new = clone(old)
            new.pop("status", None)
            if status is not None:
                new["status"] = status
            meta = new["metadata"]
        elif rt.status:
            new.pop("status", None)
            if "status" in old:
                new["status"] = clone(old["status"])
        for field in _SYSTEM_META:
            meta.pop(field, None)
            if field in old_meta and field not in ("resourceVersion", "managedFields"):
                meta[field] = old_meta[field]
        if is_deleting(old):
            added = [f for f in finalizers_of(new) if f not in finalizers_of(old)]
            if added:
                raise errors.invalid(rt.group, rt.kind, old_meta["name"], [Cause(
                    Cause.FORBIDDEN, "metadata.finalizers",
                    "Forbidden: no new finalizers can be added if the object is being deleted, "
                    f"found new finalizers {json.dumps(added)}",
                )])
        new = self._prepare(rt, new, old, strict)
        self._validate(rt, new, old)
        if rt.generation and _spec_part(rt, new) != _spec_part(rt, old):
            new["metadata"]["generation"] = int(old_meta.get("generation") or 0) + 1
        if dry_run:
            return self.render(rt, new)
        if owners is None:
            owners = self._owners.get(old_meta["uid"], {})
            if owners:  # ownership is tracked from the first apply on (see _apply)
                owners = merge.update_ownership(owners, manager, old, new, self.keys_of(rt),
                                                _system_path)
        return self.render(rt, self._commit(rt, old, new, owners))

    def _commit(self, rt: ResourceType, old: Obj, new: Obj, owners: dict[str, FieldSet]) -> Obj:
        uid = meta_of(old)["uid"]
        if _without_revision(new) == _without_revision(old):
            if owners:
                self._owners[uid] = owners
            return old  # a no-op write neither bumps the resourceVersion nor notifies watchers
        if is_deleting(new) and not finalizers_of(new) and not _spec_finalizers(rt, new):
            return self._remove(rt, new)
        return self._put(rt, new, owners)

    def system_update(self, rt: ResourceType, obj: Obj, change: Callable[[Obj], None]) -> Obj:
        """A write by a built-in controller: no validation, no ownership change."""
        new = clone(obj)
        change(new)
        return self._commit(rt, obj, new, self._owners.get(meta_of(obj)["uid"], {}))

    # --- scale ---------------------------------------------------------------------

    def read_scale(self, rt: ResourceType, namespace: str | None, name: str) -> Obj:
        obj = self._existing(rt, namespace, name)
        assert rt.scale_paths is not None
        spec_path, status_path, selector_path = rt.scale_paths
        meta = meta_of(obj)
        selector: Any = field_value(obj, selector_path) if selector_path else ""
        if selector_path == "spec.selector":
            labels = (obj.get("spec", {}).get("selector") or {}).get("matchLabels") or {}
            selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                              "creationTimestamp") if k in meta},
            "spec": {"replicas": int(field_value(obj, spec_path) or 0)},
            "status": {"replicas": int(field_value(obj, status_path) or 0), "selector": selector},
        }

    def write_scale(self, rt: ResourceType, namespace: str | None, name: str, scale: Any,
                    manager: str) -> Obj:
        old = self._existing(rt, namespace, name)
        assert rt.scale_paths is not None
        replicas = (scale.get("spec") or {}).get("replicas") if isinstance(scale, dict) else None
        if not isinstance(replicas, int) or replicas < 0:
            raise errors.invalid("autoscaling", "Scale", name, [Cause(
                Cause.INVALID, "spec.replicas",
                f"Invalid value: {replicas}: must be greater than or equal to 0",
            )])
        new = clone(old)
        node = new
        *parents, leaf = rt.scale_paths[0].split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = replicas
        precondition = meta_of(scale).get("resourceVersion")
        if precondition:
            new["metadata"]["resourceVersion"] = precondition
        self._update(rt, old, new, subresource=None, manager=manager)
        return self.read_scale(rt, namespace, name)

    # --- delete --------------------------------------------------------------------

    def delete(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        options: Obj,
        *,
        dry_run: bool = False,
    ) -> tuple[Obj, int]:
        """Delete or start deleting; returns (response body, HTTP code)."""
        obj = self._existing(rt, namespace, name)
        meta = meta_of(obj)
        pre = options.get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != meta["uid"]:
            raise errors.conflict(rt.group, rt.plural, name,
                                  f"Precondition failed: UID in precondition: {pre['uid']}, "
                                  f"UID in object meta: {meta['uid']}")
        if pre.get("resourceVersion") and pre["resourceVersion"] != meta["resourceVersion"]:
            raise errors.conflict(rt.group, rt.plural, name,
                                  "Precondition failed: ResourceVersion in precondition: "
                                  f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                                  f"{meta['resourceVersion']}")
        policy = _policy(rt, obj, options)
        accepted = 202 if options.get("orphanDependents") is False else 200
        if is_deleting(obj):
            return self.render(rt, obj), accepted
        finalizers = [f for f in finalizers_of(obj) if f not in (ORPHAN, FOREGROUND)]
        if policy == "Orphan":
            finalizers.append(ORPHAN)
        elif policy == "Foreground":
            finalizers.append(FOREGROUND)
        if rt.storage_key == CRD_STORAGE_KEY and CRD_CLEANUP not in finalizers:
            finalizers.append(CRD_CLEANUP)
        if dry_run:
            return self.render(rt, obj), 200
        if finalizers or _spec_finalizers(rt, obj):
            def mark(new: Obj) -> None:
                meta = new["metadata"]
                meta["deletionTimestamp"] = now()
                meta["deletionGracePeriodSeconds"] = 0
                if finalizers:
                    meta["finalizers"] = finalizers
                if rt.storage_key == NAMESPACES_KEY:
                    new.setdefault("status", {})["phase"] = "Terminating"
                if rt.storage_key == CRD_STORAGE_KEY:
                    set_condition(new, "Terminating", "True", "InstanceDeletionPending",
                                   "CustomResourceDefinition marked for deletion; "
                                   "CustomResource deletion will begin soon")
            marked = self.system_update(rt, obj, mark)
            return self.render(rt, marked), accepted
        gone = self._remove(rt, obj)
        if rt.returns_deleted:
            return self.render(rt, gone), 200
        details = {"name": name, "kind": rt.plural, "uid": meta["uid"]}
        if rt.group:
            details = {"name": name, "group": rt.group, "kind": rt.plural, "uid": meta["uid"]}
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": details}, 200

    def delete_collection(
        self, rt: ResourceType, namespace: str | None, matches: Matcher | None, options: Obj,
        *, dry_run: bool = False,
    ) -> Obj:
        victims = [o for o in self.store.iter(rt.storage_key, namespace)
                   if matches is None or matches(o)]
        deleted = []
        for obj in victims:
            meta = meta_of(obj)
            try:
                body, _ = self.delete(rt, meta.get("namespace"), meta["name"], options,
                                      dry_run=dry_run)
            except ApiError as e:
                if e.code != 404:
                    raise
                continue
            deleted.append(body if body.get("kind") != "Status" else self.render(rt, obj))
        return {"kind": f"{rt.kind}List", "apiVersion": rt.group_version,
                "metadata": {"resourceVersion": str(self.store.revision)}, "items": deleted}

    def finalize_namespace(self, name: str, body: Any) -> Obj:
        """``PUT /api/v1/namespaces/{name}/finalize``: only spec.finalizers changes."""
        rt = self.type("", "v1", "namespaces")
        old = self._existing(rt, None, name)
        wanted = ((body or {}).get("spec") or {}).get("finalizers") or []
        def change(new: Obj) -> None:
            new.setdefault("spec", {})["finalizers"] = list(wanted)
        return self.render(rt, self.system_update(rt, old, change))

    # --- the two writes ------------------------------------------------------------

    def _put(self, rt: ResourceType, obj: Obj, owners: dict[str, FieldSet]) -> Obj:
        stored = self.store.put(rt.storage_key, obj)
        uid = meta_of(stored)["uid"]
        if owners:
            self._owners[uid] = owners
        if rt.storage_key == CRD_STORAGE_KEY:
            self._sync_crd(stored)
        return stored

    def _remove(self, rt: ResourceType, obj: Obj) -> Obj:
        gone = self.store.remove(rt.storage_key, obj)
        self._owners.pop(meta_of(obj)["uid"], None)
        if rt.storage_key == CRD_STORAGE_KEY:
            self._unregister_crd(meta_of(obj)["name"])
        return gone

    def _sync_crd(self, crd: Obj) -> None:
        name = meta_of(crd)["name"]
        previous = {rt.storage_key for rt in self._crd_types.get(name, [])}
        self._crd_types[name] = resources.from_crd(crd)
        self._rebuild_types()
        for key in previous - {rt.storage_key for rt in self._crd_types[name]}:
            self.store.drop_type(key)

    def _unregister_crd(self, name: str) -> None:
        types = self._crd_types.pop(name, [])
        self._rebuild_types()
        for key in {rt.storage_key for rt in types}:
            self.store.drop_type(key)

    # --- helpers -------------------------------------------------------------------

    def _existing(self, rt: ResourceType, namespace: str | None, name: str) -> Obj:
        obj = self.store.get(rt.storage_key, namespace or "", name)
        if obj is None:
            raise errors.not_found(rt.group, rt.plural, name)
        return obj

    def _check_type_meta(self, rt: ResourceType, body: Obj) -> None:
        api_version, kind = body.get("apiVersion"), body.get("kind")
        if api_version and api_version != rt.group_version:
            raise errors.bad_request(
                f"the API version in the data ({api_version}) does not match the expected "
                f"API version ({rt.group_version})"
            )
        if kind and kind != rt.kind:
            raise errors.bad_request(
                f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})"
            )

    def _accept_body(
        self, rt: ResourceType, body: Any, namespace: str | None, name: str | None = None
    ) -> Obj:
        """A private copy of a request body with TypeMeta and namespace checked and set."""
        if not isinstance(body, dict):
            raise errors.bad_request("the object provided is unrecognized (must be a JSON object)")
        self._check_type_meta(rt, body)
        obj = {"apiVersion": rt.group_version, "kind": rt.kind, **clone(body)}
        obj["apiVersion"], obj["kind"] = rt.group_version, rt.kind
        meta = obj.get("metadata")
        if meta is None:
            meta = obj["metadata"] = {}
        if not isinstance(meta, dict):
            raise errors.bad_request("metadata must be an object")
        if rt.namespaced:
            given = meta.get("namespace")
            if given and namespace and given != namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent "
                    "on the request"
                )
            if namespace:
                meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if name is not None:
            if meta.get("name") and meta["name"] != name:
                raise errors.bad_request(
                    f"the name of the object ({meta['name']}) does not match the name on the "
                    f"URL ({name})"
                )
            meta["name"] = name
        return obj

    def _prepare(self, rt: ResourceType, obj: Obj, old: Obj | None, strict: bool = False) -> Obj:
        """Defaulting: the structural schema's, then the type's strategy.

        Unknown fields of custom resources are pruned, or with ``fieldValidation=Strict``
        rejected with a 400, as the real server does.
        """
        if rt.schema is not None:
            unknown: list[str] = []
            obj = schema.prepare(obj, rt.schema, unknown)
            if strict and unknown:
                fields = ", ".join(f'unknown field "{u.lstrip(".")}"' for u in unknown)
                raise errors.bad_request(f"strict decoding error: {fields}")
        strategies.prepare(self, rt, obj, old)
        return obj

    def _validate(self, rt: ResourceType, obj: Obj, old: Obj | None) -> None:
        causes = strategies.validate(rt, obj)
        if rt.schema is not None:
            causes += schema.validate(obj, rt.schema)
        if causes:
            name = str(meta_of(obj).get("name") or meta_of(obj).get("generateName") or "")
            raise errors.invalid(rt.group, rt.kind, name, causes)

    def allocate_ip(self) -> str:
        self._next_ip += 1
        return f"10.96.{self._next_ip // 250}.{self._next_ip % 250 + 1}"


def _position(obj: Obj) -> tuple[str, str]:
    """Where an object sits in the store's iteration order (namespace, then name)."""
    meta = meta_of(obj)
    return (str(meta.get("namespace") or ""), str(meta["name"]))


def _without_revision(obj: Obj) -> Obj:
    meta = {k: v for k, v in meta_of(obj).items() if k != "resourceVersion"}
    return {**obj, "metadata": meta}


def _spec_part(rt: ResourceType, obj: Obj) -> Obj:
    """What ``metadata.generation`` tracks: all but metadata (and status, if a subresource)."""
    skip = ("metadata", "status") if rt.status else ("metadata",)
    return {k: v for k, v in obj.items() if k not in skip}


def _spec_finalizers(rt: ResourceType, obj: Obj) -> list[str]:
    if rt.storage_key != NAMESPACES_KEY:
        return []
    return list((obj.get("spec") or {}).get("finalizers") or [])


def _policy(rt: ResourceType, obj: Obj, options: Obj) -> str:
    policy = options.get("propagationPolicy")
    if policy in ("Orphan", "Background", "Foreground"):
        return str(policy)
    if options.get("orphanDependents") is True:
        return "Orphan"
    if options.get("orphanDependents") is False:
        return "Foreground"
    existing = finalizers_of(obj)
    if ORPHAN in existing:
        return "Orphan"
    if FOREGROUND in existing:
        return "Foreground"
    return rt.default_propagation


def _apply_conflict(rt: ResourceType, name: str, e: merge.ApplyConflict) -> ApiError:
    causes = [{"type": "FieldManagerConflict", "message": f'conflict with "{m}"',
               "field": merge.render_path(p)} for m, p in e.conflicts]
    lines = "\n".join(f'- conflict with "{m}": {merge.render_path(p)}' for m, p in e.conflicts)
    err = errors.conflict(rt.group, rt.plural, name, "")
    err.message = f"Apply failed with {len(e.conflicts)} conflict(s):\n{lines}"
    assert err.details is not None
    err.details["causes"] = causes
    return err


def _load_apply_body(raw: bytes) -> Any:
    """An apply body: JSON (what clients, ours included, send; JSON is YAML) or YAML.

    json is ~50x faster than pure-Python YAML, which dominated the emulator's
    CPU under bench/operator_scale.py.
    """
    if raw.lstrip()[:1] == b"{":
        try:
            return json.loads(raw)
        except ValueError:
            pass  # a YAML flow mapping such as {a: 1}
    return yaml.safe_load(raw.decode() if raw else "")
