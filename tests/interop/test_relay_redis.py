"""The relay's Redis backplane against a real redis-server and real relay processes
(``fastws relay --redis``): topics shared across processes, per-publisher order,
SO_REUSEPORT workers, and Redis going away and coming back during traffic.

redis-server comes from tests/interop/install-peers.sh; missing, these tests fail.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import sys
import time
import urllib.request
from contextlib import asynccontextmanager

import pytest
import redis.asyncio as aioredis

from fastws import connect
from fastws.relay import pack

from ..support.asyncio import async_test
from .peers import INSTALL_HINT, PeerProcess, stop_process_group

STEP = 20.0  # seconds for one step: a start, a reconnection, a batch of messages


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A throwaway redis-server on loopback, with no persistence."""

    def __init__(self, tmp_path) -> None:
        if shutil.which("redis-server") is None:
            raise RuntimeError(f"redis-server is not installed; {INSTALL_HINT}")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.tmp_path = tmp_path
        self.peer: PeerProcess | None = None

    async def start(self) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.peer = PeerProcess("redis-server", args, self.tmp_path)
        client = aioredis.Redis.from_url(self.url, socket_connect_timeout=1)
        try:
            deadline = time.monotonic() + STEP
            while True:
                try:
                    await client.ping()
                    return
                except (aioredis.ConnectionError, OSError):
                    if time.monotonic() > deadline or self.peer.process.poll() is not None:
                        raise RuntimeError(f"redis-server did not start: {self.peer.stderr_text()}") from None
                    await asyncio.sleep(0.05)
        finally:
            await client.aclose()

    def stop(self) -> None:
        if self.peer is not None:
            stop_process_group(self.peer.process, 10)
            self.peer.process.stdout.close()
            self.peer = None


@asynccontextmanager
async def redis_server(tmp_path):
    server = RedisServer(tmp_path)
    await server.start()
    try:
        yield server
    finally:
        server.stop()


class Relay:
    """``python -m fastws relay --redis URL`` in a child process."""

    def __init__(self, redis_url: str, tmp_path, *extra: str) -> None:
        args = [sys.executable, "-m", "fastws", "relay", "--port", "0", "--redis", redis_url, "--no-uvloop", *extra]
        self.peer = PeerProcess("fastws relay", args, tmp_path)
        self.port = int(self.peer.wait_line(r"listening on http://127\.0\.0\.1:(\d+)", timeout=STEP).group(1))

    def url(self, topic: str) -> str:
        return f"ws://127.0.0.1:{self.port}/{topic}"

    async def stats(self) -> dict:
        def get() -> dict:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/stats", timeout=STEP) as response:
                return json.loads(response.read())

        return await asyncio.to_thread(get)

    async def wait_backplane(self, predicate, what: str) -> dict:
        """Poll /stats until ``predicate(backplane_stats)`` holds."""
        deadline = time.monotonic() + STEP
        while True:
            backplane = (await self.stats())["backplane"]
            if predicate(backplane):
                return backplane
            if time.monotonic() > deadline:
                raise AssertionError(f"relay :{self.port}: {what} not reached in {STEP}s: {backplane}")
            await asyncio.sleep(0.05)

    def log(self) -> str:
        return self.peer.stderr_text()

    def stop(self) -> None:
        stop_process_group(self.peer.process, 10)
        assert self.peer.process.returncode == 0, self.log()  # SIGTERM: closed cleanly
        self.peer.process.stdout.close()


@pytest.fixture
def relays(tmp_path):
    started: list[Relay] = []

    def start(redis_url: str, *extra: str) -> Relay:
        relay = Relay(redis_url, tmp_path, *extra)
        started.append(relay)
        return relay

    yield start
    for relay in started:
        if relay.peer.process.poll() is None:
            relay.stop()


async def receive(ws, count: int) -> list:
    return [await asyncio.wait_for(ws.recv(), STEP) for _ in range(count)]


@async_test
async def test_two_relay_processes_share_a_topic_in_order(tmp_path, relays):
    async with redis_server(tmp_path) as redis:
        a, b = relays(redis.url), relays(redis.url)
        async with connect(a.url("news")) as on_a, connect(b.url("news")) as on_b:
            for relay in (a, b):
                await relay.wait_backplane(lambda s: "news" in s["subscribed"], "subscribed to news")
            async with connect(a.url("news")) as pub_a, connect(b.url("news")) as pub_b:
                # Two publishers on two processes, interleaved: each one's order holds everywhere.
                for n in range(500):
                    await pub_a.send(f"a{n}")
                    await pub_b.send(b"b%d" % n)
                got_a, got_b = await asyncio.gather(receive(on_a, 1000), receive(on_b, 1000))
            # Any program can publish through Redis; what is not a relay message is ignored.
            client = aioredis.Redis.from_url(redis.url)
            try:
                await client.publish("fastws:news", b"garbage")
                await client.publish("fastws:news", pack("from a backend"))
                await client.publish("fastws:news", pack(b"\x00binary"))
            finally:
                await client.aclose()
            assert await receive(on_a, 2) == await receive(on_b, 2) == ["from a backend", b"\x00binary"]
        for got in (got_a, got_b):
            assert [m for m in got if isinstance(m, str)] == [f"a{n}" for n in range(500)]
            assert [m for m in got if isinstance(m, bytes)] == [b"b%d" % n for n in range(500)]
        stats_a, stats_b = await a.stats(), await b.stats()
        assert stats_a["backplane"]["published"] == 500 and stats_a["backplane"]["received"] == 502
        assert stats_b["backplane"]["published"] == 500 and stats_b["backplane"]["lost"] == 0
        assert "ignoring a malformed message on b'fastws:news'" in a.log()


