"""fastws against the websockets library (asyncio API), in both roles: a
websockets client against a fastws server, and a websockets server against a
fastws client. Each test drives both ends of one connection directly, once with
websockets' default permessage-deflate on (fastws negotiates what it supports)
and once with it off.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

import pytest
from websockets.asyncio.client import connect as websockets_connect
from websockets.asyncio.server import serve as websockets_serve

import fastws
from fastws.exceptions import ConnectionClosed

from ..support.asyncio import async_test
from ..support.codecs import use_codec
from .peers import (
    CLOSE_REASON,
    LARGE_BINARY,
    LARGE_TEXT,
    LARGE_TIMEOUT,
    NO_PROXY,
    TIMEOUT,
    Acceptor,
    many_messages,
    recv,
)

WEBSOCKETS_OPTIONS = dict(ping_interval=None, open_timeout=TIMEOUT, close_timeout=TIMEOUT)


@pytest.fixture(autouse=True)
def backend(codec, monkeypatch):
    use_codec(monkeypatch, codec)


@asynccontextmanager
async def websockets_client_pair(fastws_options: dict, peer_options: dict):
    """(fastws server connection, websockets client connection)."""
    acceptor = Acceptor()
    async with fastws.serve(acceptor, "127.0.0.1", 0, **fastws_options) as server:
        uri = f"ws://127.0.0.1:{server.port}/"
        async with websockets_connect(uri, **WEBSOCKETS_OPTIONS, **NO_PROXY, **peer_options) as peer:
            yield await acceptor.accept(), peer


@asynccontextmanager
async def websockets_server_pair(fastws_options: dict, peer_options: dict):
    """(fastws client connection, websockets server connection)."""
    accepted: asyncio.Queue = asyncio.Queue()

    async def handler(peer):
        accepted.put_nowait(peer)
        await peer.wait_closed()

    async with websockets_serve(handler, "127.0.0.1", 0, **WEBSOCKETS_OPTIONS, **peer_options) as server:
        port = server.sockets[0].getsockname()[1]
        async with fastws.connect(f"ws://127.0.0.1:{port}/", **fastws_options) as ws:
            yield ws, await asyncio.wait_for(accepted.get(), TIMEOUT)


@pytest.fixture(params=["websockets-client", "websockets-server"])
def role(request):
    """The role websockets plays."""
    return request.param


@pytest.fixture(params=["deflate", None], ids=["deflate", "no-compression"])
def peer_compression(request):
    """websockets' ``compression`` option."""
    return request.param


@pytest.fixture
def pair(role, peer_compression):
    """Opens one connection, with websockets in ``role``:
    ``async with pair(fastws_options, peer_options) as (ws, peer)``."""
    opener = websockets_client_pair if role == "websockets-client" else websockets_server_pair

    def open_pair(fastws_options: dict | None = None, peer_options: dict | None = None):
        return opener(fastws_options or {}, {"compression": peer_compression, **(peer_options or {})})

    return open_pair


async def exchange(ws, peer, message, timeout: float = TIMEOUT) -> None:
    """The peer sends ``message`` to fastws, and fastws sends it back."""
    await peer.send(message)
    received = await recv(ws, timeout)
    assert type(received) is type(message) and received == message
    await ws.send(received)
    echoed = await recv(peer, timeout)
    assert type(echoed) is type(message) and echoed == message


@async_test
async def test_text_binary_and_empty_messages(pair):
    async with pair() as (ws, peer):
        for message in ["hello world", "h€llo 😀", "", b"\x00\x01\xfe\xff", b""]:
            await exchange(ws, peer, message)


@async_test
async def test_262145_byte_binary_fragmented_both_ways(pair):
    # fastws fragments at 64 KiB; websockets fragments when given an iterable.
    async with pair({"max_frame_size": 65536}) as (ws, peer):
        await exchange(ws, peer, LARGE_BINARY)
        chunks = [LARGE_BINARY[i : i + 50000] for i in range(0, len(LARGE_BINARY), 50000)]
        await peer.send(chunks)
        assert await recv(ws) == LARGE_BINARY


@async_test
async def test_1mib_multibyte_text_at_the_default_limits(pair):
    assert len(LARGE_TEXT.encode()) == 1 << 20  # exactly the default max message size of both
    async with pair() as (ws, peer):
        await exchange(ws, peer, LARGE_TEXT, LARGE_TIMEOUT)
        fragments = [LARGE_TEXT[i : i + 100000] for i in range(0, len(LARGE_TEXT), 100000)]
        await peer.send(fragments)
        assert await recv(ws, LARGE_TIMEOUT) == LARGE_TEXT


@async_test
async def test_pings_both_ways(pair):
    async with pair() as (ws, peer):
        latency = await asyncio.wait_for(ws.ping(b"from fastws"), TIMEOUT)
        assert latency >= 0
        await asyncio.wait_for(await peer.ping(b"from websockets"), TIMEOUT)
        await exchange(ws, peer, "still open")


@async_test
async def test_many_messages_arrive_in_order_both_ways(pair):
    messages = many_messages()
    async with pair() as (ws, peer):
        for message in messages:
            await peer.send(message)
        assert [await recv(ws) for _ in messages] == messages
        for message in messages:
            await ws.send(message)
        assert [await recv(peer) for _ in messages] == messages


@async_test
async def test_subprotocol_negotiation(pair, role):
    # The server picks its first choice among those the client offered.
    fastws_choice = ["chat.v1", "chat.v2"]
    peer_choice = ["chat.v2", "chat.v1"]
    expected = "chat.v1" if role == "websockets-client" else "chat.v2"
    async with pair({"subprotocols": fastws_choice}, {"subprotocols": peer_choice}) as (ws, peer):
        assert ws.subprotocol == peer.subprotocol == expected
        await exchange(ws, peer, "hello")


@async_test
async def test_fastws_closes_with_4000_and_reason(pair):
    async with pair() as (ws, peer):
        await asyncio.wait_for(ws.close(4000, CLOSE_REASON), TIMEOUT)
        await asyncio.wait_for(peer.wait_closed(), TIMEOUT)
        assert (peer.close_code, peer.close_reason) == (4000, CLOSE_REASON)
        assert (ws.close_code, ws.close_reason) == (4000, CLOSE_REASON)  # websockets echoes both


@async_test
async def test_websockets_closes_with_4000_and_reason(pair):
    async with pair() as (ws, peer):
        await peer.send("last")
        await asyncio.wait_for(peer.close(4000, CLOSE_REASON), TIMEOUT)
        assert await recv(ws) == "last"  # messages before the close are still delivered
        with pytest.raises(ConnectionClosed) as closed:
            await recv(ws)
        assert (closed.value.code, closed.value.reason) == (4000, CLOSE_REASON)
        assert (ws.close_code, ws.close_reason) == (4000, CLOSE_REASON)
        assert (peer.close_code, peer.close_reason) == (4000, CLOSE_REASON)  # fastws echoes both
