"""The operator process: kopf with Mothership's settings, plus one HTTP port for probes and metrics.

``mothership operator`` calls :func:`run`. This module owns everything that is
about the *process* rather than about a kind: which handler modules register
(importing them runs their ``@kopf.on...`` decorators), how kopf stores its
bookkeeping (annotations under ``mothership.dev``, because ``status`` is ours
and structural, so kopf's records there would be pruned), the finalizer name,
which namespaces are served, standalone versus peering, and the one aiohttp
server on ``--port`` that answers ``/healthz`` and ``/metrics``.

Handlers reach the shared things (the API client, the settings below) through
kopf's ``memo``, never through globals, so a test can run two operators in one
process. Nothing here knows what an App or a Tenant is.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import logging
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import kopf
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from mothership import metrics
from mothership.kube import Kube

logger = logging.getLogger(__name__)

PREFIX = "mothership.dev"
"""Prefix of kopf's annotations (progress, last-handled configuration) and of our finalizer."""
FINALIZER = f"{PREFIX}/finalizer"

HANDLER_MODULES = ("mothership.tenants.handlers", "mothership.apps.handlers", "mothership.loadtests.handlers")
"""Imported for their decorators. All are required: a broken import must stop the operator,
not silently switch a controller off."""


@dataclass
class Config:
    """What ``mothership operator`` was told; handlers read it from ``memo.config``."""

    namespaces: Sequence[str] = ()
    """Namespaces to serve; empty means all (cluster-wide). Tenants are cluster-scoped and always served."""
    peering: str | None = None
    """kopf peering name for several replicas; None runs standalone."""
    priority: int | None = None
    """Peering priority; the highest-priority replica works, others stand by. Random when peering."""
    port: int = 8080
    """Port of ``/healthz`` and ``/metrics``; 0 picks a free one (tests)."""
    host: str = "0.0.0.0"
    allowed_targets: Sequence[str] = ()
    """The global allow-list of LoadTest target host patterns (beyond each tenant's own)."""
    worker_image: str = "ghcr.io/mothership-dev/mothership:latest"
    """Image of LoadTest worker pods."""
    operator_namespace: str = "mothership-system"
    """Where the operator runs; tenants' NetworkPolicies admit it."""
    pod_monitors: bool = True
    """Apply a PodMonitor per LoadTest; off when the chart's cluster-wide one already scrapes workers
    (two would count every worker twice)."""
    verbose: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls, **overrides: Any) -> Config:
        """Defaults from ``MOTHERSHIP_*`` variables (the chart sets them), overridden by CLI options."""
        env_targets = os.environ.get("MOTHERSHIP_ALLOWED_TARGETS", "")
        base: dict[str, Any] = {
            "allowed_targets": tuple(t.strip() for t in env_targets.split(",") if t.strip()),
            "operator_namespace": os.environ.get("MOTHERSHIP_NAMESPACE") or cls.operator_namespace,
            "worker_image": os.environ.get("MOTHERSHIP_WORKER_IMAGE") or cls.worker_image,
        }
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)


def settings(config: Config) -> kopf.OperatorSettings:
    """kopf's settings for Mothership; every deviation from kopf's defaults is explained here."""
    s = kopf.OperatorSettings()
    # status is ours and structural: kopf keeps its bookkeeping in annotations under our prefix.
    s.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    s.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration"
    )
    s.persistence.finalizer = FINALIZER
    # Handlers' INFO-and-above log lines become Events a tenant sees in `kubectl describe`.
    s.posting.enabled = True
    s.posting.loggers = True
    s.posting.level = logging.INFO
    s.posting.reporting_component = "mothership"
    s.posting.reporting_instance = os.environ.get("HOSTNAME", "mothership")
    s.posting.event_name_prefix = "mothership-"
    # Watches end on the server's side every ~10 minutes and resume from the last
    # resourceVersion; a client timeout a little longer catches a half-open connection.
    s.watching.server_timeout = 600
    s.watching.client_timeout = 630
    s.watching.connect_timeout = 10
    s.networking.request_timeout = 30
    s.networking.connect_timeout = 10
    s.networking.enforce_retry_after = True
    # Peering: kopf pauses lower-priority replicas; standalone unless asked.
    s.peering.standalone = config.peering is None
    if config.peering is not None:
        s.peering.name = config.peering
        s.peering.priority = config.priority if config.priority is not None else random.randrange(1, 10_000)
        s.peering.clusterwide = not config.namespaces
    return s


