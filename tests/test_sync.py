"""fastws.sync: the threaded client and server, both codec backends.

Every wait is bounded (recv timeouts, joins, events); nothing sleeps a fixed time.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from typing import Optional

import pytest

from fastws.auth import basic_auth
from fastws.exceptions import ConnectionClosedError, ConnectionClosedOK, InvalidRedirect, InvalidStatus, ProxyError
from fastws.frames import OP_BINARY, OP_TEXT
from fastws.handshake import ClientHandshake, HeadParser, Response, parse_response
from fastws.sync import connect, serve, unix_connect, unix_serve
from fastws.sync.connection import RECV_SIZE

from .support.codecs import use_codec
from .support.frames import client_frame
from .support.reconnect import Gate, fast
from .support.tls import tls_contexts

TIMEOUT = 10.0
QUICK = dict(close_timeout=2.0, open_timeout=5.0)


@pytest.fixture(autouse=True)
def backend(codec, monkeypatch):
    use_codec(monkeypatch, codec)


@contextlib.contextmanager
def running(handler, **options):
    """A sync server serving in a thread; shut down (and joined) on exit."""
    options = {**QUICK, **options}
    with serve(handler, "127.0.0.1", 0, **options) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield server
        finally:
            server.shutdown()
            thread.join(TIMEOUT)
            assert not thread.is_alive()


def url(server, path="/"):
    return f"ws://127.0.0.1:{server.port}{path}"


def echo(ws):
    for message in ws:
        ws.send(message)


def wait_until(predicate, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.001)


def raw_client(port, path="/", receive_buffer=None):
    """A TCP socket that did the opening handshake by hand: the hostile peers'
    start. Returns it with the bytes that came after the 101's head (frames
    the server sent at once, in the same read). ``receive_buffer`` sets
    SO_RCVBUF before connecting: set later, the window already offered to the
    server stays open, and a peer that reads nothing takes far longer to fill."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(TIMEOUT)
    sock.connect(("127.0.0.1", port))
    sock.sendall(ClientHandshake(f"127.0.0.1:{port}", path).request_bytes())
    parser = HeadParser()
    while True:
        data = sock.recv(4096)
        assert data, "closed during the handshake"
        result = parser.feed(data)
        if result is not None:
            head, rest = result
            assert parse_response(head).status == 101
            return sock, rest


# -- messages ------------------------------------------------------------------


def test_echo_text_binary_large_and_fragments():
    with running(echo) as server, connect(url(server), **QUICK) as ws:
        ws.send("héllo")
        assert ws.recv(TIMEOUT) == "héllo"
        ws.send(b"\x00\xff")
        assert ws.recv(TIMEOUT) == b"\x00\xff"
        big = os.urandom(1 << 19)
        ws.send(big)
        assert ws.recv(TIMEOUT) == big
        ws.send_fragments(["a", "bc", "d"])
        assert ws.recv(TIMEOUT) == "abcd"
        ws.send_fragments(iter([b"x", b"y"]))
        assert ws.recv(TIMEOUT) == b"xy"
        assert ws.extension is not None  # permessage-deflate on by default, as in asyncio
        assert ws.response is not None and ws.response.status == 101
        assert ws.request.headers["User-Agent"] == "fastws"
        assert ws.remote_address == ("127.0.0.1", server.port)
        assert ws.local_address[1] != server.port and ws.id != connect.__class__
    assert ws.close_code == 1000 and ws.closed


@pytest.mark.parametrize("options", [{}, {"compression": None}], ids=["deflate", "plain"])
def test_a_server_sends_large_messages_by_reference_intact_and_in_order(options):
    """From 64 KiB a server's bytes and str messages leave through sendmsg,
    header and payload slices (Connection.send_buffers); a bytearray is copied.
    The client reads slowly (max_queue=1), so sendmsg writes part of a list."""
    big, text = os.urandom(3 << 20), "é" * 70_000
    messages = [big, b"small", text, bytearray(os.urandom(100_000)), big]

    def handler(ws):
        for message in messages:
            ws.send(message)
        ws.send_fragments([big, b"tail"])

    with running(handler, max_frame_size=100_000, max_message_size=None, **options) as server:
        with connect(url(server), max_queue=1, max_message_size=None, **options, **QUICK) as ws:
            received = [ws.recv(TIMEOUT) for _ in range(len(messages) + 1)]
    assert received == [bytes(message) if isinstance(message, bytearray) else message for message in messages] + [
        big + b"tail"
    ]


