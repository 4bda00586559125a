"""Bad LoadTests are refused at the field named, by the model and by the CRD.

The same files drive the local runner's exit-2 tests (tests/cli); here both
judges must name the header's field path, so `kubectl apply` and
`mothership loadtest run` point a user at the same place. A file whose
second line says ``# refused-by: operator`` holds a rule CEL cannot express
(a regex that must compile): the CRD accepts it, and the operator refuses it
with an InvalidSpec condition instead.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from mothership.api.common import field_path
from mothership.api.loadtest import LoadTest
from tests import crdjudge

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted((ROOT / "tests" / "data" / "invalid" / "loadtest").glob("*.yaml"))


def header(path: Path) -> tuple[str, str, bool]:
    lines = path.read_text().splitlines()
    want, _, fragment = lines[0].removeprefix("# expect: ").partition(": ")
    return want, fragment, lines[1].startswith("# refused-by: operator")


@cache
def crd() -> dict:
    return yaml.safe_load((ROOT / "crds" / "loadtests.mothership.dev.yaml").read_text())


def test_there_are_at_least_twenty_bad_loadtests() -> None:
    assert len(FILES) >= 20


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_the_model_rejects_it_naming_the_field_and_the_reason(path: Path) -> None:
    want, fragment, _ = header(path)
    with pytest.raises(ValidationError) as caught:
        LoadTest.model_validate_json(json.dumps(yaml.safe_load(path.read_text())), strict=True)
    assert {field_path(e["loc"]) for e in caught.value.errors()} == {want}
    assert fragment.lower() in str(caught.value).lower()


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_the_crd_rejects_it_at_the_same_field_unless_only_the_operator_can(path: Path) -> None:
    want, _, operator_only = header(path)
    errors = crdjudge.validate(crd(), yaml.safe_load(path.read_text()))
    if operator_only:
        assert errors == [], "the CRD catches it now: drop the refused-by header"
    else:
        assert {p for p, _ in errors} == {want}, errors
