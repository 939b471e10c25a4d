"""The clients (asyncio and threaded) through real proxies to a websockets
server: Debian's tinyproxy (HTTP CONNECT, with and without BasicAuth) and
microsocks (SOCKS5, with and without a username and password).

tinyproxy and microsocks come from tests/interop/install-peers.sh; missing,
these tests fail.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import time
from contextlib import asynccontextmanager

import pytest
from websockets.asyncio.server import serve as websockets_serve

from fastws import sync
from fastws.exceptions import ProxyError

from ..support.asyncio import async_test
from ..test_proxy import open_through
from .peers import INSTALL_HINT, TIMEOUT, PeerProcess, stop_process_group

# tinyproxy's BasicAuth takes letters, digits, "_", "-" and "." only (non-ASCII and
# reserved characters are checked against the fake proxy in tests/test_proxy.py);
# the URL percent-encodes the "-" anyway, which must be decoded.
USER, PASSWORD = "fastws", "s3cret-pass.word"
PASSWORD_IN_URL = "s3cret%2Dpass.word"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(peer: PeerProcess, port: int, timeout: float = TIMEOUT) -> None:
    """Poll until ``port`` on 127.0.0.1 accepts connections (bounded); fail if the peer exits."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if peer.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{peer.name} is not listening on {port}: {peer.stderr_text()}") from None
            time.sleep(0.02)  # polling interval


def stop(peer: PeerProcess) -> None:
    """SIGTERM (SIGKILL if it lingers): neither proxy exits when its stdin closes."""
    stop_process_group(peer.process, TIMEOUT)
    for stream in (peer.process.stdin, peer.process.stdout):
        if stream is not None:
            stream.close()
    peer.stderr.close()


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not installed: {INSTALL_HINT}")
    return path


