"""Resource types: what the emulator serves, and how discovery describes it.

A ``ResourceType`` is one (group, version, plural) as listed by discovery. Built-ins
are a fixed table; custom resources are derived from stored CustomResourceDefinitions
(``from_crd``). Objects are stored per ``storage_key`` (group, plural), so every served
version of a CRD reads and writes the same objects, as with a CRD whose conversion
strategy is ``None``. This module knows nothing about objects or HTTP; the registry
asks it about names, scopes, subresources and list-merge keys.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any, Literal

Obj = dict[str, Any]
StorageKey = tuple[str, str]
NameRule = Literal["subdomain", "label", "label1035", "path"]

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
SUBRESOURCE_VERBS = ("get", "patch", "update")


@dataclasses.dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    status: bool = False
    generation: bool = False
    name_rule: NameRule = "subdomain"
    #: ``propagationPolicy`` when a DELETE does not say (batch/v1 Jobs orphan their pods).
    default_propagation: str = "Background"
    #: DELETE of one object answers with the object (pods, services, custom resources)
    #: rather than a ``Status`` of success.
    returns_deleted: bool = False
    #: Extra ``fieldSelector`` labels beyond metadata.name and metadata.namespace.
    field_labels: tuple[str, ...] = ()
    #: The CRD's ``openAPIV3Schema`` for this version; ``None`` for built-ins.
    schema: Obj | None = None
    printer_columns: tuple[Obj, ...] = ()
    #: (spec replicas path, status replicas path, label selector path) of ``/scale``.
    scale_paths: tuple[str, str, str] | None = None
    crd_name: str | None = None

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def storage_key(self) -> StorageKey:
        return (self.group, self.plural)

    @property
    def builtin(self) -> bool:
        return self.crd_name is None

    def discovery(self) -> list[Obj]:
        """The APIResource entries of this type and its subresources."""
        main: Obj = {
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": list(self.verbs),
        }
        if self.short_names:
            main["shortNames"] = list(self.short_names)
        if self.categories:
            main["categories"] = list(self.categories)
        entries = [main]
        if self.status:
            entries.append(self._sub("status", self.kind))
        if self.scale_paths:
            entry = self._sub("scale", "Scale")
            entry.update(group="autoscaling", version="v1")
            entries.append(entry)
        if self.plural == "namespaces":
            entries.append({**self._sub("finalize", self.kind), "verbs": ["update"]})
        return entries

    def _sub(self, name: str, kind: str) -> Obj:
        return {
            "name": f"{self.plural}/{name}",
            "singularName": "",
            "namespaced": self.namespaced,
            "kind": kind,
            "verbs": list(SUBRESOURCE_VERBS),
        }


def _t(gv: str, plural: str, kind: str, namespaced: bool = True, **kw: Any) -> ResourceType:
    group, _, version = gv.rpartition("/")
    return ResourceType(group, version, plural, kind.lower(), kind, namespaced, **kw)


_REPLICAS = ("spec.replicas", "status.replicas", "spec.selector")
_NO_COLLECTION = tuple(v for v in ALL_VERBS if v != "deletecollection")
_POD_FIELDS = (
    "spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
    "status.phase", "status.podIP", "status.nominatedNodeName",
)
_EVENT_FIELDS = (
    "involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
    "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
    "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type",
)

BUILTINS: tuple[ResourceType, ...] = (
    _t("v1", "namespaces", "Namespace", False, short_names=("ns",), status=True,
       name_rule="label", verbs=_NO_COLLECTION, field_labels=("status.phase",)),
    _t("v1", "pods", "Pod", short_names=("po",), categories=("all",), status=True,
       returns_deleted=True, field_labels=_POD_FIELDS),
    _t("v1", "services", "Service", short_names=("svc",), categories=("all",), status=True,
       name_rule="label1035", returns_deleted=True),
    _t("v1", "configmaps", "ConfigMap", short_names=("cm",)),
    _t("v1", "secrets", "Secret", field_labels=("type",)),
    _t("v1", "events", "Event", short_names=("ev",), field_labels=_EVENT_FIELDS),
    _t("v1", "serviceaccounts", "ServiceAccount", short_names=("sa",)),
    _t("v1", "resourcequotas", "ResourceQuota", short_names=("quota",), status=True),
    _t("v1", "limitranges", "LimitRange", short_names=("limits",)),
    _t("v1", "endpoints", "Endpoints", short_names=("ep",)),
    _t("apps/v1", "deployments", "Deployment", short_names=("deploy",), categories=("all",),
       status=True, scale_paths=_REPLICAS, generation=True),
    _t("apps/v1", "replicasets", "ReplicaSet", short_names=("rs",), categories=("all",),
       status=True, scale_paths=_REPLICAS, generation=True),
    _t("batch/v1", "jobs", "Job", categories=("all",), status=True, generation=True,
       default_propagation="Orphan", field_labels=("status.successful",)),
    _t("networking.k8s.io/v1", "ingresses", "Ingress", short_names=("ing",), status=True,
       generation=True),
    _t("networking.k8s.io/v1", "networkpolicies", "NetworkPolicy", short_names=("netpol",),
       generation=True),
    _t("rbac.authorization.k8s.io/v1", "roles", "Role", name_rule="path"),
    _t("rbac.authorization.k8s.io/v1", "rolebindings", "RoleBinding", name_rule="path"),
    _t("rbac.authorization.k8s.io/v1", "clusterroles", "ClusterRole", False, name_rule="path"),
    _t("rbac.authorization.k8s.io/v1", "clusterrolebindings", "ClusterRoleBinding", False,
       name_rule="path"),
    _t("autoscaling/v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler",
       short_names=("hpa",), categories=("all",), status=True, generation=True),
    _t("policy/v1", "poddisruptionbudgets", "PodDisruptionBudget", short_names=("pdb",),
       status=True, generation=True),
    _t("coordination.k8s.io/v1", "leases", "Lease"),
    _t("events.k8s.io/v1", "events", "Event", short_names=("ev",)),
    _t("apiextensions.k8s.io/v1", "customresourcedefinitions", "CustomResourceDefinition",
       False, short_names=("crd", "crds"), status=True, generation=True),
)

CRD_STORAGE_KEY: StorageKey = ("apiextensions.k8s.io", "customresourcedefinitions")
NAMESPACES_KEY: StorageKey = ("", "namespaces")


def from_crd(crd: Obj) -> list[ResourceType]:
    """The served versions of a stored CustomResourceDefinition."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    plural = names.get("plural", "")
    types = []
    for version in spec.get("versions") or []:
        if not version.get("served", True):
            continue
        subresources = version.get("subresources") or {}
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        types.append(
            ResourceType(
                group=spec.get("group", ""),
                version=version["name"],
                plural=plural,
                singular=names.get("singular") or names.get("kind", "").lower(),
                kind=names.get("kind", ""),
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                status="status" in subresources,
                scale_paths=_scale_paths(subresources.get("scale")),
                generation=True,
                returns_deleted=True,
                field_labels=tuple(
                    f["jsonPath"].lstrip(".") for f in version.get("selectableFields") or ()
                ),
                schema=schema,
                printer_columns=tuple(version.get("additionalPrinterColumns") or ()),
                crd_name=crd["metadata"]["name"],
            )
        )
    return types


