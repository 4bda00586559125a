"""WebSocket sessions against a real local server: echo, patterns, pings, 1006 and refused handshakes."""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

from mothership.api.loadtest import WebSocketSession
from mothership.loadgen.engine import clock_for
from mothership.loadgen.histogram import bucket_index
from mothership.loadgen.stats import Stats
from mothership.loadgen.ws import (
    MAX_UNANSWERED,
    SeqIds,
    StopSignal,
    WsSession,
    prepare_session,
    seq_patterns,
    ws_url,
)
from tests.conftest import RunningDemoTarget

from .conftest import TargetServer


async def session(url: str, stopping: StopSignal | None = None, **fields: Any) -> Stats:
    """Run one session to its end and return what it recorded."""
    loop = asyncio.get_running_loop()
    stats = Stats(["s"])
    prepared = prepare_session(url, WebSocketSession.model_validate(fields))
    ws = WsSession(prepared, 0, stats, clock_for(loop), stopping or StopSignal())
    await asyncio.wait_for(ws.run(), 5)
    return stats


def test_the_session_url_maps_http_to_ws() -> None:
    assert ws_url("http://127.0.0.1:8080/base/", "/ws/echo") == "ws://127.0.0.1:8080/base/ws/echo"
    assert ws_url("https://shop.example.com", "/live") == "wss://shop.example.com/live"


async def test_as_fast_as_echoed_counts_every_round_trip(target_server: TargetServer) -> None:
    stats = await session(target_server.url, path="/ws/echo", message="ping-me", interval="0s", hold="200ms")
    snap = stats.snapshot()
    c = snap["counters"]
    assert c["ws_sessions"] == 1
    assert c["ws_msgs_sent"] > 20
    assert c["ws_msgs_received"] in (c["ws_msgs_sent"], c["ws_msgs_sent"] - 1)
    assert c["ws_bytes_sent"] == 7 * c["ws_msgs_sent"]
    latency = snap["histograms"]["ws_msg_latency"]
    assert latency["count"] == c["ws_msgs_received"]
    # the inlined hot path puts values in the buckets Histogram.record would
    assert bucket_index(latency["min"]) == latency["offset"]
    assert bucket_index(latency["max"]) == latency["offset"] + len(latency["counts"]) - 1
    assert sum(latency["counts"]) + latency["underflow"] + latency["overflow"] == latency["count"]
    assert 0 < latency["min"] <= latency["max"] < 1
    assert snap["histograms"]["ws_connecting"]["count"] == 1
    assert snap["errors"] == {}
    assert snap["gauges"]["ws_connections"] == {"current": 0, "peak": 1}
    assert c["ws_abnormal_closures"] == 0


async def test_messages_at_an_interval_follow_the_interval(target_server: TargetServer) -> None:
    stats = await session(target_server.url, path="/ws/echo", interval="50ms", hold="275ms")
    c = stats.snapshot()["counters"]
    assert 3 <= c["ws_msgs_sent"] <= 7  # one at 0, 50, ..., 250 ms; fewer when the box is overloaded
    assert c["ws_msgs_received"] == c["ws_msgs_sent"]


async def test_a_late_send_is_timed_from_when_it_was_due(target_server: TargetServer) -> None:
    """A stalled loop shows in the latency: a message due during a 200 ms stall is timed from its due time."""
    loop = asyncio.get_running_loop()
    stats = Stats(["s"])
    prepared = prepare_session(target_server.url, WebSocketSession.model_validate(
        {"path": "/ws/echo", "message": "m{seq}", "interval": "50ms", "hold": "600ms"}))
    run = loop.create_task(WsSession(prepared, 0, stats, clock_for(loop), StopSignal()).run())
    while stats.ws_msgs_received < 2 and not run.done():
        await asyncio.sleep(0.005)
    time.sleep(0.2)  # the stall under test: the next message falls due during it
    await asyncio.wait_for(run, 5)
    latency = stats.snapshot()["histograms"]["ws_msg_latency"]
    assert stats.errors_total() == 0
    assert latency["max"] >= 0.15  # due at most 50 ms into the stall, sent after it


async def test_a_reply_that_is_not_the_echo_is_a_protocol_error(target_server: TargetServer) -> None:
    stats = await session(target_server.url, path="/ws/upper", message="abc", interval="20ms", hold="100ms")
    snap = stats.snapshot()
    assert snap["errors"] == {"s": {"protocol": 1}}
    assert snap["histograms"]["ws_msg_latency"]["count"] == 0


async def test_a_reply_matching_the_pattern_counts_its_latency(target_server: TargetServer) -> None:
    stats = await session(target_server.url, path="/ws/upper", message="abc {seq}", interval="20ms",
                          hold="100ms", expect="pattern", pattern="^AB")
    snap = stats.snapshot()
    assert snap["errors"] == {}
    assert snap["histograms"]["ws_msg_latency"]["count"] >= 3


