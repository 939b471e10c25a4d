"""fastws's server features against the websockets library's client (a real
peer): unix_serve with websockets' unix_connect, and basic_auth with the
Basic credentials websockets sends for ``ws://user:pass@host/``."""

from __future__ import annotations

import asyncio
import urllib.parse

import pytest
from websockets.asyncio.client import connect as websockets_connect
from websockets.asyncio.client import unix_connect as websockets_unix_connect
from websockets.exceptions import InvalidStatus

from fastws.asyncio.server import serve, unix_serve
from fastws.auth import basic_auth

from ..support.asyncio import async_test
from .peers import NO_PROXY, TIMEOUT

OPTIONS = dict(ping_interval=None, open_timeout=TIMEOUT, close_timeout=TIMEOUT)


async def echo(ws):
    async for message in ws:
        await ws.send(message)


async def whoami(ws):
    await ws.send(ws.username)
    await ws.wait_closed()


@pytest.mark.parametrize("compression", ["deflate", None])
@async_test
async def test_websockets_unix_connect_to_unix_serve(tmp_path, compression):
    path = str(tmp_path / "ws.sock")
    async with unix_serve(echo, path) as server:
        async with websockets_unix_connect(path, "ws://localhost/room", compression=compression, **OPTIONS) as peer:
            for message in ("text é€", b"\x00binary\xff", "x" * 100_000):
                await peer.send(message)
                assert await asyncio.wait_for(peer.recv(), TIMEOUT) == message
            (accepted,) = server.connections
            assert accepted.path == "/room"
            assert (accepted.extension is not None) == (compression is not None)
        await asyncio.wait_for(peer.wait_closed(), TIMEOUT)
        assert peer.close_code == 1000


@async_test
async def test_server_close_code_and_reason_reach_websockets(tmp_path):
    path = str(tmp_path / "ws.sock")
    server = await unix_serve(echo, path)
    async with websockets_unix_connect(path, **OPTIONS) as peer:
        await peer.send("hi")
        assert await asyncio.wait_for(peer.recv(), TIMEOUT) == "hi"
        await asyncio.wait_for(server.close(code=1012, reason="restarting"), TIMEOUT)
        await asyncio.wait_for(peer.wait_closed(), TIMEOUT)
        assert (peer.close_code, peer.close_reason) == (1012, "restarting")


@pytest.mark.parametrize("is_async", [False, True])
@async_test
async def test_websockets_basic_auth_against_basic_auth(is_async):
    credentials = {"alice": "s3cret", "zoë": "pässwörd€"}

    async def check(username, password):
        await asyncio.sleep(0)
        return credentials.get(username) == password

    hook = basic_auth("interop", check_credentials=check) if is_async else basic_auth("interop", credentials)
    async with serve(whoami, process_request=hook) as server:
        port = server.port
        async with websockets_connect(f"ws://alice:s3cret@127.0.0.1:{port}/", **OPTIONS, **NO_PROXY) as peer:
            assert await asyncio.wait_for(peer.recv(), TIMEOUT) == "alice"
        user, password = (urllib.parse.quote(part) for part in ("zoë", "pässwörd€"))
        async with websockets_connect(f"ws://{user}:{password}@127.0.0.1:{port}/", **OPTIONS, **NO_PROXY) as peer:
            assert await asyncio.wait_for(peer.recv(), TIMEOUT) == "zoë"
        for userinfo in ("alice:wrong", "mallory:s3cret"):
            with pytest.raises(InvalidStatus) as info:
                await websockets_connect(f"ws://{userinfo}@127.0.0.1:{port}/", **OPTIONS, **NO_PROXY)
            response = info.value.response
            assert response.status_code == 401
            assert response.headers["WWW-Authenticate"] == 'Basic realm="interop", charset="UTF-8"'
            assert response.headers["Server"].startswith("fastws/")
        with pytest.raises(InvalidStatus) as info:  # no credentials at all
            await websockets_connect(f"ws://127.0.0.1:{port}/", **OPTIONS, **NO_PROXY)
        assert info.value.response.status_code == 401