def test_server_connection_attributes():
    seen = {}

    def handler(ws):
        seen.update(path=ws.path, subprotocol=ws.subprotocol, header=ws.request.headers.get("X-Test"))
        seen.update(response=ws.response.status, remote=ws.remote_address, local=ws.local_address)
        ws.send("ok")

    with running(handler, subprotocols=["chat"]) as server:
        port = server.port
        with connect(url(server, "/room?x=1"), subprotocols=["other", "chat"], extra_headers={"X-Test": "1"}) as ws:
            assert ws.recv(TIMEOUT) == "ok"
            assert ws.subprotocol == "chat"
            with pytest.raises(ConnectionClosedOK):
                ws.recv(TIMEOUT)
    assert seen["path"] == "/room?x=1" and seen["subprotocol"] == "chat" and seen["header"] == "1"
    assert seen["response"] == 101 and seen["local"] == ("127.0.0.1", port)
    assert seen["remote"] == ws.local_address


def test_recv_timeout_loses_nothing():
    go = threading.Event()

    def handler(ws):
        assert go.wait(TIMEOUT)
        ws.send("late")
        ws.recv(TIMEOUT)

    with running(handler) as server, connect(url(server)) as ws:
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.01)
        go.set()
        assert ws.recv(TIMEOUT) == "late"
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0)


def test_recv_in_one_thread_while_others_send():
    count = 300
    received = []

    with running(echo) as server, connect(url(server)) as ws:

        def reader():
            for _ in range(2 * count):
                received.append(ws.recv(TIMEOUT))

        thread = threading.Thread(target=reader)
        thread.start()
        senders = [
            threading.Thread(target=lambda tag=tag: [ws.send(f"{tag}{i}") for i in range(count)]) for tag in "ab"
        ]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join(TIMEOUT)
        thread.join(TIMEOUT)
        assert not thread.is_alive()
        with pytest.raises(RuntimeError, match="another thread"):
            threading_recv_twice(ws)
    for tag in "ab":  # each sender's messages in its own order
        assert [m for m in received if m[0] == tag] == [f"{tag}{i}" for i in range(count)]


def threading_recv_twice(ws):
    got = []
    blocked = threading.Thread(target=lambda: got.append(ws.recv(TIMEOUT)), daemon=True)
    blocked.start()
    wait_until(lambda: ws._receiving)
    try:
        ws.recv(0)
    finally:
        ws.send("unblock")  # the echo ends the other recv()
        blocked.join(TIMEOUT)
        assert got == ["unblock"]


def test_iteration_and_close_codes():
    def handler(ws):
        ws.send("one")
        ws.close(4000, "bye")

    with running(handler) as server, connect(url(server)) as ws:
        with pytest.raises(ConnectionClosedError) as caught:
            list(ws)
        assert (caught.value.code, caught.value.reason) == (4000, "bye")
        assert (ws.close_code, ws.close_reason) == (4000, "bye")

    def normal(ws):
        ws.send("one")
        ws.send("two")

    with running(normal) as server, connect(url(server)) as ws:
        assert list(ws) == ["one", "two"]  # iteration ends at a 1000 close
        with pytest.raises(ConnectionClosedOK):
            ws.send("more")


def test_handler_error_closes_1011_and_client_close_reaches_handler():
    def broken(ws):
        raise ValueError("boom")

    with running(broken) as server, connect(url(server)) as ws:
        with pytest.raises(ConnectionClosedError) as caught:
            ws.recv(TIMEOUT)
        assert caught.value.code == 1011

    closed = {}

    def handler(ws):
        try:
            ws.recv(TIMEOUT)
        except ConnectionClosedOK as exc:
            closed["code"] = (exc.code, exc.reason)

    with running(handler) as server:
        ws = connect(url(server))
        ws.close(1001, "leaving")
        server_side = next(iter(server.connections), None)
        if server_side is not None:
            assert server_side.wait_closed(TIMEOUT)
    wait_until(lambda: "code" in closed)
    assert closed["code"] == (1001, "leaving")