async def test_any_reply_counts_with_expect_any(target_server: TargetServer) -> None:
    stats = await session(target_server.url, path="/ws/upper", interval="0s", hold="100ms", expect="any")
    assert stats.snapshot()["counters"]["ws_msgs_received"] > 5
    assert stats.errors_total() == 0


async def test_a_peer_that_drops_tcp_without_a_close_frame_is_an_abnormal_closure(
    target_server: TargetServer,
) -> None:
    stats = await session(target_server.url, path="/ws/drop", interval="0s", hold="2s")
    snap = stats.snapshot()
    assert snap["counters"]["ws_abnormal_closures"] == 1
    assert snap["errors"] == {"s": {"closed": 1}}
    assert snap["gauges"]["ws_connections"]["current"] == 0


async def test_a_refused_handshake_is_a_handshake_failure_of_class_status(
    target_server: TargetServer,
) -> None:
    stats = await session(target_server.url, path="/ws/reject")
    snap = stats.snapshot()
    assert snap["counters"]["ws_handshake_failures"] == 1
    assert snap["errors"] == {"s": {"status": 1}}
    assert snap["gauges"]["ws_connections"]["peak"] == 0


async def test_a_refused_connection_is_a_handshake_failure_of_class_connect(refused_url: str) -> None:
    stats = await session(refused_url, path="/ws/echo")
    assert stats.snapshot()["errors"] == {"s": {"connect": 1}}
    assert stats.ws_handshake_failures == 1


async def test_a_failed_handshake_leaves_no_reference_cycle(
    refused_url: str, target_server: TargetServer,
) -> None:
    """Full collections are rare during a run (gcpause): a failed session must be freed by refcount."""
    gc.collect()
    gc.disable()
    try:
        await session(refused_url, path="/ws/echo")
        await session(target_server.url, path="/ws/reject")
        await session(target_server.url, path="/ws/echo", interval="10ms", hold="30ms")
        assert [o for o in gc.get_objects() if type(o) is WsSession] == []
    finally:
        gc.enable()


async def test_pings_are_answered_and_the_session_stays_clean(target_server: TargetServer) -> None:
    stats = await session(target_server.url, path="/ws/echo", interval="1s", hold="220ms",
                          pingInterval="50ms")
    assert stats.errors_total() == 0
    assert stats.ws_abnormal_closures == 0


async def test_subprotocols_and_headers_are_offered_in_the_handshake(
    target_server: TargetServer,
) -> None:
    stats = await session(target_server.url, path="/ws/echo", subprotocols=["chat"],
                          headers={"X-Test": "1"}, interval="10ms", hold="50ms")
    assert stats.errors_total() == 0 and stats.ws_msgs_received >= 2


async def test_stopping_closes_a_held_session_normally_and_early(target_server: TargetServer) -> None:
    loop = asyncio.get_running_loop()
    stopping = StopSignal()
    loop.call_later(0.1, stopping.set)
    started = loop.time()
    stats = await session(target_server.url, stopping, path="/ws/echo", interval="20ms", hold="30s")
    assert loop.time() - started < 1.0
    assert stats.errors_total() == 0 and stats.ws_abnormal_closures == 0


# --- true round trips: {seq} ids ------------------------------------------------------------


async def test_with_seq_every_echo_is_paired_by_its_id(target_server: TargetServer) -> None:
    stats = await session(target_server.url, path="/ws/echo", message="m{seq}.", interval="0s", hold="200ms")
    snap = stats.snapshot()
    c = snap["counters"]
    assert c["ws_msgs_sent"] > 20 and snap["errors"] == {}
    assert c["ws_msgs_received"] in (c["ws_msgs_sent"], c["ws_msgs_sent"] - 1)
    assert snap["histograms"]["ws_msg_latency"]["count"] == c["ws_msgs_received"]
    # ids 0, 1, 2, ...: "m0." is 3 bytes, "m10." 4; so the bytes say the ids were substituted
    assert c["ws_bytes_sent"] > 3 * c["ws_msgs_sent"]


async def test_without_seq_a_pattern_reply_counts_but_reports_no_latency(target_server: TargetServer) -> None:
    stats = await session(target_server.url, path="/ws/upper", message="abc", interval="20ms", hold="100ms",
                          expect="pattern", pattern="^AB")
    snap = stats.snapshot()
    assert snap["errors"] == {} and snap["counters"]["ws_msgs_received"] >= 3
    assert snap["histograms"]["ws_msg_latency"]["count"] == 0


