"""WebSocket sessions of virtual users, on picows.

Why picows: measured on one core with uvloop, picows echoes about 110k
messages/s against 75k for aiohttp and 45k for websockets; its listener
callbacks run straight from the C frame parser, so the engine's per-message
cost is the few counter adds below (bench/ws_msgs.py keeps us honest).

A session: handshake (extra headers, subprotocols offered in
Sec-WebSocket-Protocol) within ``connectTimeout``; then messages sent every
``interval``, or, with ``interval: 0s``, the next one as soon as the reply to
the previous arrives; replies checked against ``expect`` (echo: equal to
what was sent; pattern: a regex match; any; none); optional pings (a ping
still unanswered a whole interval later is a ``protocol`` error); after
``hold`` (or when the engine stops) a normal close with code 1000.

Round trips are only reported when a reply can be paired with the message it
answers, timed from the message's scheduled send:

* with a ``{seq}`` placeholder in ``message``, each message carries a decimal
  id unique across the test's workers (``SeqIds``), and a reply is paired
  with the unanswered message whose id it contains, found by the text around
  ``{seq}`` (exactly, for ``expect: echo``; case-insensitively anywhere in the
  reply otherwise). In a chat room every session receives everyone's
  messages; only its own are round trips.
* without it, only ``expect: echo`` pairs, first in first out (an echo
  server answers in order); ``any`` and ``pattern`` count replies but report
  no latency, since "the next message from anyone" is not a round trip.

At most ``MAX_UNANSWERED`` messages per session wait for their reply; past
that the oldest is forgotten and its reply, if it comes, reports nothing.

What is recorded (Stats): sessions started, connect time, handshake failures
(refused -> connect, timeout -> timeout, no 101 -> status, still pending when
the run ends -> interrupted, anything else -> protocol), open connections,
messages and payload bytes both ways, round-trip latency of paired replies
(above), abnormal closures (the peer vanished without a close frame: 1006). A
session counts at most one error, so the error rate stays a ratio.

This module knows nothing of load models, the coordinator or Kubernetes.
"""

from __future__ import annotations

import asyncio
import math
import re
import ssl
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from picows import (
    WSCloseCode,
    WSError,
    WSFrame,
    WSInvalidStatusError,
    WSListener,
    WSMsgType,
    WSTransport,
    ws_connect,
)

from ..api.common import parse_duration
from ..api.loadtest import WebSocketSession, WsExpect, wire_path
from ..api.vocabulary import ErrorClass
from .histogram import _SHIFT, _TWICE_SUB
from .histogram import BUCKETS as _BUCKETS
from .histogram import LOWEST as _LOWEST
from .histogram import SUB_BUCKETS as _SUB
from .stats import Stats

Clock = Callable[[], float]

READ_BUFFER_BYTES = 2048
"""picows grows its read buffer on demand; starting small keeps 20k idle sessions under 1 GiB."""

_frexp = math.frexp
_int = int
_TEXT = WSMsgType.TEXT
_BINARY = WSMsgType.BINARY
_CLOSE = WSMsgType.CLOSE
_PONG = WSMsgType.PONG

SEQ = "{seq}"
"""The placeholder in ``websocket.message`` replaced by each message's sequence id."""
MAX_UNANSWERED = 1024
"""Messages a session keeps waiting for their reply; a silent peer cannot grow memory past this."""


class SeqIds:
    """Sequence ids unique across one test: worker ``index`` of ``count`` hands out index, index + count, ...

    One per worker, shared by all its sessions and scenarios, because in a chat
    room every session of every worker receives everyone's messages: an id must
    name exactly one sent message.
    """

    __slots__ = ("_next", "_step")

    def __init__(self, index: int = 0, count: int = 1) -> None:
        self._next = index
        self._step = count

    def take(self) -> bytes:
        n = self._next
        self._next = n + self._step
        return b"%d" % n


@dataclass(frozen=True)
class PreparedSession:
    """A WebSocketSession resolved once per scenario: URL, payload bytes, seconds, compiled pattern."""

    url: str
    headers: tuple[tuple[str, str], ...]
    payload: bytes
    interval: float
    """Seconds between messages; 0 sends the next when the reply arrives."""
    expect: WsExpect
    pattern: re.Pattern[bytes] | None
    hold: float
    ping_interval: float
    connect_timeout: float
    ssl: ssl.SSLContext | None
    parts: tuple[bytes, ...] = ()
    """``message`` split at each ``{seq}``; empty without one (``payload`` is sent as is)."""
    seq_exact: re.Pattern[bytes] | None = None
    """A reply that is exactly a message sent, the id in group 1 (``expect: echo`` with ``{seq}``)."""
    seq_find: re.Pattern[bytes] | None = None
    """The text around ``{seq}`` anywhere in a reply, any case, the id in group 1."""
    ids: SeqIds | None = None
    """This worker's id source, shared by its sessions; None without ``{seq}``."""


