"""What a validated spec puts on the wire: one request per request, headers as written, nothing smuggled.

The model refuses CR, LF and other control characters in header names, header
values and paths (tests/api/test_header_hygiene.py). Here the property is checked
on the bytes themselves: for any spec the model accepts, the pre-encoded request
is ASCII up to its blank line, and an HTTP parser (llhttp, as in Node and many
proxies) reads from two copies of it exactly two requests, with the spec's path
and headers and nothing more. Non-ASCII in a path reaches a real socket
percent-encoded, over HTTP and in the WebSocket handshake.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import httptools
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from picows.url import parse_url
from pydantic import ValidationError

from mothership.api.loadtest import HttpRequest, WebSocketSession, wire_path
from mothership.loadgen.engine import clock_for
from mothership.loadgen.http import HttpClient, parse_target, prepare
from mothership.loadgen.stats import Stats
from mothership.loadgen.ws import StopSignal, WsSession, prepare_session

TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
HOSTILE = "\r\n\t\x00\x0b\x7f\x85 :;\"#%?é東"
text = st.text(st.sampled_from(HOSTILE + "aZ0-_~"), max_size=8)
clean_names = st.from_regex(r"\A[!#$%&'*+.^_`|~0-9A-Za-z-]{1,8}\Z")
clean_values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.just("\t"), max_size=12)
# Mostly what validates (so the property is about real requests), with hostile text mixed in.
names = st.one_of(clean_names, text,
                  st.sampled_from(["Host", "host", "Content-Length", "Transfer-Encoding", "Accept"]))
values = st.one_of(clean_values, text)
header_maps = st.builds(lambda clean, odd: clean | odd,
                        st.dictionaries(clean_names, clean_values, max_size=4),
                        st.one_of(st.just({}), st.dictionaries(names, values, max_size=1)))
clean_paths = st.text(st.characters(exclude_categories=["Cc", "Cs"], exclude_characters=" #"), max_size=8)
paths = st.builds(lambda rest: "/" + rest, st.one_of(clean_paths, clean_paths, text))
bodies = st.one_of(st.none(), st.text(max_size=20), st.just("0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n"))


class Parsed:
    """What a server's parser reads from some bytes: each request's URL, headers and body."""

    def __init__(self, data: bytes) -> None:
        self.requests: list[dict[str, Any]] = []
        self._current: dict[str, Any] = {}
        parser = httptools.HttpRequestParser(self)
        parser.feed_data(data)

    def on_message_begin(self) -> None:
        self._current = {"url": b"", "headers": [], "body": b""}

    def on_url(self, url: bytes) -> None:
        self._current["url"] += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._current["headers"].append((name, value))

    def on_body(self, body: bytes) -> None:
        self._current["body"] += body

    def on_message_complete(self) -> None:
        self.requests.append(self._current)


def validated(fields: dict[str, Any]) -> HttpRequest | None:
    try:
        return HttpRequest.model_validate(fields)
    except ValidationError:
        return None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(method=st.sampled_from(["GET", "POST", "HEAD", "DELETE"]), path=paths,
       headers=header_maps, body=bodies)
def test_a_validated_request_is_one_request_with_the_specs_path_and_headers(
        method: str, path: str, headers: dict[str, str], body: str | None) -> None:
    request = validated({"method": method, "path": path, "headers": headers, "body": body})
    if request is None:
        return  # refused at its field (tests/api says which); nothing reaches the wire
    target = parse_target("http://127.0.0.1:8080/base")
    data = prepare(target, request).data
    head, blank, rest = data.partition(b"\r\n\r\n")
    assert blank and rest == (body or "").encode()
    assert head.isascii()
    lines = head.split(b"\r\n")
    assert all(b"\r" not in line and b"\n" not in line and b"\x00" not in line for line in lines)
    request_line = lines[0].split(b" ")
    assert request_line == [method.encode(), ("/base" + wire_path(path)).encode(), b"HTTP/1.1"]

    parsed = Parsed(data + data)  # pipelined twice: the parser must find exactly two requests
    assert len(parsed.requests) == 2
    for seen in parsed.requests:
        assert seen["url"] == request_line[1]
        assert seen["body"] == (body or "").encode()
        sent = seen["headers"]
        assert all(TOKEN.fullmatch(name) for name, _ in sent)
        lowered = [name.lower() for name, _ in sent]
        assert lowered.count(b"host") == 1 and b"transfer-encoding" not in lowered
        assert lowered.count(b"content-length") <= 1
        # Leading and trailing SP/HTAB around a value are optional whitespace, not the value
        # (RFC 9110, 5.5); parsers differ on whether they keep the trailing part, so compare without.
        received = [(n, v.strip(b" \t")) for n, v in sent]
        for name, value in headers.items():
            assert (name.encode(), value.strip(" \t").encode()) in received


@settings(max_examples=200, deadline=None)
@given(path=paths, headers=header_maps,
       subprotocols=st.lists(st.one_of(text, st.sampled_from(["chat", "v2.json"])), max_size=2))
def test_a_validated_websocket_session_has_an_ascii_url_and_clean_handshake_headers(
        path: str, headers: dict[str, str], subprotocols: list[str]) -> None:
    try:
        session = WebSocketSession.model_validate({"path": path, "headers": headers,
                                                   "subprotocols": subprotocols})
    except ValidationError:
        return
    prepared = prepare_session("http://127.0.0.1:8080/base", session)
    assert prepared.url.isascii() and not re.search(r"[\x00-\x20\x7f#]", prepared.url)
    # picows sends the path as built, except an empty query (a lone "?"), which it drops.
    assert parse_url(prepared.url).resource_name == ("/base" + wire_path(path)).removesuffix("?")
    for name, value in prepared.headers:
        assert TOKEN.fullmatch(name.encode())
        assert value.isascii() and not re.search(r"[\x00-\x08\x0a-\x1f\x7f]", value)


# --- on a real socket ----------------------------------------------------------


class Recorder(asyncio.Protocol):
    """A server that keeps the request head it receives and answers with a fixed reply."""

    def __init__(self, heads: list[bytes], reply: bytes) -> None:
        self.heads, self.reply, self.buffer = heads, reply, b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if b"\r\n\r\n" in self.buffer:
            head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            self.heads.append(head)
            assert self.transport is not None
            self.transport.write(self.reply)


async def recording_server(reply: bytes) -> AsyncIterator[tuple[str, list[bytes]]]:
    heads: list[bytes] = []
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Recorder(heads, reply), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", heads
    finally:
        server.close()


@pytest.fixture
async def ok_server() -> AsyncIterator[tuple[str, list[bytes]]]:
    async for served in recording_server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"):
        yield served


@pytest.fixture
async def refusing_server() -> AsyncIterator[tuple[str, list[bytes]]]:
    async for served in recording_server(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"):
        yield served


async def test_a_non_ascii_path_reaches_the_server_percent_encoded(
        ok_server: tuple[str, list[bytes]]) -> None:
    url, heads = ok_server
    loop = asyncio.get_running_loop()
    target = parse_target(url)
    request = HttpRequest.model_validate({"path": "/café?q=東京", "headers": {"host": "shop.example"}})
    stats = Stats(["s"])
    client = HttpClient(target, [prepare(target, request)], stats, clock_for(loop), loop)
    done = loop.create_future()
    client.iterate(clock_for(loop)(), lambda: done.set_result(None))
    await asyncio.wait_for(done, 5)
    client.close()
    assert stats.errors_total() == 0
    (head,) = heads
    lines = head.split(b"\r\n")
    assert lines[0] == b"GET /caf%C3%A9?q=%E6%9D%B1%E4%BA%AC HTTP/1.1"
    assert [line for line in lines if line.lower().startswith(b"host:")] == [b"host: shop.example"]


async def test_a_non_ascii_websocket_path_is_percent_encoded_in_the_handshake(
        refusing_server: tuple[str, list[bytes]]) -> None:
    url, heads = refusing_server
    loop = asyncio.get_running_loop()
    stats = Stats(["s"])
    session = WebSocketSession.model_validate({"path": "/ws/ü?room=a%20b", "headers": {"X-Token": "t"},
                                               "subprotocols": ["chat"]})
    await asyncio.wait_for(WsSession(prepare_session(url, session), 0, stats, clock_for(loop),
                                     StopSignal()).run(), 5)
    assert stats.snapshot()["errors"] == {"s": {"status": 1}}  # our server refused the upgrade
    (head,) = heads
    lines = head.split(b"\r\n")
    assert lines[0] == b"GET /ws/%C3%BC?room=a%20b HTTP/1.1"
    assert b"X-Token: t" in lines and b"Sec-WebSocket-Protocol: chat" in lines
