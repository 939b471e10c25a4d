"""The WebSocket connection after the handshake, sans I/O (RFC 6455 §5-§7).

A ``Connection`` turns received bytes into events and calls into bytes to send.
It never touches a socket and never imports asyncio, so any server can drive it:

    conn = Connection(is_client=False)
    for event in conn.receive_data(sock.recv(65536)):
        ...                                  # Frame: TEXT/BINARY message, PING, PONG, CLOSE
    sock.sendall(conn.data_to_send())        # automatic pongs and close replies
    sock.sendall(conn.send_text("hello"))    # what you send yourself
    if conn.should_close_transport: sock.close()

Events are codec ``Frame`` objects: a whole message (``opcode`` TEXT with a
``str`` payload, or BINARY with ``bytes``), or a PING, PONG or CLOSE frame.

The source is ``fastws/_connection_py.py``. Where the compiled codec is in use,
the names come from ``fastws._connection_c``: the same source compiled by Cython,
with ``Connection`` an extension type (``_connection_c.pxd``), as aiohttp builds
its WebSocket reader. Each message passes through a dozen ``Connection`` calls and
attribute reads; compiled, they skip the interpreter. ``FASTWS_CODEC=python``
selects the source itself (see ``fastws.codec``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .codec import backend_module

__all__ = ["State", "Connection", "PreparedMessage", "ConnectionView", "PASSTHROUGH_BYTES"]

if TYPE_CHECKING:  # one source: type-check it, whichever module runs
    from ._connection_py import PASSTHROUGH_BYTES, Connection, ConnectionView, PreparedMessage, State
else:
    _implementation = backend_module("_connection")
    State = _implementation.State
    Connection = _implementation.Connection
    PreparedMessage = _implementation.PreparedMessage
    ConnectionView = _implementation.ConnectionView
    PASSTHROUGH_BYTES = _implementation.PASSTHROUGH_BYTES