class _OnlyOurInfo(logging.Filter):
    """Posting filter: kopf's own INFO chatter stays in the log, not in the tenant's Events.

    With ``posting.loggers`` on, kopf would post "Handler 'app_changed' succeeded."
    and "Creation is processed: 1 succeeded; 0 failed." as an Event for every
    object on every change: two API writes per App that tell a tenant nothing.
    Our handlers' INFO lines, and every WARNING and ERROR (kopf's "failed
    temporarily: ..." included), are still posted.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        return f"{os.sep}kopf{os.sep}" not in record.pathname


def quiet_kopf_chatter() -> bool:
    """Attach :class:`_OnlyOurInfo` to kopf's Event poster; False if kopf's layout changed."""
    found = False
    for handler in logging.getLogger("kopf.objects").handlers:
        if type(handler).__name__ == "K8sPoster":
            handler.addFilter(_OnlyOurInfo())
            found = True
    return found


# --- /healthz and /metrics ----------------------------------------------------------


class Probes:
    """One aiohttp server: ``/healthz`` (kopf liveness semantics) and ``/metrics`` (Prometheus).

    ``/healthz`` answers 503 until kopf reports ready (startup handlers done,
    indexes pre-populated), 200 while the operator task runs, and 503 once it
    has stopped or crashed, so a kubelet restarts a wedged process.
    """

    def __init__(self, ready: asyncio.Event, operator: asyncio.Task[Any] | None = None) -> None:
        self.ready = ready
        self.operator = operator
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    def healthy(self) -> tuple[bool, str]:
        if self.operator is not None and self.operator.done():
            return False, "the operator loop has stopped"
        if not self.ready.is_set():
            return False, "starting"
        return True, "ok"

    async def _healthz(self, request: web.Request) -> web.Response:
        ok, why = self.healthy()
        return web.json_response({"status": why}, status=200 if ok else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self, host: str, port: int) -> int:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        # Short keep-alive and shutdown: an idle scraper's connection must not hold the process
        # (kopf waits up to 5 s for every task it did not start, then we wait for open connections).
        self._runner = web.AppRunner(app, access_log=None, keepalive_timeout=5, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


# --- Running ------------------------------------------------------------------------


def register_handlers() -> list[str]:
    """Import the handler modules so their decorators register with kopf's default registry."""
    loaded = []
    for name in HANDLER_MODULES:
        importlib.import_module(name)
        loaded.append(name)
    return loaded


async def operate(config: Config, *, stop: asyncio.Event | None = None) -> None:
    """Run kopf and the probe server until ``stop`` is set or SIGINT/SIGTERM arrives.

    kopf runs in this very task, not a child one: at exit kopf waits 5 s for every
    task it did not start and that did not exist before it, so a wrapper task
    (or a stop flag nobody sets) would delay every shutdown by those 5 s.
    """
    modules = register_handlers()
    metrics.initialize()
    if not quiet_kopf_chatter():
        logger.warning("kopf's event poster not found: kopf's INFO chatter will be posted as Events")
    kube = Kube.connect()
    memo = kopf.Memo(kube=kube, config=config)
    ready = asyncio.Event()
    probes = Probes(ready, asyncio.current_task())
    port = await probes.start(config.host, config.port)
    logger.info("serving /healthz and /metrics on %s:%d; handlers from %s", config.host, port,
                ", ".join(modules))
    try:
        await kopf.operator(
            settings=settings(config),
            standalone=config.peering is None,
            peering_name=config.peering,
            priority=config.priority,
            clusterwide=not config.namespaces,
            namespaces=list(config.namespaces),
            ready_flag=ready,
            stop_flag=stop,
            memo=memo,
        )
    finally:
        ready.clear()
        await probes.stop()
        await kube.close()
        logger.debug("probe server and API client closed")


def run(config: Config) -> None:
    """The blocking entry point of ``mothership operator`` (uvloop when installed)."""
    kopf.configure(verbose=config.verbose)
    try:
        import uvloop
    except ImportError:
        asyncio.run(operate(config))
    else:
        uvloop.run(operate(config))
