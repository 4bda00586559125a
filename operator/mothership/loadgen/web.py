"""The live dashboard: the report page served on 127.0.0.1 while a local test runs, and after.

Why this exists: ``loadtest run --web`` should show the same page as
``--report``, updating every second, without a Prometheus or Grafana. The
page polls itself (``report.SCRIPT``): one GET a second renders the latest
``Result`` again, which is cheap next to the coordinator's merge and needs no
connection state (server-sent events would need one per tab).

Bound to 127.0.0.1 only: the page shows the spec and worker URLs.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web


class ReportServer:
    """Serves ``render()`` at ``/`` on 127.0.0.1:``port`` (0: a free port; ``url`` says which)."""

    def __init__(self, render: Callable[[], str], port: int = 8090, host: str = "127.0.0.1") -> None:
        self.render = render
        self.port = port
        self.host = host
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/", self._page)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        port = self.port
        for address in self._runner.addresses:  # the bound (host, port): the real port when asked for 0
            port = int(address[1])
        self.url = f"http://{self.host}:{port}/"
        return self.url

    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(text=self.render(), content_type="text/html",
                            headers={"Cache-Control": "no-store"})

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
