"""The command line: `fastws serve` (the tutorial's echo server) and `fastws client`."""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import tempfile
import types
import urllib.request

import pytest

from fastws import connect, serve
from fastws.__main__ import build_parser, parse_args
from fastws.asyncio.client import unix_connect
from fastws.exceptions import ConnectionClosed, InvalidStatus

from .support.asyncio import RawPeer, async_test


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
    args = parse_args(["serve"])
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


# -- helpers for the tests below: a command in a subprocess, its "listening on" line ------

LINE_TIMEOUT = 10  # seconds: every wait on a child is bounded


@pytest.fixture(scope="module")
def default_server():
    """One `fastws serve --port 0` with every option at its default, shared by the tests of this module; its port."""
    process = subprocess.Popen(
        [sys.executable, "-m", "fastws", "serve", "--port", "0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = process.stdout.readline()
        assert line.startswith("listening on http://127.0.0.1:"), line
        yield int(line.rsplit(":", 1)[1])
    finally:
        process.terminate()
        process.wait(timeout=LINE_TIMEOUT)


async def start_listening(*args: str) -> tuple[asyncio.subprocess.Process, int]:
    """Start ``fastws serve|relay ARGS`` and wait for its "listening on" line; the port."""
    process = await start_cli(*args)
    try:
        line = await asyncio.wait_for(process.stdout.readline(), LINE_TIMEOUT)
    except asyncio.TimeoutError:
        line = b""
    if not line.startswith(b"listening on "):
        await stop_cli(process)
        raise AssertionError(f"no 'listening on' line: {line!r} {await process.stderr.read()!r}")
    return process, int(line.rsplit(b":", 1)[1])


async def finish(process: asyncio.subprocess.Process) -> tuple[int, str]:
    """Wait (bounded) for the process to exit; its status and stderr."""
    _, stderr = await asyncio.wait_for(process.communicate(), LINE_TIMEOUT)
    return process.returncode, stderr.decode()


# -- one-line errors ----------------------------------------------------------------


USAGE_ERRORS = [
    (["client", "http://example.com/"], "client", "is not a ws:// or wss:// URI"),
    (["client", "ws://127.0.0.1:70000/"], "client", "out of range"),
    (["client", "--header", "no-colon", "ws://127.0.0.1/"], "client", "argument --header: not NAME:VALUE"),
    (["client", "--header", "bad name:1", "ws://127.0.0.1/"], "client", "invalid header name"),
    (["client", "--compression", "maybe", "ws://127.0.0.1/"], "client", "argument --compression"),
    (["serve", "--port", "70000"], "serve", "argument --port: 70000 is out of range (0-65535)"),
    (["serve", "--port", "http"], "serve", "argument --port: not a port number"),
    (["serve", "--unix", "/tmp/x.sock", "--port", "8000"], "serve", "--host and --port do not apply"),
    (["serve", "--unix", "/tmp/x.sock", "--host", "0.0.0.0"], "serve", "--host and --port do not apply"),
    (["serve", "--max-size", "lots"], "serve", "argument --max-size: not a size"),
    (["serve", "--max-size", "0"], "serve", "argument --max-size"),
    (["serve", "--ping-interval", "-1"], "serve", "argument --ping-interval"),
    (["serve", "--tls-key", "key.pem"], "serve", "--tls-key needs --tls-cert"),
    (["serve", "--workers", "2", "--port", "0"], "serve", "--workers needs a fixed --port"),
    (["serve", "--workers", "0"], "serve", "argument --workers"),
    (["relay", "--max-backlog", "-5"], "relay", "argument --max-backlog: -5 is not at least 1"),
    (["relay", "--close-code", "1000"], "relay", "argument --close-code: invalid choice: 1000"),
    (["relay", "--workers", "2"], "relay", "--workers needs --redis"),
    (["relay", "--redis", "localhost:6379"], "relay", "--redis localhost:6379: not a Redis URL"),
    (["bench", "ws://127.0.0.1/", "-c", "0"], "bench", "argument -c/--connections"),
    ([], "", "the following arguments are required"),
]
USAGE_IDS = [" ".join(argv) or "no command" for argv, _, _ in USAGE_ERRORS]


@pytest.fixture(scope="module")
def one_shots(tmp_path_factory):
    """Every command below that fails at once, each a real process, run
    concurrently (together they take the time of a few): ``results[name]``."""
    directory = tmp_path_factory.mktemp("cli")
    # An environment where ``import redis`` fails as it does when the package is not installed.
    (directory / "redis.py").write_text("raise ModuleNotFoundError(\"No module named 'redis'\", name='redis')\n")
    without_redis = {**os.environ, "PYTHONPATH": os.pathsep.join([str(directory), os.environ.get("PYTHONPATH", "")])}
    refusing = socket.socket()  # bound, not listening: connections to it are refused
    refusing.bind(("127.0.0.1", 0))
    taken = socket.socket()  # listening: nobody else can listen on its port
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    refused, in_use = refusing.getsockname()[1], taken.getsockname()[1]
    missing = str(directory / "missing.pem")
    commands = {f"usage {name}": (argv, None) for name, (argv, _, _) in zip(USAGE_IDS, USAGE_ERRORS)}
    commands.update(
        {
            "client refused": (["client", f"ws://127.0.0.1:{refused}/"], None),
            "client unknown host": (["client", "ws://nonexistent.invalid/"], None),  # never resolves (RFC 6761)
            "bench refused": (["bench", f"ws://127.0.0.1:{refused}/", "-n", "1", "-q"], None),
            "serve port in use": (["serve", "--port", str(in_use)], None),
            "relay port in use": (["relay", "--port", str(in_use)], None),
            "serve workers port in use": (["serve", "--port", str(in_use), "--workers", "2"], None),
            "relay without redis": (["relay", "--port", "0", "--redis", "redis://127.0.0.1:6379"], without_redis),
            "serve tls missing": (["serve", "--port", "0", "--tls-cert", missing], None),
            "debug before": (["--debug", "client", f"ws://127.0.0.1:{refused}/"], None),
            "debug after": (["client", f"ws://127.0.0.1:{refused}/", "--debug"], None),
            "-v before": (["-v", "client", f"ws://127.0.0.1:{refused}/"], None),
            "-v after": (["client", f"ws://127.0.0.1:{refused}/", "-v"], None),
            "serve port in use --debug": (["serve", "--port", str(in_use), "--debug"], None),
        }
    )

    def run(command):
        argv, env = command
        return subprocess.run(
            [sys.executable, "-m", "fastws", *argv],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
            env=env,
        )

    try:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = dict(zip(commands, pool.map(run, commands.values())))
    finally:
        refusing.close()
        taken.close()
    return types.SimpleNamespace(results=results, refused=refused, in_use=in_use, missing=missing)


def assert_one_line_error(result: subprocess.CompletedProcess, command: str, status: int, *fragments: str) -> None:
    assert result.returncode == status, (result.returncode, result.stderr)
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.endswith("\n"), result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"fastws {command}".rstrip() + ": "), result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)


