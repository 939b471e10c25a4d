"""docs/codec.md and examples/sansio_echo.py: the codec as a library.

Every Python block of the guide runs (on both codec backends), the public
surface of ``fastws.codec`` is what the guide lists, and the worked example
serves real clients over blocking sockets.
"""

from __future__ import annotations

import importlib.util
import pathlib
import re
import socket
import threading

import pytest

import fastws
import fastws.codec

from .support.asyncio import RawPeer, async_test
from .support.codecs import use_codec

ROOT = pathlib.Path(__file__).parents[1]
GUIDE = ROOT / "docs" / "codec.md"


@pytest.fixture(autouse=True)
def backend(codec, monkeypatch):
    """The guide's blocks and the example's connections run on one codec backend."""
    for name in fastws.codec.__all__:
        if hasattr(codec, name):
            monkeypatch.setattr(fastws.codec, name, getattr(codec, name))
    monkeypatch.setattr(fastws.codec, "BACKEND", "python" if codec.__name__.endswith("_py") else "cython")
    use_codec(monkeypatch, codec)
    return codec


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(f"fastws_example_{name}", ROOT / "examples" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def guide_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", GUIDE.read_text(), re.S)


def test_guide_has_runnable_blocks():
    assert len(guide_blocks()) == 5


@pytest.mark.parametrize("index", range(4))
def test_guide_block_runs(index):
    exec(compile(guide_blocks()[index], f"{GUIDE}:block{index}", "exec"), {})


def test_guide_loop_is_the_example_loop():
    """The guide quotes examples/sansio_echo.py's echo loop; they must not drift apart."""
    quoted = guide_blocks()[-1]
    source = (ROOT / "examples" / "sansio_echo.py").read_text()
    for line in quoted.splitlines()[2:]:
        if line.strip() and not line.strip().startswith("#"):
            assert line.split("  #")[0].rstrip() in source, line


def test_public_codec_surface_is_documented():
    text = GUIDE.read_text()
    for name in fastws.codec.__all__:
        assert f"`{name}" in text or f"{name}(" in text or f", `{name}`" in text, name
    assert fastws.codec.BACKEND in ("cython", "python")


def serve_example_in_thread():
    """examples/sansio_echo.py's server on a free port, in a daemon thread."""
    example = load_example("sansio_echo")
    server = example.Server(("127.0.0.1", 0), example.Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return example, server, thread


@async_test
async def test_example_echoes_for_an_asyncio_client():
    _, server, thread = serve_example_in_thread()
    try:
        uri = f"ws://127.0.0.1:{server.server_address[1]}/"
        async with fastws.connect(uri, max_message_size=None) as ws:
            await ws.send("hello, blocking world")
            assert await ws.recv() == "hello, blocking world"
            await ws.send(b"\x00" * 3_000_000)  # several recv() calls, fragmented on the way back
            assert await ws.recv() == b"\x00" * 3_000_000
            assert await ws.ping(b"rtt") >= 0
            await ws.close(4000, "done")
        assert (ws.close_code, ws.close_reason) == (4000, "done")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@async_test
async def test_example_fails_a_broken_client_with_1002():
    _, server, thread = serve_example_in_thread()
    try:
        peer = await RawPeer.open(server.server_address[1])
        peer.writer.write(b"\x81\x02hi")  # unmasked: a client must mask (RFC 6455 §5.1)
        opcode, payload = await peer.read_frame()
        assert (opcode, int.from_bytes(payload[:2], "big")) == (8, 1002)
        assert await peer.read_until_eof() == b""
        peer.close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_example_echo_function_reports_close_codes():
    """``echo(sock)`` over a socketpair, driven by a hand-made client."""
    example = load_example("sansio_echo")
    from fastws.connection import Connection
    from fastws.handshake import ClientHandshake, HeadParser, parse_response

    for close_with, expected in ((True, (1001, "bye")), (False, (1006, ""))):
        server_sock, client_sock = socket.socketpair()
        result: list = []
        thread = threading.Thread(
            target=lambda sock=server_sock, into=result: into.append(example.echo(sock)), daemon=True
        )
        thread.start()
        client_sock.settimeout(10)
        handshake = ClientHandshake("localhost")
        client_sock.sendall(handshake.request_bytes())
        head = HeadParser()
        while (parsed := head.feed(client_sock.recv(4096))) is None:
            pass
        handshake.process_response(parse_response(parsed[0]))
        client = Connection(is_client=True)
        client_sock.sendall(client.send("ping?"))
        [message] = client.receive_data(client_sock.recv(4096))
        assert message.payload == "ping?"
        if close_with:
            client_sock.sendall(client.send_close(1001, "bye"))
            client.receive_data(client_sock.recv(4096))
            assert client.close_code == 1001
        else:
            client_sock.shutdown(socket.SHUT_WR)
        thread.join(10)
        assert result == [expected]
        client_sock.close()
        server_sock.close()


def test_example_refuses_a_plain_http_request():
    example = load_example("sansio_echo")
    server_sock, client_sock = socket.socketpair()
    client_sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert example.echo(server_sock) == (None, "handshake refused")
    client_sock.settimeout(10)
    assert client_sock.recv(4096).startswith(b"HTTP/1.1 426 ")
    client_sock.close()
    server_sock.close()


def test_asyncio_is_not_needed():
    """The example imports nothing from fastws.asyncio (it may be imported by fastws itself)."""
    source = (ROOT / "examples" / "sansio_echo.py").read_text()
    assert "asyncio" not in re.sub(r'""".*?"""', "", source, flags=re.S)
