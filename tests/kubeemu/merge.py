"""Patch and apply algorithms on plain JSON values; pure functions, no I/O.

- ``merge_patch``: RFC 7386 JSON merge patch (``application/merge-patch+json``).
- ``json_patch``: RFC 6902 JSON patch (``application/json-patch+json``), including
  ``test``, which kopf uses as an optimistic lock on ``/metadata/resourceVersion``.
- ``strategic_merge``: an approximation of strategic merge patch
  (``application/strategic-merge-patch+json``): merge-patch semantics, except that
  lists with a merge key (see ``resources.list_keys``) merge item by item, set-like
  lists (finalizers) merge as sets, and the directives kubectl emits are honoured:
  ``$patch: replace|delete``, ``$retainKeys``, ``$deleteFromPrimitiveList/<field>``;
  ``$setElementOrder/<field>`` is accepted and ignored (new items are appended).
- ``apply``: server-side apply (``application/apply-patch+yaml``). Ownership is tracked
  as per-manager sets of field paths, the way structured-merge-diff does, but kept in
  a side table instead of ``metadata.managedFields``.

Which lists are keyed is decided by a ``KeysOf`` callback, so this module knows
nothing about resource types.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from .resources import ListKeys

Obj = dict[str, Any]
Path = tuple[Any, ...]
FieldSet = frozenset[Path]
KeysOf = Callable[[tuple[str, ...]], ListKeys]

#: Defaults of map-key fields that may be omitted (ports default to TCP).
KEY_DEFAULTS = {"protocol": "TCP"}


class PatchError(Exception):
    """The patch is well-formed but cannot be applied to this document (a 422)."""


def clone(value: Any) -> Any:
    """A deep copy of a JSON value; several times faster than ``copy.deepcopy``."""
    if isinstance(value, dict):
        return {k: clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clone(v) for v in value]
    return value


# --- RFC 7386 ---------------------------------------------------------------------------

def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return clone(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# --- RFC 6902 ---------------------------------------------------------------------------

def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer: {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _index(container: list[Any], token: str, *, inserting: bool) -> int:
    if inserting and token == "-":
        return len(container)
    if not token.isdigit() or (token != "0" and token.startswith("0")):
        raise PatchError(f"invalid array index: {token!r}")
    index = int(token)
    if index > len(container) or (index == len(container) and not inserting):
        raise PatchError(f"array index out of bounds: {index}")
    return index


def _parent(doc: Any, tokens: list[str]) -> Any:
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, inserting=False)]
        else:
            raise PatchError(f"path not found: /{'/'.join(tokens)}")
    return node


def _get(doc: Any, path: str) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return doc
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict) and last in parent:
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, inserting=False)]
    raise PatchError(f"path not found: {path}")


def _remove(doc: Any, path: str) -> Any:
    tokens = _pointer(path)
    if not tokens:
        raise PatchError("cannot remove the whole document")
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict) and last in parent:
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_index(parent, last, inserting=False))
    raise PatchError(f"unable to remove nonexistent key: {last}: missing value")


def _add(doc: Any, path: str, value: Any) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return value
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, inserting=True), value)
    else:
        raise PatchError(f"path not found: {path}")
    return doc


def json_patch(doc: Any, operations: list[Obj]) -> Any:
    """Apply the operations to a copy of ``doc``; raise PatchError if one fails."""
    doc = clone(doc)
    for op in operations:
        kind, path = op.get("op"), op.get("path")
        if not isinstance(path, str):
            raise PatchError(f"operation {kind!r} lacks a path")
        if kind == "add":
            doc = _add(doc, path, clone(op.get("value")))
        elif kind == "remove":
            _remove(doc, path)
        elif kind == "replace":
            _get(doc, path)  # must exist
            if _pointer(path):
                _remove(doc, path)
            doc = _add(doc, path, clone(op.get("value")))
        elif kind == "move":
            value = _remove(doc, op.get("from", ""))
            doc = _add(doc, path, value)
        elif kind == "copy":
            doc = _add(doc, path, clone(_get(doc, op.get("from", ""))))
        elif kind == "test":
            actual = _get(doc, path)
            if actual != op.get("value"):
                raise PatchError(f"testing value {path} failed: test failed")
        else:
            raise PatchError(f"unexpected kind of operation: {kind!r}")
    return doc


def valid_json_patch(operations: Any) -> bool:
    return isinstance(operations, list) and all(
        isinstance(op, dict) and isinstance(op.get("op"), str) for op in operations
    )


# --- strategic merge patch (approximated) -----------------------------------------------

def _key_of(item: Any, keys: tuple[str, ...]) -> tuple[Any, ...] | None:
    if not isinstance(item, dict):
        return None
    return tuple(item.get(k, KEY_DEFAULTS.get(k)) for k in keys)


def strategic_merge(target: Any, patch: Any, keys_of: KeysOf, path: tuple[str, ...] = ()) -> Any:
    if not isinstance(patch, dict):
        return clone(patch)
    directive = patch.get("$patch")
    if directive == "delete":
        return None
    body = {k: v for k, v in patch.items() if k != "$patch"}
    if directive == "replace":
        return {k: clone(v) for k, v in body.items() if not k.startswith("$")}
    result = dict(target) if isinstance(target, dict) else {}
    retain = body.pop("$retainKeys", None)
    for key, value in body.items():
        if key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list):
                result[field] = [v for v in result[field] if v not in value]
            continue
        if value is None:
            result.pop(key, None)
            continue
        sub = (*path, key)
        if isinstance(value, list):
            result[key] = _merge_list(result.get(key), value, keys_of(sub), keys_of, sub)
        else:
            merged = strategic_merge(result.get(key), value, keys_of, sub)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _merge_list(
    live: Any, patch: list[Any], keys: ListKeys, keys_of: KeysOf, path: tuple[str, ...]
) -> list[Any]:
    if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch):
        return [clone(i) for i in patch if not (isinstance(i, dict) and "$patch" in i)]
    current = list(live) if isinstance(live, list) else []
    if keys == "set":
        return current + [clone(v) for v in patch if v not in current]
    if not keys:
        return [clone(i) for i in patch]
    positions = {_key_of(item, keys): n for n, item in enumerate(current)}
    removed: set[int] = set()
    for item in patch:
        key = _key_of(item, keys)
        at = positions.get(key)
        if isinstance(item, dict) and item.get("$patch") == "delete":
            if at is not None:
                removed.add(at)
            continue
        if at is None:
            positions[key] = len(current)
            current.append(strategic_merge(None, item, keys_of, path))
        else:
            current[at] = strategic_merge(current[at], item, keys_of, path)
    return [item for n, item in enumerate(current) if n not in removed]


# --- server-side apply ------------------------------------------------------------------
#
# A field path is a tuple of map keys (str) and list-item steps: ("k", ((key, value), ...))
# for items of keyed lists and ("v", value) for members of set lists. A path is a leaf
# (a scalar, an atomic list, an empty map) or the path of a keyed item itself, whose
# value is reported as ITEM.

ITEM = object()


def _item_step(item: Any, keys: tuple[str, ...]) -> tuple[str, Any]:
    values = _key_of(item, keys) or tuple(None for _ in keys)
    return ("k", tuple(zip(keys, values, strict=True)))


def leaves(
    value: Any, keys_of: KeysOf, path: Path = (), names: tuple[str, ...] = ()
) -> Iterator[tuple[Path, Any]]:
    """Every owned field path under ``value`` with the value found there."""
    if isinstance(value, dict) and value:
        for key, sub in value.items():
            yield from leaves(sub, keys_of, (*path, key), (*names, key))
        return
    if isinstance(value, list) and names:
        keys = keys_of(names)
        if keys == "set":
            for item in value:
                yield (*path, ("v", _hashable(item))), item
            return
        if keys:
            for item in value:
                item_path = (*path, _item_step(item, keys))
                yield item_path, ITEM
                yield from leaves(item, keys_of, item_path, names)
            return
    yield path, value


def _hashable(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    return value


def lookup(value: Any, path: Path) -> tuple[bool, Any]:
    """Follow a field path; ``(False, None)`` when some step is missing."""
    node = value
    for step in path:
        if isinstance(step, tuple):
            at = _find_item(node, step) if isinstance(node, list) else None
            if at is None:
                return False, None
            node = node[at]
        elif isinstance(node, dict) and step in node:
            node = node[step]
        else:
            return False, None
    return True, node


def _find_item(items: list[Any], step: tuple[str, Any]) -> int | None:
    tag, ident = step
    for n, item in enumerate(items):
        if tag == "v" and _hashable(item) == ident:
            return n
        if tag == "k" and isinstance(item, dict) and all(
            item.get(k, KEY_DEFAULTS.get(k)) == v for k, v in ident
        ):
            return n
    return None


def remove_path(doc: Any, path: Path) -> None:
    """Delete the field at ``path`` from ``doc`` in place, pruning maps it empties."""
    if not path:
        return
    found, parent = lookup(doc, path[:-1])
    if not found:
        return
    last = path[-1]
    if isinstance(last, tuple) and isinstance(parent, list):
        at = _find_item(parent, last)
        if at is not None:
            parent.pop(at)
    elif isinstance(parent, dict):
        parent.pop(last, None)
    if parent in ({}, []) and len(path) > 1:
        remove_path(doc, path[:-1])


class ApplyConflict(Exception):
    def __init__(self, conflicts: list[tuple[str, Path]]) -> None:
        super().__init__(f"{len(conflicts)} conflict(s)")
        self.conflicts = conflicts


def apply(
    live: Obj,
    config: Obj,
    manager: str,
    managers: dict[str, FieldSet],
    keys_of: KeysOf,
    *,
    force: bool,
    ignored: Callable[[Path], bool],
) -> tuple[Obj, dict[str, FieldSet]]:
    """Server-side apply of ``config`` by ``manager`` onto ``live``.

    ``managers`` maps each manager to the paths it owns (appliers and updaters alike).
    Returns the new object and the new ownership table. Raises ApplyConflict when the
    config sets a field that another manager owns to a different value, unless
    ``force``, in which case the ownership of those fields moves to ``manager``.
    Fields this manager applied before and no longer applies are removed, unless
    another manager owns them too.
    """
    config_leaves = {
        p: v for p, v in leaves(config, keys_of) if v is not None and not ignored(p)
    }
    applied = frozenset(config_leaves)
    conflicts: list[tuple[str, Path]] = []
    others = {m: s for m, s in managers.items() if m != manager}
    for other, owned in others.items():
        for p in applied & owned:
            if config_leaves[p] is ITEM:
                continue
            found, current = lookup(live, p)
            if found and current != config_leaves[p]:
                conflicts.append((other, p))
    if conflicts and not force:
        raise ApplyConflict(sorted(conflicts, key=lambda c: (c[0], render_path(c[1]))))
    table = dict(others)
    for other, p in conflicts:
        table[other] = table[other] - {p}
    kept = frozenset().union(applied, *table.values())
    result: Obj = clone(live)
    # Parents first: a keyed item goes as a whole, and its key fields go only with it.
    for p in sorted(managers.get(manager, frozenset()) - applied, key=len):
        if not any(q[: len(p)] == p for q in kept) and not _is_key_field(p):
            remove_path(result, p)
    result = _apply_merge(result, config, keys_of, ())
    table = {m: s for m, s in table.items() if s}
    table[manager] = applied
    return result, table


def _is_key_field(path: Path) -> bool:
    if len(path) < 2 or not isinstance(path[-2], tuple) or path[-2][0] != "k":
        return False
    return path[-1] in {k for k, _ in path[-2][1]}


def _apply_merge(live: Any, config: Any, keys_of: KeysOf, names: tuple[str, ...]) -> Any:
    if isinstance(config, list) and names:
        return _apply_list(live, config, keys_of, names)
    if not isinstance(config, dict) or not isinstance(live, dict):
        return clone(config) if not isinstance(config, dict) else _apply_merge({}, config, keys_of, names)
    result = dict(live)
    for key, value in config.items():
        if value is None:
            continue  # null in an apply config sets nothing and owns nothing
        result[key] = _apply_merge(result.get(key), value, keys_of, (*names, key))
    return result


def _apply_list(live: Any, config: list[Any], keys_of: KeysOf, names: tuple[str, ...]) -> list[Any]:
    keys = keys_of(names)
    current = list(live) if isinstance(live, list) else []
    if keys == "set":
        return current + [clone(v) for v in config if v not in current]
    if not keys:
        return [clone(v) for v in config]
    positions = {_key_of(item, keys): n for n, item in enumerate(current)}
    for item in config:
        key = _key_of(item, keys)
        if key in positions:
            current[positions[key]] = _apply_merge(current[positions[key]], item, keys_of, names)
        else:
            positions[key] = len(current)
            current.append(_apply_merge({}, item, keys_of, names))
    return current


def update_ownership(
    managers: dict[str, FieldSet],
    manager: str,
    old: Any,
    new: Any,
    keys_of: KeysOf,
    ignored: Callable[[Path], bool] = lambda _: False,
) -> dict[str, FieldSet]:
    """After a non-apply write: ``manager`` takes the fields it changed from the others,
    and fields that are gone are owned by nobody."""
    before = {p: v for p, v in leaves(old, keys_of) if not ignored(p)}
    after = {p: v for p, v in leaves(new, keys_of) if not ignored(p)}
    changed = frozenset(p for p, v in after.items() if p not in before or before[p] != v)
    gone = frozenset(before.keys() - after.keys())
    if not changed and not gone:
        return managers
    table = {m: s - changed - gone for m, s in managers.items()}
    table[manager] = table.get(manager, frozenset()) | changed
    return {m: s for m, s in table.items() if s}


def render_path(path: Path) -> str:
    """``.spec.containers[name="app"].image``, the way apply conflicts name fields."""
    out = []
    for step in path:
        if isinstance(step, tuple):
            tag, ident = step
            if tag == "v":
                out.append(f"[={json.dumps(ident)}]")
            else:
                out.append("[" + ",".join(f"{k}={json.dumps(v)}" for k, v in ident) + "]")
        else:
            out.append(f".{step}")
    return "".join(out)
