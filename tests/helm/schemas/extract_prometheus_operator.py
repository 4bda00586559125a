"""Write ``prometheus-operator.json``: strict JSON schemas for ServiceMonitor, PodMonitor, PrometheusRule.

``kubernetes-validate`` knows only built-in kinds. The Prometheus Operator's CRD
schemas reach us through PyPI as ``cloudcoil-models-prometheus-operator``
(pydantic models generated from the project's CRDs). That package registers a
pytest plugin that needs extra dependencies, so it is not a test dependency:
this script is run by hand, in a throwaway venv, when the pinned version moves::

    python -m venv /tmp/po && /tmp/po/bin/pip install cloudcoil-models-prometheus-operator==0.80.1.0
    /tmp/po/bin/python tests/helm/schemas/extract_prometheus_operator.py

Every object schema is closed (``additionalProperties: false``) unless it is a
map, so a misspelt field fails, as ``kubectl apply --validate=strict`` would.
"""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path
from typing import Any

KINDS = ("ServiceMonitor", "PodMonitor", "PrometheusRule")
OUT = Path(__file__).with_name("prometheus-operator.json")


def close(node: Any) -> None:
    if isinstance(node, dict):
        if "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        pattern = node.get("pattern")
        if isinstance(pattern, str) and "(?i)" in pattern:  # Go takes inline flags anywhere, Python first
            node["pattern"] = "(?i)" + pattern.replace("(?i)", "")
        for key in ("description", "title"):  # text only; keeps the file small
            if isinstance(node.get(key), str):
                del node[key]
        for value in node.values():
            close(value)
    elif isinstance(node, list):
        for value in node:
            close(value)


def main() -> None:
    from cloudcoil.models.prometheus_operator import v1  # type: ignore[import-not-found]

    schemas = {}
    for kind in KINDS:
        schema = getattr(v1, kind).model_json_schema(by_alias=True)
        close(schema)
        schemas[kind] = schema
    doc = {
        "source": "cloudcoil-models-prometheus-operator " + version("cloudcoil-models-prometheus-operator"),
        "apiVersion": "monitoring.coreos.com/v1",
        "schemas": schemas,
    }
    OUT.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    print(OUT)


if __name__ == "__main__":
    main()
