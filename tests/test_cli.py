"""The command line: `fastws serve` (the tutorial's echo server) and `fastws client`."""

from __future__ import annotations

import asyncio
import sys
import urllib.request

from fastws import connect, serve
from fastws.__main__ import build_parser

from .support.asyncio import async_test


def test_serve_answers_plain_http(cli_server):
    with urllib.request.urlopen(f"http://127.0.0.1:{cli_server}/", timeout=10) as response:
        assert response.read() == b"websocket test"


@async_test
async def test_serve_echoes_text_and_binary(cli_server):
    async with connect(f"ws://127.0.0.1:{cli_server}") as ws:
        await ws.send("hello world")
        assert await ws.recv() == "hello world"
        await ws.send(bytes(262145))
        assert await ws.recv() == bytes(262145)


def test_default_address_is_the_tutorials():
    args = build_parser().parse_args(["serve"])
    assert (args.host, args.port) == ("127.0.0.1", 3000)


@async_test
async def test_client_sends_stdin_lines_and_prints_messages():
    async def shout(ws):
        async for message in ws:
            await ws.send(message.upper())

    async with serve(shout) as server:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "fastws",
            "client",
            f"ws://127.0.0.1:{server.port}",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        process.stdin.write(b"hello\n")
        await process.stdin.drain()
        line = await asyncio.wait_for(process.stdout.readline(), 10)
        assert line == b"< HELLO\n"
        process.stdin.close()
        await asyncio.wait_for(process.wait(), 10)
        assert process.returncode == 0
