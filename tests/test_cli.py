"""The command line: `fastws serve` (the tutorial's echo server) and `fastws client`."""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import urllib.request

import pytest

from fastws import connect, serve
from fastws.__main__ import build_parser
from fastws.asyncio.client import unix_connect

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


# -- Unix sockets: serve --unix PATH, client --unix PATH [URI] ----------------


@pytest.fixture
def socket_path():
    """A path for a Unix socket, short enough for sun_path (about 100 bytes) on every platform."""
    directory = tempfile.mkdtemp(prefix="fastws-")
    try:
        yield os.path.join(directory, "ws.sock")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def bound_unix_socket(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    return sock


async def start_cli(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "fastws",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def stop_cli(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.kill()
    await asyncio.wait_for(process.communicate(), 10)


@async_test
async def test_serve_unix_echoes_and_removes_its_socket_on_exit(socket_path):
    process = await start_cli("serve", "--unix", socket_path)
    try:
        line = await asyncio.wait_for(process.stdout.readline(), 10)
        assert line == f"listening on unix:{socket_path}\n".encode()
        assert stat.S_ISSOCK(os.stat(socket_path).st_mode)
        async with unix_connect(socket_path) as ws:
            await ws.send("hello over a unix socket")
            assert await ws.recv() == "hello over a unix socket"
            await ws.send(bytes(range(256)) * 1000)
            assert await ws.recv() == bytes(range(256)) * 1000
        process.send_signal(signal.SIGINT)  # Ctrl-C: stop, remove the socket file, exit 0
        _, stderr = await asyncio.wait_for(process.communicate(), 10)
        assert process.returncode == 0, stderr.decode()
        assert b"Traceback" not in stderr, stderr.decode()
        assert not os.path.exists(socket_path)
    finally:
        await stop_cli(process)


@async_test
async def test_serve_unix_replaces_a_stale_socket_file(socket_path):
    bound_unix_socket(socket_path).close()  # a server that died without removing its socket file
    assert stat.S_ISSOCK(os.stat(socket_path).st_mode)
    process = await start_cli("serve", "--unix", socket_path)
    try:
        line = await asyncio.wait_for(process.stdout.readline(), 10)
        assert line == f"listening on unix:{socket_path}\n".encode(), line + await process.stderr.read()
        async with unix_connect(socket_path) as ws:
            await ws.send("still here")
            assert await ws.recv() == "still here"
    finally:
        await stop_cli(process)


@pytest.mark.parametrize(
    ("uri", "path", "host"),
    [([], "/", "localhost"), (["ws://example.test/chat?room=1"], "/chat?room=1", "example.test")],
    ids=["default-uri", "explicit-uri"],
)
@async_test
async def test_client_unix_sends_stdin_lines_through_the_socket(socket_path, uri, path, host):
    requests = []

    def record(ws, request):
        requests.append(request)

    async def shout(ws):
        async for message in ws:
            await ws.send(message.upper())

    async with serve(shout, sock=bound_unix_socket(socket_path), process_request=record):
        process = await start_cli("client", "--unix", socket_path, *uri)
        try:
            process.stdin.write(b"hello\n")
            await process.stdin.drain()
            line = await asyncio.wait_for(process.stdout.readline(), 10)
            assert line == b"< HELLO\n", line + await process.stderr.read()
            process.stdin.close()
            await asyncio.wait_for(process.wait(), 10)
            assert process.returncode == 0
        finally:
            await stop_cli(process)
    [request] = requests
    assert request.path == path
    assert request.headers["Host"] == host


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fastws", *args], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )


@pytest.mark.parametrize("command", ["serve", "client"])
def test_unix_path_in_a_missing_directory_is_a_one_line_error(socket_path, command):
    missing = os.path.join(os.path.dirname(socket_path), "missing", "ws.sock")
    result = run_cli(command, "--unix", missing)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"fastws {command}: cannot "), result.stderr
    assert missing in result.stderr
    # unix_serve names the missing directory; a client gets the system's message
    assert "does not exist" in result.stderr or os.strerror(errno.ENOENT) in result.stderr, result.stderr


def test_client_unix_refused_by_a_socket_nobody_listens_on(socket_path):
    bound_unix_socket(socket_path).close()
    result = run_cli("client", "--unix", socket_path)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert os.strerror(errno.ECONNREFUSED) in result.stderr


def test_client_needs_a_uri_or_unix():
    result = run_cli("client")
    assert result.returncode == 2  # argparse's usage error
    assert "a URI is needed (or --unix PATH)" in result.stderr
    args = build_parser().parse_args(["client", "--unix", "/run/app.sock"])
    assert (args.unix, args.uri) == ("/run/app.sock", None)


def test_serve_on_a_port_in_use_is_a_one_line_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", "--port", str(port))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"fastws serve: cannot listen on 127.0.0.1:{port}: "), result.stderr
