"""Bad App and Tenant manifests are refused, by the models and by the CRD, at the field named.

Each file in tests/data/invalid/{app,tenant}/ is a full manifest whose first
line says what must go wrong: ``# expect: <field path>: <fragment>``, with the
path in kubectl's style (``spec.env[0].name``; for a rule that spans fields,
the path of the object that holds them, e.g. ``spec.autoscale``) and a
fragment of the API server's message.

Two judges, one verdict:

1. the pydantic model, reading the manifest as the API server does, from JSON
   and strictly (``"80"`` is not a port), must reject it and name that path.
   Messages differ between pydantic and the API server, so only the path is
   compared here;
2. ``tests/crdjudge`` (the CRD's OpenAPI validation plus every CEL rule, what
   the API server does at apply) must reject it naming that path, with the
   fragment in its message.

The cluster tests apply the same files to a real API server.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from mothership.api.app import App
from mothership.api.common import Resource, field_path
from mothership.api.tenant import Tenant
from tests import crdjudge

ROOT = Path(__file__).resolve().parents[2]
INVALID = ROOT / "tests" / "data" / "invalid"
MODELS: dict[str, type[Resource]] = {"app": App, "tenant": Tenant}
FILES = sorted(p for kind in MODELS for p in (INVALID / kind).glob("*.yaml"))
HEADER = re.compile(r"^# expect: (?P<path>\S+): (?P<fragment>.+)$")


def expectation(path: Path) -> tuple[str, str]:
    first = path.read_text().splitlines()[0]
    match = HEADER.match(first)
    assert match, f"{path.name}: the first line must be '# expect: <field path>: <message fragment>'"
    return match["path"], match["fragment"]


@cache
def crd(kind: str) -> dict[str, Any]:
    model = MODELS[kind]
    return yaml.safe_load((ROOT / "crds" / f"{model.crd.plural}.mothership.dev.yaml").read_text())


def test_there_are_at_least_twenty_bad_manifests_of_each_kind_together() -> None:
    assert len(FILES) >= 20
    assert {p.parent.name for p in FILES} == set(MODELS)


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_each_file_is_a_full_manifest_with_an_expect_header(path: Path) -> None:
    expectation(path)
    doc = yaml.safe_load(path.read_text())
    assert set(doc) == {"apiVersion", "kind", "metadata", "spec"}
    assert doc["kind"] == MODELS[path.parent.name].crd.kind
    assert doc["metadata"]["name"]


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_the_model_rejects_it_naming_the_field(path: Path) -> None:
    want, _ = expectation(path)
    doc = yaml.safe_load(path.read_text())
    with pytest.raises(ValidationError) as caught:
        MODELS[path.parent.name].model_validate_json(json.dumps(doc), strict=True)
    paths = {field_path(e["loc"]) for e in caught.value.errors()}
    assert paths == {want}, caught.value


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_the_crd_rejects_it_naming_the_field(path: Path) -> None:
    want, fragment = expectation(path)
    doc = yaml.safe_load(path.read_text())
    errors = crdjudge.validate(crd(path.parent.name), doc)
    assert errors, "the CRD accepts it"
    assert {p for p, _ in errors} == {want}, errors
    assert any(fragment.lower() in message.lower() for _, message in errors), errors


def test_field_paths_read_like_kubectls() -> None:
    assert field_path(("spec", "env", 0, "name")) == "spec.env[0].name"
    assert field_path(("spec", "resources", "requests", "cpu", "str")) == "spec.resources.requests.cpu"
    assert field_path(("spec",)) == "spec"
