"""The HTTP/1.1 client of one virtual user: keep-alive, pre-encoded, callback-driven.

Why it is written this way: the engine's whole cost per request must stay
within 20 % of wrk (bench/http_rps.py). So each HttpRequest is encoded to
bytes once (``prepare``), each virtual user keeps one connection open across
requests and iterations, responses are parsed by httptools (llhttp, C), and an
iteration advances in protocol callbacks rather than by awaiting a future per
request. A request's timeout shares one lazily re-armed timer per connection,
not a timer per request.

Errors are sorted into ``api.vocabulary.ErrorClass``::

    refused / unreachable / TLS failure before sending ... connect
    no complete response within the request's timeout .... timeout
    reset or EOF before the response was complete ......... closed
    malformed response (llhttp refused it) ................ protocol
    a status not in the request's expectStatus ............ status
    still unanswered when the engine ends the run ......... interrupted

A request that finds its reused keep-alive connection closed by the server
before any response byte is retried once on a new connection, like browsers
and curl do, because the server may close idle connections at any time.

Durations come from the engine's clock (``now``): time.monotonic under uvloop,
whose loop.time() is only millisecond-precise, else loop.time() so looptime
can drive tests. This module knows nothing of load models, Stats merging, the
coordinator or Kubernetes.
"""

from __future__ import annotations

import asyncio
import math
import random
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools

from ..api.common import parse_duration
from ..api.loadtest import HttpRequest, wire_path
from ..api.vocabulary import ErrorClass
from .histogram import _SHIFT, _TWICE_SUB
from .histogram import BUCKETS as _BUCKETS
from .histogram import LOWEST as _LOWEST
from .histogram import SUB_BUCKETS as _SUB
from .stats import Stats

_frexp = math.frexp
_int = int

Clock = Callable[[], float]
"""Seconds on a monotonic clock shared by scheduling and measurement."""

USER_AGENT = "mothership-loadgen/0.1"

CONNECT_BACKOFF_FIRST = 0.01
"""Seconds a virtual user pauses after its first failed connect in a row (then doubling)."""
CONNECT_BACKOFF_MAX = 0.5
"""The longest pause after failed connects: a closed port costs each virtual user at most ~2-4 attempts/s."""


def connect_backoff(previous: float) -> tuple[float, float]:
    """After a failed connect: the new backoff (first, then doubling, bounded) and a jittered pause.

    ``previous`` is the backoff after the last failure in a row (0 for none).
    The pause is drawn uniformly from half to all of the backoff, so virtual
    users that failed together do not retry together.
    """
    backoff = min(previous * 2, CONNECT_BACKOFF_MAX) or CONNECT_BACKOFF_FIRST
    return backoff, backoff * (0.5 + 0.5 * random.random())


@dataclass(frozen=True)
class Target:
    """Where requests go, parsed once from the spec's target URL."""

    scheme: str
    """http or https (ws/wss map to these)."""
    host: str
    port: int
    base_path: str
    """Path prefix of the target URL without a trailing slash ('' for none)."""
    ssl: ssl.SSLContext | None

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


def parse_target(url: str, ssl_context: ssl.SSLContext | None = None) -> Target:
    """A Target from ``http[s]://host[:port][/prefix]`` (ws/wss are accepted as http/https).

    ``ssl_context`` overrides the default verifying context for https (tests
    pass one trusting their self-signed certificate).
    """
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    if scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    port = parts.port or (443 if scheme == "https" else 80)
    context = None
    if scheme == "https":
        context = ssl_context or ssl.create_default_context()
    return Target(scheme, parts.hostname, port, parts.path.rstrip("/"), context)