def test_ping_waits_for_pong():
    with running(echo) as server, connect(url(server)) as ws:
        latency = ws.ping().wait(TIMEOUT)
        assert 0 <= latency < TIMEOUT and ws.latency == latency
        first, second = ws.ping(b"1"), ws.ping(b"2")
        assert second.wait(TIMEOUT) >= 0 and first.received  # a pong answers earlier pings too
        ws.close()
        with pytest.raises(ConnectionClosedOK):
            ws.ping()


def test_receive_queue_is_bounded_and_loses_nothing():
    count, size = 200, 65536  # 12.5 MiB: more than the server's socket buffers hold
    sent = []

    def handler(ws):
        for i in range(count):
            ws.send(bytes([i]) * size)
            sent.append(i)
        ws.recv(TIMEOUT)

    with running(handler, compression=None) as server:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)  # before connecting: a small window
        sock.connect(("127.0.0.1", server.port))
        ws = connect(url(server), sock=sock, max_queue=8, compression=None)
        wait_until(lambda: ws.reading_paused)
        # reading stopped after the read that filled the queue: TCP pushes back
        assert 8 <= len(ws._queue) <= 8 + RECV_SIZE // size + 1
        assert len(sent) < count  # the server is blocked in send()
        assert [ws.recv(TIMEOUT) for _ in range(count)] == [bytes([i]) * size for i in range(count)]
        assert not ws.reading_paused
        ws.close()


def test_send_fragments_keeps_other_senders_out():
    release = threading.Event()

    def pieces():
        yield "a"
        assert release.wait(TIMEOUT)
        yield "b"

    with running(echo) as server, connect(url(server)) as ws:
        fragments = threading.Thread(target=ws.send_fragments, args=(pieces(),))
        fragments.start()
        wait_until(lambda: ws._fragmenter is not None)
        other = threading.Thread(target=ws.send, args=("c",))
        other.start()
        release.set()
        fragments.join(TIMEOUT)
        other.join(TIMEOUT)
        assert [ws.recv(TIMEOUT), ws.recv(TIMEOUT)] == ["ab", "c"]

        def failing():
            yield "x"
            yield "y"  # "x" is sent once "y" is known not to be the last piece
            raise KeyError("source failed")

        with pytest.raises(KeyError):
            ws.send_fragments(failing())
        with pytest.raises(ConnectionClosedError) as caught:
            ws.recv(TIMEOUT)
        assert caught.value.code == 1011  # a truncated message is never delivered


# -- the server ------------------------------------------------------------------


def test_max_connections_answers_503():
    release = threading.Event()

    def handler(ws):
        release.wait(TIMEOUT)

    with running(handler, max_connections=1) as server:
        with connect(url(server)):
            with pytest.raises(InvalidStatus) as caught:
                connect(url(server))
            assert caught.value.status == 503
            release.set()
        wait_until(lambda: not server.connections)
        with connect(url(server)):  # a slot is free again
            pass


def test_shutdown_closes_with_1001_and_joins_threads():
    before = threading.active_count()
    entered = threading.Barrier(4, timeout=TIMEOUT)

    def handler(ws):
        entered.wait()
        for _ in ws:
            pass

    server = serve(handler, "127.0.0.1", 0, **QUICK)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    clients = [connect(url(server)) for _ in range(3)]
    entered.wait()
    server.shutdown()
    thread.join(TIMEOUT)
    for ws in clients:
        with pytest.raises(ConnectionClosedOK) as caught:
            ws.recv(TIMEOUT)
        assert caught.value.code == 1001
        assert ws.wait_closed(TIMEOUT)
    assert not server.connections and not server._threads
    wait_until(lambda: threading.active_count() <= before)
    with pytest.raises(OSError):
        connect(url(server), open_timeout=1)


def test_process_request_basic_auth_and_process_response():
    users = {}

    def handler(ws):
        users["name"] = ws.username
        ws.send("hi")

    def process_response(ws, request, response):
        response.headers.add("X-Seen", str(response.status))

    auth = basic_auth("realm", {"alice": "s3cret"})
    with running(handler, process_request=auth, process_response=process_response) as server:
        with pytest.raises(InvalidStatus) as caught:
            connect(url(server))
        assert caught.value.status == 401 and caught.value.response.headers["X-Seen"] == "401"
        port = server.port
        with connect(f"ws://alice:s3cret@127.0.0.1:{port}/") as ws:
            assert ws.recv(TIMEOUT) == "hi" and ws.response.headers["X-Seen"] == "101"
    assert users["name"] == "alice"


