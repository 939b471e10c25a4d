"""fastws.sync against hostile peers: a ping flood from a peer that reads
nothing (and every ping answered while the peer does read), and 500
concurrent connections without leaked threads or file descriptors
(``slow``). The quick hostile cases (slowloris, a peer vanishing mid-frame,
a writer to a peer that never reads) are in test_sync.py."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time

import pytest

from fastws.codec import FrameParser
from fastws.exceptions import ConnectionClosedError
from fastws.frames import OP_CLOSE, OP_PING, OP_PONG, OP_TEXT
from fastws.sync import connect

from .support.frames import client_frame
from .test_sync import TIMEOUT, backend, echo, raw_client, running, url, wait_until  # noqa: F401


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_ping_flood_from_a_peer_that_reads_nothing_is_bounded_and_dropped():
    done = threading.Event()
    seen = {}

    def handler(ws):
        # A small send buffer, so that the pongs fill it in a fraction of a
        # second: fastws answers a flood with at most one pong per write (the
        # newest, RFC 6455 §5.5.3), which can take minutes to fill the
        # kernel's autotuned buffers.
        ws.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        try:
            ws.recv(TIMEOUT)
        except ConnectionClosedError as exc:
            seen["error"] = exc
            seen["outbox"] = len(ws._outbox)
        done.set()

    with running(handler, write_timeout=0.2, compression=None) as server:
        sock, _ = raw_client(server.port, receive_buffer=4096)
        sock.setblocking(False)
        ping = client_frame(OP_PING, b"x" * 125)
        deadline = time.monotonic() + TIMEOUT
        while not done.is_set() and time.monotonic() < deadline:  # until the server gives up on us
            try:
                sock.send(ping)
            except BlockingIOError:
                done.wait(0.01)  # our own buffer is full: the server stopped reading
            except OSError:
                break
        assert done.wait(TIMEOUT)
        sock.close()
    assert seen["error"].code == 1006 and seen["error"].reason == "write timed out"
    assert seen["outbox"] <= 1


def test_every_ping_is_answered_while_another_thread_writes():
    """Autobahn 2.10/2.11: a ping that arrives while a large send is on its
    way gets its own pong. Only a writer stuck behind a peer that reads
    nothing makes pongs collapse into the newest (the flood test above)."""
    message = b"m" * (16 << 20)
    pings_parsed = threading.Event()
    send_errors = []

    def send(ws):
        try:
            ws.send(message)
        except Exception as exc:
            send_errors.append(exc)

    def handler(ws):
        ws.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # the send stays on its way
        sender = threading.Thread(target=send, args=(ws,))
        sender.start()  # blocks: the peer reads nothing until its pings were parsed
        assert ws.recv(TIMEOUT) == "after the pings"
        pings_parsed.set()
        ws.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        sender.join(TIMEOUT)
        ws.recv(TIMEOUT)

    with running(handler, compression=None) as server:
        sock, early = raw_client(server.port)
        parser = FrameParser(is_client=True, max_message_size=None)
        frames = parser.feed(early or sock.recv(1))  # the large send has started
        sock.sendall(b"".join(client_frame(OP_PING, b"%d" % i) for i in range(10)))
        sock.sendall(client_frame(OP_TEXT, b"after the pings"))
        assert pings_parsed.wait(TIMEOUT)
        while len(frames) < 11:
            data = sock.recv(1 << 20)
            assert data, "closed early"
            frames += parser.feed(data)
        # Close cleanly: the server's close frame is the last thing it writes,
        # so none of its threads can write to a socket we have closed.
        sock.sendall(client_frame(OP_CLOSE, struct.pack("!H", 1000)))
        while not any(frame.opcode == OP_CLOSE for frame in frames):
            data = sock.recv(1 << 20)
            assert data, "no close frame"
            frames += parser.feed(data)
        sock.close()
    assert send_errors == []
    pongs = [frame.payload for frame in frames if frame.opcode == OP_PONG]
    assert pongs == [b"%d" % i for i in range(10)]
    assert [frame.payload for frame in frames if frame.opcode not in (OP_PONG, OP_CLOSE)] == [message]


@pytest.mark.slow
def test_500_concurrent_connections_leak_no_threads_or_descriptors():
    count = 500
    threads_before, fds_before = threading.active_count(), open_fds()
    with running(echo, max_connections=count) as server:
        clients = []
        try:
            for _ in range(count):
                clients.append(connect(url(server), ping_interval=None, compression=None))
            wait_until(lambda: len(server.connections) == count)
            for i, ws in enumerate(clients):
                ws.send(str(i))
            assert [ws.recv(TIMEOUT) for ws in clients] == [str(i) for i in range(count)]
        finally:
            for ws in clients[: count // 2]:
                ws.close()  # half close themselves; shutdown() closes the others
        assert all(ws.closed for ws in clients[: count // 2])
    for ws in clients:
        assert ws.wait_closed(TIMEOUT)
    wait_until(lambda: threading.active_count() <= threads_before)
    wait_until(lambda: open_fds() <= fds_before)
