"""LoadTest handlers: kopf triggers, and nothing else.

Each trigger hands the object, the shared API client (``memo.kube``) and the
operator's settings (``memo.config``) to ``coordination``, where the I/O lives;
the decisions live in ``builders``, ``targets`` and ``status`` (pure). None of
these handlers sleeps: waiting for workers happens in the daemon, on kopf's
stop flag, so deleting a LoadTest or stopping the operator wakes it at once.

- create / resume: :func:`coordination.launch` validates and checks policy
  (a refusal is a condition, an Event and a ``kopf.PermanentError``), then
  creates the ConfigMap, Secret, Job and optional PodMonitor.
- the daemon: :func:`coordination.coordinate` runs the coordinator, keeps the
  status live, stops the workers on ``spec.stop``, a failed worker or
  deletion, and applies ``ttlSecondsAfterFinished``. When the LoadTest is
  deleted, kopf sets its stop flag and keeps the finalizer while the daemon
  tells the workers to stop (``cancellation_backoff``: kopf looks again after
  that long, so it is short), and only then cancels it; the children are
  garbage-collected by ownerReferences.
- ``spec.stop`` changing: recorded for ``kubectl describe``; the daemon sees
  the live spec within a second and acts on it.
- delete: the LoadTest's gauges are dropped, so series stay bounded by the
  tests that exist.

Every handler returns None: kopf would store a return value under ``status``,
which our structural schema prunes.
"""

from __future__ import annotations

from typing import Any

import kopf

from mothership import metrics
from mothership.api.common import Manifest
from mothership.loadtests import builders, coordination

GROUP, VERSION, PLURAL = coordination.LOADTESTS


@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.resume(GROUP, VERSION, PLURAL)
async def launch(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    """Validate, check the tenant's policy, and create the test's children."""
    with metrics.reconciling("loadtest"):
        await coordination.launch(body, memo.kube, memo.config, logger)


@kopf.index("v1", "pods", labels={builders.LOADTEST_LABEL: kopf.PRESENT})
def loadtest_pods(body: kopf.Body, namespace: str | None, labels: kopf.Labels,
                  **_: Any) -> dict[tuple[str, str], Manifest]:
    """Worker pods by (namespace, LoadTest), from the pod watch kopf already runs for Apps (its
    server-side selector is ``managed-by=mothership``, which workers carry): the daemon reads
    them here instead of a LIST every second."""
    return {(namespace or "", labels[builders.LOADTEST_LABEL]): dict(body)}


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_backoff=coordination.DELETE_GRACE_SECONDS,
             cancellation_timeout=5.0)
async def coordinate(body: kopf.Body, memo: kopf.Memo, stopped: kopf.DaemonStopped, logger: kopf.Logger,
                     namespace: str | None, name: str, **kwargs: Any) -> None:
    """Run the test: barrier start, live merged status, stop, final verdict, ttl clean-up."""
    key = (namespace or "", name)
    loadtest_pods: kopf.Index[tuple[str, str], Manifest] = kwargs["loadtest_pods"]

    def pods_seen() -> list[Manifest]:
        return list(loadtest_pods.get(key, ()))

    await coordination.coordinate(body, memo.kube, stopped, logger, pods_seen)


@kopf.on.field(GROUP, VERSION, PLURAL, field="spec.stop", new=True)
async def stop_requested(logger: kopf.Logger, **_: Any) -> None:
    """``spec.stop: true``: the daemon stops every worker; this records that it was asked."""
    logger.info("spec.stop was set: the test stops and ends Stopped with a partial summary.")


@kopf.on.delete(GROUP, VERSION, PLURAL, optional=True)
async def forget(namespace: str | None, name: str | None, **_: Any) -> None:
    """Drop the deleted test's gauges."""
    coordination.forget_gauges(namespace or "", name or "")
