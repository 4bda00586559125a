"""The bundled demo target: a small aiohttp app to aim a first load test at.

Why it exists: the quickstart needs something to load without a cluster or a
second project, and the tests need a real server whose own counts can be
compared with what the workers report ("totals match what the target
counted"). It serves a little of everything a load test touches:

- ``GET /``: a small HTML page;
- ``GET /api/items`` (JSON list) and ``POST /api/items`` (store one, 201);
- ``GET /slow?ms=N``: answers after N milliseconds (at most ``MAX_SLOW_MS``);
- ``GET /status/{code}``: answers with that status;
- ``GET /ws/echo``: a WebSocket that echoes every message;
- ``GET /ws/chat?room=R``: a broadcast room; every message goes to every
  member, the sender included;
- ``GET /stats``: what it served so far (see ``DemoTarget.stats``);
  ``DELETE /stats`` zeroes the counts.

Counts are by path class, never by full URL, so they stay small. ``/stats``
does not count itself. A WebSocket handshake counts as a session, not as an
HTTP request, matching how the engine counts ``http_reqs`` and ``ws_sessions``.

This module knows nothing of the engine, the worker or the coordinator.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import WSMsgType, web

logger = logging.getLogger(__name__)

MAX_SLOW_MS = 30_000
"""The longest ``/slow`` will wait, in milliseconds."""
MAX_ITEMS = 100
"""``/api/items`` keeps only the newest items, so a long POST test does not grow memory."""

INDEX_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>Mothership demo target</title></head>
<body><h1>Mothership demo target</h1>
<p>Aim <code>mothership loadtest run</code> here. Endpoints: /api/items, /slow?ms=, /status/{code},
/ws/echo, /ws/chat, /stats.</p></body></html>
"""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def path_class(path: str) -> str:
    """The bounded label a request path counts under: index, items, slow, status, stats or other."""
    if path == "/":
        return "index"
    if path == "/api/items":
        return "items"
    if path == "/slow":
        return "slow"
    if path.startswith("/status/"):
        return "status"
    if path == "/stats":
        return "stats"
    if path.startswith("/ws/"):
        return "ws"
    return "other"


