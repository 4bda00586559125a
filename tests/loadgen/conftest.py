"""Fixtures for the engine tests: a real, sometimes misbehaving, server on 127.0.0.1.

``target_server`` is an aiohttp app on a random port (in the spirit of httpx's
tests/conftest.py) with well-behaved and misbehaving endpoints, and counters
the tests read to check what the server itself saw. ``refused_url`` points at
a port nobody listens on; ``silent_server`` accepts and never answers.
``tls_files`` makes a throwaway self-signed certificate with the openssl CLI
(the tests that need it skip without it).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import ssl
import subprocess
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import WSMsgType, web


@dataclass
class TargetServer:
    url: str
    """``http://127.0.0.1:PORT`` (or https when served with TLS)."""
    requests: Counter[str] = field(default_factory=Counter)
    """Requests seen, by path (``/status/{code}`` counts under its literal path)."""
    peers: set[tuple[str, int]] = field(default_factory=set)
    """Distinct client (host, port) pairs: the number of TCP connections that sent requests."""
    ws_messages: int = 0

    @property
    def total(self) -> int:
        return sum(self.requests.values())


def _app(state: TargetServer) -> web.Application:
    async def count(request: web.Request) -> None:
        state.requests[request.path] += 1
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer:
            state.peers.add((peer[0], peer[1]))

    async def ok(request: web.Request) -> web.Response:
        await count(request)
        return web.Response(text="ok")

    async def slow(request: web.Request) -> web.Response:
        await count(request)
        await asyncio.sleep(int(request.query.get("ms", "100")) / 1000)
        return web.Response(text="slow")

    async def status(request: web.Request) -> web.Response:
        await count(request)
        return web.Response(status=int(request.match_info["code"]), text="status")

    async def close(request: web.Request) -> web.StreamResponse:
        """Start a response that promises 100 bytes, send 7, then drop the connection."""
        await count(request)
        transport = request.transport
        assert transport is not None
        transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        transport.close()
        raise asyncio.CancelledError  # nothing more to send; aiohttp treats the handler as aborted

    async def garbage(request: web.Request) -> web.StreamResponse:
        """Answer with bytes that are not HTTP."""
        await count(request)
        transport = request.transport
        assert transport is not None
        transport.write(b"SMTP 220 hello\r\n\r\n")
        await asyncio.sleep(0.05)
        transport.close()
        raise asyncio.CancelledError

    async def ws_echo(request: web.Request) -> web.WebSocketResponse:
        await count(request)
        ws = web.WebSocketResponse(protocols=("chat", "superchat"), autoping=True)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                state.ws_messages += 1
                await ws.send_str(msg.data)
            elif msg.type is WSMsgType.BINARY:
                state.ws_messages += 1
                await ws.send_bytes(msg.data)
        return ws

    async def ws_upper(request: web.Request) -> web.WebSocketResponse:
        await count(request)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                await ws.send_str(msg.data.upper())
        return ws

    async def ws_drop(request: web.Request) -> web.WebSocketResponse:
        """Accept, answer one message, then close TCP without a close frame (the client sees 1006)."""
        await count(request)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        msg = await ws.receive()
        if msg.type is WSMsgType.TEXT:
            await ws.send_str(msg.data)
        await asyncio.sleep(0.02)
        if request.transport is not None:
            request.transport.abort()
        return ws

    async def ws_reject(request: web.Request) -> web.Response:
        await count(request)
        return web.Response(status=403, text="forbidden")

    app = web.Application()
    app.add_routes([
        web.get("/ok", ok), web.post("/ok", ok),
        web.get("/slow", slow),
        web.get("/status/{code}", status),
        web.get("/close", close),
        web.get("/garbage", garbage),
        web.get("/ws/echo", ws_echo),
        web.get("/ws/upper", ws_upper),
        web.get("/ws/drop", ws_drop),
        web.get("/ws/reject", ws_reject),
    ])
    return app


@contextlib.asynccontextmanager
async def serve(ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[TargetServer]:
    state = TargetServer(url="")
    runner = web.AppRunner(_app(state), access_log=None, handle_signals=False, handler_cancellation=True,
                           shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = runner.addresses[0][1]
    state.url = f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"
    try:
        yield state
    finally:
        await runner.cleanup()


@pytest.fixture
async def target_server() -> AsyncIterator[TargetServer]:
    """The aiohttp target on a random 127.0.0.1 port, on the test's own loop."""
    async with serve() as state:
        yield state


@pytest.fixture
def refused_url() -> str:
    """An http URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@dataclass
class SilentServer:
    """Accepts TCP connections, reads what is sent and never answers (a hung target)."""

    url: str
    connections: int = 0
    """Connections accepted so far."""


@contextlib.asynccontextmanager
async def serve_silent() -> AsyncIterator[SilentServer]:
    state = SilentServer(url="")
    held: set[asyncio.StreamWriter] = set()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        held.add(writer)
        with contextlib.suppress(ConnectionError):
            while await reader.read(65536):
                pass
        held.discard(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    state.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield state
    finally:
        server.close()
        for writer in list(held):
            writer.transport.abort()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 1)


@pytest.fixture
async def silent_server() -> AsyncIterator[SilentServer]:
    """A 127.0.0.1 listener that accepts connections and never sends a byte back."""
    async with serve_silent() as state:
        yield state


@dataclass
class TlsFiles:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsFiles]:
    """A self-signed certificate for 127.0.0.1 made with the openssl CLI (skip without it)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl CLI is needed to make a test certificate")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )
    yield TlsFiles(cert, key)


@pytest.fixture
async def tls_server(tls_files: TlsFiles) -> AsyncIterator[TargetServer]:
    async with serve(tls_files.server_context()) as state:
        yield state
