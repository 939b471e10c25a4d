"""fastws's asyncio layer on aiofastnet's compiled transports (``aiofastnet.patch_loop``).

.ci/run runs the quick suite once more with ``FASTWS_TEST_AIOFASTNET=1``,
which patches every ``async_test`` loop (write pausing, lingering close, the
client's reconnects and the rest then run on aiofastnet's transports); these
tests check that the patch is real (the connections are aiofastnet's) and the
paths that depend on the transport's type: large messages by reference
(``writelines``), TLS."""

from __future__ import annotations

import asyncio
import os

import aiofastnet

from fastws import connect, serve
from fastws.asyncio.protocol import writelines_trusted

from .support.asyncio import async_test
from .support.tls import tls_contexts


def on_aiofastnet(transport) -> bool:
    return type(transport).__module__.startswith("aiofastnet.")


async def echo(ws):
    async for message in ws:
        await ws.send(message)


@async_test
async def test_echo_on_aiofastnet_transports():
    aiofastnet.patch_loop(asyncio.get_running_loop())
    handlers: list = []

    async def handler(ws):
        handlers.append(ws)
        await echo(ws)

    big = bytes(range(256)) * 4096  # 1 MiB: the server writes it by reference, in one writelines()
    async with serve(handler, "127.0.0.1", 0) as server:
        async with connect(f"ws://127.0.0.1:{server.port}/", max_message_size=None) as ws:
            assert on_aiofastnet(ws.transport) and writelines_trusted(ws.transport)
            for message in ("hello", b"\x00\xff", big, "é€😀" * 50000):
                await ws.send(message)
                assert await ws.recv() == message
            assert on_aiofastnet(handlers[0].transport)


@async_test
async def test_tls_on_aiofastnet():
    aiofastnet.patch_loop(asyncio.get_running_loop())
    server_context, client_context = tls_contexts()
    async with serve(echo, "127.0.0.1", 0, ssl=server_context) as server:
        async with connect(f"wss://localhost:{server.port}/", ssl=client_context) as ws:
            assert on_aiofastnet(ws.transport)
            await ws.send("over TLS")
            assert await ws.recv() == "over TLS"


@async_test
async def test_the_suite_runs_on_the_transports_it_says():
    """async_test patches its loop with FASTWS_TEST_AIOFASTNET=1, and only then."""
    patched = bool(os.environ.get("FASTWS_TEST_AIOFASTNET"))
    async with serve(echo, "127.0.0.1", 0) as server:
        async with connect(f"ws://127.0.0.1:{server.port}/") as ws:
            assert on_aiofastnet(ws.transport) is patched
