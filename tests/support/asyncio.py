"""asyncio helpers: running coroutines with a deadline, bounded waits, a raw TCP peer, upgrade requests."""

from __future__ import annotations

import asyncio
import base64
import functools
import os
import weakref

from fastws.exceptions import ConnectionClosed
from fastws.frames import build_close

from .frames import client_frame

TEST_DEADLINE = 1200.0


# The tasks async_test runs tests in (not the tests' own): leftover_tasks() leaves them out.
_HARNESS_TASKS: weakref.WeakSet = weakref.WeakSet()


def async_test(function, deadline: float = TEST_DEADLINE):
    """Run an async test function on a fresh event loop, bounded in time; with
    ``FASTWS_TEST_AIOFASTNET=1`` the loop makes its connections on aiofastnet's
    transports (``aiofastnet.patch_loop``), as .ci/run does once."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        async def run():
            if os.environ.get("FASTWS_TEST_AIOFASTNET"):
                import aiofastnet

                aiofastnet.patch_loop(asyncio.get_running_loop())
            _HARNESS_TASKS.add(asyncio.current_task())
            return await asyncio.wait_for(function(*args, **kwargs), deadline)

        return asyncio.run(run())

    return wrapper


async def until(predicate, timeout: float = 10.0, interval: float = 0.005) -> None:
    """Wait until ``predicate()`` holds, checking it every ``interval`` seconds
    (0: every pass of the loop); fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, f"still false after {timeout} s: {predicate}"
        await asyncio.sleep(interval)


async def after_loop_passes(predicate, passes: int = 10) -> None:
    """Let the loop run until ``predicate()`` holds, at most ``passes`` passes;
    the caller then asserts what it expects (a few passes, not a time bound)."""
    for _ in range(passes):
        if predicate():
            return
        await asyncio.sleep(0)


def leftover_tasks() -> list:
    """The running loop's unfinished tasks, other than the caller's and async_test's own.

    asyncio.wait_for (the deadline) runs the test in a task of its own before
    Python 3.12 and in the calling task from 3.12 on; neither is left over.
    """
    current = asyncio.current_task()
    return [task for task in asyncio.all_tasks() if task is not current and task not in _HARNESS_TASKS]


def close_code_recorder():
    """``(handler, code)``: a handler that waits for a message and instead sets
    the future ``code`` to the close code its connection ended with."""
    code = asyncio.get_running_loop().create_future()

    async def handler(ws) -> None:
        try:
            await ws.recv()
        except ConnectionClosed as exc:
            code.set_result(exc.code)

    return handler, code


def server_idle(server) -> bool:
    """No connection left on ``server``: none open or closing, none in its handshake."""
    return not server.connections and not server._handshaking


def upgrade_request(path: str = "/", *extra: str, version: str = "13") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        f"Sec-WebSocket-Version: {version}",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class RawPeer:
    """A hand-driven TCP client, for sending what no well-behaved client would."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int, handshake: bool = True) -> RawPeer:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        peer = cls(reader, writer)
        if handshake:
            writer.write(upgrade_request())
            head = await peer.read_head()
            assert head.startswith(b"HTTP/1.1 101"), head
        return peer

    async def read_head(self) -> bytes:
        return await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 10)

    async def read_frame(self) -> tuple[int, bytes]:
        """Read one unmasked server frame: (opcode, payload)."""
        first, second = await asyncio.wait_for(self.reader.readexactly(2), 10)
        length = second & 0x7F
        if length == 126:
            length = int.from_bytes(await self.reader.readexactly(2), "big")
        elif length == 127:
            length = int.from_bytes(await self.reader.readexactly(8), "big")
        return first & 0x0F, await asyncio.wait_for(self.reader.readexactly(length), 10)

    async def read_until_eof(self) -> bytes:
        return await asyncio.wait_for(self.reader.read(), 10)

    def send_frame(self, opcode: int, payload: bytes, fin: bool = True) -> None:
        self.writer.write(client_frame(opcode, payload, fin=fin))

    def send_close(self, code: int = 1000, reason: str = "") -> None:
        self.send_frame(8, build_close(code, reason))

    def close(self) -> None:
        self.writer.close()
