"""fastws as uvicorn's WebSocket protocol: ``uvicorn app:app --ws fastws.uvicorn:WebSocketProtocol``.

uvicorn's HTTP protocol hands an upgrade request over to the class named by
``--ws``: it constructs it with ``(config, server_state, app_state)``, calls
``connection_made(transport)`` and feeds it the request head. This class then
runs the ASGI WebSocket spec (connect, accept, receive, send, disconnect,
close, the ``websocket.http.response`` denial extension) on fastws's sans-I/O
handshake and ``Connection``, so the frames go through the compiled codec.

It mirrors uvicorn's own classes (``wsproto_impl.WSProtocol``,
``websockets_sansio_impl.WebSocketsSansIOProtocol``): same constructor and
attributes, same ASGI events and error paths, same log lines
(tests/interop/test_uvicorn.py runs them side by side). Differences, on purpose:

- reading pauses once ``ws_max_queue`` messages wait for the app (uvicorn's
  classes pause after every message and ignore ``ws_max_queue``);
- a client that breaks the protocol gets its close frame before a lingering
  close (closing with unread data can reset the connection and lose it);
- an unsupported ``Sec-WebSocket-Version`` is answered 426 with the supported
  version (RFC 6455 §4.4), as wsproto does;
- keepalive counts any data received since the ping as a sign of life, so a
  busy client whose pong waits behind its messages is not dropped.

Only this module imports uvicorn; ``import fastws`` never does.
"""

from __future__ import annotations

import asyncio
import collections
import email.utils
import logging
import os
from typing import Any, Literal, Optional
from urllib.parse import unquote

from uvicorn.config import Config
from uvicorn.logging import TRACE_LOG_LEVEL
from uvicorn.protocols.utils import (
    ClientDisconnected,
    get_client_addr,
    get_local_addr,
    get_path_with_query_string,
    get_remote_addr,
    is_ssl,
)
from uvicorn.server import ServerState

from .connection import OP_CLOSE, OP_PONG, OP_TEXT, Connection, State
from .exceptions import ConnectionClosed, InvalidHandshake
from .extensions.permessage_deflate import Deflate, PerMessageDeflate
from .frames import CloseCode
from .handshake import Headers, HeadParser, Response, ServerHandshake, error_response, parse_request

__all__ = ["WebSocketProtocol", "DEFLATE"]

DEFLATE = PerMessageDeflate(server_max_window_bits=12, client_max_window_bits=12, mem_level=5)
"""permessage-deflate with ``ws_per_message_deflate``: the windows and memLevel
uvicorn's websockets-sansio class negotiates, so memory per connection matches."""

CLOSE_TIMEOUT = 10.0
"""Seconds to wait for the client's close frame (uvicorn's classes use 10 too)."""