def test_hooks_that_fail_answer_500():
    def process_request(ws, request):
        if request.path == "/raise":
            raise RuntimeError("bug")
        if request.path == "/async":
            return _coroutine()
        return Response(200, [("Content-Type", "text/plain")], b"plain HTTP")

    with running(echo, process_request=process_request) as server:
        for path, status in [("/raise", 500), ("/async", 500), ("/", 200)]:
            with pytest.raises(InvalidStatus) as caught:
                connect(url(server, path))
            assert caught.value.status == status
            assert caught.value.response.headers["Server"].startswith("fastws/")


async def _coroutine():
    return None


def test_bad_requests_rejected_without_a_thread_leak():
    with running(echo, origins=["https://good"]) as server:
        with pytest.raises(InvalidStatus) as caught:
            connect(url(server), origin="https://evil")
        assert caught.value.status == 403
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 426")
        sock.close()
        wait_until(lambda: not server._threads)


def test_redirect_followed_and_loops_refused():
    with running(echo) as target:
        location = url(target, "/there")

        def redirect(ws, request):
            return Response(302, [("Location", location)])

        with running(echo, process_request=redirect) as server:
            with connect(url(server)) as ws:
                ws.send("x")
                assert ws.recv(TIMEOUT) == "x"
                assert ws.remote_address[1] == target.port
            with pytest.raises(InvalidStatus):
                connect(url(server), max_redirects=0)

    def loop(ws, request):
        return Response(307, [("Location", "/again")])

    with running(echo, process_request=loop) as server:
        with pytest.raises(InvalidRedirect, match="more than 3 redirects"):
            connect(url(server), max_redirects=3)


def test_unknown_keywords_are_type_errors():
    with pytest.raises(TypeError, match="max_message_size"):
        serve(echo, "127.0.0.1", 0, max_size=10)
    with pytest.raises(TypeError, match="extra_headers"):
        connect("ws://127.0.0.1:1/", additional_headers={})
    with pytest.raises(TypeError, match="path"):
        unix_serve(echo, "/tmp/x.sock", port=1)


def test_limits_defaults_match_asyncio():
    from fastws.limits import Limits

    with running(echo, max_message_size=10) as server, connect(url(server)) as ws:
        assert ws.limits.max_queue == Limits().max_queue and ws.limits.ping_interval == 20.0
        ws.send("x" * 11)
        with pytest.raises(ConnectionClosedError) as caught:
            ws.recv(TIMEOUT)
        assert caught.value.code == 1009


def test_unix_sockets(tmp_path):
    path = str(tmp_path / "ws.sock")
    server = unix_serve(echo, path, **QUICK)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        with unix_connect(path) as ws:
            ws.send("over unix")
            assert ws.recv(TIMEOUT) == "over unix"
    finally:
        server.shutdown()
        thread.join(TIMEOUT)
    assert not os.path.exists(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        unix_connect(path)


def test_tls(tmp_path):
    server_context, client_context = tls_contexts()
    with running(echo, ssl=server_context) as server:
        with connect(f"wss://127.0.0.1:{server.port}/", ssl=client_context) as ws:
            for size in (10, 1 << 19):
                data = os.urandom(size)
                ws.send(data)
                assert ws.recv(TIMEOUT) == data
            assert ws.ping().wait(TIMEOUT) >= 0


def test_no_asyncio_on_this_path(codec):
    program = """
import sys, threading
import fastws.sync
def echo(ws):
    for m in ws:
        ws.send(m)
with fastws.sync.serve(echo, "127.0.0.1", 0) as server:
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with fastws.sync.connect(f"ws://127.0.0.1:{server.port}/") as ws:
        ws.send("x")
        assert ws.recv(10) == "x"
assert "asyncio" not in sys.modules, "asyncio was imported"
print("ok", fastws.codec.BACKEND)
"""
    backend = "python" if codec.__name__.endswith("_py") else "cython"
    env = {**os.environ, "FASTWS_CODEC": backend}
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60, env=env)
    assert result.stdout.split() == ["ok", backend], result.stderr


