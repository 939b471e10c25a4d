"""fastws against Node's ws package, in both roles: a Node ws server against a
fastws client, and a Node ws client against a fastws server.

The Node peers (tests/interop/node/echo_*.js) echo every message and obey
commands sent as text messages, so that fastws drives every test: it sends,
checks the echo, and makes Node close or ping. Node's permessage-deflate is off
except in the tests named for it.
"""

from __future__ import annotations

import asyncio
import uuid
from contextlib import asynccontextmanager

import pytest

import fastws
from fastws.exceptions import ConnectionClosed

from ..support.asyncio import async_test
from ..support.codecs import use_codec
from .peers import (
    CLOSE_REASON,
    LARGE_BINARY,
    LARGE_TEXT,
    LARGE_TIMEOUT,
    TIMEOUT,
    Acceptor,
    PeerProcess,
    many_messages,
    node_command,
    recv,
    start_node_peer,
)

NODE_PROTOCOLS = ["chat.v2", "chat.v1"]  # what Node accepts (as server) or offers (as client)
FASTWS_PROTOCOLS = ["chat.v1", "chat.v2"]


@pytest.fixture(autouse=True)
def backend(codec, monkeypatch):
    use_codec(monkeypatch, codec)


class NodeServer:
    """A Node ws echo server process (echo_server.js) listening on ``port``."""

    def __init__(self, *flags: str) -> None:
        self.process, listening = start_node_peer("echo_server.js", *flags, ready=r"listening (\d+)")
        self.port = int(listening.group(1))


@pytest.fixture(scope="module")
def node_server():
    """A Node ws echo server without compression, shared by the module's tests."""
    server = NodeServer("--protocols=" + ",".join(NODE_PROTOCOLS))
    yield server
    server.process.stop()


@pytest.fixture(scope="module")
def node_deflate_server():
    """A Node ws echo server with permessage-deflate on."""
    server = NodeServer("--deflate")
    yield server
    server.process.stop()


@pytest.fixture(scope="module")
def node_clients():
    """A Node process (echo_client.js) that opens a ws echo client per request."""
    process, _ = start_node_peer("echo_client.js", ready="ready")
    yield process
    process.stop()


class NodeLink:
    """A fastws connection ``ws`` whose other end is a Node echo peer."""

    def __init__(self, ws, peer: PeerProcess, path: str, handshake: dict) -> None:
        self.ws = ws
        self.peer = peer
        self.path = path
        self.handshake = handshake  # Node's view: protocol, extensions

    async def event(self, name: str, timeout: float = TIMEOUT) -> dict:
        return await self.peer.event(name, self.path, timeout)

    async def echo(self, message, timeout: float = TIMEOUT) -> None:
        await self.ws.send(message)
        echoed = await recv(self.ws, timeout)
        assert type(echoed) is type(message) and echoed == message


@asynccontextmanager
async def link_to_node_server(server: NodeServer, **fastws_options):
    """A fastws client connected to ``server`` (on a path of its own)."""
    path = f"/{uuid.uuid4().hex}"
    async with fastws.connect(f"ws://127.0.0.1:{server.port}{path}", **fastws_options) as ws:
        yield NodeLink(ws, server.process, path, await server.process.event("connection", path))


@asynccontextmanager
async def link_to_node_client(clients: PeerProcess, node_options: dict, **fastws_options):
    """A fastws server and a Node client (``node_options``: protocols, deflate) connected to it."""
    path = f"/{uuid.uuid4().hex}"
    acceptor = Acceptor()
    async with fastws.serve(acceptor, "127.0.0.1", 0, **fastws_options) as server:
        clients.send_json({"url": f"ws://127.0.0.1:{server.port}{path}", **node_options})
        ws = await acceptor.accept()
        yield NodeLink(ws, clients, path, await clients.event("open", path))


@pytest.fixture(params=["node-server", "node-client"])
def role(request):
    """The role Node plays."""
    return request.param


