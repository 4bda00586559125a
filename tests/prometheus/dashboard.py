"""Reading the Grafana dashboard the chart ships: its PromQL, its variables, the metrics it names."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PATH = Path(__file__).resolve().parents[2] / "helm" / "mothership" / "dashboards" / "mothership.json"
DASHBOARD: dict[str, Any] = json.loads(PATH.read_text())
METRIC = re.compile(r"\b(mothership_[a-z0-9_]+)\b")
LABEL_VALUES = re.compile(r"^label_values\((?P<metric>.+),\s*(?P<label>\w+)\)$")


def panels() -> Iterator[dict[str, Any]]:
    for panel in DASHBOARD["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row keeps its panels inside


def dashboard_expressions() -> list[tuple[str, str]]:
    """(panel title / legend, expr) for every query target of every panel."""
    return [
        (f"{panel['title']} / {target.get('legendFormat', '')}", target["expr"])
        for panel in panels() for target in panel.get("targets", [])
    ]


def variables() -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in DASHBOARD["templating"]["list"]}


def variable_queries() -> list[tuple[str, str]]:
    """(metric selector, label) of the namespace and loadtest variables' label_values queries."""
    out = []
    for name in ("namespace", "loadtest"):
        query = variables()[name]["query"]
        text = query["query"] if isinstance(query, dict) else query
        match = LABEL_VALUES.match(text)
        assert match, f"variable {name}: {text}"
        out.append((match["metric"], match["label"]))
    return out


def referenced_metrics() -> set[str]:
    """Every series name the dashboard's queries and variables use (histograms as ``_bucket``)."""
    texts = [expr for _, expr in dashboard_expressions()] + [m for m, _ in variable_queries()]
    return {name for text in texts for name in METRIC.findall(text)}
