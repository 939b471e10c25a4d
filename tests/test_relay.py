"""The relay in one process: topics, order, encode-once fan-out, slow consumers, /stats, CLI."""

from __future__ import annotations

import asyncio
import json
import random
import struct
import subprocess
import sys
import urllib.request

import pytest

from fastws import broadcast, connect, serve
from fastws.exceptions import ConnectionClosed
from fastws.relay import Relay, SlowConsumerPolicy, serve_relay

from .support.asyncio import async_test
from .support.codecs import use_codec


@pytest.fixture(autouse=True)
def backend(codec, monkeypatch):
    """Every connection of the test, and the relay's encoder, on one codec backend."""
    use_codec(monkeypatch, codec)
    return codec


# Incompressible filler: the relay compresses for subscribers that negotiate
# permessage-deflate, and a slow consumer's buffers must fill (the slow-consumer
# tests connect without compression, which is tested in test_relay_compression).
NOISE = random.Random(0).randbytes(1 << 17)


def numbered(n: int, size: int = 256) -> bytes:
    return struct.pack("!I", n) + NOISE[: size - 4]


def number(message) -> int:
    return struct.unpack_from("!I", message)[0]


async def receive(ws, count: int, timeout: float = 30.0) -> list:
    async def loop():
        return [await ws.recv() for _ in range(count)]

    return await asyncio.wait_for(loop(), timeout)


@async_test
async def test_every_subscriber_gets_every_message_in_order(backend):
    relay = Relay(codec=backend)
    async with serve_relay(relay=relay) as server:
        url = f"ws://127.0.0.1:{server.port}/prices"
        subscribers = [await connect(url) for _ in range(20)]
        publisher = await connect(url)
        messages = [numbered(n) if n % 2 else f"text {n}" for n in range(1000)]
        for message in messages:
            await publisher.send(message)
        received = await asyncio.gather(*(receive(ws, len(messages)) for ws in subscribers))
        assert all(got == messages for got in received)
        # The sender is not echoed its own messages; other topics see nothing.
        other = await connect(f"ws://127.0.0.1:{server.port}/news")
        await subscribers[0].send("from a subscriber")
        assert await receive(publisher, 1) == ["from a subscriber"]
        assert relay.topics() == {"prices": 21, "news": 1}
        assert relay.stats.dropped == 0
        for ws in [*subscribers, publisher, other]:
            await ws.close()
        assert not publisher._queue and not other._queue


@async_test
async def test_echo_option_sends_publishers_their_own_messages(backend):
    async with serve_relay(relay=Relay(codec=backend), echo=True) as server:
        async with connect(f"ws://127.0.0.1:{server.port}/t") as ws:
            await ws.send("mine")
            assert await receive(ws, 1) == ["mine"]


@async_test
async def test_control_messages_subscribe_unsubscribe_publish(backend):
    relay = Relay(codec=backend)
    async with serve_relay(relay=relay) as server:
        base = f"ws://127.0.0.1:{server.port}"
        async with connect(base + "/") as multi, connect(base + "/a") as a, connect(base + "/b%20c") as b:
            await multi.send(json.dumps({"subscribe": ["a", "b c"]}))
            while relay.topics() != {"a": 2, "b c": 2}:
                await asyncio.sleep(0.01)
            await a.send("to a")
            await b.send(b"to b c")
            assert await receive(multi, 2) == ["to a", b"to b c"]
            await multi.send(json.dumps({"unsubscribe": "a", "publish": "b c", "data": "from multi"}))
            assert await receive(b, 1) == ["from multi"]
            await a.send("a again")
            await b.send("b again")
            assert await receive(multi, 1) == ["b again"]  # not "a again": unsubscribed
            assert relay.topics() == {"a": 1, "b c": 2}


@pytest.mark.parametrize(
    "message, code",
    [
        ("not json", 1008),
        (json.dumps(["subscribe"]), 1008),
        (json.dumps({"subscribe": [1, 2]}), 1008),
        (json.dumps({"frobnicate": "x"}), 1008),
        (json.dumps({"publish": "t"}), 1008),
        (b"\x00binary", 1003),
    ],
)
@async_test
async def test_bad_control_messages_close_the_connection(backend, message, code):
    async with serve_relay(relay=Relay(codec=backend)) as server:
        async with connect(f"ws://127.0.0.1:{server.port}/") as ws:
            await ws.send(message)
            with pytest.raises(ConnectionClosed) as raised:
                await asyncio.wait_for(ws.recv(), 10)
            assert raised.value.code == code


async def stalled_subscriber(url: str):
    """A subscriber that reads nothing until told: its receive queue and then
    the TCP buffers fill, and the relay sees its write buffer above the limit."""
    ws = await connect(url, max_queue=1, compression=None)
    return ws


async def slow_consumer_run(backend, policy, total=300, size=65536, backlog=32):
    """Publish ``total`` big messages to one fast and one stalled subscriber;
    return the relay, what the fast one got, and the stalled one (not yet reading)."""
    relay = Relay(codec=backend, max_backlog=backlog, policy=policy)
    server_cm = serve_relay(relay=relay, write_limit=65536)
    server = await server_cm.__aenter__()
    url = f"ws://127.0.0.1:{server.port}/firehose"
    fast = await connect(url, max_message_size=None, compression=None)
    slow = await stalled_subscriber(url)
    publisher = await connect(url, compression=None)
    got = asyncio.ensure_future(receive(fast, total, timeout=60))
    for n in range(total):
        await publisher.send(numbered(n, size))
    fast_received = await got  # the stalled subscriber held nobody back
    assert [number(m) for m in fast_received] == list(range(total))
    return server_cm, relay, publisher, slow