@pytest.fixture
def link(role, request):
    """Opens one connection with Node in ``role``: ``async with link(**fastws_options) as link``.
    ``subprotocols=`` is what fastws offers (as client) or accepts (as server)."""
    if role == "node-server":
        server = request.getfixturevalue("node_server")
        return lambda **options: link_to_node_server(server, **options)
    clients = request.getfixturevalue("node_clients")

    def open_link(subprotocols=None, **options):
        node_options = {"protocols": NODE_PROTOCOLS} if subprotocols else {}
        return link_to_node_client(clients, node_options, subprotocols=subprotocols, **options)

    return open_link


@async_test
async def test_text_binary_and_empty_messages(link):
    async with link() as node:
        for message in ["hello world", "h€llo 😀", "", b"\x00\x01\xfe\xff", b""]:
            await node.echo(message)


@async_test
async def test_262145_byte_binary(link):
    async with link() as node:
        await node.echo(LARGE_BINARY)
    async with link(max_frame_size=65536) as node:  # fastws sends it in 5 fragments
        await node.echo(LARGE_BINARY)


@async_test
async def test_1mib_multibyte_text(link):
    async with link() as node:
        await node.echo(LARGE_TEXT, LARGE_TIMEOUT)


@async_test
async def test_pings_both_ways(link):
    async with link() as node:
        assert await asyncio.wait_for(node.ws.ping(b"from fastws"), TIMEOUT) >= 0
        await node.ws.send(node_command("ping", data="from node"))
        assert await recv(node.ws) == "pong from node"  # sent by Node once fastws answered


@async_test
async def test_many_messages_arrive_in_order(link):
    messages = many_messages()
    async with link() as node:
        for message in messages:
            await node.ws.send(message)
        assert [await recv(node.ws) for _ in messages] == messages


@async_test
async def test_subprotocol_negotiation(link, role):
    # The server picks its first choice among those the client offered.
    expected = "chat.v2" if role == "node-server" else "chat.v1"
    async with link(subprotocols=FASTWS_PROTOCOLS) as node:
        assert node.ws.subprotocol == node.handshake["protocol"] == expected
        await node.echo("hello")


@async_test
async def test_fastws_closes_with_4000_and_reason(link):
    async with link() as node:
        await asyncio.wait_for(node.ws.close(4000, CLOSE_REASON), TIMEOUT)
        seen_by_node = await node.event("close")
        assert (seen_by_node["code"], seen_by_node["reason"]) == (4000, CLOSE_REASON)
        assert (node.ws.close_code, node.ws.close_reason) == (4000, CLOSE_REASON)  # ws echoes both


@async_test
async def test_node_closes_with_4000_and_reason(link):
    async with link() as node:
        await node.ws.send(node_command("send", text="last"))
        await node.ws.send(node_command("close", code=4000, reason=CLOSE_REASON))
        assert await recv(node.ws) == "last"
        with pytest.raises(ConnectionClosed) as closed:
            await recv(node.ws)
        assert (closed.value.code, closed.value.reason) == (4000, CLOSE_REASON)
        closed_event = await node.event("close")
        assert (closed_event["code"], closed_event["reason"]) == (4000, CLOSE_REASON)  # fastws echoes both


@async_test
async def test_node_client_offering_deflate_works_with_fastws_server(node_clients):
    async with link_to_node_client(node_clients, {"deflate": True}) as node:
        assert "permessage-deflate" in node.ws.request.headers.get("Sec-WebSocket-Extensions", "")
        for message in ["hello world", b"\x00\xff" * 1000, LARGE_BINARY, LARGE_TEXT]:
            await node.echo(message, LARGE_TIMEOUT)
        await asyncio.wait_for(node.ws.close(4000, CLOSE_REASON), TIMEOUT)
        assert (await node.event("close"))["code"] == 4000


@async_test
async def test_node_server_with_deflate_works_with_fastws_client(node_deflate_server):
    async with link_to_node_server(node_deflate_server) as node:
        for message in ["hello world", b"\x00\xff" * 1000, LARGE_BINARY, LARGE_TEXT]:
            await node.echo(message, LARGE_TIMEOUT)
        await asyncio.wait_for(node.ws.close(4000, CLOSE_REASON), TIMEOUT)
        assert (await node.event("close"))["code"] == 4000
