"""``helm upgrade`` carries CRD changes: the CRDs are templates, not the chart's ``crds/``.

Helm installs a chart's ``crds/`` folder once and never upgrades it, so a new
field in a CRD would silently never reach a cluster installed from an older
chart: the API server would prune it from every object. The chart renders its
CRDs from ``templates/crds.yaml`` (behind ``crds.install``, kept on uninstall),
and these tests hold the upgrade path:

* with the real Helm engine, a chart whose CRD gained a field renders that field
  on upgrade, and nothing is left in ``crds/`` for Helm to skip;
* with the real Helm SDK against a real kube-apiserver: install an old chart,
  ``helm upgrade`` to the new one, and the API server keeps the new field; the
  same for ``crds.install=false`` with ``kubectl apply --server-side -f crds/``,
  and for taking over CRDs applied outside Helm (a release of the chart from
  before this change, whose CRDs came from ``crds/``).

The "new" chart is today's chart with one field added to the Tenant CRD
(``spec.upgradeProbe``); the "old" one is today's chart unchanged.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import CHART, NAMESPACE, RELEASE, Manifest, helm

TENANTS = "tenants.mothership.dev"
PROBE = "upgradeProbe"
KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"


def _chart_versions(tmp: Path) -> tuple[Path, Path]:
    """Two copies of the chart: ``old`` as it is, ``new`` one version on with ``spec.upgradeProbe``."""
    old, new = tmp / "old" / "mothership", tmp / "new" / "mothership"
    shutil.copytree(CHART, old)
    shutil.copytree(CHART, new)
    meta_path = new / "Chart.yaml"
    meta = yaml.safe_load(meta_path.read_text())
    major, minor, patch = (int(x) for x in str(meta["version"]).split("."))
    meta["version"] = f"{major}.{minor}.{patch + 1}"
    meta_path.write_text(yaml.safe_dump(meta, sort_keys=False))
    crd_path = new / "files" / "crds" / f"{TENANTS}.yaml"
    crd = yaml.safe_load(crd_path.read_text())
    (version,) = crd["spec"]["versions"]
    version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"][PROBE] = {
        "type": "string", "description": "A field only the new chart's CRD has.",
    }
    crd_path.write_text(yaml.safe_dump(crd, sort_keys=False))
    return old, new


def _render(chart: Path, values: dict[str, Any] | None = None, *, upgrade: bool) -> list[Manifest]:
    with helm.Chart.load(str(chart)) as loaded:
        assert loaded.crds == [], f"{chart}: Helm would install crds/ once and never upgrade it"
        files = loaded.render(values or {}, name=RELEASE, namespace=NAMESPACE,
                              revision=2 if upgrade else 1,
                              is_install=not upgrade, is_upgrade=upgrade)
    return [doc for path, text in sorted(files.items()) if not path.endswith("NOTES.txt")
            for doc in yaml.safe_load_all(text) if doc]


def _crds(objects: list[Manifest]) -> dict[str, Manifest]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == "CustomResourceDefinition"}


def _spec_properties(crd: Manifest) -> dict[str, Any]:
    (version,) = crd["spec"]["versions"]
    properties: dict[str, Any] = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    return properties


# --- the real Helm engine -------------------------------------------------------------------------


def test_every_crd_the_chart_renders_is_a_template_with_the_keep_policy() -> None:
    crds = _crds(_render(CHART, {"replicas": 2}, upgrade=False))  # kopf's peering CRDs too
    assert {TENANTS, "apps.mothership.dev", "loadtests.mothership.dev",
            "clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"} == set(crds)
    for name, crd in crds.items():
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep", name


def test_crds_install_false_renders_none_of_ours() -> None:
    for upgrade in (False, True):
        objects = _render(CHART, {"crds": {"install": False}}, upgrade=upgrade)
        assert _crds(objects) == {}
        assert any(o["kind"] == "Deployment" for o in objects), "the rest of the chart still renders"


def test_an_upgrade_renders_the_new_crd(tmp_path: Path) -> None:
    old, new = _chart_versions(tmp_path)
    before = _crds(_render(old, upgrade=False))[TENANTS]
    after = _crds(_render(new, upgrade=True))[TENANTS]
    assert PROBE not in _spec_properties(before)
    assert _spec_properties(after)[PROBE]["type"] == "string"
    assert after["metadata"]["labels"]["helm.sh/chart"] != before["metadata"]["labels"]["helm.sh/chart"]
    assert after["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}


def test_an_upgrade_reusing_values_from_a_chart_without_crds_install_still_renders_them(
        tmp_path: Path) -> None:
    # `helm upgrade --reuse-values` hands the templates the old chart's values, which (before
    # 0.2.0) had no `crds` key: the CRDs must still render, or the upgrade would skip them.
    chart = tmp_path / "mothership"
    shutil.copytree(CHART, chart)
    values_path = chart / "values.yaml"
    values = yaml.safe_load(values_path.read_text())
    del values["crds"]
    values_path.write_text(yaml.safe_dump(values))
    assert {TENANTS, "apps.mothership.dev", "loadtests.mothership.dev"} <= set(
        _crds(_render(chart, upgrade=True)))


# --- the real Helm SDK and kube-apiserver -----------------------------------------------------------


@pytest.fixture
def apiserver_alone(tmp_path: Path) -> Iterator[Any]:
    """A private etcd + kube-apiserver: these tests install, upgrade and adopt cluster-wide CRDs."""
    from tests.controlplane import ControlPlane
    from tests.controlplane.fixtures import _require_binary

    _require_binary()
    with ControlPlane.start(tmp_path / "cp", controller_manager=False) as cp:
        yield cp


def _kubectl(cp: Any, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run([KUBECTL, f"--kubeconfig={cp.kubeconfig}", *args], input=stdin,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
    return done.stdout


def _served_spec(cp: Any) -> dict[str, Any]:
    return _spec_properties(json.loads(_kubectl(cp, "get", "crd", TENANTS, "-o", "json")))


def _tenant_keeps_the_probe(cp: Any, name: str) -> bool:
    """Apply a Tenant with ``spec.upgradeProbe`` server-side: whether the API server accepts and keeps it.

    Under a CRD without the field, server-side apply refuses it ("field not declared in
    schema"); under one with it, the Tenant is stored with the field.
    """
    _kubectl(cp, "wait", "--for=condition=Established", "--timeout=60s", f"crd/{TENANTS}")
    tenant = json.dumps({"apiVersion": "mothership.dev/v1alpha1", "kind": "Tenant",
                         "metadata": {"name": name}, "spec": {PROBE: "kept"}})
    declared = PROBE in _served_spec(cp)
    kept = False
    # A schema change reaches the CR handler a moment after the CRD object: ask until they agree.
    for _ in range(100):
        done = subprocess.run([KUBECTL, f"--kubeconfig={cp.kubeconfig}", "apply", "--server-side",
                               "-o", "json", "-f", "-"], input=tenant, capture_output=True, text=True,
                              timeout=60)
        if done.returncode == 0:
            kept = json.loads(done.stdout)["spec"].get(PROBE) == "kept"
        else:
            assert "field not declared in schema" in done.stderr, done.stderr
            kept = False
        if kept == declared:
            break
        time.sleep(0.1)
    return kept


def _config(cp: Any) -> Any:
    return helm.Config(kubeconfig_path=str(cp.kubeconfig), namespace=NAMESPACE)


@pytest.mark.controlplane
@pytest.mark.timeout(240)
def test_helm_upgrade_carries_a_crd_change_to_the_api_server(apiserver_alone: Any, tmp_path: Path) -> None:
    cp = apiserver_alone
    old, new = _chart_versions(tmp_path)
    with _config(cp) as config:
        config.install(str(old), RELEASE, {}, namespace=NAMESPACE, create_namespace=True, timeout=120)
        assert PROBE not in _served_spec(cp)
        assert not _tenant_keeps_the_probe(cp, "before"), "the old CRD has no such field"

        config.upgrade(str(new), RELEASE, {}, namespace=NAMESPACE, timeout=120)
        assert _served_spec(cp)[PROBE]["type"] == "string"
        assert _tenant_keeps_the_probe(cp, "after"), "helm upgrade did not carry the CRD change"

        config.uninstall(RELEASE)
    # helm.sh/resource-policy: keep — the CRDs, and so the tenants, outlive the release.
    names = _kubectl(cp, "get", "crd", "-o", "name").split()
    assert {f"customresourcedefinition.apiextensions.k8s.io/{n}" for n in
            (TENANTS, "apps.mothership.dev", "loadtests.mothership.dev")} <= set(names)
    assert _kubectl(cp, "get", "tenant", "after", "-o", "jsonpath={.spec.upgradeProbe}") == "kept"


@pytest.mark.controlplane
@pytest.mark.timeout(240)
def test_crds_applied_outside_helm_upgrade_with_kubectl_or_are_taken_over(
        apiserver_alone: Any, tmp_path: Path) -> None:
    cp = apiserver_alone
    old, new = _chart_versions(tmp_path)
    # crds.install=false: the CRDs are the user's, applied server-side before each install/upgrade.
    _kubectl(cp, "apply", "--server-side", "-f", str(old / "files" / "crds"))
    with _config(cp) as config:
        config.install(str(old), RELEASE, {"crds": {"install": False}}, namespace=NAMESPACE,
                       create_namespace=True, timeout=120)
        assert not _tenant_keeps_the_probe(cp, "before")

        _kubectl(cp, "apply", "--server-side", "-f", str(new / "files" / "crds"))
        config.upgrade(str(new), RELEASE, {"crds": {"install": False}}, namespace=NAMESPACE, timeout=120)
        assert _tenant_keeps_the_probe(cp, "after"), "kubectl apply --server-side did not carry it"

        # Handing them to Helm (crds.install=true, or a release of the chart from before the CRDs
        # were templates): Helm refuses objects it did not create until they carry its ownership
        # metadata, the commands docs/kubernetes.md gives.
        crds = [f"crd/{n}" for n in (TENANTS, "apps.mothership.dev", "loadtests.mothership.dev")]
        with pytest.raises(helm.HelmError, match="invalid ownership metadata"):
            config.upgrade(str(new), RELEASE, {"crds": {"install": True}}, namespace=NAMESPACE, timeout=120)
        _kubectl(cp, "label", "--overwrite", *crds, "app.kubernetes.io/managed-by=Helm")
        _kubectl(cp, "annotate", "--overwrite", *crds, f"meta.helm.sh/release-name={RELEASE}",
                 f"meta.helm.sh/release-namespace={NAMESPACE}")
        config.upgrade(str(new), RELEASE, {"crds": {"install": True}}, namespace=NAMESPACE, timeout=120)
    crd = json.loads(_kubectl(cp, "get", "crd", TENANTS, "-o", "json"))
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert _spec_properties(crd)[PROBE]["type"] == "string"
    assert _tenant_keeps_the_probe(cp, "adopted")

