"""The HTTP client against a real local server: success, reuse, and each error class."""

from __future__ import annotations

import asyncio
from typing import Any

from mothership.api.loadtest import HttpRequest
from mothership.loadgen.engine import clock_for
from mothership.loadgen.histogram import bucket_index
from mothership.loadgen.http import HttpClient, parse_target, prepare
from mothership.loadgen.stats import Stats

from .conftest import TargetServer, TlsFiles


async def iterate(
    url: str, requests: list[dict[str, Any]], times: int = 1, **target: Any
) -> tuple[Stats, HttpClient]:
    """Run one virtual user's requests ``times`` times in a row and return what it recorded."""
    loop = asyncio.get_running_loop()
    t = parse_target(url, **target)
    prepared = [prepare(t, HttpRequest.model_validate(r)) for r in requests]
    stats = Stats(["s"])
    client = HttpClient(t, prepared, stats, clock_for(loop), loop)
    for _ in range(times):
        done = loop.create_future()
        client.iterate(clock_for(loop)(), lambda d=done: d.set_result(None))
        await asyncio.wait_for(done, 5)
    client.close()
    return stats, client


def errors(stats: Stats) -> dict[str, int]:
    return stats.snapshot()["errors"].get("s", {})


async def test_a_successful_request_is_counted_with_duration_and_bytes(target_server: TargetServer) -> None:
    stats, _ = await iterate(target_server.url, [{"path": "/ok"}])
    snap = stats.snapshot()
    assert snap["http_reqs"] == {"s": {"2xx": 1}}
    assert snap["errors"] == {}
    assert snap["histograms"]["http_req_duration"]["count"] == 1
    assert 0 < snap["histograms"]["http_req_duration"]["max"] < 1
    assert snap["counters"]["data_sent"] > 30 and snap["counters"]["data_received"] > 30
    assert target_server.requests["/ok"] == 1


async def test_keep_alive_reuses_one_connection_across_iterations(target_server: TargetServer) -> None:
    stats, client = await iterate(target_server.url, [{"path": "/ok"}, {"path": "/status/204",
                                                                        "expectStatus": [204]}], times=50)
    assert stats.http_reqs_total() == 100
    assert stats.errors_total() == 0
    assert client.connections_opened == 1
    wire = stats.http_req_duration.to_wire()  # the inlined hot path uses Histogram.record's buckets
    assert bucket_index(wire["min"]) == wire["offset"]
    assert bucket_index(wire["max"]) == wire["offset"] + len(wire["counts"]) - 1
    assert sum(wire["counts"]) + wire["underflow"] + wire["overflow"] == wire["count"] == 100
    assert len(target_server.peers) == 1
    assert target_server.total == 100


async def test_a_post_sends_its_body_and_headers(target_server: TargetServer) -> None:
    stats, _ = await iterate(target_server.url, [{"method": "POST", "path": "/ok", "body": "{}",
                                                  "headers": {"Content-Type": "application/json"}}])
    assert stats.http_reqs_total() == 1 and stats.errors_total() == 0


async def test_a_head_request_completes_without_a_body(target_server: TargetServer) -> None:
    stats, _ = await iterate(target_server.url, [{"method": "HEAD", "path": "/ok"}], times=3)
    assert stats.http_reqs_total() == 3 and stats.errors_total() == 0


async def test_an_unexpected_status_is_a_status_error(target_server: TargetServer) -> None:
    stats, _ = await iterate(target_server.url, [{"path": "/status/503"}, {"path": "/status/404",
                                                                           "expectStatus": [404]}])
    assert stats.snapshot()["http_reqs"] == {"s": {"5xx": 1, "4xx": 1}}
    assert errors(stats) == {"status": 1}


async def test_a_slow_response_beyond_the_timeout_is_a_timeout(target_server: TargetServer) -> None:
    stats, _ = await iterate(target_server.url, [{"path": "/slow?ms=2000", "timeout": "100ms"},
                                                 {"path": "/ok"}])
    assert errors(stats) == {"timeout": 1}
    snap = stats.snapshot()
    assert snap["http_reqs"] == {"s": {"none": 1, "2xx": 1}}
    assert 0.09 < snap["histograms"]["http_req_duration"]["max"] < 0.5


async def test_a_connection_dropped_mid_response_is_closed(target_server: TargetServer) -> None:
    stats, _ = await iterate(target_server.url, [{"path": "/close"}, {"path": "/ok"}])
    assert errors(stats) == {"closed": 1}
    assert stats.snapshot()["http_reqs"] == {"s": {"none": 1, "2xx": 1}}


async def test_a_response_that_is_not_http_is_a_protocol_error(target_server: TargetServer) -> None:
    stats, _ = await iterate(target_server.url, [{"path": "/garbage"}])
    assert errors(stats) == {"protocol": 1}


async def test_a_refused_connection_is_a_connect_error(refused_url: str) -> None:
    stats, client = await iterate(refused_url, [{"path": "/ok"}], times=3)
    assert errors(stats) == {"connect": 3}
    assert stats.snapshot()["http_reqs"] == {"s": {"none": 3}}
    assert client.connections_opened == 0


async def test_the_client_reconnects_after_the_server_closes_it(target_server: TargetServer) -> None:
    stats, client = await iterate(target_server.url, [{"path": "/ok", "headers": {"Connection": "close"}}],
                                  times=3)
    assert stats.errors_total() == 0 and stats.http_reqs_total() == 3
    assert client.connections_opened == 3


async def test_https_works_with_a_trusted_self_signed_certificate(tls_server: TargetServer,
                                                                  tls_files: TlsFiles) -> None:
    stats, client = await iterate(tls_server.url, [{"path": "/ok"}], times=5,
                                  ssl_context=tls_files.client_context())
    assert stats.errors_total() == 0 and stats.http_reqs_total() == 5
    assert client.connections_opened == 1


async def test_an_untrusted_certificate_is_a_connect_error(tls_server: TargetServer) -> None:
    stats, _ = await iterate(tls_server.url, [{"path": "/ok"}])
    assert errors(stats) == {"connect": 1}


def test_a_prepared_request_is_encoded_once_with_host_and_length() -> None:
    t = parse_target("http://127.0.0.1:8080/api")
    p = prepare(t, HttpRequest.model_validate({"method": "POST", "path": "/items", "body": "abc",
                                               "timeout": "2s", "thinkTime": "500ms"}))
    assert p.data.startswith(b"POST /api/items HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n")
    assert p.data.endswith(b"Content-Length: 3\r\n\r\nabc")
    assert p.timeout == 2.0 and p.think_time == 0.5 and p.expect == frozenset({200})