@async_test
async def test_workers_share_one_port_through_redis(tmp_path):
    async with redis_server(tmp_path) as redis:
        port = free_port()
        args = [sys.executable, "-m", "fastws", "relay", "--port", str(port), "--redis", redis.url]
        peer = PeerProcess("fastws relay --workers 2", [*args, "--workers", "2", "--no-uvloop"], tmp_path)
        try:
            for _ in range(2):
                peer.wait_line(rf"listening on http://127\.0\.0\.1:{port}", timeout=STEP)
            url = f"ws://127.0.0.1:{port}/t"
            subscribers = [await connect(url) for _ in range(16)]
            async with connect(url) as publisher:
                # Probe until every subscriber hears the publisher (whichever
                # worker each landed on has subscribed to Redis by then).
                waiting = set(subscribers)
                deadline = time.monotonic() + STEP
                while waiting:
                    assert time.monotonic() < deadline, "not every worker joined the topic"
                    await publisher.send("probe")
                    for ws in list(waiting):
                        try:
                            if await asyncio.wait_for(ws.recv(), 0.1) == "probe":
                                waiting.discard(ws)
                        except asyncio.TimeoutError:
                            pass
                for n in range(200):
                    await publisher.send(f"m{n}")
                for ws in subscribers:
                    got = [m for m in await receive_until(ws, "m199") if m != "probe"]
                    assert got == [f"m{n}" for n in range(200)]
            client = aioredis.Redis.from_url(redis.url)
            try:  # the kernel spread the subscribers over both workers: both joined the topic in Redis
                assert await client.pubsub_numsub("fastws:t") == [(b"fastws:t", 2)]
            finally:
                await client.aclose()
            for ws in subscribers:
                await ws.close()
        finally:
            stop_process_group(peer.process, 10)
            peer.process.stdout.close()
        assert peer.process.returncode == 0, peer.stderr_text()


async def receive_until(ws, last: str) -> list:
    got: list = []
    while not got or got[-1] != last:
        got.append(await asyncio.wait_for(ws.recv(), STEP))
    return got


@async_test
async def test_redis_restart_during_traffic(tmp_path, relays):
    async with redis_server(tmp_path) as redis:
        a, b = relays(redis.url), relays(redis.url)
        local_sub = await connect(a.url("ticks"))
        remote_sub = await connect(b.url("ticks"))
        await b.wait_backplane(lambda s: "ticks" in s["subscribed"], "subscribed to ticks")
        publisher = await connect(a.url("ticks"))
        sent = 0

        async def publish(count: int) -> None:
            nonlocal sent
            for _ in range(count):
                await publisher.send(str(sent))
                sent += 1
                await asyncio.sleep(0.002)  # a steady stream, not one burst

        await publish(100)
        remote = [int(m) for m in await receive(remote_sub, 100)]
        assert remote == list(range(100))

        redis.stop()  # Redis goes away during traffic
        outage = asyncio.ensure_future(publish(10**6))
        await a.wait_backplane(lambda s: s["state"] != "connected", "disconnected")
        await b.wait_backplane(lambda s: s["state"] != "connected", "disconnected")
        await a.wait_backplane(lambda s: s["buffered"] > 0, "messages kept while Redis is down")
        await redis.start()  # and comes back on the same port
        await a.wait_backplane(lambda s: s["state"] == "connected", "reconnected")
        await b.wait_backplane(lambda s: s["state"] == "connected" and "ticks" in s["subscribed"], "resubscribed")
        outage.cancel()
        await asyncio.gather(outage, return_exceptions=True)
        await publish(100)
        last = str(sent - 1)

        # Local delivery never stopped: every message, in order.
        assert await receive_until(local_sub, last) == [str(n) for n in range(sent)]
        # Across processes: in order, and traffic again after it. What a kept
        # during the outage was sent once Redis was back (nothing over the
        # bound: none lost); b hears it if it had resubscribed by then (pub/sub
        # keeps nothing: the history of test_relay_recovery.py fills that gap).
        remote += [int(m) for m in await receive_until(remote_sub, last)]
        assert remote == sorted(set(remote))
        assert remote[-100:] == list(range(sent - 100, sent))
        backplane = (await a.stats())["backplane"]
        assert backplane["lost"] == 0 and backplane["buffered"] == 0 and backplane["published"] == sent
        for ws in (local_sub, remote_sub, publisher):
            await ws.close()
        a.stop()
        for line in ("redis backplane", "disconnected", "connected"):
            assert line in a.log()
