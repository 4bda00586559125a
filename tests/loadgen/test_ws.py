"""WebSocket sessions against a real local server: echo, patterns, pings, 1006 and refused handshakes."""

from __future__ import annotations

import asyncio
from typing import Any

from mothership.api.loadtest import WebSocketSession
from mothership.loadgen.engine import clock_for
from mothership.loadgen.histogram import bucket_index
from mothership.loadgen.stats import Stats
from mothership.loadgen.ws import StopSignal, WsSession, prepare_session, ws_url

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


async def test_a_reply_that_is_not_the_echo_is_a_protocol_error(target_server: TargetServer) -> None:
    stats = await session(target_server.url, path="/ws/upper", message="abc", interval="20ms", hold="100ms")
    snap = stats.snapshot()
    assert snap["errors"] == {"s": {"protocol": 1}}
    assert snap["histograms"]["ws_msg_latency"]["count"] == 0


async def test_a_reply_matching_the_pattern_counts_its_latency(target_server: TargetServer) -> None:
    stats = await session(target_server.url, path="/ws/upper", message="abc", interval="20ms", hold="100ms",
                          expect="pattern", pattern="^AB")
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
