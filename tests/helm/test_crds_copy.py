"""The chart ships the same CRDs as the top-level crds/ folder, and renders exactly those.

Both copies are written by ``mothership crds --chart helm/mothership/files/crds``
from the API models; ``templates/crds.yaml`` renders the chart's copy (so that
``helm upgrade`` carries CRD changes) and adds only labels and the keep policy.
A hand edit to either copy, a regeneration that forgot ``--chart``, or a
template that alters a CRD fails here.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from .conftest import CHART, ROOT, render

CHART_CRDS = CHART / "files" / "crds"


def test_the_chart_crds_are_identical_to_the_top_level_crds() -> None:
    top = ROOT / "crds"
    assert CHART_CRDS.is_dir(), "run: mothership crds --chart helm/mothership/files/crds"
    top_files = {p.name: p.read_bytes() for p in sorted(top.glob("*.yaml"))}
    chart_files = {p.name: p.read_bytes() for p in sorted(CHART_CRDS.glob("*.yaml"))}
    assert top_files, "crds/ holds no CRDs"
    assert sorted(chart_files) == sorted(top_files)
    for name, data in top_files.items():
        assert chart_files[name] == data, f"helm/mothership/files/crds/{name} differs from crds/{name}"


def test_the_chart_has_no_crds_folder_that_helm_would_install_once_and_never_upgrade() -> None:
    # Helm installs crds/ before the templates and never touches it again; the same CRDs
    # there and in templates/crds.yaml would collide on install.
    assert not (CHART / "crds").exists(), "the chart's CRDs live in files/crds/ (templates/crds.yaml)"


def test_the_chart_ships_a_crd_for_every_mothership_kind() -> None:
    kinds = set()
    for path in CHART_CRDS.glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                kinds.add(doc["spec"]["names"]["kind"])
    assert {"Tenant", "App", "LoadTest"} <= kinds


def test_the_rendered_crds_are_the_generated_ones_plus_labels_and_the_keep_policy() -> None:
    rendered = {o["metadata"]["name"]: o for o in render()
                if o["kind"] == "CustomResourceDefinition" and o["spec"]["group"] == "mothership.dev"}
    generated = {}
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        generated[doc["metadata"]["name"]] = doc
    assert sorted(rendered) == sorted(generated)
    for name, crd in rendered.items():
        source = generated[name]
        metadata = crd["metadata"]
        assert metadata["annotations"] == {"helm.sh/resource-policy": "keep"}
        assert source["metadata"]["labels"].items() <= metadata["labels"].items()
        assert metadata["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        assert {k: v for k, v in crd.items() if k != "metadata"} == {
            k: v for k, v in source.items() if k != "metadata"
        }, f"templates/crds.yaml changed {name} beyond its metadata"
        assert metadata["name"] == source["metadata"]["name"]


def test_mothership_crds_refuses_to_write_into_a_charts_crds_folder(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mothership.cli import app

    chart = tmp_path / "chart"
    chart.mkdir()
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: c\nversion: 0.1.0\n")
    result = CliRunner().invoke(app, ["crds", "--out", str(tmp_path / "out"), "--chart", str(chart / "crds")])
    assert result.exit_code == 2
    said = " ".join(result.output.replace("│", " ").split())  # rich boxes and wraps the message
    assert "Helm never upgrades a chart's crds/" in said
    assert not (chart / "crds").exists()
