"""Every manifest in tests/data/invalid/ is refused by the real API server at apply, naming the field.

This is where the generated CRDs meet the real judge: OpenAPI validation and
every CEL rule, evaluated by kube-apiserver, with ``fieldValidation=Strict`` as
``kubectl apply`` sends it (so an unknown field is an error, not silently
pruned). The first line of each file names the field path in kubectl's style
(``spec.env[0].name``; pydantic-style ``spec.scenarios.0.name`` is normalised);
for Apps and Tenants the rest of the line is a fragment of the server's message.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests import crdjudge

from mothership.kube import KINDS, ApiError, Kube

ROOT = Path(__file__).resolve().parents[2]
INVALID = ROOT / "tests" / "data" / "invalid"
HEADER = re.compile(r"^# expect: (?P<path>\S+): (?P<fragment>.+)$")


def _cases() -> list[Any]:
    """Every file; those our own CRD judge accepts hold a rule only the model enforces (xfail)."""
    crds = {p.name.split(".")[0]: yaml.safe_load(p.read_text()) for p in (ROOT / "crds").glob("*.yaml")}
    cases = []
    for path in sorted(INVALID.glob("*/*.yaml")):
        marks = []
        crd = crds.get(path.parent.name + "s")
        if crd is not None and not crdjudge.validate(crd, yaml.safe_load(path.read_text())):
            marks.append(pytest.mark.xfail(reason="the rule lives only in the pydantic model; "
                                                  "the CRD (and so the API server) accepts it"))
        cases.append(pytest.param(path, marks=marks, id=f"{path.parent.name}/{path.stem}"))
    return cases


def kubectl_path(path: str) -> str:
    """``spec.scenarios.0.name`` -> ``spec.scenarios[0].name``."""
    return re.sub(r"\.(\d+)(?=\.|$)", r"[\1]", path)


@pytest.mark.parametrize("path", _cases())
async def test_the_api_server_refuses_the_manifest_naming_the_field(
        path: Path, api: Kube, namespace: str) -> None:
    text = path.read_text()
    match = HEADER.match(text.splitlines()[0])
    assert match, f"{path}: first line must be '# expect: <field path>: <fragment>'"
    manifest: dict[str, Any] = yaml.safe_load(text)
    kind = KINDS[manifest["kind"]]
    if kind.namespaced:
        manifest["metadata"]["namespace"] = namespace
    else:
        manifest["metadata"]["name"] = f"{manifest['metadata']['name']}-{namespace}"[:63]

    with pytest.raises(ApiError) as info:
        created = await api.request("create", kind, namespace=manifest["metadata"].get("namespace"),
                                    body=manifest, params={"fieldValidation": "Strict"})
        await api.delete(kind, created["metadata"]["name"], manifest["metadata"].get("namespace"))

    error = info.value
    assert error.status in (400, 422), error
    field = kubectl_path(match["path"])
    assert field in error.message, f"{field!r} not named in: {error.message}"
    if path.parent.name in ("app", "tenant"):
        assert match["fragment"].lower() in error.message.lower(), error.message
