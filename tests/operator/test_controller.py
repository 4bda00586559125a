"""The operator process's own pieces, without a cluster: configuration, kopf settings, probes."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import kopf
import pytest
from typer.testing import CliRunner

from mothership import controller
from mothership.cli import app as cli


def test_environment_gives_defaults_and_options_override_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOTHERSHIP_ALLOWED_TARGETS", "*.example.com, shop.team-b.svc")
    monkeypatch.setenv("MOTHERSHIP_NAMESPACE", "platform")
    monkeypatch.setenv("MOTHERSHIP_WORKER_IMAGE", "registry.local/mothership:1")
    config = controller.Config.from_env()
    assert config.allowed_targets == ("*.example.com", "shop.team-b.svc")
    assert config.operator_namespace == "platform"
    assert config.worker_image == "registry.local/mothership:1"

    config = controller.Config.from_env(worker_image="other:2", allowed_targets=None)
    assert config.worker_image == "other:2"
    assert config.allowed_targets == ("*.example.com", "shop.team-b.svc")


def test_without_environment_the_operator_namespace_is_mothership_system(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MOTHERSHIP_NAMESPACE", raising=False)
    assert controller.Config.from_env().operator_namespace == "mothership-system"


def test_kopf_keeps_its_records_in_mothership_annotations_and_runs_standalone() -> None:
    s = controller.settings(controller.Config())
    assert isinstance(s.persistence.progress_storage, kopf.AnnotationsProgressStorage)
    assert s.persistence.progress_storage.prefix == "mothership.dev"
    assert isinstance(s.persistence.diffbase_storage, kopf.AnnotationsDiffBaseStorage)
    assert s.persistence.finalizer == "mothership.dev/finalizer"
    assert s.peering.standalone is True
    assert s.posting.level == 20  # INFO
    assert s.watching.server_timeout and s.watching.client_timeout
    assert s.watching.client_timeout > s.watching.server_timeout


def test_peering_picks_a_priority_so_one_replica_works_and_the_others_stand_by() -> None:
    s = controller.settings(controller.Config(peering="mothership"))
    assert s.peering.standalone is False
    assert s.peering.name == "mothership"
    assert s.peering.priority > 0
    assert s.peering.clusterwide is True
    assert controller.settings(controller.Config(peering="p", priority=7)).peering.priority == 7


def test_the_cli_parses_every_operator_option(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[controller.Config] = []
    monkeypatch.setattr(controller, "run", seen.append)
    result = CliRunner().invoke(cli, [
        "operator", "--namespace", "a", "-n", "b", "--peering", "ms", "--port", "9090",
        "--allowed-targets", "*.x.com,y.svc", "--worker-image", "img:1", "--verbose", "--no-pod-monitors",
    ])
    assert result.exit_code == 0, result.output
    [config] = seen
    assert (config.namespaces, config.peering, config.port) == (("a", "b"), "ms", 9090)
    assert config.allowed_targets == ("*.x.com", "y.svc")
    assert (config.worker_image, config.verbose, config.pod_monitors) == ("img:1", True, False)


async def test_healthz_is_503_until_ready_200_while_running_503_once_stopped() -> None:
    ready = asyncio.Event()
    loop_task = asyncio.create_task(asyncio.Event().wait())
    probes = controller.Probes(ready, loop_task)
    port = await probes.start("127.0.0.1", 0)
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            async def status(path: str) -> int:
                async with session.get(url + path) as response:
                    await response.read()
                    return response.status

            assert await status("/healthz") == 503
            ready.set()
            assert await status("/healthz") == 200
            assert await status("/metrics") == 200
            loop_task.cancel()
            await asyncio.gather(loop_task, return_exceptions=True)
            assert await status("/healthz") == 503
    finally:
        await probes.stop()


def test_kopfs_own_info_chatter_is_not_posted_but_ours_and_its_warnings_are() -> None:
    only_ours = controller._OnlyOurInfo()

    def record(level: int, path: str) -> logging.LogRecord:
        return logging.LogRecord("kopf.objects", level, path, 1, "msg", None, None)

    assert not only_ours.filter(record(logging.INFO, "/venv/site-packages/kopf/_core/actions/execution.py"))
    assert only_ours.filter(record(logging.WARNING, "/venv/site-packages/kopf/_core/actions/execution.py"))
    assert only_ours.filter(record(logging.INFO, "/src/operator/mothership/apps/handlers.py"))
    assert controller.quiet_kopf_chatter() is True
