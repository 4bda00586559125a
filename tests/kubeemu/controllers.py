"""The control-plane loops a real cluster runs beside the API server.

- Garbage collector (uid-based ownerReferences): dependents of an owner that is gone
  are deleted (in the background, after the owner); ``foregroundDeletion`` owners wait
  until their dependents with ``blockOwnerDeletion`` are gone; ``orphan`` owners first
  strip their ownerReferences from dependents. A dependent whose owners all do not
  exist (any more, or ever) is collected too; one with a live owner loses only its
  references to dangling or foreground-deleting owners, as upstream's
  attemptToDeleteItem does.
- Namespace lifecycle: a Terminating namespace has its content deleted, waits for the
  objects' finalizers, then drops its ``kubernetes`` finalizer and goes away.
- CRD cleanup: a deleted CRD has its custom resources deleted before it goes away
  and stops being served.

Like the real ones these run asynchronously: the store's listener only queues work
(deduplicated), and one task drains the queue on the server's event loop, so clients
observe the same order of events as on a cluster (the owner's DELETED before its
dependents'). Nothing here knows about HTTP.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any

from .errors import ApiError
from .objects import (
    CRD_CLEANUP,
    FOREGROUND,
    ORPHAN,
    finalizers_of,
    is_deleting,
    meta_of,
    owner_refs,
)
from .registry import Registry
from .resources import CRD_STORAGE_KEY, NAMESPACES_KEY, StorageKey

Obj = dict[str, Any]
Work = tuple[str, str]  # ("dependent" | "owner" | "namespace" | "crd", uid or name)
logger = logging.getLogger(__name__)


class Controllers:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.store = registry.store
        self._queue: collections.deque[Work] = collections.deque()
        self._pending: set[Work] = set()
        self._wakeup: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None
        self._swept: set[str] = set()  # uids of namespaces and CRDs whose content was deleted
        self.store.listener = self.observe

    # --- queueing ------------------------------------------------------------------

    def enqueue(self, kind: str, ident: str) -> None:
        item = (kind, ident)
        if item not in self._pending:
            self._pending.add(item)
            self._queue.append(item)
            if self._wakeup is not None:
                self._wakeup.set()
            if self._idle is not None:
                self._idle.clear()

    def observe(self, etype: str, key: StorageKey, obj: Obj, old: Obj | None) -> None:
        """The store's listener: decide which objects need a controller's attention."""
        meta = meta_of(obj)
        uid = str(meta.get("uid"))
        namespace = meta.get("namespace")
        if etype == "DELETED":
            for dependent in self.store.dependents(uid):
                self.enqueue("dependent", meta_of(dependent[1])["uid"])
            for ref in owner_refs(obj):
                self.enqueue("owner", str(ref.get("uid")))
            if namespace and self._terminating(NAMESPACES_KEY, namespace):
                self.enqueue("namespace", namespace)
            crd = self.registry.crd_of(key)
            if crd is not None and is_deleting(crd):
                self.enqueue("crd", meta_of(crd)["name"])
            return
        if is_deleting(obj):
            if {ORPHAN, FOREGROUND} & set(finalizers_of(obj)):
                self.enqueue("owner", uid)
            if key == NAMESPACES_KEY:
                self.enqueue("namespace", meta["name"])
            if key == CRD_STORAGE_KEY:
                self.enqueue("crd", meta["name"])
        for ref in owner_refs(obj):
            owner = self._owner(obj, ref)
            if owner is None or is_deleting(owner):
                self.enqueue("dependent", uid)
        if old is not None:
            current = {r.get("uid") for r in owner_refs(obj)}
            for ref in owner_refs(old):
                if ref.get("uid") not in current:
                    self.enqueue("owner", str(ref.get("uid")))

    def _terminating(self, key: StorageKey, name: str) -> bool:
        obj = self.store.get(key, "", name)
        return obj is not None and is_deleting(obj)

    # --- the loop ------------------------------------------------------------------

    async def run(self) -> None:
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        if self._queue:
            self._wakeup.set()
        while True:
            if not self._queue:
                self._idle.set()
            await self._wakeup.wait()
            self._wakeup.clear()
            processed = 0
            while self._queue:
                item = self._queue.popleft()
                self._pending.discard(item)
                try:
                    with self.store.lock:
                        self._process(*item)
                except ApiError as e:  # e.g. an object that no longer validates
                    logger.warning("controller work %r failed: %s", item, e.message)
                processed += 1
                if processed % 50 == 0:
                    await asyncio.sleep(0)  # let requests in between

    async def settled(self) -> None:
        """Wait until the controllers have nothing left to do (for tests)."""
        if self._idle is not None:
            await self._idle.wait()

    def _process(self, kind: str, ident: str) -> None:
        if kind == "dependent":
            self._collect_dependent(ident)
        elif kind == "owner":
            self._finish_owner(ident)
        elif kind == "namespace":
            self._clean_namespace(ident)
        elif kind == "crd":
            self._clean_crd(ident)

    # --- garbage collection --------------------------------------------------------

    def _delete(self, key: StorageKey, obj: Obj, policy: str) -> None:
        rt = self.registry.type_of(key)
        if rt is None or is_deleting(obj):
            return
        meta = meta_of(obj)
        try:
            self.registry.delete(rt, meta.get("namespace"), meta["name"],
                                 {"propagationPolicy": policy})
        except ApiError as e:
            if e.code != 404:
                raise

    def _update(self, key: StorageKey, obj: Obj, change: Any) -> None:
        rt = self.registry.type_of(key)
        if rt is not None:
            self.registry.system_update(rt, obj, change)

    def _collect_dependent(self, uid: str) -> None:
        found = self.store.by_uid(uid)
        if found is None:
            return
        key, obj = found
        refs = owner_refs(obj)
        if not refs:
            return
        solid, gone, waiting = [], [], []
        for ref in refs:
            owner = self._owner(obj, ref)
            if owner is None:
                gone.append(ref)
            elif is_deleting(owner) and FOREGROUND in finalizers_of(owner):
                waiting.append(ref)
            else:
                solid.append(ref)
        if solid:
            if gone or waiting:
                drop = {r.get("uid") for r in gone + waiting}
                def unlink(new: Obj) -> None:
                    new["metadata"]["ownerReferences"] = [
                        r for r in owner_refs(new) if r.get("uid") not in drop
                    ]
                self._update(key, obj, unlink)
            return
        finalizers = finalizers_of(obj)
        if waiting and self.store.dependents(uid):
            policy = "Foreground"
        elif ORPHAN in finalizers:
            policy = "Orphan"
        elif FOREGROUND in finalizers:
            policy = "Foreground"
        else:
            policy = "Background"
        self._delete(key, obj, policy)

    def _owner(self, dependent: Obj, ref: Obj) -> Obj | None:
        """The live owner a reference points at: same uid, name, kind, and namespace."""
        found = self.store.by_uid(str(ref.get("uid")))
        if found is None:
            return None
        key, owner = found
        meta = meta_of(owner)
        if meta.get("name") != ref.get("name") or owner.get("kind") != ref.get("kind"):
            return None
        rt = self.registry.type_of(key)
        if rt is not None and rt.namespaced and meta.get("namespace") != meta_of(dependent).get("namespace"):
            return None
        return owner

    def _finish_owner(self, uid: str) -> None:
        found = self.store.by_uid(uid)
        if found is None:
            return
        key, obj = found
        finalizers = finalizers_of(obj)
        if not is_deleting(obj):
            return
        if ORPHAN in finalizers:
            for dep_key, dependent in self.store.dependents(uid):
                def unlink(new: Obj) -> None:
                    new["metadata"]["ownerReferences"] = [
                        r for r in owner_refs(new) if r.get("uid") != uid
                    ]
                    if not new["metadata"]["ownerReferences"]:
                        del new["metadata"]["ownerReferences"]
                self._update(dep_key, dependent, unlink)
            self._drop_finalizer(key, obj, ORPHAN)
        elif FOREGROUND in finalizers:
            blocking = False
            for _, dependent in self.store.dependents(uid):
                self.enqueue("dependent", meta_of(dependent)["uid"])
                blocking = blocking or any(
                    r.get("uid") == uid and r.get("blockOwnerDeletion") for r in owner_refs(dependent)
                )
            if not blocking:
                self._drop_finalizer(key, obj, FOREGROUND)

    def _drop_finalizer(self, key: StorageKey, obj: Obj, finalizer: str) -> None:
        def drop(new: Obj) -> None:
            new["metadata"]["finalizers"] = [f for f in finalizers_of(new) if f != finalizer]
            if not new["metadata"]["finalizers"]:
                del new["metadata"]["finalizers"]
        current = self.store.by_uid(meta_of(obj)["uid"])
        if current is not None:
            self._update(key, current[1], drop)

    # --- namespaces and CRDs -------------------------------------------------------

    def _clean_namespace(self, name: str) -> None:
        space = self.store.get(NAMESPACES_KEY, "", name)
        if space is None or not is_deleting(space):
            return
        uid = meta_of(space)["uid"]
        keys = [k for k in self.store.storage_keys() if k != NAMESPACES_KEY]
        if uid not in self._swept:  # nothing new can appear in a Terminating namespace
            self._swept.add(uid)
            for key in keys:
                for obj in list(self.store.iter(key, name)):
                    self._delete(key, obj, "Background")
        if sum(self.store.count(key, name) for key in keys) == 0:
            self._swept.discard(uid)
            def finalize(new: Obj) -> None:
                spec = new.setdefault("spec", {})
                spec["finalizers"] = [f for f in spec.get("finalizers") or [] if f != "kubernetes"]
            self._update(NAMESPACES_KEY, space, finalize)

    def _clean_crd(self, name: str) -> None:
        crd = self.store.get(CRD_STORAGE_KEY, "", name)
        if crd is None or not is_deleting(crd) or CRD_CLEANUP not in finalizers_of(crd):
            return
        spec = crd.get("spec") or {}
        key = (str(spec.get("group")), str((spec.get("names") or {}).get("plural")))
        uid = meta_of(crd)["uid"]
        if uid not in self._swept:
            self._swept.add(uid)
            for obj in list(self.store.iter(key)):
                self._delete(key, obj, "Background")
        if self.store.count(key) == 0:
            self._swept.discard(uid)
            self._drop_finalizer(CRD_STORAGE_KEY, crd, CRD_CLEANUP)
