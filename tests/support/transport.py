"""A fake asyncio transport, for driving a fastws ``WebSocket`` through states a
real socket reaches only by timing: writing paused, lost while paused."""

from __future__ import annotations

import asyncio
from typing import Any

from fastws.asyncio.protocol import Limits, WebSocket
from fastws.handshake import ClientHandshake, ServerHandshake
from fastws.upgrade import ClientUpgrade, ServerUpgrade

from .asyncio import upgrade_request


class FakeTransport:
    """Records writes; close() and abort() report the loss on the next loop iteration, as asyncio does.

    ``written`` holds what each call wrote (one entry per ``write`` or
    ``writelines``, as one syscall each); ``buffers`` the objects handed over,
    so that a test can check a payload was passed by reference."""

    def __init__(self, protocol: asyncio.Protocol) -> None:
        self.protocol = protocol
        self.written: list[bytes] = []
        self.buffers: list = []
        self.closing = False
        self.eof = False
        self.reading = True

    def get_extra_info(self, name: str, default=None):
        return ("127.0.0.1", 50000) if name == "peername" else default

    def set_write_buffer_limits(self, high=None, low=None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def write(self, data) -> None:
        assert not self.eof and not self.closing, "write after close"
        self.written.append(bytes(data))
        self.buffers.append(data)

    def writelines(self, buffers) -> None:
        assert not self.eof and not self.closing, "write after close"
        self.written.append(b"".join(buffers))
        self.buffers += buffers

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    abort = close

    def frames(self) -> list[tuple[int, bytes, bool]]:
        """What was written, as unmasked server frames: (opcode, payload, fin)."""
        return server_frames(b"".join(self.written))

    def payloads_of_each_write(self) -> list[list[bytes]]:
        """The payloads of the server frames in each write, write by write."""
        return [[payload for _, payload, _ in server_frames(data)] for data in self.written]


def server_frames(data: bytes) -> list[tuple[int, bytes, bool]]:
    """Unmasked frames, whole: (opcode, payload, fin) each."""
    frames, at = [], 0
    while at < len(data):
        length, head = data[at + 1] & 0x7F, 2
        if length == 126:
            length, head = int.from_bytes(data[at + 2 : at + 4], "big"), 4
        elif length == 127:
            length, head = int.from_bytes(data[at + 2 : at + 10], "big"), 10
        start = at + head
        frames.append((data[at] & 0x0F, data[start : start + length], bool(data[at] & 0x80)))
        at = start + length
    return frames


def open_server_websocket(
    transport_class: type[FakeTransport] = FakeTransport, listener: Any = None, **limits
) -> tuple[WebSocket, Any]:
    """A server-side WebSocket past its handshake, on a FakeTransport (keepalive off)."""
    limits.setdefault("ping_interval", None)
    ws = WebSocket(Limits(**limits), is_client=False, listener=listener)
    transport = transport_class(ws)
    ws.connection_made(transport)  # type: ignore[arg-type]
    upgrade = ServerUpgrade(ServerHandshake(extensions=None))
    assert upgrade.receive_data(upgrade_request()) is not None
    upgrade.accept()
    ws.open_connection(upgrade)
    return ws, transport


def open_client_websocket(listener: Any = None, **limits) -> tuple[WebSocket, FakeTransport]:
    """A client-side WebSocket past its handshake (answered by fastws's own
    server handshake), on a FakeTransport (keepalive off)."""
    limits.setdefault("ping_interval", None)
    ws = WebSocket(Limits(**limits), is_client=True, listener=listener)
    transport = FakeTransport(ws)
    ws.connection_made(transport)  # type: ignore[arg-type]
    client = ClientUpgrade(ClientHandshake("127.0.0.1:3000", "/"))
    server = ServerUpgrade(ServerHandshake(extensions=None))
    assert server.receive_data(client.request_bytes()) is not None
    assert client.receive_data(server.accept().serialize()) is not None
    ws.open_connection(client)
    return ws, transport