def ws_url(base_url: str, path: str) -> str:
    """The ws:// or wss:// URL of ``path`` under ``base_url`` (http becomes ws, https becomes wss).

    Non-ASCII in the path is percent-encoded here, so the URL is ASCII and picows
    sends it as it is (for a non-ASCII URL it would quote ``%`` again).
    """
    parts = urlsplit(base_url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, wire_path(parts.path.rstrip("/") + path), "", ""))


def seq_patterns(parts: tuple[bytes, ...]) -> tuple[re.Pattern[bytes], re.Pattern[bytes]]:
    """(exact, find) regexes over replies for a message split at ``{seq}``; group 1 is the id.

    The id is found by the literal text around it, so digits elsewhere in the
    message (or the reply) are never taken for an id; a second ``{seq}`` must
    hold the same id (a backreference).
    """
    body = re.escape(parts[0]) + rb"(\d+)" + rb"\1".join(re.escape(p) for p in parts[1:])
    return re.compile(body, re.DOTALL), re.compile(body, re.DOTALL | re.IGNORECASE)


def prepare_session(base_url: str, session: WebSocketSession,
                    ssl_context: ssl.SSLContext | None = None, ids: SeqIds | None = None) -> PreparedSession:
    """Resolve ``session`` once; ``ids`` is the worker's id source for ``{seq}`` (a private one if None)."""
    headers = list(session.headers.items())
    if session.subprotocols:
        headers.append(("Sec-WebSocket-Protocol", ", ".join(session.subprotocols)))
    url = ws_url(base_url, session.path)
    payload = session.message.encode()
    parts: tuple[bytes, ...] = ()
    seq_exact = seq_find = None
    if SEQ.encode() in payload:
        parts = tuple(payload.split(SEQ.encode()))
        seq_exact, seq_find = seq_patterns(parts)
        ids = ids or SeqIds()
    else:
        ids = None
    return PreparedSession(
        url=url,
        headers=tuple(headers),
        payload=payload,
        interval=parse_duration(session.interval),
        expect=session.expect,
        pattern=re.compile(session.pattern.encode()) if session.pattern else None,
        hold=parse_duration(session.hold),
        ping_interval=parse_duration(session.ping_interval) if session.ping_interval else 0.0,
        connect_timeout=parse_duration(session.connect_timeout),
        ssl=(ssl_context or ssl.create_default_context()) if url.startswith("wss:") else None,
        parts=parts,
        seq_exact=seq_exact,
        seq_find=seq_find,
        ids=ids,
    )


def drop_tracebacks(exc: BaseException | None) -> None:
    """Cut the tracebacks of ``exc`` and the exceptions it chains.

    A failed connect's exception holds frames (asyncio's and picows's) whose
    locals hold the exception again: a reference cycle per failed handshake,
    about 75 objects that only a full collection frees, and full collections
    are rare during a run (``gcpause``). Cut, they are freed at once.
    """
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if e is not None and id(e) not in seen:
            seen.add(id(e))
            e.__traceback__ = None
            todo += (e.__cause__, e.__context__)


class StopSignal(asyncio.Event):
    """An Event that also calls registered wakers when set.

    Thousands of held sessions each need to notice the end of the test; a
    waker per session costs a set entry, where a task per session blocked on
    ``Event.wait`` cost about 2 KiB each (bench/ws_msgs.py --hold-vus).
    """

    def __init__(self) -> None:
        super().__init__()
        self.wakers: set[Callable[[], None]] = set()

    def set(self) -> None:
        super().set()
        for wake in list(self.wakers):
            wake()


class _SessionListener(WSListener):
    """Per-connection callbacks; the hot path is ``on_ws_frame`` for data frames."""

    def __init__(self, runner: WsSession) -> None:
        self.r = runner

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        msg_type = frame.msg_type
        r = self.r
        if msg_type is _TEXT or msg_type is _BINARY:
            if r.fast_echo and frame.get_payload_as_memoryview() == r.payload and r.sent_at:
                # The as-fast-as-echoed hot path, inlined: what Stats.ws_received,
                # Histogram.record and Stats.ws_sent do, without their calls.
                # bench/ws_msgs.py, CPU per message, engine vs bare picows (medians
                # of 4 interleaved runs on a loaded 2-core box): 15.1 vs 11.4 us
                # through the calls; see the commit for the inlined figure.
                t = r.now()
                stats = r.stats
                size = frame.payload_size
                stats.ws_msgs_received += 1
                stats.ws_bytes_received += size
                lat = t - r.sent_at.popleft()
                h = r.latency
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
                if not r.closing:
                    r.sent_at.append(t)  # scheduled: as soon as the reply is in
                    transport.send(_TEXT, r.payload)
                    stats.ws_msgs_sent += 1
                    stats.ws_bytes_sent += r.size
                return
            r.on_message(transport, frame)
        elif msg_type is _CLOSE:
            r.close_code = frame.get_close_code()
            if not transport.is_close_frame_sent:
                transport.send_close(WSCloseCode.OK)
            transport.disconnect()
        elif msg_type is _PONG:
            r.pongs += 1

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.r.on_disconnected()


