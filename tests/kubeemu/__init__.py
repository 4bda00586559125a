"""kubeemu: a small, faithful, in-memory Kubernetes API server for CI.

There is no kube-apiserver on PyPI and no Docker in CI, so the operator's end-to-end
tests run kopf against this emulator on 127.0.0.1 (its role: docs/design.md, "The API
emulator"). It serves discovery, built-in resources and CRD-defined ones, with real
resourceVersions, watches that resume, optimistic concurrency, the status subresource, finalizers,
ownerReference garbage collection, namespace and CRD cleanup, the four patch types
including server-side apply, and structural-schema pruning, defaulting and
validation of custom resources. It has no scheduler, kubelet or workload
controllers: Deployments and Jobs never get pods unless a test creates them.

Layers, each knowing only the ones below it:
``server`` (HTTP, watches) -> ``controllers`` (GC and cleanup loops) -> ``registry``
(API rules, with per-type ``strategies``) -> ``store`` (objects, history, fan-out);
pure helpers: ``merge`` (patches, apply), ``schema`` (structural schemas),
``selectors``, ``resources`` (types, discovery), ``tables``, ``objects``, ``errors``.
"""

from .server import Emulator
from .threaded import EmulatorThread

__all__ = ["Emulator", "EmulatorThread"]
