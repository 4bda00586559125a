"""The chart ships the same CRDs as the top-level crds/ folder, byte for byte.

Both are written by ``mothership crds --chart helm/mothership/crds`` from the API
models; Helm installs the chart's copy before any template. A hand edit to
either copy, or a regeneration that forgot ``--chart``, fails here.
"""

from __future__ import annotations

from .conftest import CHART, ROOT


def test_the_chart_crds_are_identical_to_the_top_level_crds() -> None:
    top = ROOT / "crds"
    chart = CHART / "crds"
    assert chart.is_dir(), "run: mothership crds --chart helm/mothership/crds"
    top_files = {p.name: p.read_bytes() for p in sorted(top.glob("*.yaml"))}
    chart_files = {p.name: p.read_bytes() for p in sorted(chart.glob("*.yaml"))}
    assert top_files, "crds/ holds no CRDs"
    assert sorted(chart_files) == sorted(top_files)
    for name, data in top_files.items():
        assert chart_files[name] == data, f"helm/mothership/crds/{name} differs from crds/{name}"


def test_the_chart_ships_a_crd_for_every_mothership_kind() -> None:
    import yaml

    kinds = set()
    for path in (CHART / "crds").glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                kinds.add(doc["spec"]["names"]["kind"])
    assert {"Tenant", "App", "LoadTest"} <= kinds