@dataclass(frozen=True, slots=True)
class PreparedRequest:
    """An HttpRequest encoded once: the bytes on the wire and what to check in the reply."""

    data: bytes
    expect: frozenset[int]
    timeout: float
    """Seconds from sending until the response must be complete."""
    think_time: float
    """Seconds to pause after this request before the next one."""
    head: bool
    """A HEAD request: the response has headers only."""
    name: str
    """The row name in results: the spec's ``name``, else ``METHOD path`` (``HttpRequest.row_name``)."""
    size: int
    """len(data): bytes written per request."""
    row: int = 0
    """The Stats row this request records into (``Stats.row``)."""


def prepare(target: Target, request: HttpRequest, row: int = 0) -> PreparedRequest:
    """Encode ``request`` for ``target``: request line, Host, headers, Content-Length, body.

    ``row`` is the Stats row it records into (``Stats.row`` of its scenario and name).

    The model has already refused what could break the head's framing (CR, LF
    and other control characters, non-token header names, non-ASCII header
    values, Content-Length and Transfer-Encoding from the spec); non-ASCII in
    the path is percent-encoded here, so the head is ASCII. A spec header
    replaces a default of the same name in any case, so none is sent twice.
    """
    path = wire_path(target.base_path + request.path)
    given = {k.lower() for k in request.headers}
    defaults = {"Host": target.host_header, "User-Agent": USER_AGENT, "Accept": "*/*"}
    headers = {k: v for k, v in defaults.items() if k.lower() not in given}
    headers.update(request.headers)
    body = (request.body or "").encode()
    if body or request.method in ("POST", "PUT", "PATCH"):
        headers["Content-Length"] = str(len(body))
    head = f"{request.method} {path} HTTP/1.1\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    data = (head + "\r\n").encode("ascii") + body
    return PreparedRequest(
        data=data,
        expect=frozenset(request.expect_status),
        timeout=parse_duration(request.timeout),
        think_time=parse_duration(request.think_time) if request.think_time else 0.0,
        head=request.method == "HEAD",
        name=request.row_name,
        size=len(data),
        row=row,
    )


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection and its response parser.

    The hot path lives here: ``data_received`` feeds llhttp and, once a
    response is complete, hands it to the client. Callbacks of a connection
    the client has given up on are ignored.
    """

    __slots__ = ("client", "complete", "keep_alive", "parser", "transport")

    def __init__(self, client: HttpClient) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.complete = False
        self.keep_alive = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        client = self.client
        if client._conn is not self:
            return
        client._rx += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.complete = True
        except httptools.HttpParserError:
            if client._inflight:
                client._fail(ErrorClass.PROTOCOL)
            return
        if self.complete:
            self.complete = False
            if client._inflight:
                client._finish(self)

    # httptools callbacks (llhttp calls only those defined)
    def on_message_complete(self) -> None:
        """Handled after feed_data returns; keep-alive must be read now (llhttp resets it next)."""
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()

    def eof_received(self) -> bool | None:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.client._lost(self)


class _HeadConnection(_Connection):
    """A connection of a scenario with HEAD requests: their responses end with the headers.

    A separate class so that other connections do not pay for an
    ``on_headers_complete`` callback on every response.
    """

    __slots__ = ()

    def on_headers_complete(self) -> None:
        if self.client._req.head:
            self.complete = True
            self.keep_alive = self.parser.should_keep_alive()


class HttpClient:
    """One virtual user's HTTP side: runs its scenario's requests in order on one keep-alive connection.

    ``iterate(scheduled, on_done)`` runs the requests once and calls
    ``on_done()``; the first request's latency counts from ``scheduled`` (the
    open model's arrival time), later ones from when they were due, but never
    from a time after the actual send: a timer may fire a little early, and a
    latency must not be negative. ``close()`` abandons any request in flight
    and records it as ``interrupted`` (the engine calls it after gracefulStop).

    A failed connect backs off before this virtual user's next request:
    ``CONNECT_BACKOFF_FIRST`` doubling up to ``CONNECT_BACKOFF_MAX``, jittered
    (a uniform draw from half to all of it), reset by the next successful
    connect. Each attempt still counts as one ``connect`` error; without the
    pause, a closed port drew about 25k attempts/s from one worker.

    ``repeat``, when set, is asked at the end of each iteration with the clock
    time; True starts the next iteration at once without calling ``on_done``.
    That is the closed model's fast path: no per-iteration bookkeeping above
    this class (bench/http_rps.py: engine/bare 0.78 -> see the commit).
    """

    def __init__(self, target: Target, requests: list[PreparedRequest],
                 stats: Stats, now: Clock, loop: asyncio.AbstractEventLoop) -> None:
        if not requests:
            raise ValueError("an HttpClient needs at least one request")
        self._target = target
        self._requests = requests
        self._n = len(requests)
        self._durations = stats.durations
        self._protocol = _HeadConnection if any(r.head for r in requests) else _Connection
        self._stats = stats
        self._now = now
        self._loop = loop
        self._conn: _Connection | None = None
        self._connect_task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._on_done: Callable[[], None] | None = None
        self.repeat: Callable[[float], bool] | None = None
        self._i = 0
        self._req = requests[0]
        self._sent_at = 0.0
        self._deadline = 0.0
        self._inflight = False
        self._rx = 0
        self._on_conn = 0  # responses completed on the current connection
        self._retried = False
        self._closed = False
        self._backoff = 0.0
        """Seconds the next failed connect waits before the next request (0: none failed lately)."""
        self.connections_opened = 0
        """Connections this client opened (keep-alive reuse keeps it low)."""

    # --- driving ------------------------------------------------------------

    def iterate(self, scheduled: float, on_done: Callable[[], None]) -> None:
        """Run the requests once, the first due at ``scheduled``; then call ``on_done()``."""
        self._on_done = on_done
        self._i = 0
        now = self._now()
        self._start(scheduled if scheduled < now else now)

    def close(self) -> None:
        """Stop: abort the connection; a request still in flight counts as one ``interrupted`` error.

        The engine calls this at duration + gracefulStop: a request the target
        never answered is a result (it failed), not something to forget.
        """
        if self._inflight and not self._closed:
            self._stats.error(self._req.row, ErrorClass.INTERRUPTED, max(self._now() - self._sent_at, 0.0))
        self._closed = True
        self._inflight = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._connect_task is not None:
            self._connect_task.cancel()
            self._connect_task = None
        conn, self._conn = self._conn, None
        if conn is not None and conn.transport is not None:
            conn.transport.abort()

    def _start(self, scheduled: float) -> None:
        """Send request ``self._i``, due at ``scheduled`` (also the clock time now, or close to it)."""
        if self._closed:
            return
        req = self._req = self._requests[self._i]
        self._sent_at = scheduled
        self._retried = False
        self._deadline = scheduled + req.timeout
        self._inflight = True
        if self._timer is None:
            self._arm_timer()
        conn = self._conn
        if conn is None:
            self._connect()
        else:
            self._rx = 0
            conn.transport.write(req.data)  # type: ignore[union-attr]

    def _send(self) -> None:
        conn = self._conn
        assert conn is not None and conn.transport is not None
        self._rx = 0
        conn.transport.write(self._req.data)

    def _connect(self) -> None:
        self._connect_task = self._loop.create_task(self._open())

    async def _open(self) -> None:
        target = self._target
        try:
            _, conn = await self._loop.create_connection(
                lambda: self._protocol(self), target.host, target.port, ssl=target.ssl,
                server_hostname=target.host if target.ssl else None)
        except asyncio.CancelledError:
            raise
        except (OSError, ssl.SSLError, ssl.CertificateError):
            self._connect_task = None
            if self._inflight:
                self._backoff, pause = connect_backoff(self._backoff)
                self._fail(ErrorClass.CONNECT, pause)
            return
        self._connect_task = None
        self._backoff = 0.0
        if self._closed or not self._inflight:
            if conn.transport is not None:
                conn.transport.close()
            return
        self._conn = conn
        self._on_conn = 0
        self.connections_opened += 1
        self._send()

    # --- timeout: one timer per connection, re-armed lazily ----------------

    def _arm_timer(self) -> None:
        self._timer = self._loop.call_later(max(self._deadline - self._now(), 0.0), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if not self._inflight or self._closed:
            return
        left = self._deadline - self._now()
        if left > 0.0005:
            self._timer = self._loop.call_later(left, self._on_timer)
            return
        if self._connect_task is not None:
            self._connect_task.cancel()
            self._connect_task = None
        self._fail(ErrorClass.TIMEOUT)

    # --- connection callbacks -----------------------------------------------

    def _lost(self, conn: _Connection) -> None:
        if conn is not self._conn:
            return
        self._conn = None
        if not self._inflight or self._closed:
            return
        if self._rx == 0 and self._on_conn > 0 and not self._retried:
            self._retried = True  # the server closed an idle keep-alive connection: retry once
            self._connect()
            return
        self._fail(ErrorClass.CLOSED)

    # --- outcomes -----------------------------------------------------------

    def _finish(self, conn: _Connection) -> None:
        """A complete response on ``conn``: record it, then send the next request (the hot path)."""
        self._inflight = False
        req = self._req
        t = self._now()
        status = conn.parser.get_status_code()
        # Inlined Stats.http and Histogram.record: the calls cost more than the
        # work here (bench/http_rps.py; numbers in the commit that added this).
        stats = self._stats
        row = req.row
        stats.http_counts[row * 6 + (status // 100 if 100 <= status < 600 else 0)] += 1
        stats.http_bytes_sent += req.size
        stats.http_bytes_received += self._rx
        lat = t - self._sent_at
        h = self._durations[row]
        h.count += 1
        h.sum += lat
        if lat < h._min:
            h._min = lat
        if lat > h._max:
            h._max = lat
        if lat >= _LOWEST:
            m, e = _frexp(lat)
            i = (e + _SHIFT) * _SUB + _int(m * _TWICE_SUB)
            if i < _BUCKETS:
                h.counts[i] += 1
            else:
                h.overflow += 1
        else:
            h.underflow += 1
        if status not in req.expect:
            stats.error(row, ErrorClass.STATUS)
        self._on_conn += 1
        if req.head:  # llhttp cannot be told a response has no body: start afresh
            conn.parser = httptools.HttpResponseParser(conn)
        if not conn.keep_alive or req.head:
            self._conn = None
            if conn.transport is not None:
                conn.transport.close()
        if self._closed:
            return
        if req.think_time > 0:
            self._i += 1
            self._loop.call_later(req.think_time, self._continue, t + req.think_time)
            return
        i = self._i + 1
        if i < self._n:
            self._i = i
            self._start(t)
            return
        repeat = self.repeat
        if repeat is not None and repeat(t):
            self._i = 0
            self._start(t)
            return
        self._end_iteration()

    def _fail(self, error_class: ErrorClass, pause: float = 0.0) -> None:
        """Record a request that got no response; the next starts after its think time plus ``pause``."""
        self._inflight = False
        t = self._now()
        self._stats.error(self._req.row, error_class, t - self._sent_at)
        conn, self._conn = self._conn, None
        if conn is not None and conn.transport is not None:
            conn.transport.abort()
        if self._closed:
            return
        think = self._req.think_time + pause
        self._i += 1
        if think > 0:
            self._loop.call_later(think, self._continue, t + think)
        else:
            self._continue(t)

    def _continue(self, scheduled: float) -> None:
        if self._closed:
            return
        now = self._now()
        if scheduled > now:  # the timer fired early: measure from the actual send
            scheduled = now
        if self._i < self._n:
            self._start(scheduled)
            return
        repeat = self.repeat
        if repeat is not None and repeat(scheduled):
            self._i = 0
            self._start(scheduled)
            return
        self._end_iteration()

    def _end_iteration(self) -> None:
        done = self._on_done
        if done is not None:
            done()
