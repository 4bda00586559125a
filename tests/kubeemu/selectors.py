"""Label and field selectors, parsed once per request and matched per object.

The grammar follows k8s.io/apimachinery/pkg/labels: comma-separated requirements that
must all hold, each ``key``, ``!key``, ``key=v``, ``key==v``, ``key!=v``,
``key in (a,b)``, ``key notin (a,b)``, ``key>n`` or ``key<n``. ``!=`` and ``notin``
also match objects that lack the key, as upstream. Field selectors support only
``=``, ``==`` and ``!=`` on the labels a resource type declares; anything else is a
400, as the real server answers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from .errors import ApiError, bad_request

Obj = dict[str, Any]
Matcher = Callable[[Obj], bool]

_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
_VALUE = r"[-A-Za-z0-9_.]*"
_REQUIREMENT = re.compile(
    rf"""\s*(?:
        (?P<not>!)\s*(?P<nkey>{_KEY})
      | (?P<skey>{_KEY})\s+(?P<setop>in|notin)\s*\((?P<values>[^)]*)\)
      | (?P<key>{_KEY})\s*(?P<op>==|=|!=|>|<)\s*(?P<value>{_VALUE})
      | (?P<exists>{_KEY})
    )\s*(?:,|$)""",
    re.VERBOSE,
)


def _labels(obj: Obj) -> dict[str, str]:
    labels = (obj.get("metadata") or {}).get("labels")
    return labels if isinstance(labels, dict) else {}


def parse_labels(selector: str | None) -> Matcher | None:
    """A predicate over objects, or ``None`` when the selector selects everything."""
    if not selector or not selector.strip():
        return None
    checks: list[Callable[[dict[str, str]], bool]] = []
    pos = 0
    while pos < len(selector):
        m = _REQUIREMENT.match(selector, pos)
        if not m or m.end() == pos:
            raise bad_request(f"unable to parse requirement: {selector[pos:]!r}")
        pos = m.end()
        checks.append(_requirement(m))
    return lambda obj: all(check(_labels(obj)) for check in checks)


def _requirement(m: re.Match[str]) -> Callable[[dict[str, str]], bool]:
    if m["not"]:
        nkey = m["nkey"]
        return lambda labels: nkey not in labels
    if m["exists"]:
        ekey = m["exists"]
        return lambda labels: ekey in labels
    if m["setop"]:
        skey = m["skey"]
        values = {v.strip() for v in m["values"].split(",") if v.strip()}
        if m["setop"] == "in":
            return lambda labels: labels.get(skey) in values
        return lambda labels: labels.get(skey) not in values
    key, op, value = m["key"], m["op"], m["value"]
    if op in ("=", "=="):
        return lambda labels: labels.get(key) == value
    if op == "!=":
        return lambda labels: labels.get(key) != value
    try:
        bound = int(value)
    except ValueError:
        raise bad_request(f"unable to parse requirement: {value!r} is not an integer") from None
    def compare(labels: dict[str, str]) -> bool:
        try:
            actual = int(labels[key])
        except (KeyError, ValueError):
            return False
        return actual > bound if op == ">" else actual < bound
    return compare


def field_value(obj: Obj, path: str) -> str:
    """The string form of a dotted field, as field selectors compare it ("" when unset)."""
    node: Any = obj
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if node is None:
        return ""
    if isinstance(node, bool):
        return "true" if node else "false"
    return str(node)


def parse_fields(selector: str | None, supported: Iterable[str]) -> Matcher | None:
    if not selector or not selector.strip():
        return None
    allowed = {"metadata.name", "metadata.namespace", *supported}
    checks: list[tuple[str, bool, str]] = []
    for term in selector.split(","):
        m = re.fullmatch(r"\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*?)\s*", term)
        if not m:
            raise bad_request(f"invalid selector: '{selector}'; can't understand '{term}'")
        path, op, value = m.groups()
        if path not in allowed:
            raise bad_request(f'"{path}" is not a known field selector: only "{", ".join(sorted(allowed))}"')
        checks.append((path, op != "!=", value))
    return lambda obj: all((field_value(obj, p) == v) is eq for p, eq, v in checks)


def combine(*matchers: Matcher | None) -> Matcher | None:
    active = [m for m in matchers if m is not None]
    if not active:
        return None
    if len(active) == 1:
        return active[0]
    return lambda obj: all(m(obj) for m in active)


__all__ = ["ApiError", "Matcher", "combine", "field_value", "parse_fields", "parse_labels"]