class DemoTarget:
    """The demo app and the counts of what it served since the start (or the last reset)."""

    def __init__(self) -> None:
        self.http_by_path: Counter[str] = Counter()
        self.http_by_status: Counter[int] = Counter()
        self.ws_by_path: Counter[str] = Counter()
        self.ws_messages_received = 0
        self.ws_messages_sent = 0
        self.ws_bytes_received = 0
        self.ws_bytes_sent = 0
        self.items: list[dict[str, Any]] = []
        self.next_id = 1
        self.rooms: dict[str, set[web.WebSocketResponse]] = {}
        self.sockets: set[web.WebSocketResponse] = set()
        """Open WebSocket connections, closed on shutdown so it does not wait for clients."""

    # --- counts -------------------------------------------------------------

    def reset(self) -> None:
        """Zero every count (open WebSocket connections stay open and counted)."""
        self.http_by_path.clear()
        self.http_by_status.clear()
        self.ws_by_path.clear()
        self.ws_messages_received = self.ws_messages_sent = 0
        self.ws_bytes_received = self.ws_bytes_sent = 0

    def stats(self) -> dict[str, Any]:
        """What was served: HTTP requests by path class and status, WebSocket sessions and messages."""
        return {
            "http": {
                "requests": sum(self.http_by_path.values()),
                "byPath": dict(self.http_by_path),
                "byStatus": {str(k): v for k, v in sorted(self.http_by_status.items())},
            },
            "websocket": {
                "sessions": sum(self.ws_by_path.values()),
                "byPath": dict(self.ws_by_path),
                "open": len(self.sockets),
                "messagesReceived": self.ws_messages_received,
                "messagesSent": self.ws_messages_sent,
                "bytesReceived": self.ws_bytes_received,
                "bytesSent": self.ws_bytes_sent,
            },
        }

    # --- app ------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._count])
        app.router.add_get("/", self._index)
        app.router.add_get("/api/items", self._items_get)
        app.router.add_post("/api/items", self._items_post)
        app.router.add_get("/slow", self._slow)
        app.router.add_route("*", "/status/{code}", self._status)
        app.router.add_get("/ws/echo", self._ws_echo)
        app.router.add_get("/ws/chat", self._ws_chat)
        app.router.add_get("/stats", self._stats_get)
        app.router.add_delete("/stats", self._stats_delete)
        app.on_shutdown.append(self._close_sockets)
        return app

    @web.middleware
    async def _count(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        cls = path_class(request.path)
        if cls in ("stats", "ws"):
            return await handler(request)
        self.http_by_path[cls] += 1
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            self.http_by_status[exc.status] += 1
            raise
        self.http_by_status[response.status] += 1
        return response

    async def _index(self, request: web.Request) -> web.Response:
        return web.Response(text=INDEX_HTML, content_type="text/html")

    async def _items_get(self, request: web.Request) -> web.Response:
        return web.json_response({"items": self.items[-20:], "total": len(self.items)})

    async def _items_post(self, request: web.Request) -> web.Response:
        raw = await request.text()
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {"text": raw[:1024]}
        item = {"id": self.next_id, **(body if isinstance(body, dict) else {"value": body})}
        self.next_id += 1
        self.items.append(item)
        del self.items[:-MAX_ITEMS]
        return web.json_response(item, status=201)

    async def _slow(self, request: web.Request) -> web.Response:
        try:
            ms = int(request.query.get("ms", "100"))
        except ValueError:
            raise web.HTTPBadRequest(text="ms must be an integer number of milliseconds") from None
        if not 0 <= ms <= MAX_SLOW_MS:
            raise web.HTTPBadRequest(text=f"ms must be between 0 and {MAX_SLOW_MS}")
        await asyncio.sleep(ms / 1000)
        return web.json_response({"sleptMs": ms})

    async def _status(self, request: web.Request) -> web.Response:
        try:
            code = int(request.match_info["code"])
        except ValueError:
            code = 0
        if not 200 <= code <= 599:
            raise web.HTTPBadRequest(text="status must be between 200 and 599")
        if code in (204, 304):
            return web.Response(status=code)
        return web.Response(status=code, text=f"status {code}\n")

    async def _stats_get(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def _stats_delete(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response(self.stats())

    # --- WebSocket --------------------------------------------------------------

    async def _ws_session(
        self,
        request: web.Request,
        kind: str,
        on_text: Callable[[web.WebSocketResponse, str], Awaitable[None]],
        room: set[web.WebSocketResponse] | None = None,
    ) -> web.WebSocketResponse:
        offered = request.headers.get("Sec-WebSocket-Protocol", "")
        protocols = [p.strip() for p in offered.split(",") if p.strip()]
        ws = web.WebSocketResponse(protocols=protocols[:1])
        await ws.prepare(request)
        self.ws_by_path[kind] += 1
        self.sockets.add(ws)
        if room is not None:
            room.add(ws)
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    self.ws_messages_received += 1
                    self.ws_bytes_received += len(msg.data.encode())
                    await on_text(ws, msg.data)
                elif msg.type is WSMsgType.BINARY:
                    self.ws_messages_received += 1
                    self.ws_bytes_received += len(msg.data)
                    await ws.send_bytes(msg.data)
                    self.ws_messages_sent += 1
                    self.ws_bytes_sent += len(msg.data)
        finally:
            self.sockets.discard(ws)
            if room is not None:
                room.discard(ws)
        return ws

    async def _send(self, ws: web.WebSocketResponse, text: str) -> None:
        if ws.closed:
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.send_str(text)
            self.ws_messages_sent += 1
            self.ws_bytes_sent += len(text.encode())

    async def _ws_echo(self, request: web.Request) -> web.WebSocketResponse:
        return await self._ws_session(request, "echo", self._send)

    async def _ws_chat(self, request: web.Request) -> web.WebSocketResponse:
        room = self.rooms.setdefault(request.query.get("room", "lobby")[:64], set())

        async def broadcast(_: web.WebSocketResponse, text: str) -> None:
            for member in list(room):
                await self._send(member, text)

        return await self._ws_session(request, "chat", broadcast, room)

    async def _close_sockets(self, app: web.Application) -> None:
        for ws in list(self.sockets):
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.close(code=1001, message=b"server shutting down")


@contextlib.asynccontextmanager
async def serve(host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[tuple[str, DemoTarget]]:
    """Run the demo target on the current loop; yields (base URL, target). Port 0 picks a free one."""
    target = DemoTarget()
    runner = web.AppRunner(target.app(), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        yield f"http://{bound_host}:{bound_port}", target
    finally:
        await runner.cleanup()


async def run_forever(host: str, port: int, announce: Callable[[str], None]) -> None:
    """Serve until cancelled, announcing the base URL once listening (``mothership demo-target``)."""
    async with serve(host, port) as (url, _):
        announce(url)
        await asyncio.Event().wait()
