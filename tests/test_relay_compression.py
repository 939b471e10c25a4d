"""Compressed fan-out: the relay negotiates permessage-deflate without context
takeover, compresses each message once for every subscriber that negotiated it,
and shares one uncompressed frame among the others. Both codec backends; the
websockets library as a compressed subscriber too."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import types
import zlib

import pytest

from fastws import connect
from fastws.relay import Relay, serve_relay
from fastws.relay.server import RELAY_COMPRESSION

from .support.asyncio import async_test
from .support.codecs import use_codec

TIMEOUT = 30


@pytest.fixture(autouse=True)
def backend(codec, monkeypatch):
    use_codec(monkeypatch, codec)
    return codec


class Counting:
    """A zlib stand-in that counts the compressors made (one per compressed copy)."""

    def __init__(self) -> None:
        self.compressions = 0
        self.module = types.SimpleNamespace(
            **{name: getattr(zlib, name) for name in ("DEFLATED", "Z_SYNC_FLUSH", "error")}
        )
        self.module.compressobj = self.compressobj
        self.module.decompressobj = zlib.decompressobj

    def compressobj(self, *args):
        self.compressions += 1
        return zlib.compressobj(*args)


def json_message(n: int) -> str:
    """About 1 KiB of JSON, as relay traffic mostly is."""
    items = [{"symbol": f"SYM{i}", "bid": 100 + (n * 7 + i) % 97 / 4, "ask": 101 + (n + i) % 89 / 4} for i in range(14)]
    return json.dumps({"seq": n, "type": "tick", "items": items})


async def receive(ws, count: int) -> list:
    async def loop():
        return [await ws.recv() for _ in range(count)]

    return await asyncio.wait_for(loop(), TIMEOUT)


def record_writes(ws, writes: dict) -> None:
    write = ws.transport.write
    writes[ws] = []
    ws.transport.write = lambda data: (writes[ws].append(data), write(data))[1]


def test_relay_compression_settings():
    assert RELAY_COMPRESSION.server_no_context_takeover and RELAY_COMPRESSION.client_no_context_takeover
    value, session = RELAY_COMPRESSION.accept_offer(["permessage-deflate; client_max_window_bits"])  # Chromium's offer
    assert "server_no_context_takeover" in value and "client_no_context_takeover" in value
    assert session.send_reset and session.send_window_bits == 12
    value, other = RELAY_COMPRESSION.accept_offer(["permessage-deflate"])  # same window without any parameter
    assert other.send_window_bits == 12


@async_test
async def test_default_negotiates_no_context_takeover(backend):
    async with serve_relay(relay=Relay(codec=backend)) as server:
        url = f"ws://127.0.0.1:{server.port}/news"
        async with connect(url) as compressed, connect(url, compression=None) as plain:
            assert compressed.extension is not None and compressed.extension.receive_reset
            assert plain.extension is None
            async with connect(url, compression=None) as publisher:
                await publisher.send(json_message(1))
                assert await receive(compressed, 1) == [json_message(1)]
                assert await receive(plain, 1) == [json_message(1)]
    async with serve_relay(relay=Relay(codec=backend), compression=None) as server:
        async with connect(f"ws://127.0.0.1:{server.port}/news") as ws:
            assert ws.extension is None


@async_test
async def test_one_compression_per_message_for_all_compressed_subscribers(backend):
    counting = Counting()
    relay = Relay(codec=backend)
    async with serve_relay(
        relay=relay, compression=dataclasses.replace(RELAY_COMPRESSION, zlib=counting.module)
    ) as server:
        base = f"ws://127.0.0.1:{server.port}"
        compressed = [await connect(f"{base}/prices") for _ in range(5)]
        plain = [await connect(f"{base}/prices", compression=None) for _ in range(3)]
        envelopes = [await connect(f"{base}/prices?envelope=1") for _ in range(2)]
        notices = await asyncio.gather(*(receive(ws, 1) for ws in envelopes))
        assert all(json.loads(n[0])["subscribed"] == "prices" for n in notices)
        publisher = await connect(f"{base}/prices", compression=None)
        await asyncio.wait_for(_until(lambda: relay.topics().get("prices") == 11), TIMEOUT)
        writes: dict = {}
        for ws in relay._subscribers:
            record_writes(ws, writes)
        before = counting.compressions
        messages = [json_message(n) for n in range(50)]
        for message in messages:
            await publisher.send(message)
        for ws in compressed + plain:
            assert await receive(ws, len(messages)) == messages
        for ws in envelopes:
            got = [json.loads(m) for m in await receive(ws, len(messages))]
            assert [e["data"] for e in got] == messages and [e["topic"] for e in got] == ["prices"] * 50
        # one compressed raw copy and one compressed envelope per message, whatever the number of subscribers
        assert counting.compressions - before == 2 * len(messages)
        wire = {ws: b"".join(data) for ws, data in writes.items() if ws is not _server_side(relay, publisher)}
        raw_deflate = {wire[ws] for ws in wire if ws.connection.deflate is not None and ws.path == "/prices"}
        raw_plain = {wire[ws] for ws in wire if ws.connection.deflate is None}
        assert len(raw_deflate) == 1 and len(raw_plain) == 1  # the same bytes on every connection of a kind
        assert len(next(iter(raw_deflate))) * 2 < len(next(iter(raw_plain)))
        for ws in compressed + plain + envelopes + [publisher]:
            await ws.close()


def _server_side(relay, client):
    """The relay's connection for ``client``."""
    sockname = client.transport.get_extra_info("sockname")
    return next((ws for ws in relay._subscribers if ws.remote_address == sockname), None)


