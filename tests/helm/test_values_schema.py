"""values.schema.json: every key known, every value checked, every error names its key.

Helm validates values against the schema on install, upgrade and template, so a
typo fails before anything reaches the cluster. These tests go through the same
path (``Chart.render``) and check the message a user would read.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from .conftest import CHART, VARIANTS, helm, render_files

BAD_VALUES: dict[str, tuple[dict[str, Any], str]] = {
    "a misspelt top-level key": ({"replica": 2}, "at '': additional properties 'replica' not allowed"),
    "a misspelt nested key": (
        {"metrics": {"serviceMonitor": {"enable": True}}},
        "at '/metrics/serviceMonitor': additional properties 'enable' not allowed",
    ),
    "zero replicas": ({"replicas": 0}, "at '/replicas': minimum: got 0, want 1"),
    "replicas as a string": ({"replicas": "2"}, "at '/replicas': got string, want integer"),
    "an unknown pull policy": (
        {"image": {"pullPolicy": "Sometimes"}},
        "at '/image/pullPolicy': value must be one of 'Always', 'IfNotPresent', 'Never'",
    ),
    "an empty image repository": ({"image": {"repository": ""}}, "at '/image/repository'"),
    "a namespace that is not a DNS label": ({"watchNamespaces": ["Team_A"]}, "at '/watchNamespaces/0'"),
    "a target with a scheme": ({"allowedTargets": ["https://api.example.com"]}, "at '/allowedTargets/0'"),
    "a toggle given as a string": (
        {"metrics": {"podMonitor": {"enabled": "yes"}}},
        "at '/metrics/podMonitor/enabled': got string, want boolean",
    ),
    "a duration Prometheus cannot parse": (
        {"metrics": {"podMonitor": {"interval": "5 seconds"}}},
        "at '/metrics/podMonitor/interval'",
    ),
    "a metrics port below 1024": ({"metricsPort": 80}, "at '/metricsPort': minimum: got 80"),
    "a resource quantity with a typo": (
        {"resources": {"limits": {"memory": "512MB"}}},
        "at '/resources/limits/memory'",
    ),
    "a dashboard label that is not a string": (
        {"grafana": {"dashboard": {"labels": {"grafana_dashboard": 1}}}},
        "at '/grafana/dashboard/labels/grafana_dashboard': got number, want string",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_the_schema_rejects_bad_values_with_a_message_naming_the_key(case: str) -> None:
    values, message = BAD_VALUES[case]
    with pytest.raises(helm.HelmValuesError) as error:
        render_files(values)
    assert "values don't meet the specifications of the schema" in str(error.value)
    assert message in str(error.value)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_documented_variant_satisfies_the_schema(name: str) -> None:
    with helm.Chart.load(str(CHART)) as chart:
        chart.validate_schema(VARIANTS[name])


def test_every_default_value_is_described_by_the_schema() -> None:
    """Walk values.yaml: each key must be a schema property, so none escapes validation."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            node = schema["definitions"][node["$ref"].rsplit("/", 1)[-1]]
        return node

    def check(values: dict[str, Any], node: dict[str, Any], path: str) -> None:
        node = resolve(node)
        for key, value in values.items():
            properties = node.get("properties", {})
            assert key in properties or isinstance(node.get("additionalProperties"), dict), f"{path}{key}"
            child = properties.get(key) or node["additionalProperties"]
            if isinstance(value, dict) and value:
                check(value, child, f"{path}{key}.")

    check(defaults, schema, "")


def test_the_schema_closes_every_object_it_defines() -> None:
    """additionalProperties is false wherever the keys are ours (maps and k8s passthroughs excepted)."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    passthrough = {"affinity", "tolerations", "extraEnv", "global"}
    open_objects: list[str] = []

    def visit(node: Any, path: str) -> None:
        if not isinstance(node, dict):
            return
        closed = node.get("additionalProperties") is False
        exempt = path.rsplit(".", 1)[-1] in passthrough or path.endswith("items")
        if "properties" in node and not closed and not exempt:
            open_objects.append(path)
        for key, child in node.get("properties", {}).items():
            visit(child, f"{path}.{key}")
        for key, child in node.get("definitions", {}).items():
            visit(child, f"#{key}")
        visit(node.get("items"), f"{path}.items")

    visit(schema, "")
    assert not open_objects
