# The kubernetes client is untyped or loosely typed; these tests use it as users do.
# mypy: disable-error-code="no-untyped-call,arg-type,union-attr,index,no-any-return"
"""Real clients against the emulator: the kubernetes client, kopf itself, and kubectl.

These are the faithfulness checks that matter most: if the official client, the
framework the operator runs on, and kubectl all work unmodified, so will the operator.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml
from kopf.testing import KopfRunner

from .server import Emulator
from .test_crds import widget, widget_crd


@pytest.fixture
def client(kube: Emulator) -> kubernetes.client.ApiClient:
    assert kube.kubeconfig is not None
    return kubernetes.config.new_client_from_config(config_file=str(kube.kubeconfig))


def test_the_kubernetes_client_loads_the_kubeconfig_and_round_trips_objects(kube: Emulator) -> None:
    assert kube.kubeconfig is not None
    kubernetes.config.load_kube_config(config_file=str(kube.kubeconfig))
    core = kubernetes.client.CoreV1Api()
    assert {ns.metadata.name for ns in core.list_namespace().items} >= {"default", "kube-system"}
    body = kubernetes.client.V1ConfigMap(metadata=kubernetes.client.V1ObjectMeta(name="a"),
                                         data={"k": "v"})
    created = core.create_namespaced_config_map("default", body)
    assert created.metadata.uid and created.metadata.resource_version
    patched = core.patch_namespaced_config_map("a", "default", {"data": {"k": "w"}})
    assert patched.data == {"k": "w"}
    with pytest.raises(kubernetes.client.ApiException) as conflict:
        core.create_namespaced_config_map("default", body)
    assert conflict.value.status == 409
    with pytest.raises(kubernetes.client.ApiException) as missing:
        core.read_namespaced_config_map("ghost", "default")
    assert missing.value.status == 404
    core.delete_namespaced_config_map("a", "default")
    assert core.list_namespaced_config_map("default").items == []


def test_the_kubernetes_client_watches_and_applies(client: kubernetes.client.ApiClient) -> None:
    core = kubernetes.client.CoreV1Api(client)
    listed = core.list_namespaced_config_map("default")
    core.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
    watch = kubernetes.watch.Watch()
    events = []
    for event in watch.stream(core.list_namespaced_config_map, "default",
                              resource_version=listed.metadata.resource_version, timeout_seconds=2):
        events.append((event["type"], event["object"].metadata.name))
        watch.stop()
    assert events == [("ADDED", "a")]
    custom = kubernetes.client.CustomObjectsApi(client)
    kubernetes.client.ApiextensionsV1Api(client).create_custom_resource_definition(widget_crd())
    for size in (1, 2):  # the first apply creates: 201, which this client maps to None
        applied = custom.patch_namespaced_custom_object(
            "example.com", "v1", "default", "widgets", "w", widget(size=size),
            field_manager="test", force=True, _content_type="application/apply-patch+yaml",
        )
    assert applied["spec"] == {"size": 2, "color": "red"}
    status = custom.patch_namespaced_custom_object_status(
        "example.com", "v1", "default", "widgets", "w", {"status": {"ok": True}})
    assert status["status"] == {"ok": True}


HANDLERS = '''
import os
import pathlib

import kopf


@kopf.on.login()
def login(**kwargs):
    # kubernetes.config reads $KUBECONFIG at import time, before the test sets it;
    # kopf's own kubeconfig reader reads it now.
    return kopf.login_with_kubeconfig(**kwargs)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_):
    settings.watching.server_timeout = 10
    settings.posting.loggers = True  # kopf 1.45 posts log lines as Events only if asked


@kopf.on.create("example.com", "v1", "widgets")
def created(spec, **_):
    return {"size": spec["size"]}


@kopf.on.delete("example.com", "v1", "widgets")
def deleted(name, **_):
    pathlib.Path(os.environ["KUBEEMU_DELETED"]).write_text(name)
'''


async def test_kopf_handles_create_and_delete_with_its_finalizer(
        kube: Emulator, client: kubernetes.client.ApiClient, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, until: Any) -> None:
    kubernetes.client.ApiextensionsV1Api(client).create_custom_resource_definition(widget_crd())
    handlers = tmp_path / "handlers.py"
    handlers.write_text(HANDLERS)
    marker = tmp_path / "deleted"
    monkeypatch.setenv("KUBECONFIG", str(kube.kubeconfig))
    monkeypatch.setenv("KUBEEMU_DELETED", str(marker))
    custom = kubernetes.client.CustomObjectsApi(client)

    def get() -> Any:
        return kube.get("example.com/v1", "widgets", "w", "default")

    args = ["run", "--standalone", "--namespace=default", str(handlers)]
    with KopfRunner(args, timeout=10) as runner:
        custom.create_namespaced_custom_object("example.com", "v1", "default", "widgets",
                                               widget(size=3))
        await until(lambda: (get() or {}).get("status", {}).get("created"), timeout=10)
        widget_now = get()
        assert widget_now["status"]["created"] == {"size": 3}
        assert widget_now["metadata"]["finalizers"] == ["kopf.zalando.org/KopfFinalizerMarker"]
        custom.delete_namespaced_custom_object("example.com", "v1", "default", "widgets", "w")
        await until(lambda: get() is None, timeout=10)
        assert marker.read_text() == "w"

        def posted() -> bool:  # kopf posts its INFO logs as core/v1 Events, asynchronously
            return any(e["involvedObject"]["name"] == "w" and "succeeded" in e["message"]
                       for e in kube.list("v1", "events", "default"))

        await until(posted, timeout=5)
    assert runner.exit_code == 0, runner.output
    assert runner.exception is None
    assert kube.calls[("watch", "example.com", "widgets", "")] >= 1
    assert kube.calls[("patch", "example.com", "widgets", "")] >= 2


KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")

MANIFEST = textwrap.dedent("""\
    apiVersion: v1
    kind: ConfigMap
    metadata: {name: settings}
    data: {mode: fast}
    ---
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: web}
    spec:
      selector: {matchLabels: {app: web}}
      template:
        metadata: {labels: {app: web}}
        spec:
          containers: [{name: app, image: nginx, env: [{name: A, value: "1"}]}]
    """)


def kubectl(kube: Emulator, *args: str) -> subprocess.CompletedProcess[str]:
    assert KUBECTL is not None and kube.kubeconfig is not None
    home = kube.kubeconfig.parent  # keeps kubectl's discovery cache inside tmp_path
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "KUBECONFIG": str(kube.kubeconfig)}
    return subprocess.run([KUBECTL, *args], env=env, capture_output=True, text=True, timeout=30,
                          check=False)


@needs_kubectl
def test_kubectl_gets_namespaces(kube: Emulator) -> None:
    result = kubectl(kube, "get", "ns")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "AGE"]
    assert lines[1].split()[:2] == ["default", "Active"]


@needs_kubectl
def test_kubectl_apply_creates_then_leaves_unchanged_then_patches(kube: Emulator, tmp_path: Path) -> None:
    manifest = tmp_path / "app.yaml"
    manifest.write_text(MANIFEST)
    first = kubectl(kube, "apply", "--validate=false", "-f", str(manifest))
    assert first.returncode == 0, first.stderr
    assert first.stdout.split("\n")[:2] == ["configmap/settings created", "deployment.apps/web created"]
    again = kubectl(kube, "apply", "--validate=false", "-f", str(manifest))
    assert "configmap/settings unchanged" in again.stdout
    manifest.write_text(MANIFEST.replace("value: \"1\"", "value: \"2\""))
    changed = kubectl(kube, "apply", "--validate=false", "-f", str(manifest))
    assert "deployment.apps/web configured" in changed.stdout, changed.stderr
    deployment = kube.get("apps/v1", "deployments", "web", "default")
    assert deployment is not None
    assert deployment["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "A", "value": "2"}]
    assert deployment["metadata"]["generation"] == 2


@needs_kubectl
def test_kubectl_server_side_apply_and_custom_resources_with_printer_columns(
        kube: Emulator, tmp_path: Path) -> None:
    crd = tmp_path / "crd.yaml"
    crd.write_text(yaml.safe_dump(widget_crd()))
    assert kubectl(kube, "apply", "--validate=false", "-f", str(crd)).returncode == 0
    item = tmp_path / "widget.yaml"
    item.write_text(yaml.safe_dump(widget(size=4)))
    applied = kubectl(kube, "apply", "--server-side", "--validate=false", "-f", str(item))
    assert applied.returncode == 0, applied.stderr
    assert "widget.example.com/w serverside-applied" in applied.stdout
    listed = kubectl(kube, "get", "wd")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[0].split() == ["NAME", "SIZE", "AGE"]
    assert listed.stdout.splitlines()[1].split()[:2] == ["w", "4"]
    deleted = kubectl(kube, "delete", "widget", "w")
    assert deleted.returncode == 0 and kube.get("example.com/v1", "widgets", "w", "default") is None