@pytest.mark.parametrize(("argv", "command", "fragment"), USAGE_ERRORS, ids=USAGE_IDS)
def test_usage_errors_are_one_line_and_status_2(one_shots, argv, command, fragment):
    name = " ".join(argv) or "no command"
    prog = f"fastws {command}".rstrip()
    assert_one_line_error(one_shots.results[f"usage {name}"], command, 2, fragment, f"(see '{prog} --help')")


def test_client_refused_is_one_line(one_shots):
    port = one_shots.refused
    result = one_shots.results["client refused"]
    assert_one_line_error(result, "client", 1, f"cannot connect to ws://127.0.0.1:{port}/: ")
    assert result.stderr.endswith(f": {os.strerror(errno.ECONNREFUSED)}\n"), result.stderr


def test_client_unknown_host_is_one_line(one_shots):
    assert_one_line_error(
        one_shots.results["client unknown host"], "client", 1, "cannot connect to ws://nonexistent.invalid/: "
    )


def test_bench_refused_is_one_line(one_shots):
    assert_one_line_error(one_shots.results["bench refused"], "bench", 1, "cannot connect")


@pytest.mark.parametrize("command", ["serve", "relay", "serve workers"])
def test_port_in_use_is_a_one_line_error(one_shots, command):
    result = one_shots.results[f"{command} port in use"]
    name = command.split()[0]
    assert_one_line_error(result, name, 1, f"fastws {name}: cannot listen on 127.0.0.1:{one_shots.in_use}: ")


