"""fastws.broadcast: one message to many connections, encoded once, each through its Connection."""

from __future__ import annotations

import asyncio

import pytest

import fastws.connection
from fastws import broadcast, connect, serve
from fastws.connection import PreparedMessage

from .support.asyncio import async_test

TIMEOUT = 10


@pytest.fixture(autouse=True)
def backend(codec, monkeypatch):
    """Run every connection of the test on one codec backend."""
    monkeypatch.setattr(fastws.connection, "default_codec", codec)
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


async def until(predicate) -> None:
    """Yield to the loop until ``predicate()`` holds (bounded by TIMEOUT)."""
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0)


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
            await until(lambda: streaming.connection.sending_fragments)
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
