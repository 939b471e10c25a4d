"""fastws's client features against the websockets library's server (a real
peer, started here): redirects, and reconnection across refusals and restarts."""

from __future__ import annotations

import socket

import pytest
from websockets.asyncio.server import serve as websockets_serve

import fastws
from fastws.exceptions import ConnectionClosed, InvalidRedirect, InvalidStatus
from fastws.policy import Backoff

from ..support.asyncio import async_test
from ..support.codecs import use_codec
from .peers import TIMEOUT

PEER_OPTIONS = dict(ping_interval=None, open_timeout=TIMEOUT, close_timeout=TIMEOUT)


@pytest.fixture(autouse=True)
def backend(codec, monkeypatch):
    use_codec(monkeypatch, codec)


def fast_backoff() -> Backoff:
    return Backoff(initial=0.01, maximum=0.05, stable_after=60.0)


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return sock.getsockname()[1]


async def echo(peer):
    async for message in peer:
        await peer.send(message)


def answering(status: int, location: str | None = None, first: int = 1_000_000):
    """websockets process_request: answer ``status`` (with Location) to the first ``first`` requests."""
    seen = []

    def process_request(connection, request):
        seen.append(request.path)
        if len(seen) > first:
            return None
        response = connection.respond(status, "moved\n" if location else "later\n")
        if location is not None:
            response.headers["Location"] = location
        return response

    process_request.seen = seen  # type: ignore[attr-defined]
    return process_request


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@async_test
async def test_follows_a_websockets_redirect(status):
    async with websockets_serve(echo, "127.0.0.1", 0, **PEER_OPTIONS) as target:
        target_port = target.sockets[0].getsockname()[1]
        hop = answering(status, f"ws://127.0.0.1:{target_port}/there?x=1")
        async with websockets_serve(echo, "127.0.0.1", 0, process_request=hop, **PEER_OPTIONS) as front:
            front_port = front.sockets[0].getsockname()[1]
            async with fastws.connect(f"ws://127.0.0.1:{front_port}/here", proxy=None) as ws:
                await ws.send("after a redirect")
                assert await ws.recv() == "after a redirect"
                assert ws.handshake.request.path == "/there?x=1"
            assert hop.seen == ["/here"]


@async_test
async def test_websockets_redirect_loop_is_refused():
    port = free_port()
    loop = answering(302, f"ws://127.0.0.1:{port}/again")
    async with websockets_serve(echo, "127.0.0.1", port, process_request=loop, **PEER_OPTIONS):
        with pytest.raises(InvalidRedirect, match="more than 10 redirects"):
            await fastws.connect(f"ws://127.0.0.1:{port}/", proxy=None)
        assert len(loop.seen) == 11


@async_test
async def test_reconnects_through_refusals_and_restarts_of_a_websockets_server():
    """The peer answers 503 three times, then serves; then it is stopped and,
    after some refused connections, started again. Every numbered message the
    server acknowledged arrives exactly once, in order, and the redirect the
    restarted server answers first is followed again."""
    port = free_port()
    received: list[str] = []

    async def collect(peer):
        async for message in peer:
            received.append(message)
            await peer.send(f"ack {message}")

    gate = answering(503, first=3)
    server = await websockets_serve(collect, "127.0.0.1", port, process_request=gate, **PEER_OPTIONS)
    client = fastws.connect(f"ws://127.0.0.1:{port}/", proxy=None, backoff=fast_backoff())
    pending = [str(n) for n in range(40)]
    restarted = False
    async for ws in client:
        try:
            while pending:
                await ws.send(pending[0])
                assert await ws.recv() == f"ack {pending[0]}"
                pending.pop(0)
                if len(pending) == 20 and not restarted:
                    restarted = True
                    server.close()
                    await server.wait_closed()
                    # Down: nothing listens, a connection is refused.
                    with pytest.raises(ConnectionClosed):
                        await ws.recv()
                    with pytest.raises(OSError):
                        await fastws.connect(f"ws://127.0.0.1:{port}/", proxy=None)
                    front = answering(307, f"ws://127.0.0.1:{port}/moved", first=1)
                    server = await websockets_serve(collect, "127.0.0.1", port, process_request=front, **PEER_OPTIONS)
        except ConnectionClosed:
            continue
        break
    server.close()
    await server.wait_closed()
    assert received == [str(n) for n in range(40)]
    assert gate.seen == ["/"] * 4  # three 503s, then the connection
    assert front.seen == ["/", "/moved"]  # the reconnection followed the redirect
    assert isinstance(client.last_error, ConnectionClosed)


@async_test
async def test_websockets_4xx_is_not_retried():
    gate = answering(403)
    async with websockets_serve(echo, "127.0.0.1", 0, process_request=gate, **PEER_OPTIONS) as server:
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(InvalidStatus) as info:
            async for _ in fastws.connect(f"ws://127.0.0.1:{port}/", proxy=None, backoff=fast_backoff()):
                pytest.fail("a 403 must not connect")
    assert info.value.status == 403 and gate.seen == ["/"]
