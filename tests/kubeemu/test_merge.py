"""The patch algorithms on their own: the RFCs' examples and the apply bookkeeping."""

from __future__ import annotations

from typing import Any

import pytest

from . import merge
from .resources import BUILTINS, list_keys

DEPLOYMENT = next(rt for rt in BUILTINS if rt.plural == "deployments")


def keys(names: tuple[str, ...]) -> Any:
    return list_keys(DEPLOYMENT, names)


# RFC 7386, Appendix A.
@pytest.mark.parametrize(("target", "patch", "result"), [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
])
def test_merge_patch_matches_rfc_7386_appendix_a(target: Any, patch: Any, result: Any) -> None:
    assert merge.merge_patch(target, patch) == result


def test_json_patch_matches_rfc_6902_examples() -> None:
    assert merge.json_patch({"foo": "bar"}, [{"op": "add", "path": "/baz", "value": "qux"}]) == {
        "foo": "bar", "baz": "qux"}
    assert merge.json_patch({"foo": ["bar", "baz"]},
                            [{"op": "add", "path": "/foo/1", "value": "qux"}]) == {
        "foo": ["bar", "qux", "baz"]}
    assert merge.json_patch({"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
                            [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}]) == {
        "foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}}
    assert merge.json_patch({"a/b": 1, "m~n": 2}, [{"op": "remove", "path": "/a~1b"},
                                                   {"op": "remove", "path": "/m~0n"}]) == {}
    with pytest.raises(merge.PatchError):
        merge.json_patch({"baz": "qux"}, [{"op": "test", "path": "/baz", "value": "bar"}])
    with pytest.raises(merge.PatchError):
        merge.json_patch({"foo": "bar"}, [{"op": "add", "path": "/baz/bat", "value": "qux"}])


def test_json_patch_leaves_its_input_untouched() -> None:
    doc = {"a": {"b": 1}}
    merge.json_patch(doc, [{"op": "replace", "path": "/a/b", "value": 2}])
    assert doc == {"a": {"b": 1}}


def test_strategic_merge_retains_keys_and_replaces_lists_on_request() -> None:
    live = {"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
                     "template": {"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}}}
    patch = {"spec": {"strategy": {"type": "Recreate", "$retainKeys": ["type"]},
                      "template": {"spec": {"containers": [{"$patch": "replace"}, {"name": "c"}]}}}}
    assert merge.strategic_merge(live, patch, keys) == {"spec": {
        "strategy": {"type": "Recreate"},
        "template": {"spec": {"containers": [{"name": "c"}]}}}}


def test_apply_tracks_keyed_items_and_gives_fields_up_to_forcing_managers() -> None:
    def never(_: Any) -> bool:
        return False

    config = {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}}}
    live, table = merge.apply({}, config, "one", {}, keys, force=False, ignored=never)
    image = ("spec", "template", "spec", "containers", ("k", (("name", "a"),)), "image")
    assert image in table["one"]
    other = {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "y"}]}}}}
    with pytest.raises(merge.ApplyConflict) as conflict:
        merge.apply(live, other, "two", table, keys, force=False, ignored=never)
    assert conflict.value.conflicts == [("one", image)]
    live, table = merge.apply(live, other, "two", table, keys, force=True, ignored=never)
    assert image in table["two"] and image not in table["one"]
    assert merge.render_path(image) == '.spec.template.spec.containers[name="a"].image'