class WebSocketProtocol(asyncio.Protocol):
    """One WebSocket connection of a uvicorn server, running one ASGI app call."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: Optional[asyncio.AbstractEventLoop] = None,
    ) -> None:
        if not config.loaded:
            config.load()
        self.config = config
        self.app = config.loaded_app
        self.loop = _loop or asyncio.get_running_loop()
        self.logger = logging.getLogger("uvicorn.error")
        self.root_path = config.root_path
        self.asgi_version = config.asgi_version
        self.app_state = app_state

        # Shared server state.
        self.connections = server_state.connections
        self.tasks = server_state.tasks
        self.default_headers = server_state.default_headers

        # Connection state.
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.server: Optional[tuple[str, Optional[int]]] = None
        self.client: Optional[tuple[str, int]] = None
        self.scheme: Literal["wss", "ws"] = "ws"
        self.scope: dict[str, Any] = {}

        # WebSocket state.
        self.handshake = ServerHandshake(
            extensions=DEFLATE.accept_offer if config.ws_per_message_deflate else None, server_header=None
        )
        self.head: Optional[HeadParser] = HeadParser()
        self.response: Optional[Response] = None  # the 101 answer, sent on websocket.accept
        self.deflate: Optional[Deflate] = None
        self.conn: Optional[Connection] = None  # the sans-I/O connection, once accepted
        self.early_data = b""  # bytes the client sent before the app accepted
        self.handshake_complete = False
        self.close_sent = False
        self.disconnected = False
        self.close_timer: Optional[asyncio.TimerHandle] = None
        self.close_timeout = CLOSE_TIMEOUT
        self.initial_response: Optional[tuple[int, list[tuple[bytes, bytes]], bytes]] = None  # denial response

        # Events for the app: a deque and a wake-up future are cheaper per
        # message than an asyncio.Queue.
        self.queue: collections.deque[dict[str, Any]] = collections.deque()
        self.waiter: Optional[asyncio.Future] = None
        self.max_queue = max(config.ws_max_queue, 1)
        self.read_paused = False
        self.writable = asyncio.Event()
        self.writable.set()

        # Keepalive state.
        self.ping_interval = config.ws_ping_interval
        self.ping_timeout = config.ws_ping_timeout
        self.ping_timer: Optional[asyncio.TimerHandle] = None
        self.pong_timer: Optional[asyncio.TimerHandle] = None
        self.pending_ping_payload: Optional[bytes] = None
        self.ping_sent_at = 0.0
        self.last_ping_rtt = 0.0
        self.data_seen = False  # any bytes since the last keepalive ping

    # -- asyncio.Protocol ----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.connections.add(self)  # type: ignore[arg-type]
        self.transport = transport  # type: ignore[assignment]
        self.server = get_local_addr(self.transport)
        self.client = get_remote_addr(self.transport)
        self.scheme = "wss" if is_ssl(self.transport) else "ws"
        self._trace("WebSocket connection made")

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.stop_keepalive()
        # ASGI: 1005 when no close code was received, as uvicorn's classes send.
        self.put({"type": "websocket.disconnect", "code": 1005 if self.handshake_complete else 1006})
        self.connections.discard(self)
        self._trace("WebSocket connection lost")
        self.handshake_complete = True
        self.disconnected = True
        self.writable.set()  # a paused transport that is lost never resumes
        if self.close_timer is not None:
            self.close_timer.cancel()
            self.close_timer = None
        if self.conn is not None:
            self.conn.receive_eof()
        if exc is None:
            self.transport.close()

    def eof_received(self) -> None:
        pass

    def pause_writing(self) -> None:
        self.writable.clear()
        if self.conn is not None:
            self.conn.writable = False

    def resume_writing(self) -> None:
        self.writable.set()
        if self.conn is not None:
            self.conn.writable = True
            out = self.conn.data_to_send()  # the newest pong, held back while paused
            if out and not self.transport.is_closing():
                self.transport.write(out)

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        if conn is None:
            self.handshake_data_received(data)
            return
        if conn.state is State.CLOSED:
            return  # lingering after a protocol error: read and drop until EOF
        self.data_seen = True
        events = conn.receive_data(data)
        # Pongs and the reply to a close frame. While the client reads nothing
        # (writing paused), pongs wait for resume_writing: only the newest is kept.
        if conn.state is not State.OPEN or self.writable.is_set():
            out = conn.data_to_send()
            if out and not self.transport.is_closing():
                self.transport.write(out)
        for frame in events:
            opcode = frame.opcode
            if opcode < OP_CLOSE:
                if not self.close_sent:  # past websocket.close, messages are discarded
                    if opcode == OP_TEXT:
                        self.put({"type": "websocket.receive", "text": frame.payload})
                    else:
                        self.put({"type": "websocket.receive", "bytes": frame.payload})
            elif opcode == OP_PONG:
                self.handle_pong(frame.payload)
        if conn.state is State.CLOSED:
            self.handle_closed(conn)
        elif len(self.queue) >= self.max_queue and not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def handle_closed(self, conn: Connection) -> None:
        """The close handshake finished, or the client broke the protocol."""
        if conn.error is not None:
            if not self.close_sent:
                self.close_sent = True
                self.put({"type": "websocket.disconnect", "code": conn.error.code, "reason": conn.error.reason})
            self.linger()
            return
        if not self.close_sent:
            # The client closed first; the echo of its close frame is written.
            assert conn.close_received is not None
            code, reason = conn.close_received
            self.put({"type": "websocket.disconnect", "code": code, "reason": reason})
        if self.close_timer is not None:
            self.close_timer.cancel()
            self.close_timer = None
        # RFC 6455 §7.1.1: the server closes the TCP connection first.
        self.transport.close()

    def linger(self) -> None:
        """Close after a protocol error: shut down our side and read until the
        client hangs up (bounded by close_timeout). Closing a socket with unread
        data sends a reset, which can destroy the close frame before it is read."""
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        if self.transport.can_write_eof() and not self.transport.is_closing():
            self.transport.write_eof()
            if self.close_timer is None:
                self.close_timer = self.loop.call_later(self.close_timeout, self.transport.abort)
        else:
            self.transport.close()

    # -- handshake -----------------------------------------------------------

    def handshake_data_received(self, data: bytes) -> None:
        if self.head is None:
            # Frames sent before websocket.accept wait for it; reading pauses so
            # an impatient client cannot make us buffer without bound.
            self.early_data += data
            if not self.read_paused:
                self.read_paused = True
                self.transport.pause_reading()
            return
        try:
            result = self.head.feed(data)
            if result is None:
                return
            self.head = None
            head, self.early_data = result
            request = parse_request(head)
            self.response, _, self.deflate = self.handshake.accept(request)
        except InvalidHandshake as exc:
            self.reject_handshake(exc)
            return
        headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in request.headers]
        raw_path, _, query_string = request.path.partition("?")
        subprotocols = [
            token.strip() for value in request.headers.get_all("Sec-WebSocket-Protocol") for token in value.split(",")
        ]
        self.scope = {
            "type": "websocket",
            "asgi": {"version": self.asgi_version, "spec_version": "2.4"},
            "http_version": "1.1",
            "scheme": self.scheme,
            "server": self.server,
            "client": self.client,
            "root_path": self.root_path,
            "path": self.root_path + unquote(raw_path),
            "raw_path": self.root_path.encode("ascii") + raw_path.encode("latin-1"),
            "query_string": query_string.encode("latin-1"),
            "headers": headers,
            "subprotocols": [token for token in subprotocols if token],
            "state": self.app_state.copy(),
            "extensions": {"websocket.http.response": {}},
        }
        self.put({"type": "websocket.connect"})
        task = self.loop.create_task(self.run_asgi())
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    def reject_handshake(self, exc: InvalidHandshake) -> None:
        """A malformed upgrade request never reaches the app."""
        self.logger.info("%sWebSocket handshake rejected: %d %s", self._prefix(), exc.status, exc.reason)
        self.handshake_complete = True
        self.close_sent = True
        response = error_response(exc.status, exc.reason, exc.headers)
        self.transport.write(self._with_default_headers(response).serialize())
        self.transport.close()

    def _with_default_headers(self, response: Response) -> Response:
        headers = Headers([(name.decode("latin-1"), value.decode("latin-1")) for name, value in self.default_headers])
        for name, value in response.headers:
            headers.add(name, value)
        response.headers = headers
        return response

    # -- the ASGI app ----------------------------------------------------------

    async def run_asgi(self) -> None:
        try:
            result = await self.app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            pass
        except BaseException:
            self.logger.exception("Exception in ASGI application\n")
            self.send_500_response()
        else:
            if not self.handshake_complete:
                self.logger.error("ASGI callable returned without completing handshake.")
                self.send_500_response()
            elif result is not None:
                self.logger.error("ASGI callable should return None, but returned '%s'.", result)
        if self.close_timer is None:
            self.transport.close()

    def send_500_response(self) -> None:
        if self.initial_response is not None or self.handshake_complete:
            return  # too late for an HTTP answer
        self.handshake_complete = True
        response = error_response(500, "Internal Server Error")
        self.transport.write(self._with_default_headers(response).serialize())

    def put(self, event: dict[str, Any]) -> None:
        self.queue.append(event)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def receive(self) -> dict[str, Any]:
        queue = self.queue
        while not queue:
            self.waiter = self.loop.create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        event = queue.popleft()
        if self.read_paused and len(queue) <= self.max_queue // 2 and self.conn is not None:
            self.read_paused = False
            self.transport.resume_reading()
        return event

    async def send(self, message: dict[str, Any]) -> None:
        if not self.writable.is_set():
            await self.writable.wait()
        if self.disconnected:
            raise ClientDisconnected()
        message_type = message["type"]
        conn = self.conn
        if conn is not None and not self.close_sent:
            try:
                if message_type == "websocket.send":
                    data = message.get("bytes")
                    if data is None:
                        data = message.get("text")
                    if data is not None:
                        self.transport.write(conn.send(data))
                elif message_type == "websocket.close":
                    self.send_close(conn, message.get("code", 1000), message.get("reason") or "")
                else:
                    raise RuntimeError(
                        f"Expected ASGI message 'websocket.send' or 'websocket.close', but got '{message_type}'."
                    )
            except ConnectionClosed:
                raise ClientDisconnected() from None
        elif not self.handshake_complete:
            if message_type == "websocket.accept":
                self.accept(message)
            elif message_type == "websocket.close":
                self.put({"type": "websocket.disconnect", "code": 1006})
                self.logger.info('%s - "WebSocket %s" 403', self._client(), self._path())
                self.handshake_complete = True
                self.close_sent = True
                response = Response(403, Headers([("Content-Length", "0"), ("Connection", "close")]))
                self.transport.write(self._with_default_headers(response).serialize())
                self.transport.close()
            elif message_type == "websocket.http.response.start":
                status = message["status"]
                if not 100 <= status < 600:
                    raise RuntimeError(f"Invalid HTTP status code '{status}' in response.")
                self.logger.info('%s - "WebSocket %s" %d', self._client(), self._path(), status)
                self.handshake_complete = True
                self.initial_response = (status, list(message.get("headers", [])), b"")
            else:
                raise RuntimeError(
                    "Expected ASGI message 'websocket.accept', 'websocket.close' "
                    f"or 'websocket.http.response.start' but got '{message_type}'."
                )
        elif self.initial_response is not None and not self.close_sent:
            if message_type != "websocket.http.response.body":
                raise RuntimeError(f"Expected ASGI message 'websocket.http.response.body' but got '{message_type}'.")
            status, headers, body = self.initial_response
            body += message.get("body", b"")
            self.initial_response = (status, headers, body)
            if not message.get("more_body", False):
                self.send_denial_response(status, headers, body)
        else:
            raise RuntimeError(f"Unexpected ASGI message '{message_type}', after sending 'websocket.close'.")

    def accept(self, message: dict[str, Any]) -> None:
        """websocket.accept: send the 101 answer and start the WebSocket connection."""
        self.logger.info('%s - "WebSocket %s" [accepted]', self._client(), self._path())
        assert self.response is not None
        headers = self.response.headers
        for name, value in self.default_headers + list(message.get("headers", [])):
            headers.add(name.decode("latin-1").lower(), value.decode("latin-1"))
        subprotocol = message.get("subprotocol")
        if subprotocol:
            headers.add("Sec-WebSocket-Protocol", subprotocol)
        if self.transport.is_closing():
            return
        self.handshake_complete = True
        self.transport.write(self.response.serialize())
        self.conn = Connection(is_client=False, max_message_size=self.config.ws_max_size, deflate=self.deflate)
        self.start_keepalive()
        early, self.early_data = self.early_data, b""
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        if early:
            self.data_received(early)

    def send_close(self, conn: Connection, code: int, reason: str) -> None:
        """websocket.close after accept: start the close handshake."""
        if self.transport.is_closing():
            return
        self.put({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.transport.write(conn.send_close(code, reason))
        self.close_sent = True
        if self.read_paused:  # keep reading until the client's close frame arrives
            self.read_paused = False
            self.transport.resume_reading()
        self.close_timer = self.loop.call_later(self.close_timeout, self.transport.close)

    def send_denial_response(self, status: int, raw_headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        """The websocket.http.response extension: answer the upgrade with plain HTTP."""
        headers = Headers([(name.decode("latin-1"), value.decode("latin-1")) for name, value in raw_headers])
        for name, value in (
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Length", str(len(body))),
            ("Content-Type", "text/plain; charset=utf-8"),
        ):
            if name not in headers:
                headers.add(name, value)
        self.put({"type": "websocket.disconnect", "code": 1006})
        self.close_sent = True
        self.transport.write(Response(status, headers, body).serialize())
        self.transport.close()

    # -- graceful shutdown -----------------------------------------------------

    def shutdown(self) -> None:
        """uvicorn is stopping: close with 1012 (service restart), or 500 before accept."""
        self.stop_keepalive()
        if self.close_sent:
            if self.close_timer is not None:
                self.close_timer.cancel()
                self.close_timer = None
            self.transport.close()
            return
        if self.conn is not None:
            self.put({"type": "websocket.disconnect", "code": 1012})
            if not self.transport.is_closing():
                self.transport.write(self.conn.send_close(1012))
        else:
            self.send_500_response()
        self.close_sent = True
        self.transport.close()

    # -- keepalive ---------------------------------------------------------------

    def start_keepalive(self) -> None:
        if self.ping_interval is not None and self.ping_interval > 0:
            self.schedule_ping()

    def stop_keepalive(self) -> None:
        for timer in (self.ping_timer, self.pong_timer):
            if timer is not None:
                timer.cancel()
        self.ping_timer = self.pong_timer = None
        self.pending_ping_payload = None

    def schedule_ping(self) -> None:
        assert self.ping_interval is not None
        self.ping_timer = self.loop.call_later(max(0.0, self.ping_interval - self.last_ping_rtt), self.send_ping)

    def send_ping(self) -> None:
        self.ping_timer = None
        conn = self.conn
        if conn is None or conn.state is not State.OPEN or self.close_sent or self.transport.is_closing():
            return
        self.pending_ping_payload = os.urandom(4)
        self.ping_sent_at = self.loop.time()
        self.data_seen = False
        self.transport.write(conn.send_ping(self.pending_ping_payload))
        if self.ping_timeout is not None:
            self.pong_timer = self.loop.call_later(self.ping_timeout, self.keepalive_timeout)
        else:
            self.schedule_ping()

    def handle_pong(self, payload: bytes) -> None:
        if self.pending_ping_payload is None or payload != self.pending_ping_payload:
            return  # RFC 6455 §5.5.3: unsolicited (or stale) pongs are ignored
        self.last_ping_rtt = self.loop.time() - self.ping_sent_at
        self.pending_ping_payload = None
        if self.pong_timer is not None:
            self.pong_timer.cancel()
            self.pong_timer = None
            self.schedule_ping()

    def keepalive_timeout(self) -> None:
        self.pong_timer = None
        conn = self.conn
        if conn is None or self.close_sent or self.transport.is_closing():
            return
        if self.data_seen:
            # Data arrived since the ping: the client is alive, its pong is only
            # queued behind it (or the loop was too busy to read it). Wait again.
            self.data_seen = False
            assert self.ping_timeout is not None
            self.pong_timer = self.loop.call_later(self.ping_timeout, self.keepalive_timeout)
            return
        self.pending_ping_payload = None
        self._trace("WebSocket keepalive ping timeout")
        self.transport.write(conn.send_close(CloseCode.INTERNAL_ERROR, "keepalive ping timeout"))
        self.close_sent = True
        self.transport.close()

    # -- logging -----------------------------------------------------------------

    def _client(self) -> str:
        return get_client_addr(self.scope)  # type: ignore[arg-type]

    def _path(self) -> str:
        return get_path_with_query_string(self.scope)  # type: ignore[arg-type]

    def _trace(self, message: str) -> None:
        if self.logger.level <= TRACE_LOG_LEVEL:
            self.logger.log(TRACE_LOG_LEVEL, "%s%s", self._prefix(), message)

    def _prefix(self) -> str:
        return f"{self.client[0]}:{self.client[1]} - " if self.client else ""
