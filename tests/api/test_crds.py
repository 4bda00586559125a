"""The generated CRDs: fresh, structural, and every CEL rule alive.

In milliseconds and without an API server, these tests judge the CRDs (docs/design.md, "Unit"); the
real kube-apiserver judges them again in tests/cluster/test_invalid_manifests.py. The
YAML in crds/ must equal what `mothership crds` writes now, every schema node
must be typed, every CEL rule must compile, fire on at least one bad sample in
tests/data/invalid/ and stay quiet on every example a user is told to apply.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from mothership.api import crd as crdgen
from mothership.api.loadtest import IMMUTABLE_MESSAGE
from mothership.api.resources import ALL
from tests import crdjudge

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "crds"
INVALID = ROOT / "tests" / "data" / "invalid"
KINDS = [r.crd.kind for r in ALL]


def committed(kind: str) -> dict:
    resource = next(r for r in ALL if r.crd.kind == kind)
    return yaml.safe_load((CRD_DIR / f"{resource.crd.plural}.mothership.dev.yaml").read_text())


def test_committed_crds_equal_what_mothership_crds_writes_now(tmp_path: Path) -> None:
    written = sorted(p.name for p in crdgen.write_crds(tmp_path))
    assert written == sorted(p.name for p in CRD_DIR.glob("*.yaml")), "crds/ has extra or missing files"
    for name in written:
        assert (tmp_path / name).read_text() == (CRD_DIR / name).read_text(), (
            f"crds/{name} is stale: run `mothership crds`"
        )


def test_the_chart_copy_is_written_identically_when_asked(tmp_path: Path) -> None:
    crdgen.write_crds(tmp_path / "a", tmp_path / "b")
    for path in (tmp_path / "a").iterdir():
        assert (tmp_path / "b" / path.name).read_bytes() == path.read_bytes()


@pytest.mark.parametrize("kind", KINDS)
def test_schema_is_structural(kind: str) -> None:
    assert crdjudge.structural_problems(crdjudge.schema_of(committed(kind))) == []


@pytest.mark.parametrize("kind", KINDS)
def test_every_cel_rule_compiles(kind: str) -> None:
    assert crdjudge.compile_rules(crdjudge.schema_of(committed(kind)))


@pytest.mark.parametrize("kind", KINDS)
def test_crd_has_status_subresource_printer_columns_and_category(kind: str) -> None:
    crd = committed(kind)
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]][-1] == "Age"
    assert "mothership" in crd["spec"]["names"]["categories"]
    assert crd["spec"]["names"]["shortNames"]


def test_app_printer_columns_show_image_ready_phase_url_and_age() -> None:
    columns = committed("App")["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [c["name"] for c in columns] == ["Image", "Ready", "Phase", "URL", "Age"]


def test_loadtest_printer_columns_show_phase_workers_rps_p95_errors_and_age() -> None:
    columns = committed("LoadTest")["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [c["name"] for c in columns] == ["Phase", "Workers", "RPS", "P95", "Errors", "Age"]
    assert committed("LoadTest")["spec"]["names"]["shortNames"] == ["lt"]


def test_descriptions_come_from_field_docstrings() -> None:
    spec = crdjudge.schema_of(committed("App"))["properties"]["spec"]["properties"]
    assert spec["port"]["description"].startswith("Port the container listens on")
    assert spec["autoscale"]["properties"]["targetCPU"]["description"]


def test_optional_fields_are_absent_not_nullable() -> None:
    text = "".join(p.read_text() for p in CRD_DIR.glob("*.yaml"))
    assert "nullable" not in text and "'null'" not in text and "$ref" not in text


def _invalid_samples(kind: str) -> list[dict]:
    docs = []
    for path in sorted(INVALID.rglob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        if isinstance(doc, dict) and doc.get("kind") == kind:
            docs.append(doc)
    return docs


def _examples(kind: str) -> list[tuple[str, dict]]:
    out = []
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == kind:
                out.append((path.name, doc))
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_every_cel_rule_fires_on_some_invalid_sample(kind: str) -> None:
    crd = committed(kind)
    messages = {  # transition rules need an old object: see the update tests below
        rule["rule"]: rule["message"]
        for _, rule in _rules_with_messages(crdjudge.schema_of(crd)) if not crdjudge.is_transition_rule(rule)
    }
    fired = {msg for doc in _invalid_samples(kind) for _, msg in crdjudge.validate(crd, doc)}
    silent = [rule for rule, msg in messages.items() if msg not in fired]
    assert not silent, f"no sample in tests/data/invalid/ triggers these {kind} rules: {silent}"


@pytest.mark.parametrize("kind", KINDS)
def test_every_example_passes_schema_and_cel(kind: str) -> None:
    examples = _examples(kind)
    assert examples, f"examples/ has no {kind}"
    for name, doc in examples:
        assert crdjudge.validate(committed(kind), doc) == [], name


def _rules_with_messages(node: dict, path: str = "") -> list[tuple[str, dict]]:
    found = [(path, r) for r in node.get("x-kubernetes-validations", [])]
    for name, sub in node.get("properties", {}).items():
        found += _rules_with_messages(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        found += _rules_with_messages(node["items"], f"{path}[]")
    return found


def test_the_judge_refuses_metadata_schemas_beyond_name_and_generate_name() -> None:
    schema = {"type": "object", "properties": {
        "metadata": {"type": "object", "description": "x", "properties": {"labels": {"type": "object"}}}}}
    assert "metadata: must not specify anything other than name and generateName" in (
        crdjudge.structural_problems(schema))


def _example_loadtest() -> dict:
    return next(doc for name, doc in _examples("LoadTest") if name == "loadtest.yaml")


def _changed(doc: dict, **spec: object) -> dict:
    new = copy.deepcopy(doc)
    for key, value in spec.items():
        if value is None:
            new["spec"].pop(key, None)
        else:
            new["spec"][key] = value
    return new


IMMUTABLE = [("spec", IMMUTABLE_MESSAGE)]


@pytest.mark.parametrize("change", [
    {"duration": "5m"}, {"workers": 9}, {"resources": {"cpu": "2", "memory": "512Mi"}},
    {"target": {"url": "http://other.example.com"}}, {"thresholds": []}, {"ttlSecondsAfterFinished": 60},
    {"scenarios": [{"name": "other", "requests": [{"path": "/other"}]}]},
], ids=lambda c: ",".join(c))
def test_a_loadtest_spec_is_immutable_on_update_whatever_changes(change: dict) -> None:
    old = _example_loadtest()
    assert crdjudge.validate(committed("LoadTest"), _changed(old, **change), old) == IMMUTABLE


def test_removing_an_optional_field_is_a_change_too() -> None:
    old = _changed(_example_loadtest(), ttlSecondsAfterFinished=60)
    new = _changed(old, ttlSecondsAfterFinished=None)
    assert crdjudge.validate(committed("LoadTest"), new, old) == IMMUTABLE


def test_stop_and_an_unchanged_spec_pass_the_transition_rule_and_creates_never_see_it() -> None:
    crd, old = committed("LoadTest"), _example_loadtest()
    assert crdjudge.validate(crd, _changed(old, stop=True), old) == []
    assert crdjudge.validate(crd, copy.deepcopy(old), old) == []
    assert crdjudge.validate(crd, _changed(old, duration="5m")) == []  # a create: no oldSelf


def test_the_immutability_rule_covers_every_spec_field_but_stop() -> None:
    spec = crdjudge.schema_of(committed("LoadTest"))["properties"]["spec"]
    rules = [r for r in spec["x-kubernetes-validations"] if crdjudge.is_transition_rule(r)]
    assert [r["message"] for r in rules] == [IMMUTABLE_MESSAGE]
    covered = set(re.findall(r"has\(self\.(\w+)\)", rules[0]["rule"]))
    assert covered == set(spec["properties"]) - {"stop"}
