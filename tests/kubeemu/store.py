"""In-memory storage with one resourceVersion counter, a bounded event history, and
watch fan-out.

This is the emulator's etcd plus watch cache. Objects are immutable once stored:
every write stores a new dict, so history entries, list snapshots and watch events can
share them without copying. ``put`` and ``remove`` are the only writes; each takes the
next resourceVersion, records a bounded history entry per storage key (for watches
that resume from a resourceVersion), fans the event out to matching watchers, and
tells the listener (the controllers) what changed. A lock makes the in-process
accessors safe from test threads while the server's event loop writes.

It knows nothing about HTTP, validation or API semantics: see registry.py for those.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import threading
from collections.abc import Callable, Iterator
from typing import Any

from .resources import StorageKey

Obj = dict[str, Any]
Event = tuple[int, str, Obj, Obj | None]  # (resourceVersion, type, object, previous object)
Listener = Callable[[str, StorageKey, Obj, Obj | None], None]
CLOSED: Obj = {}  # sentinel put on a watcher's queue to end its stream


@dataclasses.dataclass(eq=False)
class Watcher:
    """One open watch: what it selects and where its events go."""

    namespace: str | None
    matches: Callable[[Obj], bool] | None
    queue: asyncio.Queue[tuple[str, Obj]]
    loop: asyncio.AbstractEventLoop

    def offer(self, etype: str, obj: Obj, old: Obj | None) -> None:
        """Queue what this watcher sees of a change, as the watch cache filters it:
        an object that stops matching is DELETED for it, one that starts is ADDED."""
        if self.namespace is not None and _namespace(obj) != self.namespace:
            return
        now = self.matches is None or self.matches(obj)
        if etype == "MODIFIED" and self.matches is not None and old is not None:
            before = self.matches(old)
            if before and not now:
                self.queue.put_nowait(("DELETED", obj))
            elif now and not before:
                self.queue.put_nowait(("ADDED", obj))
            elif now:
                self.queue.put_nowait((etype, obj))
        elif now:
            self.queue.put_nowait((etype, obj))


def _namespace(obj: Obj) -> str:
    return str(obj.get("metadata", {}).get("namespace") or "")


class Store:
    def __init__(self, history: int = 10_000) -> None:
        self.lock = threading.RLock()
        self.revision = 0
        self._history_size = history
        # storage key -> namespace ("" when cluster-scoped) -> name -> object
        self._objects: dict[StorageKey, dict[str, dict[str, Obj]]] = {}
        self._by_uid: dict[str, tuple[StorageKey, str, str]] = {}
        self._dependents: dict[str, set[str]] = {}  # owner uid -> dependent uids
        self._history: dict[StorageKey, collections.deque[Event]] = {}
        self._compacted: dict[StorageKey, int] = {}  # newest revision dropped from history
        self._watchers: dict[StorageKey, set[Watcher]] = {}
        self.listener: Listener | None = None

    # --- reads ---------------------------------------------------------------------

    def get(self, key: StorageKey, namespace: str, name: str) -> Obj | None:
        return self._objects.get(key, {}).get(namespace, {}).get(name)

    def iter(self, key: StorageKey, namespace: str | None = None) -> Iterator[Obj]:
        """Objects sorted by namespace then name, as etcd returns them (by key)."""
        spaces = self._objects.get(key, {})
        names = [namespace] if namespace is not None else sorted(spaces)
        for ns in names:
            objects = spaces.get(ns, {})
            for name in sorted(objects):
                yield objects[name]

    def count(self, key: StorageKey, namespace: str | None = None) -> int:
        spaces = self._objects.get(key, {})
        if namespace is not None:
            return len(spaces.get(namespace, {}))
        return sum(len(objects) for objects in spaces.values())

    def storage_keys(self) -> list[StorageKey]:
        return list(self._objects)

    def by_uid(self, uid: str) -> tuple[StorageKey, Obj] | None:
        where = self._by_uid.get(uid)
        if where is None:
            return None
        key, ns, name = where
        obj = self.get(key, ns, name)
        return (key, obj) if obj is not None else None

    def dependents(self, uid: str) -> list[tuple[StorageKey, Obj]]:
        found = (self.by_uid(dep) for dep in self._dependents.get(uid, ()))
        return [f for f in found if f is not None]

    # --- writes --------------------------------------------------------------------

    def next_revision(self) -> str:
        self.revision += 1
        return str(self.revision)

    def put(self, key: StorageKey, obj: Obj) -> Obj:
        """Store ``obj`` (a fresh dict the caller will not touch again) at a new revision."""
        with self.lock:
            meta = obj["metadata"]
            meta["resourceVersion"] = self.next_revision()
            ns, name = str(meta.get("namespace") or ""), meta["name"]
            objects = self._objects.setdefault(key, {}).setdefault(ns, {})
            old = objects.get(name)
            objects[name] = obj
            self._by_uid[meta["uid"]] = (key, ns, name)
            self._index_owners(meta["uid"], old, obj)
            self._emit(key, "MODIFIED" if old is not None else "ADDED", obj, old)
            return obj

    def remove(self, key: StorageKey, obj: Obj) -> Obj:
        """Delete the stored object; the DELETED event carries the deletion's revision."""
        with self.lock:
            meta = obj["metadata"]
            ns, name = str(meta.get("namespace") or ""), meta["name"]
            spaces = self._objects.get(key, {})
            old = spaces.get(ns, {}).pop(name, None)
            if old is None:
                return obj
            if not spaces[ns]:
                del spaces[ns]
            self._by_uid.pop(meta["uid"], None)
            self._index_owners(meta["uid"], old, None)
            gone = {**obj, "metadata": {**meta, "resourceVersion": self.next_revision()}}
            self._emit(key, "DELETED", gone, old)
            return gone

    def drop_type(self, key: StorageKey) -> None:
        """Forget a storage key entirely and end its watches (its CRD is gone)."""
        with self.lock:
            self._objects.pop(key, None)
            self._history.pop(key, None)
            for watcher in self._watchers.pop(key, set()):
                watcher.loop.call_soon_threadsafe(watcher.queue.put_nowait, ("", CLOSED))

    def _index_owners(self, uid: str, old: Obj | None, new: Obj | None) -> None:
        before = {r.get("uid") for r in _owners(old)}
        after = {r.get("uid") for r in _owners(new)}
        for owner in before - after:
            deps = self._dependents.get(str(owner))
            if deps is not None:
                deps.discard(uid)
                if not deps:
                    del self._dependents[str(owner)]
        for owner in after - before:
            if owner:
                self._dependents.setdefault(str(owner), set()).add(uid)

    def _emit(self, key: StorageKey, etype: str, obj: Obj, old: Obj | None) -> None:
        history = self._history.get(key)
        if history is None:
            history = self._history[key] = collections.deque(maxlen=self._history_size)
        if len(history) == history.maxlen:
            self._compacted[key] = history[0][0]
        history.append((self.revision, etype, obj, old))
        for watcher in self._watchers.get(key, ()):
            watcher.offer(etype, obj, old)
        if self.listener is not None:
            self.listener(etype, key, obj, old)

    # --- watches -------------------------------------------------------------------

    def subscribe(self, key: StorageKey, watcher: Watcher) -> None:
        with self.lock:
            self._watchers.setdefault(key, set()).add(watcher)

    def unsubscribe(self, key: StorageKey, watcher: Watcher) -> None:
        with self.lock:
            watchers = self._watchers.get(key)
            if watchers is not None:
                watchers.discard(watcher)
                if not watchers:
                    del self._watchers[key]

    def watcher_count(self) -> int:
        return sum(len(w) for w in self._watchers.values())

    def since(self, key: StorageKey, revision: int) -> list[Event] | None:
        """History events newer than ``revision``; ``None`` if some were compacted."""
        if revision < self._compacted.get(key, 0):
            return None
        newer: list[Event] = []
        for event in reversed(self._history.get(key, ())):
            if event[0] <= revision:
                break
            newer.append(event)
        newer.reverse()
        return newer

    def close_all(self) -> None:
        with self.lock:
            for watchers in self._watchers.values():
                for watcher in watchers:
                    watcher.loop.call_soon_threadsafe(watcher.queue.put_nowait, ("", CLOSED))


def _owners(obj: Obj | None) -> list[Obj]:
    if obj is None:
        return []
    refs = obj.get("metadata", {}).get("ownerReferences") or []
    return [r for r in refs if isinstance(r, dict)]