def test_relay_redis_without_the_package_is_one_line(one_shots):
    assert_one_line_error(one_shots.results["relay without redis"], "relay", 1, "--redis needs the redis package")


def test_serve_tls_certificate_missing_is_one_line(one_shots):
    result = one_shots.results["serve tls missing"]
    assert_one_line_error(result, "serve", 1, f"cannot load the TLS certificate from {one_shots.missing}: ")


@pytest.mark.parametrize("name", ["debug before", "debug after", "-v before", "-v after"])
def test_debug_shows_the_traceback(one_shots, name):
    result = one_shots.results[name]
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert "ConnectionRefusedError" in result.stderr
    last = result.stderr.splitlines()[-1]
    assert last.startswith(f"fastws client: cannot connect to ws://127.0.0.1:{one_shots.refused}/: "), last


def test_debug_shows_the_traceback_of_a_listen_error(one_shots):
    result = one_shots.results["serve port in use --debug"]
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert "OSError" in result.stderr
    assert result.stderr.splitlines()[-1].startswith(f"fastws serve: cannot listen on 127.0.0.1:{one_shots.in_use}: ")


def test_global_flags_before_or_after_the_command():
    assert parse_args(["serve"]).debug is False
    assert parse_args(["-v", "serve"]).debug is True
    assert parse_args(["serve", "-v"]).debug is True
    assert parse_args(["relay", "--debug"]).debug is True
    assert parse_args(["--debug", "bench", "ws://127.0.0.1/"]).debug is True
    assert parse_args(["client", "ws://127.0.0.1/", "-v"]).debug is True


def test_option_values():
    args = parse_args(["serve", "--max-size", "none", "--ping-interval", "none", "--ping-timeout", "2.5"])
    assert (args.max_size, args.ping_interval, args.ping_timeout) == (None, None, 2.5)
    assert parse_args(["serve", "--max-size", "64k"]).max_size == 65536
    assert parse_args(["serve", "--max-size", "4MiB"]).max_size == 4 << 20
    assert parse_args(["serve", "--max-size", "1000"]).max_size == 1000
    defaults = parse_args(["serve"])
    assert (defaults.max_size, defaults.ping_interval, defaults.compression) == (1 << 20, 20.0, "on")
    client = parse_args(["client", "--header", "X-A: 1", "--header", "X-B:two: three", "ws://h/"])
    assert client.header == [("X-A", "1"), ("X-B", "two: three")]


# -- signals: serve and relay close with 1001 and exit 0; Ctrl-C ends the client ----


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("command", ["serve", "relay"])
@async_test
async def test_signal_closes_connections_with_1001_and_exits_0(command, signum):
    process, port = await start_listening(command, "--port", "0")
    try:
        async with connect(f"ws://127.0.0.1:{port}/news") as ws:
            await ws.send("ping")
            if command == "serve":
                assert await ws.recv() == "ping"
            process.send_signal(signum)
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), LINE_TIMEOUT)
            assert closed.value.code == 1001
        status, stderr = await finish(process)
        assert status == 0, stderr
        assert "Traceback" not in stderr, stderr
    finally:
        await stop_cli(process)


