"""The largest spec the API accepts fits kopf's annotation, and one character more is refused.

kopf keeps the last-handled spec as JSON in an annotation and the API server caps an object's
annotations at 256 KiB, so the specs are bounded: every string, list and map has a bound, and the
free text of a LoadTest's scenarios (an App's env, envFrom, command and args) shares one budget,
counted alike by a CEL rule and by the model. tests/largest_specs.py builds the largest specs;
here the model and the CRD (via tests/crdjudge) take them, refuse them one character heavier, and
their JSON stays under half the cap.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from mothership.api.app import CONTAINER_BUDGET_MESSAGE, App
from mothership.api.loadtest import SCENARIOS_BUDGET_MESSAGE, LoadTest
from tests import crdjudge
from tests.largest_specs import SPEC_CAP, kopf_json, largest_app_spec, largest_loadtest_spec

ROOT = Path(__file__).resolve().parents[2]


def crd(plural: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / "crds" / f"{plural}.mothership.dev.yaml").read_text())


def manifest(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "mothership.dev/v1alpha1", "kind": kind,
            "metadata": {"name": "largest", "namespace": "acme"}, "spec": spec}


CASES = [
    pytest.param("LoadTest", LoadTest, "loadtests", largest_loadtest_spec(scenarios=1),
                 ("scenarios", 0, "requests", 0, "body"), SCENARIOS_BUDGET_MESSAGE, id="loadtest-heaviest"),
    pytest.param("LoadTest", LoadTest, "loadtests", largest_loadtest_spec(scenarios=20),
                 ("scenarios", 0, "requests", 0, "body"), SCENARIOS_BUDGET_MESSAGE, id="loadtest-widest"),
    pytest.param("App", App, "apps", largest_app_spec(), ("env", -1, "value"), CONTAINER_BUDGET_MESSAGE,
                 id="app"),
]


@pytest.mark.parametrize(("kind", "model", "plural", "spec", "text", "message"), CASES)
def test_the_largest_spec_is_accepted_and_its_json_fits_half_the_annotation_cap(
    kind: str, model: Any, plural: str, spec: dict[str, Any], text: tuple[Any, ...], message: str,
) -> None:
    obj = manifest(kind, spec)
    model.model_validate(obj)
    assert crdjudge.validate(crd(plural), obj) == []
    size = len(kopf_json(spec))
    assert size < SPEC_CAP, f"the largest {kind} spec is {size} bytes of JSON"


@pytest.mark.parametrize(("kind", "model", "plural", "spec", "text", "message"), CASES)
def test_one_character_more_is_refused_by_the_model_and_the_crd_alike(
    kind: str, model: Any, plural: str, spec: dict[str, Any], text: tuple[Any, ...], message: str,
) -> None:
    heavier = copy.deepcopy(spec)
    holder: Any = heavier
    for key in text[:-1]:
        holder = holder[key]
    holder[text[-1]] += "x"
    obj = manifest(kind, heavier)
    with pytest.raises(ValidationError, match="too large"):
        model.model_validate(obj)
    assert crdjudge.validate(crd(plural), obj) == [("spec", message)]

