"""fastws.sync against real peers, both codec backends, with and without
permessage-deflate: the threaded client against websockets' asyncio and sync
servers and fastws's asyncio server; websockets' sync client against the
threaded server. Asyncio servers run in a thread of their own."""

from __future__ import annotations

import asyncio
import contextlib
import threading

import pytest
from websockets.asyncio.server import serve as websockets_asyncio_serve
from websockets.sync.client import connect as websockets_sync_connect
from websockets.sync.server import serve as websockets_sync_serve

import fastws
import fastws.sync
from fastws.exceptions import ConnectionClosed, ConnectionClosedError

from ..support.codecs import use_codec
from .peers import CLOSE_REASON, LARGE_BINARY, LARGE_TEXT, LARGE_TIMEOUT, TIMEOUT, many_messages

PEER_OPTIONS = dict(ping_interval=None, open_timeout=TIMEOUT, close_timeout=TIMEOUT)


@pytest.fixture(autouse=True)
def backend(codec, monkeypatch):
    use_codec(monkeypatch, codec)


@pytest.fixture(params=["deflate", None], ids=["deflate", "no-compression"])
def compression(request):
    """websockets' ``compression`` option (fastws negotiates what the peer offers)."""
    return request.param


# -- servers -------------------------------------------------------------------------


async def async_echo(ws):
    try:
        if ws.request.path == "/close":
            await ws.close(4001, CLOSE_REASON)
            return
        async for message in ws:
            await ws.send(message)
    except ConnectionClosed:
        pass


def sync_echo(ws):
    if ws.request.path == "/close":
        ws.close(4001, CLOSE_REASON)
        return
    for message in ws:
        ws.send(message)


@contextlib.contextmanager
def in_loop_thread(open_server):
    """An asyncio server (``open_server()``: an async context manager yielding
    its port) in an event loop on a thread of its own; yields the port."""
    ready, result = threading.Event(), {}
    loop = asyncio.new_event_loop()

    async def main():
        stop = result["stop"] = asyncio.Event()
        async with open_server() as port:
            result["port"] = port
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    try:
        assert ready.wait(TIMEOUT)
        yield result["port"]
    finally:
        loop.call_soon_threadsafe(result["stop"].set)
        thread.join(TIMEOUT)
        loop.close()


@contextlib.asynccontextmanager
async def websockets_asyncio_server(compression):
    async with websockets_asyncio_serve(
        async_echo, "127.0.0.1", 0, compression=compression, max_size=None, **PEER_OPTIONS
    ) as server:
        yield server.sockets[0].getsockname()[1]


@contextlib.asynccontextmanager
async def fastws_asyncio_server(compression):
    options = {} if compression else {"compression": None}
    async with fastws.serve(async_echo, "127.0.0.1", 0, max_message_size=None, **options) as server:
        yield server.port


@contextlib.contextmanager
def websockets_sync_server(compression):
    with websockets_sync_serve(
        sync_echo, "127.0.0.1", 0, compression=compression, max_size=None, **PEER_OPTIONS
    ) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield server.socket.getsockname()[1]
        server.shutdown()
        thread.join(TIMEOUT)


@pytest.fixture(params=["websockets-asyncio", "websockets-sync", "fastws-asyncio"])
def server_port(request, compression):
    if request.param == "websockets-asyncio":
        context = in_loop_thread(lambda: websockets_asyncio_server(compression))
    elif request.param == "fastws-asyncio":
        context = in_loop_thread(lambda: fastws_asyncio_server(compression))
    else:
        context = websockets_sync_server(compression)
    with context as port:
        yield port


# -- the threaded client against each server -------------------------------------------


def test_sync_client_exchanges_messages(server_port):
    with fastws.sync.connect(f"ws://127.0.0.1:{server_port}/", max_message_size=None) as ws:
        for message in ["hello", "h€llo 😀", "", b"\x00\xff", b""]:
            ws.send(message)
            echoed = ws.recv(TIMEOUT)
            assert type(echoed) is type(message) and echoed == message
        for message in (LARGE_TEXT, LARGE_BINARY):
            ws.send(message)
            assert ws.recv(LARGE_TIMEOUT) == message
        ws.send_fragments([LARGE_BINARY[:1000], LARGE_BINARY[1000:]])
        assert ws.recv(LARGE_TIMEOUT) == LARGE_BINARY
        messages = many_messages()
        for message in messages:
            ws.send(message)
        assert [ws.recv(TIMEOUT) for _ in messages] == messages
        assert ws.ping(b"from fastws.sync").wait(TIMEOUT) >= 0
        ws.close(4000, CLOSE_REASON)
    assert (ws.close_code, ws.close_reason) == (4000, CLOSE_REASON)  # echoed by the server


def test_sync_client_sees_the_server_close(server_port):
    with fastws.sync.connect(f"ws://127.0.0.1:{server_port}/close") as ws:
        with pytest.raises(ConnectionClosedError) as caught:
            ws.recv(TIMEOUT)
    assert (caught.value.code, caught.value.reason) == (4001, CLOSE_REASON)


# -- websockets' sync client against the threaded server ----------------------------------


@pytest.fixture
def fastws_sync_server(compression):
    options = {} if compression else {"compression": None}
    with fastws.sync.serve(sync_echo, "127.0.0.1", 0, max_message_size=None, **options) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield server
    thread.join(TIMEOUT)
    assert not thread.is_alive()


def test_websockets_sync_client_against_sync_server(fastws_sync_server, compression):
    uri = f"ws://127.0.0.1:{fastws_sync_server.port}/"
    with websockets_sync_connect(uri, compression=compression, max_size=None, **PEER_OPTIONS) as peer:
        for message in ["hello", "h€llo 😀", b"\x00\xff", LARGE_TEXT, LARGE_BINARY]:
            peer.send(message)
            assert peer.recv(LARGE_TIMEOUT) == message
        peer.send([LARGE_BINARY[:1000], LARGE_BINARY[1000:]])  # fragmented
        assert peer.recv(LARGE_TIMEOUT) == LARGE_BINARY
        messages = many_messages()
        for message in messages:
            peer.send(message)
        assert [peer.recv(TIMEOUT) for _ in messages] == messages
        assert peer.ping(b"from websockets").wait(TIMEOUT)
        assert (peer.protocol.extensions != []) == (compression is not None)
        peer.close(4000, CLOSE_REASON)
    assert (peer.close_code, peer.close_reason) == (4000, CLOSE_REASON)

    with websockets_sync_connect(uri + "close", compression=compression, **PEER_OPTIONS) as peer:
        with pytest.raises(Exception) as caught:
            peer.recv(TIMEOUT)
    assert (caught.value.rcvd.code, caught.value.rcvd.reason) == (4001, CLOSE_REASON)
