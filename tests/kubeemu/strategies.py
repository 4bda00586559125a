"""Per-type rules of the real registry: metadata validation, defaulting, validation.

kube-apiserver gives each resource a "strategy" that defaults a new or updated object
and validates it. The emulator keeps the parts that catch real mistakes in an
operator's manifests (names, labels, owner references, a Deployment's selector, a
Job's restart policy, a CRD's names) and the defaults clients read back (a Service's
clusterIP, a Job's generated selector, a Namespace's phase and finalizer). It is
deliberately not the full upstream validation; anything not listed here is accepted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, Protocol

from . import resources
from .errors import Cause
from .merge import clone
from .objects import is_deleting, meta_of, owner_refs, set_condition
from .resources import CRD_STORAGE_KEY, NAMESPACES_KEY, ResourceType, StorageKey

Obj = dict[str, Any]


class Context(Protocol):
    """What a strategy may ask of the registry."""

    def allocate_ip(self) -> str: ...


_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_LABEL1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_QUALIFIED = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")


def prepare(ctx: Context, rt: ResourceType, obj: Obj, old: Obj | None) -> None:
    """Default ``obj`` in place (``old`` is None on create)."""
    meta = obj["metadata"]
    for field in ("labels", "annotations", "finalizers", "ownerReferences"):
        if field in meta and not meta[field]:  # omitempty in ObjectMeta
            del meta[field]
    strategy = _STRATEGIES.get(rt.storage_key)
    if strategy is not None:
        strategy(ctx, obj, old)


def validate(rt: ResourceType, obj: Obj) -> list[Cause]:
    causes = validate_meta(rt, obj)
    check = _CHECKS.get(rt.storage_key)
    if check is not None:
        causes += check(obj)
    return causes


# --- metadata validation ---------------------------------------------------------------

_RULES: dict[str, tuple[re.Pattern[str], int, str]] = {
    "subdomain": (_SUBDOMAIN, 253, "a lowercase RFC 1123 subdomain must consist of lower case "
                  "alphanumeric characters, '-' or '.', and must start and end with an "
                  "alphanumeric character (e.g. 'example.com', regex used for validation is "
                  "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"),
    "label": (_LABEL, 63, "a lowercase RFC 1123 label must consist of lower case alphanumeric "
              "characters or '-', and must start and end with an alphanumeric character "
              "(e.g. 'my-name',  or '123-abc', regex used for validation is "
              "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"),
    "label1035": (_LABEL1035, 63, "a DNS-1035 label must consist of lower case alphanumeric "
                  "characters or '-', start with an alphabetic character, and end with an "
                  "alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for "
                  "validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"),
}


def name_problem(rule: str, name: str) -> str | None:
    if rule == "path":
        if name in (".", "..") or "/" in name or "%" in name:
            return "may not contain '/' or '%' and may not be '.' or '..'"
        return None
    pattern, limit, text = _RULES[rule]
    if len(name) > limit:
        return f"must be no more than {limit} characters"
    if not pattern.fullmatch(name):
        return text
    return None


def _qualified_name_problem(key: str) -> str | None:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _SUBDOMAIN.fullmatch(prefix)):
        return "prefix part must be a lowercase RFC 1123 subdomain"
    if not name or len(name) > 63 or not _QUALIFIED.fullmatch(name):
        return ("name part must consist of alphanumeric characters, '-', '_' or '.', and must "
                "start and end with an alphanumeric character")
    return None


def validate_meta(rt: ResourceType, obj: Obj) -> list[Cause]:
    meta = meta_of(obj)
    causes: list[Cause] = []
    name = meta.get("name")
    if not name:
        causes.append(Cause(Cause.REQUIRED, "metadata.name",
                            "Required value: name or generateName is required"))
    elif not isinstance(name, str):
        causes.append(Cause(Cause.INVALID, "metadata.name", f"Invalid value: {json.dumps(name)}"))
    else:
        problem = name_problem(rt.name_rule, name)
        if problem:
            causes.append(Cause(Cause.INVALID, "metadata.name",
                                f"Invalid value: {json.dumps(name)}: {problem}"))
    if rt.namespaced and not meta.get("namespace"):
        causes.append(Cause(Cause.REQUIRED, "metadata.namespace", "Required value"))
    for field in ("labels", "annotations"):
        values = meta.get(field)
        if values is None:
            continue
        if not isinstance(values, dict):
            causes.append(Cause(Cause.INVALID, f"metadata.{field}", "Invalid value: must be a map"))
            continue
        for key, value in values.items():
            where = f"metadata.{field}"
            problem = _qualified_name_problem(key)
            if problem:
                causes.append(Cause(Cause.INVALID, where, f"Invalid value: {json.dumps(key)}: {problem}"))
            if not isinstance(value, str):
                causes.append(Cause(Cause.TYPE, f"{where}.{key}",
                                    f"Invalid value: {json.dumps(value)}: must be a string"))
            elif field == "labels" and (len(value) > 63 or not _LABEL_VALUE.fullmatch(value)):
                causes.append(Cause(Cause.INVALID, where, f"Invalid value: {json.dumps(value)}: "
                                    "a valid label must be an empty string or consist of "
                                    "alphanumeric characters, '-', '_' or '.', and must start "
                                    "and end with an alphanumeric character"))
    for n, finalizer in enumerate(meta.get("finalizers") or []):
        if not isinstance(finalizer, str) or _qualified_name_problem(finalizer):
            causes.append(Cause(Cause.INVALID, f"metadata.finalizers[{n}]",
                                f"Invalid value: {json.dumps(finalizer)}: name part must consist "
                                "of alphanumeric characters, '-', '_' or '.'"))
    controllers = 0
    for n, ref in enumerate(owner_refs(obj)):
        for field in ("apiVersion", "kind", "name", "uid"):
            if not ref.get(field):
                causes.append(Cause(Cause.REQUIRED if field != "uid" else Cause.INVALID,
                                    f"metadata.ownerReferences[{n}].{field}",
                                    "Required value" if field != "uid" else
                                    "Invalid value: \"\": uid must not be empty"))
        controllers += bool(ref.get("controller"))
    if controllers > 1:
        causes.append(Cause(Cause.INVALID, "metadata.ownerReferences",
                            "Invalid value: only one reference can have Controller set to true"))
    return causes


# --- type-specific strategies (defaulting) and checks (validation) ---------------------

def _prepare_namespace(ctx: Context, obj: Obj, old: Obj | None) -> None:
    name = meta_of(obj)["name"]
    obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = name
    if old is None:
        obj["spec"] = {"finalizers": ["kubernetes"]}
        obj["status"] = {"phase": "Active"}
    else:
        obj["spec"] = clone(old.get("spec") or {})


def _prepare_pod(ctx: Context, obj: Obj, old: Obj | None) -> None:
    if old is None:
        obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
    spec = obj.setdefault("spec", {})
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("serviceAccountName", "default")


def _prepare_service(ctx: Context, obj: Obj, old: Obj | None) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    for port in spec.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
    old_spec = (old or {}).get("spec") or {}
    if not spec.get("clusterIP"):
        spec["clusterIP"] = old_spec.get("clusterIP") or ctx.allocate_ip()
    spec.setdefault("clusterIPs", old_spec.get("clusterIPs") or [spec["clusterIP"]])
    if old is None:
        obj["status"] = {"loadBalancer": {}}


def _prepare_deployment(ctx: Context, obj: Obj, old: Obj | None) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    spec.setdefault("strategy", {"type": "RollingUpdate",
                                 "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})


def _prepare_job(ctx: Context, obj: Obj, old: Obj | None) -> None:
    spec = obj.setdefault("spec", {})
    if old is not None:
        spec["selector"] = clone((old.get("spec") or {}).get("selector"))
        return
    meta = obj["metadata"]
    spec.setdefault("parallelism", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    if spec["completionMode"] == "NonIndexed" and "completions" not in spec:
        spec["completions"] = spec["parallelism"] if spec["parallelism"] == 1 else None
        if spec["completions"] is None:
            del spec["completions"]
    if not spec.get("manualSelector"):
        uid, name = meta["uid"], meta["name"]
        spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
        labels = spec.setdefault("template", {}).setdefault("metadata", {}).setdefault("labels", {})
        labels.update({"batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": name,
                       "controller-uid": uid, "job-name": name})


def _prepare_crd(ctx: Context, obj: Obj, old: Obj | None) -> None:
    spec = obj.get("spec") or {}
    versions = spec.get("versions") or []
    stored = [v.get("name") for v in versions if isinstance(v, dict) and v.get("storage")]
    names = clone(spec.get("names") or {})
    if names.get("kind") and not names.get("listKind"):
        names["listKind"] = f"{names['kind']}List"
        spec.setdefault("names", {})["listKind"] = names["listKind"]
    if names.get("kind") and not names.get("singular"):
        names["singular"] = names["kind"].lower()
        spec.setdefault("names", {})["singular"] = names["singular"]
    status = clone((old or {}).get("status") or {})
    status["acceptedNames"] = names
    previous = status.get("storedVersions") or []
    status["storedVersions"] = previous + [v for v in stored if v not in previous]
    obj["status"] = status
    if not is_deleting(obj):
        set_condition(obj, "NamesAccepted", "True", "NoConflicts", "no conflicts found")
        set_condition(obj, "Established", "True", "InitialNamesAccepted",
                       "the initial names have been accepted")


def _check_crd(obj: Obj) -> list[Cause]:
    spec = obj.get("spec") or {}
    names = spec.get("names") or {}
    causes = []
    for field in ("group", "scope"):
        if not spec.get(field):
            causes.append(Cause(Cause.REQUIRED, f"spec.{field}", "Required value"))
    if spec.get("scope") and spec["scope"] not in ("Namespaced", "Cluster"):
        causes.append(Cause(Cause.NOT_SUPPORTED, "spec.scope",
                            f'Unsupported value: "{spec["scope"]}": supported values: '
                            '"Cluster", "Namespaced"'))
    for field in ("plural", "kind"):
        if not names.get(field):
            causes.append(Cause(Cause.REQUIRED, f"spec.names.{field}", "Required value"))
    expected = f"{names.get('plural')}.{spec.get('group')}"
    if meta_of(obj).get("name") != expected:
        causes.append(Cause(Cause.INVALID, "metadata.name",
                            f'Invalid value: "{meta_of(obj).get("name")}": must be '
                            'spec.names.plural+"."+spec.group'))
    versions = spec.get("versions") or []
    if not versions or sum(1 for v in versions if isinstance(v, dict) and v.get("storage")) != 1:
        causes.append(Cause(Cause.INVALID, "spec.versions", "Invalid value: must have exactly "
                                                            "one version marked as storage version"))
    if any((spec.get("group"), names.get("plural")) == rt.storage_key for rt in resources.BUILTINS):
        causes.append(Cause(Cause.INVALID, "spec.names.plural", "Invalid value: already served"))
    return causes


def _check_pod_spec(spec: Any, where: str) -> list[Cause]:
    if not isinstance(spec, dict):
        return [Cause(Cause.REQUIRED, where, "Required value")]
    containers = spec.get("containers")
    if not containers:
        return [Cause(Cause.REQUIRED, f"{where}.containers", "Required value")]
    causes = []
    for n, container in enumerate(containers):
        if not isinstance(container, dict):
            continue
        name = container.get("name")
        if not name:
            causes.append(Cause(Cause.REQUIRED, f"{where}.containers[{n}].name", "Required value"))
        elif name_problem("label", str(name)):
            causes.append(Cause(Cause.INVALID, f"{where}.containers[{n}].name",
                                f"Invalid value: {json.dumps(name)}: {name_problem('label', str(name))}"))
        if not container.get("image"):
            causes.append(Cause(Cause.REQUIRED, f"{where}.containers[{n}].image", "Required value"))
    return causes


def _check_pod(obj: Obj) -> list[Cause]:
    return _check_pod_spec(obj.get("spec"), "spec")


def _selected(selector: Any, labels: Any) -> bool:
    match = (selector or {}).get("matchLabels") or {}
    labels = labels or {}
    return bool(match or (selector or {}).get("matchExpressions")) and all(
        labels.get(k) == v for k, v in match.items()
    )


def _check_deployment(obj: Obj) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes = _check_pod_spec((spec.get("template") or {}).get("spec"), "spec.template.spec")
    selector = spec.get("selector")
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels")
    if not selector:
        causes.append(Cause(Cause.REQUIRED, "spec.selector", "Required value"))
    elif not _selected(selector, labels):
        causes.append(Cause(Cause.INVALID, "spec.template.metadata.labels",
                            f"Invalid value: {json.dumps(labels)}: `selector` does not match "
                            "template `labels`"))
    return causes


def _check_job(obj: Obj) -> list[Cause]:
    spec = obj.get("spec") or {}
    template = spec.get("template") or {}
    causes = _check_pod_spec(template.get("spec"), "spec.template.spec")
    policy = (template.get("spec") or {}).get("restartPolicy")
    if policy not in ("OnFailure", "Never"):
        said = f"Unsupported value: {json.dumps(policy)}: " if policy else "Required value: "
        causes.append(Cause(Cause.NOT_SUPPORTED if policy else Cause.REQUIRED,
                            "spec.template.spec.restartPolicy",
                            f'{said}supported values: "OnFailure", "Never"'))
    if spec.get("completionMode") == "Indexed" and spec.get("completions") is None:
        causes.append(Cause(Cause.REQUIRED, "spec.completions",
                            "Required value: when completion mode is Indexed"))
    return causes


def _check_service(obj: Obj) -> list[Cause]:
    spec = obj.get("spec") or {}
    if spec.get("clusterIP") != "None" and spec.get("type") != "ExternalName" and not spec.get("ports"):
        return [Cause(Cause.REQUIRED, "spec.ports", "Required value")]
    return []


_STRATEGIES: dict[StorageKey, Callable[[Context, Obj, Obj | None], None]] = {
    NAMESPACES_KEY: _prepare_namespace,
    ("", "pods"): _prepare_pod,
    ("", "services"): _prepare_service,
    ("apps", "deployments"): _prepare_deployment,
    ("batch", "jobs"): _prepare_job,
    CRD_STORAGE_KEY: _prepare_crd,
}
_CHECKS: dict[StorageKey, Callable[[Obj], list[Cause]]] = {
    ("", "pods"): _check_pod,
    ("", "services"): _check_service,
    ("apps", "deployments"): _check_deployment,
    ("batch", "jobs"): _check_job,
    CRD_STORAGE_KEY: _check_crd,
}