@asynccontextmanager
async def echo_server():
    """A websockets echo server on 127.0.0.1 (and ::1 on the same port, where there
    is one, so that "localhost" reaches it whichever address a proxy picks)."""

    async def echo(ws):
        async for message in ws:
            await ws.send(message)

    async with websockets_serve(echo, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        try:
            server6 = await websockets_serve(echo, "::1", port)
        except OSError:
            server6 = None
        try:
            yield port
        finally:
            if server6 is not None:
                server6.close()
                await server6.wait_closed()


@asynccontextmanager
async def tinyproxy(tmp_path, target_port: int, basic_auth: bool = False):
    """tinyproxy in the foreground on a free port, allowing CONNECT to ``target_port`` only."""
    port = free_port()
    lines = [f"Port {port}", "Listen 127.0.0.1", "Allow 127.0.0.1", f"ConnectPort {target_port}", "Timeout 30"]
    if basic_auth:
        lines.append(f"BasicAuth {USER} {PASSWORD}")
    config = tmp_path / "tinyproxy.conf"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    peer = PeerProcess("tinyproxy", [binary("tinyproxy"), "-d", "-c", str(config)], tmp_path)
    try:
        await asyncio.to_thread(wait_for_port, peer, port)
        yield port
    finally:
        stop(peer)


@asynccontextmanager
async def microsocks(tmp_path, credentials: bool = False):
    port = free_port()
    args = [binary("microsocks"), "-i", "127.0.0.1", "-p", str(port)]
    if credentials:
        args += ["-u", USER, "-P", PASSWORD]
    peer = PeerProcess("microsocks", args, tmp_path)
    try:
        await asyncio.to_thread(wait_for_port, peer, port)
        yield port
    finally:
        stop(peer)


async def echo_through(uri: str, proxy: str) -> None:
    ws = await open_through(uri, proxy)
    try:
        for message in ("through a real proxy é", b"\x00\xff" * 70000):
            await ws.send(message)
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == message
    finally:
        await ws.close()
    assert ws.close_code == 1000


def sync_open_through(uri: str, proxy: str) -> sync.ClientConnection:
    return sync.connect(uri, proxy=proxy, open_timeout=TIMEOUT)


def sync_echo_through(uri: str, proxy: str) -> None:
    """echo_through with the threaded client (run in a thread: the target server is on this loop)."""
    with sync_open_through(uri, proxy) as ws:
        for message in ("through a real proxy é", b"\x00\xff" * 70000):
            ws.send(message)
            assert ws.recv(TIMEOUT) == message
    assert ws.close_code == 1000


# -- tinyproxy ------------------------------------------------------------------


@async_test
async def test_tinyproxy(tmp_path):
    async with echo_server() as target, tinyproxy(tmp_path, target) as port:
        await echo_through(f"ws://127.0.0.1:{target}/", f"http://127.0.0.1:{port}")
        # A port tinyproxy does not allow: it refuses the CONNECT with 403.
        with pytest.raises(ProxyError) as caught:
            await open_through(f"ws://127.0.0.1:{target + 1}/", f"http://127.0.0.1:{port}")
        assert caught.value.status == 403
        assert f"refused to open a tunnel to 127.0.0.1:{target + 1}: HTTP 403" in str(caught.value)
        await asyncio.to_thread(sync_echo_through, f"ws://127.0.0.1:{target}/", f"http://127.0.0.1:{port}")


@async_test
async def test_tinyproxy_basic_auth(tmp_path):
    async with echo_server() as target, tinyproxy(tmp_path, target, basic_auth=True) as port:
        uri = f"ws://127.0.0.1:{target}/"
        await echo_through(uri, f"http://{USER}:{PASSWORD_IN_URL}@127.0.0.1:{port}")
        with pytest.raises(ProxyError) as caught:
            await open_through(uri, f"http://{USER}:wrong@127.0.0.1:{port}")
        # tinyproxy 1.11 answers wrong credentials with 401 (and none with 407)
        assert caught.value.status == 401
        assert "HTTP 401 Unauthorized (the proxy rejected the credentials" in str(caught.value)
        with pytest.raises(ProxyError) as caught:
            await open_through(uri, f"http://127.0.0.1:{port}")
        assert caught.value.status == 407 and "wants credentials" in str(caught.value)
        await asyncio.to_thread(sync_echo_through, uri, f"http://{USER}:{PASSWORD_IN_URL}@127.0.0.1:{port}")
        with pytest.raises(ProxyError) as caught:
            await asyncio.to_thread(sync_open_through, uri, f"http://{USER}:wrong@127.0.0.1:{port}")
        assert caught.value.status == 401


# -- microsocks -----------------------------------------------------------------


@pytest.mark.parametrize("scheme, host", [("socks5", "127.0.0.1"), ("socks5h", "localhost")])
@async_test
async def test_microsocks(tmp_path, scheme, host):
    async with echo_server() as target, microsocks(tmp_path) as port:
        await echo_through(f"ws://{host}:{target}/", f"{scheme}://127.0.0.1:{port}")
        await asyncio.to_thread(sync_echo_through, f"ws://{host}:{target}/", f"{scheme}://127.0.0.1:{port}")


@async_test
async def test_microsocks_credentials(tmp_path):
    async with echo_server() as target, microsocks(tmp_path, credentials=True) as port:
        uri = f"ws://127.0.0.1:{target}/"
        await echo_through(uri, f"socks5h://{USER}:{PASSWORD_IN_URL}@127.0.0.1:{port}")
        for userinfo in (f"{USER}:wrong@", ""):
            with pytest.raises(ProxyError) as caught:
                await open_through(uri, f"socks5h://{userinfo}127.0.0.1:{port}")
            assert f"socks5h proxy 127.0.0.1:{port} refused to open a tunnel to 127.0.0.1:{target}" in str(caught.value)
        proxy = f"socks5h://{USER}:{PASSWORD_IN_URL}@127.0.0.1:{port}"
        await asyncio.to_thread(sync_echo_through, uri, proxy)
        with pytest.raises(ProxyError, match=f"socks5h proxy 127.0.0.1:{port} refused to open a tunnel"):
            await asyncio.to_thread(sync_open_through, uri, f"socks5h://{USER}:wrong@127.0.0.1:{port}")


@async_test
async def test_http_url_pointing_at_a_socks_proxy(tmp_path):
    """A user's mistake: http:// for a SOCKS5 server, which answers "CONNECT" with
    SOCKS5's "no acceptable methods" (05 FF)."""
    async with microsocks(tmp_path) as port:
        with pytest.raises(ProxyError) as caught:
            await open_through("ws://127.0.0.1:1/", f"http://127.0.0.1:{port}")
        assert str(caught.value) == f"proxy 127.0.0.1:{port} did not answer CONNECT with HTTP: it sent b'\\x05\\xff'"