@async_test
async def test_client_ctrl_c_closes_with_1000_at_once():
    """SIGINT while stdin is an open pipe with nothing to read: the client must
    not wait for a line (stdin read in a thread would) and closes cleanly."""
    loop = asyncio.get_running_loop()
    closed = loop.create_future()

    async def handler(ws):
        async for message in ws:
            await ws.send(message)
        closed.set_result((ws.close_code, ws.close_reason))

    async with serve(handler) as server:
        process = await start_cli("client", f"ws://127.0.0.1:{server.port}")
        try:
            process.stdin.write(b"hello\n")
            await process.stdin.drain()
            assert await asyncio.wait_for(process.stdout.readline(), LINE_TIMEOUT) == b"< hello\n"
            process.send_signal(signal.SIGINT)  # stdin stays open: no EOF
            assert await asyncio.wait_for(closed, LINE_TIMEOUT) == (1000, "")
            await asyncio.wait_for(process.wait(), LINE_TIMEOUT)
            assert process.returncode == 0
            stderr = (await process.stderr.read()).decode()
            assert "Traceback" not in stderr, stderr
        finally:
            await stop_cli(process)


# Runs `fastws client URI` on a pseudo-terminal (in a process of its own: a fork
# from the test's threads would be unsafe), types a line, then Ctrl-C, which the
# terminal driver turns into SIGINT; prints what it saw as JSON.
TERMINAL_DRIVER = r"""
import json, os, pty, select, sys, time

uri = sys.argv[1]
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.executable, [sys.executable, "-m", "fastws", "client", uri])
seen = b""
def wait_for(token, timeout=10.0):
    global seen
    deadline = time.monotonic() + timeout
    while token not in seen:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return False
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the child is gone
            return False
        if not chunk:
            return False
        seen += chunk
    return True
result = {"connected": wait_for(b"Ctrl-D to quit")}
os.write(fd, b"hello\n")
result["echo"] = wait_for(b"< hello")
start = time.monotonic()
os.write(fd, b"\x03")  # Ctrl-C
wait_for(b"never printed", timeout=10.0)  # read until the child closes the terminal (bounded)
_, status = os.waitpid(pid, 0)
result.update(status=os.waitstatus_to_exitcode(status), seconds=time.monotonic() - start)
result["output"] = seen.decode("utf-8", "replace")
print(json.dumps(result))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
@async_test
async def test_client_ctrl_c_on_a_terminal():
    loop = asyncio.get_running_loop()
    closed = loop.create_future()

    async def handler(ws):
        async for message in ws:
            await ws.send(message)
        closed.set_result(ws.close_code)

    async with serve(handler) as server:
        driver = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            TERMINAL_DRIVER,
            f"ws://127.0.0.1:{server.port}",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            stdout, stderr = await asyncio.wait_for(driver.communicate(), 30)
        finally:
            if driver.returncode is None:
                driver.kill()
        result = json.loads(stdout or b"null") or {}
        assert result.get("connected") and result.get("echo"), (result, stderr)
        assert result["status"] == 0, result
        assert result["seconds"] < 5, result  # at once, not at the next Enter
        assert "Traceback" not in result["output"], result["output"]
        assert await asyncio.wait_for(closed, LINE_TIMEOUT) == 1000


@async_test
async def test_client_exits_when_the_server_closes():
    async def going_away(ws):
        await ws.recv()
        await ws.close(1001, "bye")

    async with serve(going_away) as server:
        process = await start_cli("client", f"ws://127.0.0.1:{server.port}")
        try:
            process.stdin.write(b"hello\n")  # stdin stays open: the client must not wait for another line
            await process.stdin.drain()
            # Not finish(): its communicate() closes stdin, and the client would close (1000) itself.
            status = await asyncio.wait_for(process.wait(), LINE_TIMEOUT)
            stderr = (await process.stderr.read()).decode()
            assert status == 0, stderr
            assert stderr.splitlines()[-1] == "connection closed: 1001 bye", stderr
        finally:
            await stop_cli(process)


# -- serve options --------------------------------------------------------------------


@async_test
async def test_serve_max_size(default_server):
    message = bytes(2 << 20)  # 2 MiB: over the default limit of 1 MiB
    process, port = await start_listening("serve", "--port", "0", "--max-size", "4m")
    try:
        async with connect(f"ws://127.0.0.1:{port}", max_message_size=None) as ws:
            await ws.send(message)
            assert await ws.recv() == message
        async with connect(f"ws://127.0.0.1:{default_server}", max_message_size=None) as ws:
            await ws.send(message)
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.code == 1009  # message too big
    finally:
        await stop_cli(process)


@async_test
async def test_serve_subprotocol_compression_and_origin(default_server):
    process, port = await start_listening(
        "serve",
        "--port",
        "0",
        "--subprotocol",
        "chat",
        "--subprotocol",
        "superchat",
        "--compression",
        "off",
        "--origin",
        "https://good.example",
    )
    uri = f"ws://127.0.0.1:{port}"
    try:
        async with connect(uri, subprotocols=["other", "chat"], origin="https://good.example") as ws:
            assert ws.subprotocol == "chat"
            assert "Sec-WebSocket-Extensions" not in ws.response.headers  # --compression off
            assert ws.extension is None
            await ws.send("hi")
            assert await ws.recv() == "hi"
        for origin in ["https://evil.example", None]:
            with pytest.raises(InvalidStatus) as refused:
                await connect(uri, origin=origin)
            assert refused.value.status == 403
        async with connect(f"ws://127.0.0.1:{default_server}", subprotocols=["chat"]) as ws:
            assert ws.subprotocol is None
            assert "permessage-deflate" in ws.response.headers.get("Sec-WebSocket-Extensions", "")
    finally:
        await stop_cli(process)


def http_request(port: int, method: str) -> tuple[int, dict, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=LINE_TIMEOUT)
    try:
        connection.request(method, "/x", body=b"data" if method == "POST" else None)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "PUT", "DELETE"])
def test_serve_plain_http_methods(default_server, method):
    status, headers, body = http_request(default_server, method)
    if method == "GET":
        assert (status, body) == (200, b"websocket test")
    elif method == "HEAD":
        assert (status, body, headers["Content-Length"]) == (200, b"", "14")
    else:
        assert status == 405
        assert headers["Allow"] == "GET, HEAD"


@async_test
async def test_serve_ping_interval_and_timeout():
    """A peer that never answers pings is pinged after --ping-interval and closed
    with 1011 after --ping-timeout (the defaults, 20 s each, would not do it in time)."""
    process, port = await start_listening("serve", "--port", "0", "--ping-interval", "0.2", "--ping-timeout", "0.2")
    try:
        peer = await RawPeer.open(port)
        opcode, _ = await peer.read_frame()
        assert opcode == 0x9  # ping
        opcode, payload = await peer.read_frame()
        assert opcode == 0x8  # close
        assert int.from_bytes(payload[:2], "big") == 1011
        peer.close()
    finally:
        await stop_cli(process)


@async_test
async def test_serve_listener_echoes():
    process, port = await start_listening("serve", "--port", "0", "--listener")
    try:
        async with connect(f"ws://127.0.0.1:{port}") as ws:
            await ws.send("text")
            assert await ws.recv() == "text"
            await ws.send(b"\x00\x01" * 70000)
            assert await ws.recv() == b"\x00\x01" * 70000
        process.send_signal(signal.SIGTERM)
        status, stderr = await finish(process)
        assert status == 0
        assert "callback API" in stderr  # the start-up line says which API echoes
    finally:
        await stop_cli(process)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    trustme = pytest.importorskip("trustme")
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1", "localhost")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    certificate.cert_chain_pems[0].write_to_path(str(cert))
    certificate.private_key_pem.write_to_path(str(key))
    context = ssl.create_default_context()
    authority.configure_trust(context)
    return str(cert), str(key), context


@async_test
async def test_serve_tls_and_client_insecure(tls_files):
    cert, key, trusted = tls_files
    process = await start_cli("serve", "--port", "0", "--tls-cert", cert, "--tls-key", key)
    try:
        line = await asyncio.wait_for(process.stdout.readline(), LINE_TIMEOUT)
        assert line.startswith(b"listening on https://127.0.0.1:"), line
        uri = f"wss://127.0.0.1:{int(line.rsplit(b':', 1)[1])}/"
        async with connect(uri, ssl=trusted) as ws:
            await ws.send("over TLS")
            assert await ws.recv() == "over TLS"
        # The CLI client does not trust the test CA: refused, unless --insecure.
        refused = await asyncio.to_thread(run_cli, "client", uri)
        assert refused.returncode == 1
        assert refused.stderr.count("\n") == 1 and "CERTIFICATE_VERIFY_FAILED" in refused.stderr, refused.stderr
        client = await start_cli("client", "--insecure", uri)
        try:
            client.stdin.write(b"hello\n")
            assert await asyncio.wait_for(client.stdout.readline(), LINE_TIMEOUT) == b"< hello\n"
            client.stdin.close()  # Ctrl-D
            status, stderr = await finish(client)
            assert status == 0, stderr
        finally:
            await stop_cli(client)
    finally:
        await stop_cli(process)


def children_of(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as children:
        return [int(child) for child in children.read().split()]


@pytest.mark.skipif(
    not hasattr(socket, "SO_REUSEPORT") or not os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children"),
    reason="needs SO_REUSEPORT and Linux's /proc/PID/task/PID/children",
)
@async_test
async def test_serve_workers_share_the_port():
    with socket.socket() as reserved:  # holds the port (bound, not listening) so no one else takes it
        reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        reserved.bind(("127.0.0.1", 0))
        port = reserved.getsockname()[1]
        process = await start_cli("serve", "--port", str(port), "--workers", "2")
        try:
            lines = [await asyncio.wait_for(process.stdout.readline(), LINE_TIMEOUT) for _ in range(2)]
            assert lines == [f"listening on http://127.0.0.1:{port}\n".encode()] * 2, lines
            workers = children_of(process.pid)
            assert len(workers) == 2
            for worker in workers:
                with open(f"/proc/{worker}/cmdline", "rb") as cmdline:
                    assert b"serve" in cmdline.read().split(b"\0")
            async with connect(f"ws://127.0.0.1:{port}") as ws:
                await ws.send("hello")
                assert await ws.recv() == "hello"
                process.send_signal(signal.SIGTERM)  # passed on to both workers
                with pytest.raises(ConnectionClosed) as closed:
                    await asyncio.wait_for(ws.recv(), LINE_TIMEOUT)
                assert closed.value.code == 1001
            status, stderr = await finish(process)
            assert status == 0, stderr
            assert stderr.count("fastws echo server on") == 2
        finally:
            await stop_cli(process)


# -- client options ---------------------------------------------------------------------


@async_test
async def test_client_options_reach_the_handshake():
    requests = []

    def record(ws, request):
        requests.append(request)

    async def tell_subprotocol(ws):
        await ws.send(f"subprotocol={ws.subprotocol}")
        async for message in ws:
            await ws.send(message)

    async with serve(tell_subprotocol, subprotocols=["chat"], process_request=record) as server:
        uri = f"ws://127.0.0.1:{server.port}/"
        for options in [
            [
                "--header",
                "X-Token: abc",
                "--header",
                "X-Two:2",
                "--subprotocol",
                "chat",
                "--origin",
                "https://app.example",
                "--compression",
                "off",
            ],
            [],  # the defaults: none of it, compression offered
        ]:
            process = await start_cli("client", *options, uri)
            try:
                process.stdin.close()  # nothing to send: EOF closes once connected
                output = await asyncio.wait_for(process.stdout.read(), LINE_TIMEOUT)
                status, stderr = await finish(process)
                assert status == 0, stderr
            finally:
                await stop_cli(process)
            if options:
                assert output == b"< subprotocol=chat\n" or output == b"", output  # the close may come first
                assert "(subprotocol chat)" in stderr, stderr
    with_options, defaults = requests
    assert with_options.headers["X-Token"] == "abc"
    assert with_options.headers["X-Two"] == "2"
    assert with_options.headers["Sec-WebSocket-Protocol"] == "chat"
    assert with_options.headers["Origin"] == "https://app.example"
    assert "Sec-WebSocket-Extensions" not in with_options.headers
    for name in ["X-Token", "Sec-WebSocket-Protocol", "Origin"]:
        assert name not in defaults.headers
    assert "permessage-deflate" in defaults.headers["Sec-WebSocket-Extensions"]


# -- log lines: one peer format ------------------------------------------------------------


@async_test
async def test_relay_logs_peers_as_host_colon_port():
    process, port = await start_listening("relay", "--port", "0")
    try:
        async with connect(f"ws://127.0.0.1:{port}/") as ws:
            local_port = ws.transport.get_extra_info("sockname")[1]
            await ws.send("not json")  # a bad control message: logged with the peer, closed with 1008
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), LINE_TIMEOUT)
            assert closed.value.code == 1008
        process.send_signal(signal.SIGTERM)
        status, stderr = await finish(process)
        assert status == 0
        assert f"127.0.0.1:{local_port} bad control message" in stderr, stderr
        assert "('127.0.0.1'" not in stderr
    finally:
        await stop_cli(process)


# -- relay: who may connect, and recovery -------------------------------------------------


@async_test
async def test_relay_token_origin_and_history():
    """--token refuses clients without it (401); --origin refuses other pages (403);
    --history lets a subscriber that comes back with ?since= get what it missed."""
    process, port = await start_listening(
        "relay", "--port", "0", "--token", "s3cret", "--origin", "https://app.example", "--history", "10"
    )
    base = f"ws://127.0.0.1:{port}/news"
    app = {"origin": "https://app.example", "proxy": None}
    try:
        with pytest.raises(InvalidStatus) as refused:
            await connect(base, **app)
        assert refused.value.status == 401
        with pytest.raises(InvalidStatus) as other_page:
            await connect(f"{base}?token=s3cret", origin="https://evil.example", proxy=None)
        assert other_page.value.status == 403
        async with connect(base, extra_headers={"Authorization": "Bearer s3cret"}, **app) as publisher:
            for n in range(1, 4):
                await publisher.send(f"update {n}")
            # A subscriber that saw offset 1 comes back: a notice, then 2 and 3.
            async with connect(f"{base}?token=s3cret&since=1", **app) as late:
                notice = json.loads(await asyncio.wait_for(late.recv(), LINE_TIMEOUT))
                assert notice["subscribed"] == "news" and notice["recovered"] is True, notice
                assert [await asyncio.wait_for(late.recv(), LINE_TIMEOUT) for _ in range(2)] == ["update 2", "update 3"]
    finally:
        await stop_cli(process)


@async_test
async def test_relay_jwt_claims_decide_the_topics():
    import time

    import jwt  # PyJWT, in the test-core extra

    env = {**os.environ, "FASTWS_JWT_SECRET": "k" * 32}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fastws", "relay", "--port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        line = await asyncio.wait_for(process.stdout.readline(), LINE_TIMEOUT)
        assert line.startswith(b"listening on "), line
        port = int(line.rsplit(b":", 1)[1])
        claims = {"exp": int(time.time()) + 60, "subscribe": ["news"], "publish": []}
        token = jwt.encode(claims, "k" * 32, algorithm="HS256")
        async with connect(f"ws://127.0.0.1:{port}/news?token={token}", proxy=None):
            pass
        with pytest.raises(InvalidStatus) as outside:
            await connect(f"ws://127.0.0.1:{port}/secret?token={token}", proxy=None)
        assert outside.value.status == 403
        forged = jwt.encode(claims, "x" * 32, algorithm="HS256")
        with pytest.raises(InvalidStatus) as tampered:
            await connect(f"ws://127.0.0.1:{port}/news?token={forged}", proxy=None)
        assert tampered.value.status == 401
    finally:
        await stop_cli(process)


@pytest.mark.parametrize("setting", ["on", "off"])
@async_test
async def test_relay_compression_switch(setting):
    process, port = await start_listening("relay", "--port", "0", "--compression", setting)
    try:
        async with connect(f"ws://127.0.0.1:{port}/news", proxy=None) as ws:
            negotiated = ws.response.headers.get("Sec-WebSocket-Extensions")
        if setting == "on":
            assert "permessage-deflate" in negotiated and "server_no_context_takeover" in negotiated
        else:
            assert negotiated is None
    finally:
        await stop_cli(process)