class WsSession:
    """One session of one virtual user: connect, exchange, hold, close. Await ``run()``."""

    def __init__(self, prepared: PreparedSession, scenario_index: int, stats: Stats,
                 now: Clock, stopping: StopSignal) -> None:
        self.p = prepared
        self.stats = stats.ws_for(scenario_index)
        """The scenario's WebSocket row: it records like a Stats, per scenario."""
        self.now = now
        self.stopping = stopping
        self.transport: WSTransport | None = None
        self.sent_at: deque[float] = deque()
        """Scheduled send times of unanswered messages, oldest first (``expect: echo`` without ``{seq}``)."""
        self.forgotten = 0
        """Replies still due for messages dropped from ``sent_at``; each pairs with nothing."""
        self.pending: dict[bytes, float] = {}
        """Unanswered sequence ids and their scheduled send times, oldest first (with ``{seq}``)."""
        self.has_sent = False
        self.close_code: WSCloseCode | None = None
        self.closing = False
        self.errored = False
        self.pongs = 0
        self.disconnected = False
        self._gone: asyncio.Future[None] | None = None
        """Resolved when the connection is gone (set in ``on_disconnected``)."""
        self._wakeup: asyncio.Future[None] | None = None
        """What the exchange loop sleeps on: a timer, the stop signal or the disconnect resolve it."""
        self.connected = False
        self._fast = prepared.interval <= 0 and prepared.expect is not WsExpect.NONE
        self.fast_echo = self._fast and prepared.expect is WsExpect.ECHO and prepared.ids is None
        """Replies go straight back out: the listener's inlined hot path applies."""
        self.payload = prepared.payload
        self.size = len(prepared.payload)
        self.latency = self.stats.ws_msg_latency

    # --- callbacks ------------------------------------------------------------

    def on_message(self, transport: WSTransport, frame: WSFrame) -> None:
        p = self.p
        stats = self.stats
        t = self.now()
        size = frame.payload_size
        expect = p.expect
        if expect is WsExpect.NONE:
            stats.ws_received(size, None)
            return
        latency = None
        paired = False
        if p.ids is None:
            if expect is WsExpect.ECHO:
                ok = frame.get_payload_as_memoryview() == p.payload
                if ok and self.sent_at:  # an echo server answers in order: FIFO pairs
                    if self.forgotten:
                        self.forgotten -= 1
                    else:
                        latency = t - self.sent_at.popleft()
            elif expect is WsExpect.PATTERN:
                ok = p.pattern is not None and p.pattern.search(frame.get_payload_as_bytes()) is not None
            else:
                ok = True
            paired = ok
        else:
            data = frame.get_payload_as_bytes()
            if expect is WsExpect.ECHO:
                assert p.seq_exact is not None
                m = p.seq_exact.fullmatch(data)
                ok = m is not None
            else:
                ok = expect is WsExpect.ANY or (p.pattern is not None and p.pattern.search(data) is not None)
                assert p.seq_find is not None
                m = p.seq_find.search(data) if ok else None
            if m is not None:
                sent = self.pending.pop(m.group(1), None)
                if sent is not None:
                    latency = t - sent
                    paired = True
        if not ok and self.has_sent and not self.errored:
            self.errored = True
            stats.error(ErrorClass.PROTOCOL)
        stats.ws_received(size, latency)
        if self._fast and paired and not self.closing:
            self.send(transport, t)

    def send(self, transport: WSTransport, scheduled: float) -> None:
        """Send the next message, remembering ``scheduled`` (its planned send time) to pair its reply."""
        p = self.p
        ids = p.ids
        if ids is None:
            payload = p.payload
            if p.expect is WsExpect.ECHO:
                sent_at = self.sent_at
                if len(sent_at) >= MAX_UNANSWERED:
                    sent_at.popleft()
                    self.forgotten += 1
                sent_at.append(scheduled)
        else:
            seq = ids.take()
            payload = seq.join(p.parts)
            if p.expect is not WsExpect.NONE:
                pending = self.pending
                if len(pending) >= MAX_UNANSWERED:
                    del pending[next(iter(pending))]
                pending[seq] = scheduled
        transport.send(_TEXT, payload)
        self.has_sent = True
        self.stats.ws_sent(len(payload))

    def on_disconnected(self) -> None:
        if self.connected:
            abnormal = self.close_code is None and not self.closing
            self.stats.ws_closed(abnormal, count_error=not self.errored)
            if abnormal:
                self.errored = True
            self.connected = False
        self.disconnected = True
        self._wake()
        if self._gone is not None and not self._gone.done():
            self._gone.set_result(None)

    def _wake(self) -> None:
        w = self._wakeup
        if w is not None and not w.done():
            w.set_result(None)

    # --- the session ----------------------------------------------------------

    def _fail_handshake(self, error_class: ErrorClass, exc: BaseException) -> None:
        self.errored = True
        self.stats.ws_handshake_failed(error_class)
        drop_tracebacks(exc)

    async def run(self) -> None:
        """Run the whole session; returns when it is closed. Cancellation aborts the connection."""
        p = self.p
        stats = self.stats
        stats.ws_session_started()
        t0 = self.now()
        try:
            transport, _ = await asyncio.wait_for(
                ws_connect(lambda: _SessionListener(self), p.url, ssl_context=p.ssl,
                           websocket_handshake_timeout=p.connect_timeout,
                           extra_headers=p.headers or None, max_redirects=0,
                           read_buffer_init_size=READ_BUFFER_BYTES, logger_name="mothership"),
                p.connect_timeout + 0.5)
        except asyncio.CancelledError:
            # the run ended (duration + gracefulStop) with the handshake unanswered: a failure
            # (recorded here, not by _fail_handshake: the cancellation re-raised keeps its traceback)
            self.errored = True
            stats.ws_handshake_failed(ErrorClass.INTERRUPTED)
            raise
        except TimeoutError as exc:
            self._fail_handshake(ErrorClass.TIMEOUT, exc)
            return
        except WSInvalidStatusError as exc:
            self._fail_handshake(ErrorClass.STATUS, exc)
            return
        except (ConnectionError, ssl.SSLError, OSError) as exc:
            self._fail_handshake(ErrorClass.CONNECT, exc)
            return
        except (WSError, ValueError) as exc:
            self._fail_handshake(ErrorClass.PROTOCOL, exc)
            return
        self.transport = transport
        self.connected = True
        stats.ws_connected(self.now() - t0)
        if transport.is_disconnected:  # dropped before we looked
            self.on_disconnected()
        try:
            await self._exchange(transport)
        finally:
            if not self.disconnected:
                self.closing = True
                transport.disconnect(graceful=False)
                self.on_disconnected()

    async def _exchange(self, transport: WSTransport) -> None:
        p = self.p
        loop = asyncio.get_running_loop()
        end = self.now() + p.hold
        stopping = self.stopping
        stopping.wakers.add(self._wake)
        try:
            if self._fast and not self.disconnected:
                self.send(transport, self.now())
            next_send = self.now() if not self._fast and p.interval > 0 else None
            if p.expect is WsExpect.NONE and p.interval <= 0:
                next_send = self.now()  # send-only at full speed: one message per loop turn
            next_ping = self.now() + p.ping_interval if p.ping_interval > 0 else None
            pings_sent = 0
            while not self.disconnected and not stopping.is_set():
                t = self.now()
                if t >= end:
                    break
                if next_send is not None and t >= next_send:
                    self.send(transport, next_send)  # a late loop shows in the latency
                    next_send += p.interval
                    if next_send <= t:
                        next_send = t + p.interval
                if next_ping is not None and t >= next_ping:
                    if pings_sent - self.pongs >= 2 and not self.errored:
                        self.errored = True  # a ping went unanswered for a whole interval
                        self.stats.error(ErrorClass.PROTOCOL)
                    transport.send_ping()
                    pings_sent += 1
                    next_ping += p.ping_interval
                wake = min(x for x in (end, next_send, next_ping) if x is not None)
                self._wakeup = loop.create_future()
                timer = loop.call_later(max(wake - self.now(), 0.0), self._wake)
                try:
                    await self._wakeup
                finally:
                    timer.cancel()
                    self._wakeup = None
        finally:
            stopping.wakers.discard(self._wake)
        if not self.disconnected:
            self.closing = True
            self._gone = loop.create_future()
            transport.send_close(WSCloseCode.OK)
            try:
                await asyncio.wait_for(self._gone, p.connect_timeout)
            except TimeoutError:
                transport.disconnect(graceful=False)