def test_the_id_is_found_by_the_text_around_seq_not_by_other_digits() -> None:
    exact, find = seq_patterns(tuple(b"room 7 says {seq}!".split(b"{seq}")))
    m = exact.fullmatch(b"room 7 says 12!")
    assert m is not None and m.group(1) == b"12"
    assert exact.fullmatch(b"ROOM 7 SAYS 12!") is None
    m = find.search(b'{"from": 3, "text": "ROOM 7 SAYS 45!"}')
    assert m is not None and m.group(1) == b"45"
    assert find.search(b"room 8 says 12!") is None
    twice, _ = seq_patterns(tuple(b"{seq}-{seq}".split(b"{seq}")))
    assert twice.fullmatch(b"5-5") is not None and twice.fullmatch(b"5-6") is None


def test_worker_ids_never_collide() -> None:
    workers = [SeqIds(i, 3) for i in range(3)]
    taken = [w.take() for _ in range(100) for w in workers]
    assert len(set(taken)) == 300 and set(taken) == {b"%d" % n for n in range(300)}


class _Transport:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, _type: object, payload: bytes) -> None:
        self.sent.append(bytes(payload))


class _Frame:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.payload_size = len(data)

    def get_payload_as_bytes(self) -> bytes:
        return self.data

    def get_payload_as_memoryview(self) -> memoryview:
        return memoryview(self.data)


def _offline(**fields: Any) -> tuple[WsSession, Stats, list[float]]:
    """A session whose sends and receives are driven by hand, on a clock the test sets."""
    stats = Stats(["s"])
    clock = [0.0]
    ws = WsSession(prepare_session("http://127.0.0.1:9", WebSocketSession.model_validate(fields)), 0,
                   stats, lambda: clock[0], StopSignal())
    return ws, stats, clock


def test_a_silent_peer_keeps_at_most_max_unanswered_ids_and_a_late_reply_reports_nothing() -> None:
    ws, stats, clock = _offline(message="n{seq}", expect="any")
    transport = _Transport()
    for i in range(MAX_UNANSWERED + 10):
        ws.send(transport, float(i))  # type: ignore[arg-type]
    assert len(ws.pending) == MAX_UNANSWERED and b"0" not in ws.pending and b"10" in ws.pending
    clock[0] = 5000.0
    ws.on_message(transport, _Frame(b"n3"))  # type: ignore[arg-type]  # forgotten: no latency
    ws.on_message(transport, _Frame(b"n10"))  # type: ignore[arg-type]
    latency = stats.snapshot()["histograms"]["ws_msg_latency"]
    assert latency["count"] == 1 and latency["min"] == 5000.0 - 10
    assert stats.ws_msgs_received == 2 and stats.errors_total() == 0


def test_in_order_echoes_past_the_bound_pair_with_their_own_send() -> None:
    ws, stats, clock = _offline(message="e", expect="echo")
    transport = _Transport()
    n = MAX_UNANSWERED + 5
    for i in range(n):
        ws.send(transport, float(i))  # type: ignore[arg-type]
    clock[0] = 10_000.0
    for _ in range(n):
        ws.on_message(transport, _Frame(b"e"))  # type: ignore[arg-type]
    latency = stats.snapshot()["histograms"]["ws_msg_latency"]
    # the 5 forgotten replies report nothing; reply i pairs with send i, not a later one
    assert latency["count"] == MAX_UNANSWERED
    assert latency["max"] == 10_000.0 - 5 and latency["min"] == 10_000.0 - (n - 1)


async def test_in_a_chat_room_each_session_times_only_its_own_messages(
    demo_target: RunningDemoTarget,
) -> None:
    """Five senders in one room: everyone receives everyone's messages, a session times its own."""
    loop = asyncio.get_running_loop()
    ws_session = WebSocketSession.model_validate({"path": "/ws/chat?room=seq", "message": "hi {seq}",
                                                  "interval": "20ms", "expect": "any", "hold": "300ms"})
    ids = SeqIds()
    runs = []
    for _ in range(5):
        stats = Stats(["s"])
        runs.append((WsSession(prepare_session(demo_target.url, ws_session, ids=ids), 0, stats,
                               clock_for(loop), StopSignal()), stats))
    await asyncio.wait_for(asyncio.gather(*(ws.run() for ws, _ in runs)), 5)
    for ws, stats in runs:
        snap = stats.snapshot()
        c = snap["counters"]
        latency = snap["histograms"]["ws_msg_latency"]
        own_echoes = c["ws_msgs_sent"] - len(ws.pending)
        assert snap["errors"] == {} and c["ws_msgs_sent"] >= 5
        assert latency["count"] == own_echoes > 0
        assert c["ws_msgs_received"] > 2 * own_echoes  # FIFO would have timed these too
        assert 0 <= latency["min"] <= latency["max"] < 1


async def test_in_a_chat_room_without_seq_no_latency_is_reported(demo_target: RunningDemoTarget) -> None:
    stats = await session(demo_target.url, path="/ws/chat?room=noseq", message="hi", interval="20ms",
                          expect="any", hold="100ms")
    snap = stats.snapshot()
    assert snap["counters"]["ws_msgs_received"] >= 3
    assert snap["histograms"]["ws_msg_latency"]["count"] == 0