def _scale_paths(scale: Obj | None) -> tuple[str, str, str] | None:
    if not isinstance(scale, dict):
        return None
    return (
        scale.get("specReplicasPath", ".spec.replicas").lstrip("."),
        scale.get("statusReplicasPath", ".status.replicas").lstrip("."),
        (scale.get("labelSelectorPath") or "").lstrip("."),
    )


def group_list(types: Iterable[ResourceType]) -> Obj:
    """``/apis``: every non-core group with its versions, the first listed preferred."""
    groups: dict[str, list[str]] = {}
    for rt in types:
        if rt.group and rt.version not in groups.setdefault(rt.group, []):
            groups[rt.group].append(rt.version)
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_group(name, versions) for name, versions in groups.items()],
    }


def _group(name: str, versions: list[str]) -> Obj:
    entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": entries, "preferredVersion": entries[0]}


def group(types: Iterable[ResourceType], name: str) -> Obj | None:
    versions: list[str] = []
    for rt in types:
        if rt.group == name and rt.version not in versions:
            versions.append(rt.version)
    if not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(name, versions)}


def resource_list(types: Iterable[ResourceType], group_version: str) -> Obj | None:
    selected = [rt for rt in types if rt.group_version == group_version]
    if not selected:
        return None
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": [entry for rt in selected for entry in rt.discovery()],
    }


# Lists that built-ins merge by key in strategic merge patches and server-side apply
# (the patchMergeKey / x-kubernetes-list-map-keys of the Kubernetes OpenAPI). Ports
# are keyed by containerPort inside containers and by port elsewhere (services).
BUILTIN_LIST_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "volumeMounts": ("mountPath",),
    "volumeDevices": ("devicePath",),
    "conditions": ("type",),
    "imagePullSecrets": ("name",),
    "hostAliases": ("ip",),
    "resourceClaims": ("name",),
}
#: Lists of scalars merged as sets (``patchStrategy: merge`` on a []string).
SET_LISTS = {("metadata", "finalizers")}
ListKeys = tuple[str, ...] | Literal["set"] | None


def list_keys(rt: ResourceType, path: tuple[str, ...]) -> ListKeys:
    """How the list at ``path`` (field names only) merges: by keys, as a set, or atomically."""
    if path == ("metadata", "ownerReferences"):
        return ("uid",)
    if path in SET_LISTS:
        return "set"
    if path and path[0] == "metadata":
        return None
    if rt.schema is not None:
        return _schema_list_keys(rt.schema, path)
    last = path[-1] if path else ""
    if last == "ports":
        inside = {"containers", "initContainers", "ephemeralContainers"} & set(path)
        return ("containerPort", "protocol") if inside else ("port", "protocol")
    return BUILTIN_LIST_KEYS.get(last)


def _schema_list_keys(schema: Obj, path: tuple[str, ...]) -> ListKeys:
    node: Obj | None = schema
    for name in path:
        while node is not None and node.get("type") == "array":
            node = node.get("items")
        if node is None:
            return None
        props = node.get("properties") or {}
        if name in props:
            node = props[name]
        elif isinstance(node.get("additionalProperties"), dict):
            node = node["additionalProperties"]
        else:
            return None
    if node is None or node.get("type") != "array":
        return None
    list_type = node.get("x-kubernetes-list-type")
    if list_type == "map":
        return tuple(node.get("x-kubernetes-list-map-keys") or ())
    if list_type == "set":
        return "set"
    return None
