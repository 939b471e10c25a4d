"""The asyncio server's own TLS layer (fastws.asyncio.tls): wss:// end to end,
what the application sees of TLS, and peers that break TLS: garbage instead
of a ClientHello, a TLS handshake that never starts or never finishes, a
close_notify in the middle of a connection, a server closed during a TLS
handshake. Memory per idle wss:// connection is measured by bench/bench_memory.py."""

from __future__ import annotations

import asyncio
import os
import ssl

import pytest

from fastws import connect, serve

from .support.asyncio import async_test, close_code_recorder, server_idle, until, upgrade_request
from .support.tls import tls_contexts

TIMEOUT = 10.0


async def echo(ws):
    async for message in ws:
        await ws.send(message)


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.read(), TIMEOUT)


@async_test
async def test_wss_echo_and_what_the_handler_sees_of_tls():
    server_context, client_context = tls_contexts()
    seen = {}

    async def handler(ws):
        sslobj = ws.transport.get_extra_info("ssl_object")
        seen.update(
            version=sslobj.version(),
            cipher=ws.transport.get_extra_info("cipher"),
            peercert=ws.transport.get_extra_info("peercert"),
            peername=ws.transport.get_extra_info("peername"),
        )
        await echo(ws)

    async with serve(handler, "127.0.0.1", 0, ssl=server_context) as server:
        async with connect(f"wss://127.0.0.1:{server.port}/", ssl=client_context) as ws:
            for message in ("é" * 1000, os.urandom(500_000), b"", "last"):
                await ws.send(message)
                assert await asyncio.wait_for(ws.recv(), TIMEOUT) == message
            assert await asyncio.wait_for(ws.ping(), TIMEOUT) >= 0
            local = ws.local_address
        assert ws.close_code == 1000
    assert seen["version"] in ("TLSv1.2", "TLSv1.3")
    assert seen["cipher"] is not None and seen["peercert"] is None  # no client certificate asked for
    assert seen["peername"] == local


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_concurrent_wss_connections_each_get_their_own_bytes(loop_name):
    """The TLS layer reads ciphertext into one buffer per thread, shared by
    every connection: connections sending large messages at the same time
    must each get exactly their own messages back, on either loop."""
    server_context, client_context = tls_contexts()

    async def client(port: int, seed: int) -> None:
        messages = [bytes([seed]) * 1000 + os.urandom(size) for size in (100, 70_000, 300_000, 900_000)]
        async with connect(f"wss://127.0.0.1:{port}/", ssl=client_context, max_message_size=None) as ws:
            for message in messages:  # all in flight before the first reply is read
                await ws.send(message)
            for message in messages:
                assert await asyncio.wait_for(ws.recv(), TIMEOUT) == message

    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, ssl=server_context) as server:
            await asyncio.gather(*(client(server.port, seed) for seed in range(4)))

    if loop_name == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        uvloop.run(asyncio.wait_for(main(), 60))
    else:
        asyncio.run(asyncio.wait_for(main(), 60))


@async_test
async def test_client_certificate_reaches_the_handler():
    import trustme

    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    ca.configure_trust(server_context)
    server_context.verify_mode = ssl.CERT_REQUIRED
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    ca.issue_cert("client@example.com").configure_cert(client_context)
    subjects = []

    async def handler(ws):
        subjects.append(ws.transport.get_extra_info("peercert")["subjectAltName"])
        await echo(ws)

    async with serve(handler, "127.0.0.1", 0, ssl=server_context) as server:
        async with connect(f"wss://127.0.0.1:{server.port}/", ssl=client_context) as ws:
            await ws.send("mutual")
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "mutual"
    assert subjects == [(("email", "client@example.com"),)]


@async_test
async def test_plain_http_to_a_tls_port_is_dropped_without_reaching_the_handler():
    server_context, _ = tls_contexts()
    handled = []

    async def handler(ws):
        handled.append(ws)

    async with serve(handler, "127.0.0.1", 0, ssl=server_context) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(upgrade_request())
        answer = await read_until_closed(reader)
        assert not answer.startswith(b"HTTP/")  # at most a TLS alert, then the connection closes
        writer.close()
        await until(lambda: server_idle(server))
    assert handled == []


@async_test
async def test_a_tls_handshake_that_never_starts_or_never_finishes_ends_at_open_timeout():
    server_context, client_context = tls_contexts()
    async with serve(echo, "127.0.0.1", 0, ssl=server_context, open_timeout=0.3) as server:
        silent_reader, silent_writer = await asyncio.open_connection("127.0.0.1", server.port)
        # TLS done, but no HTTP request after it.
        tls_reader, tls_writer = await asyncio.open_connection(
            "127.0.0.1", server.port, ssl=client_context, server_hostname="127.0.0.1"
        )
        assert await read_until_closed(silent_reader) == b""
        assert await read_until_closed(tls_reader) == b""
        for writer in (silent_writer, tls_writer):
            writer.close()
        await until(lambda: server_idle(server))


@async_test
async def test_close_notify_mid_connection_ends_it():
    """A client that ends TLS (close_notify, then TCP) without a close frame: the
    handler sees 1006, and the server keeps no trace of the connection."""
    server_context, client_context = tls_contexts()
    handler, closed = close_code_recorder()
    async with serve(handler, "127.0.0.1", 0, ssl=server_context) as server:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", server.port, ssl=client_context, server_hostname="127.0.0.1"
        )
        writer.write(upgrade_request())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert head.startswith(b"HTTP/1.1 101")
        writer.close()  # asyncio's TLS sends close_notify, then closes TCP
        assert await asyncio.wait_for(closed, TIMEOUT) == 1006
        await until(lambda: server_idle(server))


@async_test
async def test_server_close_during_a_tls_handshake_drops_it():
    server_context, _ = tls_contexts()
    server = await serve(echo, "127.0.0.1", 0, ssl=server_context)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"\x16\x03\x01")  # the start of a ClientHello, never finished
    await until(lambda: server._handshaking)
    await asyncio.wait_for(server.close(), TIMEOUT)
    try:
        assert await read_until_closed(reader) == b""
    except ConnectionResetError:
        pass  # dropped: closing during a TLS handshake aborts
    writer.close()
    assert server_idle(server)


@pytest.mark.interop
@async_test
async def test_websockets_client_over_wss():
    """A real peer's TLS (websockets on asyncio's SSLProtocol) against ours, both
    ways of ending: the client's close frame, and the server's."""
    from websockets.asyncio.client import connect as websockets_connect

    server_context, client_context = tls_contexts()
    async with serve(echo, "127.0.0.1", 0, ssl=server_context) as server:
        uri = f"wss://127.0.0.1:{server.port}/"
        async with websockets_connect(uri, ssl=client_context) as ws:
            for message in ("hello", os.urandom(300_000)):
                await ws.send(message)
                assert await asyncio.wait_for(ws.recv(), TIMEOUT) == message
        assert ws.close_code == 1000
        async with websockets_connect(uri, ssl=client_context) as ws:
            await until(lambda: len(server.connections) == 1)
            await next(iter(server.connections)).close(1001, "bye")
            await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
        assert (ws.close_code, ws.close_reason) == (1001, "bye")
        await until(lambda: server_idle(server))