# -- peers that misbehave (quick ones; the long ones are in test_sync_hostile.py) --


def test_slowloris_handshake_dropped_after_open_timeout():
    with running(echo, open_timeout=0.2) as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
        sock.sendall(b"GET / HTTP/1.1\r\n")
        assert sock.recv(4096) == b""  # closed by the server, no answer
        sock.close()
        wait_until(lambda: not server._threads)


def test_peer_vanishing_mid_frame():
    closed = {}
    done = threading.Event()

    def handler(ws):
        try:
            ws.recv(TIMEOUT)
        except ConnectionClosedError as exc:
            closed["code"] = exc.code
        done.set()

    with running(handler) as server:
        sock, _ = raw_client(server.port)
        frame = client_frame(OP_BINARY, b"x" * 1000)
        sock.sendall(frame[:500])
        sock.close()
        assert done.wait(TIMEOUT)
    assert closed["code"] == 1006


def test_protocol_error_closes_1002_after_earlier_messages():
    with running(echo) as server:
        sock, _ = raw_client(server.port)
        unmasked = bytes((0x81, 2)) + b"no"
        sock.sendall(client_frame(OP_TEXT, b"first") + unmasked)
        received = b""
        while True:
            data = sock.recv(4096)
            if not data:
                break
            received += data
        sock.close()
    # the echo of "first" (server frames are unmasked), then close 1002
    assert received.startswith(bytes((0x81, 5)) + b"first" + bytes((0x88,)))
    assert received[7 + 1 + 1 : 7 + 1 + 1 + 2] == (1002).to_bytes(2, "big")


def test_keepalive_drops_a_silent_peer():
    done = threading.Event()
    closed = {}

    def handler(ws):
        try:
            ws.recv(TIMEOUT)
        except ConnectionClosedError as exc:
            closed["code"] = exc.code
        done.set()

    with running(handler, ping_interval=0.05, ping_timeout=0.1) as server:
        sock, _ = raw_client(server.port)  # reads nothing, answers no ping
        assert done.wait(TIMEOUT)
        sock.close()
    assert closed["code"] in (1006, 1011)


def test_client_keepalive_pings_and_stays_open():
    with running(echo) as server, connect(url(server), ping_interval=0.02, ping_timeout=TIMEOUT) as ws:
        wait_until(lambda: ws.latency > 0)  # a keepalive ping was answered
        ws.send("still open")
        assert ws.recv(TIMEOUT) == "still open"


def test_writer_to_a_peer_that_never_reads_is_dropped():
    done = threading.Event()
    result = {}

    def handler(ws):
        chunk = b"x" * 65536
        try:
            while True:
                ws.send(chunk)
                result["outbox"] = max(result.get("outbox", 0), len(ws._outbox))
        except ConnectionClosedError as exc:
            result["error"] = exc
        done.set()

    with running(handler, write_timeout=0.2, compression=None) as server:
        sock, _ = raw_client(server.port, receive_buffer=4096)
        assert done.wait(TIMEOUT)
        sock.close()
    assert result["error"].code == 1006 and "write timed out" in result["error"].reason
    assert result.get("outbox", 0) <= 1  # nothing piles up in memory


# -- proxies ------------------------------------------------------------------------


