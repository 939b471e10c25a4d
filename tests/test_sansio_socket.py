"""The README's example: the sans-I/O connection driven over a plain blocking
socket, with no asyncio, against the fastws asyncio client."""

from __future__ import annotations

import asyncio
import socket
import threading

from fastws import connect
from fastws.connection import Connection
from fastws.handshake import HeadParser, ServerHandshake, parse_request

from .support.asyncio import async_test


def blocking_echo_server(listener: socket.socket, closed_with: list) -> None:
    sock, _ = listener.accept()
    sock.settimeout(10)
    head = HeadParser()
    while (result := head.feed(sock.recv(4096))) is None:
        pass
    raw, leftover = result
    response, _, _ = ServerHandshake().accept(parse_request(raw))
    sock.sendall(response.serialize())

    conn = Connection(is_client=False)
    data = leftover
    while True:
        for event in conn.receive_data(data):
            if event.opcode in (1, 2):
                sock.sendall(conn.send(event.payload))
        sock.sendall(conn.data_to_send())
        if conn.should_close_transport:
            break
        data = sock.recv(65536)
        if not data:
            conn.receive_eof()
            break
    closed_with.append((conn.close_code, conn.close_reason))
    sock.close()


@async_test
async def test_sansio_connection_over_a_plain_socket():
    listener = socket.create_server(("127.0.0.1", 0))
    closed_with: list = []
    thread = threading.Thread(target=blocking_echo_server, args=(listener, closed_with), daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    async with connect(f"ws://127.0.0.1:{port}/") as ws:
        await ws.send("over a plain socket")
        assert await ws.recv() == "over a plain socket"
        await ws.send(bytes(300000))
        assert await ws.recv() == bytes(300000)
        assert await ws.ping() >= 0
        await ws.close(1000, "bye")
    await asyncio.get_running_loop().run_in_executor(None, thread.join, 10)
    listener.close()
    assert closed_with == [(1000, "bye")]
