"""The demo target serves what the quickstart loads and counts what it served."""

from __future__ import annotations

import aiohttp

from tests.conftest import RunningDemoTarget


async def test_http_endpoints_answer_and_are_counted_by_path_class(demo_target: RunningDemoTarget) -> None:
    async with aiohttp.ClientSession(demo_target.url) as http:
        async with http.get("/") as r:
            assert r.status == 200 and "demo target" in await r.text()
        async with http.post("/api/items", json={"name": "x"}) as r:
            assert r.status == 201 and (await r.json())["name"] == "x"
        async with http.get("/api/items") as r:
            assert (await r.json())["total"] == 1
        async with http.get("/slow", params={"ms": "5"}) as r:
            assert (await r.json()) == {"sleptMs": 5}
        async with http.get("/status/503") as r:
            assert r.status == 503
        async with http.get("/status/999") as r:
            assert r.status == 400
        async with http.get("/nowhere") as r:
            assert r.status == 404
        async with http.get("/stats") as r:
            stats = await r.json()
    assert stats["http"]["requests"] == 7
    assert stats["http"]["byPath"] == {"index": 1, "items": 2, "slow": 1, "status": 2, "other": 1}
    assert stats["http"]["byStatus"] == {"200": 3, "201": 1, "400": 1, "404": 1, "503": 1}


async def test_slow_rejects_a_wait_beyond_the_cap(demo_target: RunningDemoTarget) -> None:
    async with aiohttp.ClientSession(demo_target.url) as http, http.get("/slow?ms=999999") as r:
        assert r.status == 400


async def test_echo_socket_echoes_and_counts_messages_not_http_requests(
    demo_target: RunningDemoTarget, until
) -> None:
    async with (
        aiohttp.ClientSession(demo_target.url) as http,
        http.ws_connect("/ws/echo", protocols=["chat.v1"]) as ws,
    ):
        assert ws.protocol == "chat.v1"
        for text in ("a", "bb"):
            await ws.send_str(text)
            assert await ws.receive_str(timeout=2) == text
        await ws.send_bytes(b"\x00\x01")
        assert await ws.receive_bytes(timeout=2) == b"\x00\x01"
    stats = await until(lambda: (s := demo_target.target.stats())["websocket"]["open"] == 0 and s)
    assert stats["http"]["requests"] == 0
    assert stats["websocket"] == {
        "sessions": 1, "byPath": {"echo": 1}, "open": 0,
        "messagesReceived": 3, "messagesSent": 3, "bytesReceived": 5, "bytesSent": 5,
    }


async def test_chat_broadcasts_to_every_member_of_the_room_and_no_other(
    demo_target: RunningDemoTarget, until
) -> None:
    target = demo_target.target
    async with aiohttp.ClientSession(demo_target.url) as http:
        a = await http.ws_connect("/ws/chat?room=r1")
        b = await http.ws_connect("/ws/chat?room=r1")
        other = await http.ws_connect("/ws/chat?room=r2")
        await until(lambda: len(target.rooms["r1"]) == 2 and len(target.rooms["r2"]) == 1)
        await a.send_str("hi")
        assert await a.receive_str(timeout=2) == "hi"
        assert await b.receive_str(timeout=2) == "hi"
        await other.send_str("alone")
        assert await other.receive_str(timeout=2) == "alone"
        for ws in (a, b, other):
            await ws.close()
    await until(lambda: target.stats()["websocket"]["open"] == 0)
    ws_stats = target.stats()["websocket"]
    assert ws_stats["sessions"] == 3 and ws_stats["byPath"] == {"chat": 3}
    assert ws_stats["messagesReceived"] == 2 and ws_stats["messagesSent"] == 3
    assert not target.rooms["r1"]


async def test_delete_stats_zeroes_the_counts(demo_target: RunningDemoTarget) -> None:
    async with aiohttp.ClientSession(demo_target.url) as http:
        async with http.get("/"):
            pass
        async with http.delete("/stats") as r:
            assert (await r.json())["http"]["requests"] == 0
    assert demo_target.target.stats()["http"]["requests"] == 0