async def _until(predicate) -> None:
    while not predicate():
        await asyncio.sleep(0.001)


@async_test
async def test_recovery_reuses_the_compressed_copies_of_the_history(backend):
    counting = Counting()
    relay = Relay(codec=backend, history=100)
    async with serve_relay(
        relay=relay, compression=dataclasses.replace(RELAY_COMPRESSION, zlib=counting.module)
    ) as server:
        url = f"ws://127.0.0.1:{server.port}/feed"
        live = await connect(url)
        async with connect(url, compression=None) as publisher:
            messages = [json_message(n) for n in range(1, 21)]
            for message in messages:
                await publisher.send(message)
            assert await receive(live, 20) == messages
            compressed_so_far = counting.compressions
            late = await connect(url + "?since=5")
            notice = json.loads((await receive(late, 1))[0])
            assert notice["recovered"] is True and notice["offset"] == 20
            assert await receive(late, 15) == messages[5:]
            assert counting.compressions - compressed_so_far == 1  # the notice; the missed ones were compressed already
            await publisher.send(json_message(21))
            assert await receive(late, 1) == [json_message(21)]
            assert await receive(live, 1) == [json_message(21)]
        await live.close()
        await late.close()


@async_test
async def test_compressed_slow_consumer_keeps_order_through_its_backlog(backend):
    """A stalled compressed subscriber gets its backlog (the shared compressed
    frames) in order once it reads again; the relay never waited for it."""
    import random

    noise = random.Random(1).randbytes(65536)  # incompressible: the buffers fill
    relay = Relay(codec=backend, max_backlog=100000, policy="drop-newest")
    async with serve_relay(relay=relay, write_limit=16384) as server:
        url = f"ws://127.0.0.1:{server.port}/firehose"
        slow = await connect(url, max_queue=1, max_message_size=None)
        fast = await connect(url, max_message_size=None)
        fast_got: list = []

        async def read_fast():
            async for message in fast:
                fast_got.append(message)

        reader = asyncio.ensure_future(read_fast())
        async with connect(url, compression=None) as publisher:
            await asyncio.wait_for(_until(lambda: relay.topics().get("firehose") == 3), TIMEOUT)
            backlog = relay._subscribers[_server_side(relay, slow)].backlog
            messages = []
            while not backlog:  # until the stalled one's buffers are full and the relay holds messages for it
                assert len(messages) < 2000, "the stalled subscriber never fell behind"
                message = len(messages).to_bytes(4, "big") + noise[len(messages) % 7 :]
                messages.append(message)
                await publisher.send(message)
            for _ in range(10):
                message = len(messages).to_bytes(4, "big") + bytes(65536)  # and a few very compressible ones
                messages.append(message)
                await publisher.send(message)
            await asyncio.wait_for(_until(lambda: len(fast_got) == len(messages)), TIMEOUT)
            assert fast_got == messages
            assert relay.stats.dropped == 0
            assert await receive(slow, len(messages)) == messages
        await slow.close()
        await fast.close()
        await asyncio.wait_for(reader, TIMEOUT)


@async_test
async def test_websockets_client_with_compression_decodes_the_shared_frame(backend):
    from websockets.asyncio.client import connect as websockets_connect

    relay = Relay(codec=backend)
    async with serve_relay(relay=relay) as server:
        url = f"ws://127.0.0.1:{server.port}/news"
        peers = [await websockets_connect(url, compression="deflate", max_size=None) for _ in range(3)]
        for peer in peers:
            [extension] = peer.protocol.extensions
            assert extension.name == "permessage-deflate" and extension.remote_no_context_takeover
        ours = await connect(url)
        await asyncio.wait_for(_until(lambda: relay.topics().get("news") == 4), TIMEOUT)
        messages = [json_message(n) for n in range(30)] + [bytes(5000), "é" * 2000, ""]
        for message in messages:
            await ours.send(message)  # compressed by the fastws client; the relay inflates, then compresses once
        for peer in peers:
            assert [await asyncio.wait_for(peer.recv(), TIMEOUT) for _ in messages] == messages
        # a websockets subscriber publishing compressed messages, to the fastws one
        await peers[0].send(json_message(99))
        assert await receive(ours, 1) == [json_message(99)]
        for peer in peers:
            await peer.close()
        await ours.close()
