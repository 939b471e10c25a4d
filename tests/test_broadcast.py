"""fastws.broadcast: one message to many connections, encoded once, each through its Connection."""

from __future__ import annotations

import asyncio

import pytest

from fastws import broadcast, connect, serve
from fastws.connection import PreparedMessage
from fastws.extensions.permessage_deflate import PerMessageDeflate

from .support.asyncio import async_test, until
from .support.codecs import use_codec

TIMEOUT = 10


@pytest.fixture(autouse=True)
def backend(codec, monkeypatch):
    """Run every connection of the test on one codec backend."""
    use_codec(monkeypatch, codec)
    return codec


class Room:
    """A server whose handler keeps every open connection in ``members``."""

    def __init__(self) -> None:
        self.members: list = []
        self.joined = asyncio.Event()
        self.expected = 0

    async def handler(self, ws) -> None:
        self.members.append(ws)
        if len(self.members) >= self.expected:
            self.joined.set()
        try:
            await ws.wait_closed()
        finally:
            self.members.remove(ws)

    async def wait_for(self, count: int) -> None:
        self.expected = count
        if len(self.members) < count:
            await asyncio.wait_for(self.joined.wait(), TIMEOUT)


async def recv(ws):
    return await asyncio.wait_for(ws.recv(), TIMEOUT)


@async_test
async def test_every_open_connection_gets_every_message_in_order_one_write_each():
    room = Room()
    async with serve(room.handler) as server:
        clients = [await connect(f"ws://127.0.0.1:{server.port}/") for _ in range(5)]
        await room.wait_for(5)
        writes = []
        for ws in room.members:
            write = ws.transport.write
            ws.transport.write = lambda data, write=write: (writes.append(data), write(data))[1]
        results = [broadcast(room.members, f"message {i}") for i in range(20)]
        assert all(result == (5, 0, 0) for result in results)
        for client in clients:
            assert [await recv(client) for _ in range(20)] == [f"message {i}" for i in range(20)]
        assert len(writes) == 5  # a burst in one loop iteration: one write per connection
        for client in clients:
            await client.close()


@async_test
async def test_a_connection_sending_fragments_is_skipped_not_interrupted():
    room = Room()
    release = asyncio.Event()

    async def pieces():
        yield "first "
        yield "middle "  # send_fragments() holds one piece back to know which is last
        await release.wait()
        yield "last"

    async with serve(room.handler) as server, connect(f"ws://127.0.0.1:{server.port}/") as busy:
        async with connect(f"ws://127.0.0.1:{server.port}/") as idle:
            await room.wait_for(2)
            streaming = next(
                ws for ws in room.members if ws.remote_address == busy.transport.get_extra_info("sockname")
            )
            sending = asyncio.ensure_future(streaming.send_fragments(pieces()))
            await until(lambda: streaming.connection.sending_fragments, interval=0)
            assert broadcast(room.members, b"news") == (1, 0, 1)  # RFC 6455 §5.4: no frame inside a fragmented one
            release.set()
            await asyncio.wait_for(sending, TIMEOUT)
            assert await recv(busy) == "first middle last"  # intact: the peer did not fail it with 1002
            assert await recv(idle) == b"news"
            assert broadcast(room.members, b"after") == (2, 0, 0)
            assert await recv(busy) == b"after"
            assert busy.close_code is None


@async_test
async def test_closing_connections_are_counted_and_never_raise():
    room = Room()
    async with serve(room.handler) as server:
        clients = [await connect(f"ws://127.0.0.1:{server.port}/") for _ in range(3)]
        await room.wait_for(3)
        members = list(room.members)
        members[0].close_nowait(1001, "bye")
        assert broadcast(members, "still here") == (2, 1, 0)
        assert await recv(clients[1]) == "still here"
        for client in clients[1:]:
            await client.close()


@async_test
async def test_client_side_connections_send_masked_frames(backend):
    received = []
    done = asyncio.Event()

    async def collect(ws):
        async for message in ws:
            received.append(message)
            if len(received) == 6:
                done.set()

    async with serve(collect) as server:
        clients = [await connect(f"ws://127.0.0.1:{server.port}/") for _ in range(3)]
        prepared = PreparedMessage("from a client", backend)
        assert broadcast(clients, prepared) == (3, 0, 0)
        assert broadcast(clients, b"\x00\x01") == (3, 0, 0)
        await asyncio.wait_for(done.wait(), TIMEOUT)  # an unmasked frame would have failed them with 1002
        assert sorted(received, key=repr) == ["from a client"] * 3 + [b"\x00\x01"] * 3
        for client in clients:
            await client.close()
            assert client.close_code == 1000


@async_test
async def test_compressed_connections_share_one_compressed_frame(backend):
    """permessage-deflate without server context takeover: one compression per
    message for every compressed connection; the others share the plain frame."""
    import types
    import zlib

    compressions = []
    counting = types.SimpleNamespace(**{name: getattr(zlib, name) for name in ("DEFLATED", "Z_SYNC_FLUSH", "error")})
    counting.compressobj = lambda *args: compressions.append(args) or zlib.compressobj(*args)
    counting.decompressobj = zlib.decompressobj
    settings = PerMessageDeflate(server_no_context_takeover=True, zlib=counting)
    room = Room()
    async with serve(room.handler, compression=settings) as server:
        url = f"ws://127.0.0.1:{server.port}/"
        compressed = [await connect(url) for _ in range(4)]
        plain = [await connect(url, compression=None) for _ in range(2)]
        await room.wait_for(6)
        assert sum(ws.connection.deflate is not None for ws in room.members) == 4
        writes: dict = {ws: [] for ws in room.members}

        def recording(ws):
            write = ws.transport.write
            return lambda data: (writes[ws].append(data), write(data))[1]

        for ws in room.members:
            ws.transport.write = recording(ws)
        messages = ['{"seq": ' + str(i) + ', "payload": "' + "abc" * 300 + '"}' for i in range(10)]
        for message in messages:
            assert broadcast(room.members, message) == (6, 0, 0)
        for client in compressed + plain:
            assert [await recv(client) for _ in messages] == messages
        assert len(compressions) == len(messages)  # once per message, not per connection
        wire = {ws: b"".join(data) for ws, data in writes.items()}
        deflating = [wire[ws] for ws in room.members if ws.connection.deflate is not None]
        others = [wire[ws] for ws in room.members if ws.connection.deflate is None]
        assert len(set(deflating)) == 1 and len(set(others)) == 1  # identical bytes on every connection of a kind
        assert len(deflating[0]) * 5 < len(others[0])
        assert deflating[0][0] & 0x40 and not others[0][0] & 0x40
        for client in compressed + plain:
            await client.close()


@async_test
async def test_broadcast_between_direct_sends_with_context_takeover(backend):
    """With server context takeover (the default), a connection takes the shared
    compressed frame too; what it sends itself afterwards still inflates."""
    room = Room()
    async with serve(room.handler) as server:
        clients = [await connect(f"ws://127.0.0.1:{server.port}/") for _ in range(3)]
        await room.wait_for(3)
        assert all(not ws.connection.deflate.send_reset for ws in room.members)
        expected = []
        for i in range(5):
            for ws in room.members:
                ws.send_soon(f"direct {i} " * 20)
            broadcast(room.members, f"shared {i} " * 20)
            expected += [f"direct {i} " * 20, f"shared {i} " * 20]
        for client in clients:
            assert [await recv(client) for _ in expected] == expected
            await client.close()
            assert client.close_code == 1000