async def read_numbers(ws, count: int) -> list[int]:
    return [number(message) for message in await receive(ws, count)]


@async_test
async def test_slow_consumer_drop_newest_keeps_a_gapless_prefix(backend):
    server_cm, relay, publisher, slow = await slow_consumer_run(backend, SlowConsumerPolicy.DROP_NEWEST)
    try:
        dropped = relay.stats.dropped
        assert 0 < dropped < 300 and relay.stats.closed_slow == 0
        # What reached it is an unbroken run from the first message: the newer
        # ones were dropped while its backlog was full.
        assert await read_numbers(slow, 300 - dropped) == list(range(300 - dropped))
        await publisher.send(numbered(300))  # caught up: it receives again
        assert await read_numbers(slow, 1) == [300]
    finally:
        await publisher.close()
        await server_cm.__aexit__(None, None, None)


@async_test
async def test_slow_consumer_drop_oldest_keeps_the_newest(backend):
    server_cm, relay, publisher, slow = await slow_consumer_run(backend, SlowConsumerPolicy.DROP_OLDEST)
    try:
        dropped = relay.stats.dropped
        assert 0 < dropped < 300
        numbers = await read_numbers(slow, 300 - dropped)
        # An unbroken run from the start (what was already in the buffers),
        # then the newest 32 (the backlog, whose older entries made room).
        head = 300 - dropped - 32
        assert numbers == list(range(head)) + list(range(268, 300))
        await publisher.send(numbered(300))
        assert await read_numbers(slow, 1) == [300]
    finally:
        await publisher.close()
        await server_cm.__aexit__(None, None, None)


@pytest.mark.parametrize("close_code", [1013, 1008])
@async_test
async def test_slow_consumer_close_policy_closes_with_its_code(backend, close_code):
    relay = Relay(codec=backend, max_backlog=16, policy="close", close_code=close_code)
    async with serve_relay(relay=relay, write_limit=65536) as server:
        url = f"ws://127.0.0.1:{server.port}/firehose"
        slow = await stalled_subscriber(url)
        fast = await connect(url, max_message_size=None, compression=None)
        async with connect(url, compression=None) as publisher:
            got = asyncio.ensure_future(receive(fast, 300, timeout=60))
            for n in range(300):
                await publisher.send(numbered(n, 65536))
            assert [number(m) for m in await got] == list(range(300))
        assert relay.stats.closed_slow == 1
        # The stalled subscriber reads what was buffered, then the close frame.
        numbers = []
        with pytest.raises(ConnectionClosed) as raised:
            while True:
                numbers.append(number(await asyncio.wait_for(slow.recv(), 30)))
        assert raised.value.code == close_code and raised.value.reason == "slow consumer"
        assert numbers == list(range(len(numbers))) and len(numbers) < 300
        assert relay.topics() == {"firehose": 1}
        await fast.close()


@async_test
async def test_broadcast_and_relay_api_in_a_users_own_server(backend):
    relay = Relay(codec=backend)
    everyone: set = set()

    async def handler(ws):
        everyone.add(ws)
        relay.subscribe(ws, ws.path)
        try:
            async for message in ws:
                if message == "all":
                    result = broadcast(everyone, "to everyone", codec=backend)
                    assert result.sent == len([w for w in everyone if w.open])
                else:
                    relay.publish(ws.path, message, exclude=ws)
        finally:
            everyone.discard(ws)
            relay.unsubscribe(ws)

    async with serve(handler) as server:
        base = f"ws://127.0.0.1:{server.port}"
        async with connect(base + "/x") as x1, connect(base + "/x") as x2, connect(base + "/y") as y:
            await x1.send("hello x")
            assert await receive(x2, 1) == ["hello x"]
            await y.send("all")
            assert await asyncio.gather(receive(x1, 1), receive(x2, 1), receive(y, 1)) == [["to everyone"]] * 3
        while relay.subscriber_count:
            await asyncio.sleep(0.01)
        assert relay.topics() == {}


def http_get_json(port: int, path: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        assert response.headers["Content-Type"] == "application/json"
        return json.loads(response.read())


@async_test
async def test_stats_endpoint_counts_messages_subscribers_and_drops(backend):
    relay = Relay(codec=backend)
    async with serve_relay(relay=relay) as server:
        url = f"ws://127.0.0.1:{server.port}/s"
        async with connect(url) as a, connect(url) as b, connect(url) as c:
            for n in range(50):
                await a.send(f"m{n}")
            await asyncio.gather(receive(b, 50), receive(c, 50))
            relay.stats.sample()
            loop = asyncio.get_running_loop()
            stats = await loop.run_in_executor(None, http_get_json, server.port, "/stats")
        assert stats["topics"] == {"s": 3} and stats["subscribers"] == 3
        assert stats["messages_in"] == 50 and stats["messages_out"] == 100
        assert stats["dropped"] == 0 and stats["closed_slow"] == 0
        assert stats["messages_in_per_s"] > 0 and "backplane" not in stats


def test_cli_relay_serves_topics_and_stats(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "fastws", "relay", "--port", "0", "--no-uvloop"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()  # "listening on http://127.0.0.1:PORT"
        assert line.startswith("listening on http://127.0.0.1:"), line
        port = int(line.rsplit(":", 1)[1])

        async def exchange():
            url = f"ws://127.0.0.1:{port}/cli"
            async with connect(url) as sub, connect(url) as pub:
                await pub.send("over the cli relay")
                return await receive(sub, 1)

        assert asyncio.run(exchange()) == ["over the cli relay"]
        assert http_get_json(port, "/stats")["messages_in"] == 1
    finally:
        process.terminate()
        assert process.wait(15) == 0
        process.stdout.close()
        process.stderr.close()
