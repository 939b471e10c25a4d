"""A WebSocket echo server on plain blocking sockets: no asyncio, one thread per client.

The worked example of docs/codec.md: fastws's sans-I/O layers do the protocol,
this file does the I/O. ``HeadParser`` collects the HTTP request head,
``ServerHandshake`` checks it and builds the 101 answer, and a ``Connection``
turns received bytes into messages and messages into bytes (its frame codec is
the compiled one when built). The same few calls work in any server loop:
selectors, trio, gevent, a thread pool.

    python examples/sansio_echo.py --port 8765
    python -m fastws bench ws://127.0.0.1:8765/ -d 3      # or any WebSocket client
"""

from __future__ import annotations

import argparse
import socket
import socketserver
from typing import Optional

from fastws.connection import Connection
from fastws.exceptions import InvalidHandshake
from fastws.frames import Opcode
from fastws.handshake import HeadParser, ServerHandshake, error_response, parse_request

HANDSHAKE = ServerHandshake()  # no subprotocols, no extensions: plain RFC 6455


def accept(sock: socket.socket) -> Optional[bytes]:
    """Read the upgrade request and answer it. Returns the bytes that followed the
    request head (the client may already have sent frames), or None if refused."""
    head = HeadParser()
    while True:
        data = sock.recv(4096)
        if not data:
            return None  # the client left during the handshake
        try:
            result = head.feed(data)
            if result is None:
                continue
            raw, leftover = result
            response, _subprotocol, _extension = HANDSHAKE.accept(parse_request(raw))
        except InvalidHandshake as exc:  # malformed, or not a WebSocket request
            sock.sendall(error_response(exc.status, exc.reason, exc.headers).serialize())
            return None
        sock.sendall(response.serialize())
        return leftover


def echo(sock: socket.socket) -> tuple[Optional[int], str]:
    """Serve one client: echo every message; return the close code and reason."""
    leftover = accept(sock)
    if leftover is None:
        return None, "handshake refused"
    conn = Connection(is_client=False, max_message_size=16 << 20)
    data = leftover
    while True:
        out = []
        for event in conn.receive_data(data):
            if event.opcode in (Opcode.TEXT, Opcode.BINARY):  # a whole message: str or bytes
                out.append(conn.send(event.payload))
            # PING, PONG and CLOSE frames are handled by the Connection itself.
        out.append(conn.data_to_send())  # pongs, and the reply to a close frame
        sock.sendall(b"".join(out))
        if conn.should_close_transport:  # the close handshake is done, or the client broke the protocol
            break
        data = sock.recv(65536)
        if not data:
            conn.receive_eof()  # the TCP connection dropped: close code 1006
            break
    return conn.close_code, conn.close_reason


class Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.settimeout(60)  # a silent client does not hold its thread forever
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            echo(self.request)
        except OSError:
            pass  # reset or timed out: nothing left to say


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def main() -> None:
    parser = argparse.ArgumentParser(description="WebSocket echo server on blocking sockets (fastws sans-I/O)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    with Server((args.host, args.port), Handler) as server:
        print(f"listening on ws://{args.host}:{server.server_address[1]}/", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