class ConnectProxy:
    """A minimal HTTP CONNECT proxy on threads: records each request head,
    answers ``status``, and relays bytes both ways after a 200."""

    def __init__(self, status: int = 200, tls: Optional[ssl.SSLContext] = None) -> None:
        self.status = status
        self.tls = tls  # an https:// proxy: TLS with the client, then CONNECT inside it
        self.heads: list[bytes] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        client, _ = self.listener.accept()
        if self.tls is not None:
            client = self.tls.wrap_socket(client, server_side=True)
        head = b""
        while b"\r\n\r\n" not in head:
            head += client.recv(4096)
        self.heads.append(head)
        if self.status != 200:
            client.sendall(b"HTTP/1.1 %d Nope\r\nContent-Length: 0\r\n\r\n" % self.status)
            client.close()
            return
        host, port = head.split(b" ")[1].rsplit(b":", 1)
        upstream = socket.create_connection((host.decode(), int(port)))
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        relay = threading.Thread(target=self.pipe, args=(upstream, client), daemon=True)
        relay.start()
        self.pipe(client, upstream)
        relay.join(TIMEOUT)

    @staticmethod
    def pipe(source: socket.socket, target: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                target.sendall(data)
            target.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        self.listener.close()
        self.thread.join(TIMEOUT)


def test_http_connect_proxy_with_credentials(monkeypatch):
    with running(echo) as server:
        proxy = ConnectProxy()
        with connect(url(server), proxy=f"http://user:p%C3%A9@127.0.0.1:{proxy.port}") as ws:
            ws.send("through the proxy")
            assert ws.recv(TIMEOUT) == "through the proxy"
        proxy.close()
        head = proxy.heads[0].decode("latin-1")
        assert head.startswith(f"CONNECT 127.0.0.1:{server.port} HTTP/1.1\r\n")
        assert "Proxy-Authorization: Basic dXNlcjpww6k=" in head  # user:pé in UTF-8

        refusing = ConnectProxy(407)
        monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{refusing.port}")  # proxy=True: the environment
        with pytest.raises(ProxyError, match="407"):
            connect(url(server))
        refusing.close()
        with pytest.raises(ProxyError, match="cannot reach socks5 proxy 127.0.0.1:1"):
            connect(url(server), proxy="socks5://127.0.0.1:1")


def test_https_proxy():
    """TLS with the proxy, CONNECT inside it, the WebSocket inside the tunnel;
    wss:// through it (TLS inside TLS) is the asyncio client's."""
    proxy_tls, trust = tls_contexts()
    with running(echo) as server:
        proxy = ConnectProxy(tls=proxy_tls)
        with connect(url(server), proxy=f"https://127.0.0.1:{proxy.port}", proxy_ssl=trust) as ws:
            ws.send(b"\x00" * 100000)
            assert ws.recv(TIMEOUT) == b"\x00" * 100000
        proxy.close()
        assert proxy.heads[0].startswith(f"CONNECT 127.0.0.1:{server.port} HTTP/1.1\r\n".encode())
        with pytest.raises(NotImplementedError, match="needs the asyncio client"):
            connect(f"wss://127.0.0.1:{server.port}/", proxy="https://127.0.0.1:1")


# -- reconnect -----------------------------------------------------------------


def test_reconnect_retries_5xx_then_connects():
    from fastws.sync import reconnect

    gate = Gate(3)
    with running(echo, process_request=gate) as server:
        for ws in reconnect(url(server), backoff=fast()):
            ws.send("hi")
            assert ws.recv(timeout=TIMEOUT) == "hi"
            break
        assert gate.requests == 4
        wait_until(lambda: ws.closed)  # leaving the loop closed it


def test_reconnect_does_not_retry_4xx_or_take_a_socket():
    from fastws.sync import reconnect

    gate = Gate(1, status=403)
    with running(echo, process_request=gate) as server:
        with pytest.raises(InvalidStatus) as info:
            for _ in reconnect(url(server), backoff=fast()):
                pytest.fail("a 403 must not connect")
        assert info.value.status == 403 and gate.requests == 1
        with pytest.raises(TypeError, match="sock="):
            next(reconnect(url(server), sock=socket.socket()))


def test_reconnect_after_the_server_drops_delivers_every_message():
    """The server closes each connection (1011) after two messages; the
    client reconnects and sends the rest: every message echoed once, in order."""
    served = []

    def two_then_drop(ws):
        for _ in range(2):
            message = ws.recv()
            served.append(message)
            ws.send(message)
        ws.close(1011, "going")

    from fastws.sync import reconnect

    todo, echoed, connections = [str(i) for i in range(7)], [], 0
    with running(two_then_drop) as server:
        for ws in reconnect(url(server), backoff=fast()):
            connections += 1
            try:
                while todo:
                    ws.send(todo[0])
                    echoed.append(ws.recv(timeout=TIMEOUT))
                    todo.pop(0)
            except ConnectionClosedError as exc:
                assert exc.code == 1011
                continue
            break
    assert echoed == served == [str(i) for i in range(7)]
    assert connections == 4
