"""fastws as uvicorn's WebSocket protocol: ``uvicorn app:app --ws fastws.uvicorn:WebSocketProtocol``.

uvicorn's HTTP protocol hands an upgrade request over to the class named by
``--ws``: it constructs it with ``(config, server_state, app_state)``, calls
``connection_made(transport)`` and feeds it the request head. This class then
runs the ASGI WebSocket spec (connect, accept, receive, send, disconnect,
close, the ``websocket.http.response`` denial extension) on fastws's sans-I/O
handshake and ``Connection``, so the frames go through the compiled codec.

It mirrors uvicorn's own classes (``wsproto_impl.WSProtocol``,
``websockets_sansio_impl.WebSocketsSansIOProtocol``): same constructor and
attributes, same ASGI events, error paths and close codes, same log lines
(tests/interop/test_uvicorn.py runs them side by side, every ASGI event
sequence included). Where those two disagree, this class does what
websockets-sansio does: a denial response is written whole at its last body
part (nothing if the app fails first), and TCP lost before the handshake
completed, a started denial included, is ``websocket.disconnect`` 1006.
Differences, on purpose:

- reading pauses once ``ws_max_queue`` messages wait for the app (uvicorn's
  classes pause after every message and ignore ``ws_max_queue``);
- a client that breaks the protocol gets its close frame before a lingering
  close (closing with unread data can reset the connection and lose it);
- an unsupported ``Sec-WebSocket-Version`` is answered 426 with the supported
  version (RFC 6455 §4.4), as wsproto does;
- keepalive counts any data received since the ping as a sign of life, so a
  busy client whose pong waits behind its messages is not dropped;
- a header name that is not a token (RFC 9110 §5.1) is refused like a value
  with CR, LF or NUL: ``websocket.accept`` or the last
  ``websocket.http.response.body`` raises (a ValueError) and nothing of that
  head is written (a 500 follows for accept); websockets-sansio writes such a
  name as given. The exceptions for unwritable headers, close codes and
  reasons are fastws's ValueErrors, not websockets' own;
- a complete denial response is complete: websockets-sansio also logs "ASGI
  callable returned without completing handshake." when the app returns
  before TCP is closed; wsproto and this class do not;
- a body part after the last one raises RuntimeError (websockets-sansio: an
  AssertionError from inside websockets);
- the websockets library's own lines ("connection open", "connection
  rejected (...)", "connection closed"), which websockets-sansio logs through
  uvicorn's logger, are not logged; uvicorn's own lines are the same.

Keepalive, read pausing and how TCP is closed are decided by fastws.policy,
as in fastws.asyncio, and the handshake runs fastws.upgrade.ServerUpgrade;
the ASGI conversation is one ``Phase``. As in uvicorn's classes (and unlike
fastws.asyncio, which waits until the handler has taken them), a protocol
error's close frame leaves at once: the messages before it are still queued
for the app, but a reply to them raises ClientDisconnected.

Only this module imports uvicorn; ``import fastws`` never does.
"""

from __future__ import annotations

import asyncio
import collections
import email.utils
import enum
import logging
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

from .asyncio.protocol import write_buffers, writelines_trusted
from .connection import Connection, State
from .exceptions import ConnectionClosed, InvalidHandshake
from .extensions.permessage_deflate import PerMessageDeflate
from .frames import OP_CLOSE, OP_PONG, OP_TEXT, CloseCode
from .handshake import Headers, Response, ServerHandshake, error_response
from .policy import Keepalive, PeerDead, ReadFlow, SendPing, TransportAction, transport_action
from .upgrade import ServerUpgrade

__all__ = ["WebSocketProtocol", "Phase", "DEFLATE"]

DEFLATE = PerMessageDeflate(
    server_max_window_bits=12, client_max_window_bits=12, mem_level=5, compressor_window_bits=None
)
"""permessage-deflate with ``ws_per_message_deflate``: the windows and memLevel
uvicorn's websockets-sansio class negotiates, so memory per connection matches."""

CLOSE_TIMEOUT = 10.0
"""Seconds to wait for the client's close frame (uvicorn's classes use 10 too)."""

INTERNAL_ERROR_BODY = b"Internal Server Error"


class Phase(enum.Enum):
    """Where the ASGI conversation is: one state instead of uvicorn's flags
    (handshake_complete, close_sent, disconnected, initial_response).

    REQUEST -> CONNECTING (the app runs) -> OPEN (websocket.accept: 101)
    -> CLOSED (we sent a close frame). From CONNECTING, websocket.close answers
    403 (-> CLOSED) and websocket.http.response.start begins a denial
    (-> RESPONDING -> RESPONDED once the last body part is sent). Any phase
    -> LOST when TCP is gone. A 500 leaves the phase as it was, as in uvicorn.
    """

    REQUEST = "request"  # reading the upgrade request; the app has not started
    CONNECTING = "connecting"  # the app runs and has not answered yet
    RESPONDING = "responding"  # denial response started, body pending (nothing written yet)
    RESPONDED = "responded"  # denial response written
    OPEN = "open"  # 101 written; the client may still have closed (then sends raise ClientDisconnected)
    CLOSED = "closed"  # we sent a close frame (or a 403): sends are an app error
    LOST = "lost"  # TCP is gone: sends raise ClientDisconnected

    @property
    def lost_code(self) -> int:
        """The ``websocket.disconnect`` code when TCP drops in this phase: 1005
        once the handshake completed (uvicorn counts the 403 as completed), else 1006."""
        return 1005 if self in (Phase.OPEN, Phase.CLOSED) else 1006


def _decode_headers(raw: Any) -> list[tuple[str, str]]:
    """ASGI headers (pairs of bytes) as str pairs; wrong types raise in the app."""
    return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in list(raw)]


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
        self.writelines = False  # a large message's buffers leave in one writelines() (see writelines_trusted)
        self.server: Optional[tuple[str, Optional[int]]] = None
        self.client: Optional[tuple[str, int]] = None
        self.scheme: Literal["wss", "ws"] = "ws"
        self.scope: dict[str, Any] = {}
        self.phase = Phase.REQUEST

        # WebSocket state.
        self.handshake = ServerHandshake(
            extensions=DEFLATE.accept_offer if config.ws_per_message_deflate else None, server_header=None
        )
        # The request head, the 101 (sent on websocket.accept) and the bytes the
        # client sent before the app accepted, which wait there.
        self.upgrade = ServerUpgrade(self.handshake)
        self.conn: Optional[Connection] = None  # the sans-I/O connection, once accepted
        self.close_timer: Optional[asyncio.TimerHandle] = None
        self.close_timeout = CLOSE_TIMEOUT
        self.denial: Optional[tuple[int, list[tuple[str, str]], bytes]] = None  # status, headers, body so far

        # Events for the app: a deque and a wake-up future are cheaper per
        # message than an asyncio.Queue.
        self.queue: collections.deque[dict[str, Any]] = collections.deque()
        self.waiter: Optional[asyncio.Future] = None
        self.flow = ReadFlow(config.ws_max_queue)
        self.read_paused = False  # the transport's reading state, as last set
        self.writable = asyncio.Event()
        self.writable.set()

        # Keepalive: fastws.policy decides, this class runs one timer.
        self.ping_interval = config.ws_ping_interval
        self.ping_timeout = config.ws_ping_timeout
        self.keepalive: Optional[Keepalive] = None
        self.keepalive_timer: Optional[asyncio.TimerHandle] = None

    # -- asyncio.Protocol ----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.connections.add(self)  # type: ignore[arg-type]
        self.transport = transport  # type: ignore[assignment]
        self.writelines = writelines_trusted(transport)
        self.server = get_local_addr(self.transport)
        self.client = get_remote_addr(self.transport)
        self.scheme = "wss" if is_ssl(self.transport) else "ws"
        self._trace("WebSocket connection made")

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.stop_keepalive()
        # ASGI: 1005 when no close code was received, as uvicorn's classes send.
        self.put({"type": "websocket.disconnect", "code": self.phase.lost_code})
        self.connections.discard(self)
        self._trace("WebSocket connection lost")
        self.phase = Phase.LOST
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
            self.conn.writable = False  # pongs now wait in the connection (the newest only)

    def resume_writing(self) -> None:
        self.writable.set()
        if self.conn is not None:
            self.conn.writable = True
            self.write(self.conn.data_to_send())  # the pong held back while paused

    def write(self, data: bytes) -> None:
        """Write what the connection produced; ``Connection.data_to_send()``
        already holds pongs back while writing is paused, so anything it
        returns leaves now (a close reply must not wait)."""
        if data and not self.transport.is_closing():
            self.transport.write(data)

    def write_message(self, conn: Connection, message: Any) -> None:
        """Write one message's frames; a large ``bytes`` or ``str`` payload by
        reference (``Connection.send_buffers``), not copied into its frame."""
        buffers = conn.send_buffers(message)
        if len(buffers) == 1:
            self.transport.write(buffers[0])
        else:
            write_buffers(self.transport, buffers, self.writelines)

    def update_reading(self) -> None:
        """Read unless ReadFlow says the app's queue is full, or bytes wait for websocket.accept."""
        paused = self.flow.paused or (self.conn is None and bool(self.upgrade.early_data))
        if paused != self.read_paused and not self.transport.is_closing():
            self.read_paused = paused
            if paused:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        if conn is None:
            self.handshake_data_received(data)
            return
        if conn.state is State.CLOSED:
            return  # lingering after a protocol error: read and drop until EOF
        if self.keepalive is not None:
            self.keepalive.data_received()
        events = conn.receive_data(data)
        self.write(conn.data_to_send())  # pongs and the reply to a close frame
        discard = self.phase is not Phase.OPEN  # past websocket.close, messages are dropped
        for frame in events:
            opcode = frame.opcode
            if opcode < OP_CLOSE:
                if not discard:
                    if opcode == OP_TEXT:
                        self.put({"type": "websocket.receive", "text": frame.payload})
                    else:
                        self.put({"type": "websocket.receive", "bytes": frame.payload})
            elif opcode == OP_PONG:
                keepalive = self.keepalive
                if keepalive is not None and keepalive.pong_received(frame.payload, self.loop.time()):
                    self.arm_keepalive()
        if conn.state is State.CLOSED:
            self.connection_closed(conn)
        elif self.flow.after_put(len(self.queue)):
            self.update_reading()

    def connection_closed(self, conn: Connection) -> None:
        """The close handshake finished, or the client broke the protocol: tell
        the app (unless it closed first) and close TCP as fastws.policy says."""
        self.stop_keepalive()
        if self.phase is Phase.OPEN:
            if conn.error is not None:
                self.phase = Phase.CLOSED  # our close frame went out
                self.put({"type": "websocket.disconnect", "code": conn.error.code, "reason": conn.error.reason})
            else:
                # The client closed first; the echo of its close frame is written.
                assert conn.close_received is not None
                code, reason = conn.close_received
                self.put({"type": "websocket.disconnect", "code": code, "reason": reason})
        if transport_action(conn) is TransportAction.LINGER:
            self.linger()
            return
        if self.close_timer is not None:
            self.close_timer.cancel()
            self.close_timer = None
        self.close_transport()  # RFC 6455 §7.1.1: the server closes TCP first

    def close_transport(self) -> None:
        """Close TCP, and abort it if it is not gone within close_timeout: a
        client that reads nothing keeps the write buffer, and so the close,
        pending forever (fastws.policy.transport_action)."""
        self.transport.close()
        if self.close_timer is None:
            self.close_timer = self.loop.call_later(self.close_timeout, self.transport.abort)

    def close_timer_expired(self) -> None:
        """No close frame from the client within close_timeout of ours."""
        self.close_timer = None
        self.close_transport()

    def linger(self) -> None:
        """After a protocol error: shut down our side and read until the client
        hangs up (bounded by close_timeout), so our close frame is not lost to a reset."""
        self.flow.closing()
        self.update_reading()
        if self.transport.can_write_eof() and not self.transport.is_closing():
            self.transport.write_eof()
            if self.close_timer is None:
                self.close_timer = self.loop.call_later(self.close_timeout, self.transport.abort)
        else:
            self.close_transport()

    # -- handshake -----------------------------------------------------------

    def handshake_data_received(self, data: bytes) -> None:
        try:
            request = self.upgrade.receive_data(data)
            if request is None:
                # Incomplete head, or frames sent before websocket.accept: those
                # wait in the upgrade, and reading pauses so an impatient client
                # cannot make us buffer without bound.
                if self.upgrade.early_data:
                    self.update_reading()
                return
            self.upgrade.accept()
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
        self.phase = Phase.CONNECTING
        if self.upgrade.early_data:
            self.update_reading()
        self.put({"type": "websocket.connect"})
        task = self.loop.create_task(self.run_asgi())
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    def reject_handshake(self, exc: InvalidHandshake) -> None:
        """A malformed upgrade request never reaches the app."""
        self.logger.info("%sWebSocket handshake rejected: %d %s", self._prefix(), exc.status, exc.reason)
        self.phase = Phase.CLOSED
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
            if self.phase in (Phase.CONNECTING, Phase.RESPONDING):
                self.logger.error("ASGI callable returned without completing handshake.")
                self.send_500_response()
            elif result is not None:
                self.logger.error("ASGI callable should return None, but returned '%s'.", result)
        if self.close_timer is None:
            self.transport.close()

    def send_500_response(self) -> None:
        """500 if nothing was answered yet (a started denial gets nothing: its
        head was not written). The phase stays: uvicorn's classes do the same."""
        if self.phase not in (Phase.REQUEST, Phase.CONNECTING):
            return
        headers = Headers(
            [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Connection", "close"),
                ("Content-Length", str(len(INTERNAL_ERROR_BODY))),
            ]
        )
        response = Response(500, headers, INTERNAL_ERROR_BODY)
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
        if self.flow.after_get(len(queue)):
            self.update_reading()
        return event

    async def send(self, message: dict[str, Any]) -> None:
        if not self.writable.is_set():
            await self.writable.wait()
        phase = self.phase
        if phase is Phase.LOST:
            raise ClientDisconnected()
        message_type = message["type"]
        if phase is Phase.OPEN:
            conn = self.conn
            assert conn is not None
            try:
                if message_type == "websocket.send":
                    data = message.get("bytes")
                    if data is None:
                        data = message.get("text")
                    if data is not None:
                        self.write_message(conn, data)
                elif message_type == "websocket.close":
                    self.send_close(conn, message.get("code", 1000), message.get("reason") or "")
                else:
                    raise RuntimeError(
                        f"Expected ASGI message 'websocket.send' or 'websocket.close', but got '{message_type}'."
                    )
            except ConnectionClosed:
                raise ClientDisconnected() from None
        elif phase is Phase.CONNECTING:
            if message_type == "websocket.accept":
                self.accept(message)
            elif message_type == "websocket.close":
                self.send_403()
            elif message_type == "websocket.http.response.start":
                self.start_denial(message)
            else:
                raise RuntimeError(
                    "Expected ASGI message 'websocket.accept', 'websocket.close' "
                    f"or 'websocket.http.response.start' but got '{message_type}'."
                )
        elif phase is Phase.RESPONDING or phase is Phase.RESPONDED:
            if message_type != "websocket.http.response.body":
                raise RuntimeError(f"Expected ASGI message 'websocket.http.response.body' but got '{message_type}'.")
            if phase is Phase.RESPONDED:
                raise RuntimeError("Unexpected ASGI message 'websocket.http.response.body', after the last body part.")
            assert self.denial is not None
            status, headers, body = self.denial
            body = body + message["body"]
            self.denial = (status, headers, body)
            if not message.get("more_body", False):
                self.send_denial_response(status, headers, body)
        else:
            raise RuntimeError(f"Unexpected ASGI message '{message_type}', after sending 'websocket.close'.")

    def accept(self, message: dict[str, Any]) -> None:
        """websocket.accept: send the 101 answer and start the WebSocket connection."""
        self.logger.info('%s - "WebSocket %s" [accepted]', self._client(), self._path())
        response = self.upgrade.response
        assert response is not None
        extra = [
            (name.lower(), value)
            for name, value in _decode_headers(self.default_headers + list(message.get("headers", [])))
        ]
        subprotocol = message.get("subprotocol")
        if subprotocol:
            extra.append(("Sec-WebSocket-Protocol", subprotocol))
        # Headers checks each one (RFC 9110 §5.1, §5.5) before anything is
        # written: a header that cannot be written raises InvalidHeader (a
        # ValueError) in the app, which then gets a 500, as websockets-sansio does.
        headers = Headers(list(response.headers))
        for name, value in extra:
            headers.add(name, value)
        if self.transport.is_closing():
            return
        response.headers = headers
        self.phase = Phase.OPEN
        self.transport.write(response.serialize())
        self.conn, early = self.upgrade.open(max_message_size=self.config.ws_max_size)
        self.start_keepalive()
        self.update_reading()
        if early:
            self.data_received(early)

    def send_403(self) -> None:
        """websocket.close before accept: 403, as uvicorn's classes answer."""
        self.put({"type": "websocket.disconnect", "code": 1006})
        self.logger.info('%s - "WebSocket %s" 403', self._client(), self._path())
        self.phase = Phase.CLOSED
        headers = Headers(
            [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "0"), ("Connection", "close")]
        )
        self.transport.write(self._with_default_headers(Response(403, headers)).serialize())
        self.transport.close()

    def start_denial(self, message: dict[str, Any]) -> None:
        """websocket.http.response.start: nothing is written until the last body part."""
        status = message["status"]
        if not 100 <= status < 600:
            raise RuntimeError(f"Invalid HTTP status code '{status}' in response.")
        self.logger.info('%s - "WebSocket %s" %d', self._client(), self._path(), status)
        self.denial = (status, _decode_headers(message.get("headers", [])), b"")
        self.phase = Phase.RESPONDING

    def send_close(self, conn: Connection, code: int, reason: str) -> None:
        """websocket.close after accept: start the close handshake."""
        if self.transport.is_closing():
            return
        self.put({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.transport.write(conn.send_close(code, reason))
        self.phase = Phase.CLOSED
        self.stop_keepalive()
        if self.flow.closing():  # keep reading until the client's close frame arrives
            self.update_reading()
        self.close_timer = self.loop.call_later(self.close_timeout, self.close_timer_expired)

    def send_denial_response(self, status: int, raw_headers: list[tuple[str, str]], body: bytes) -> None:
        """The websocket.http.response extension: answer the upgrade with plain HTTP."""
        headers = Headers(raw_headers)  # raises InvalidHeader for one that cannot be written
        for name, value in (
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Length", str(len(body))),
            ("Content-Type", "text/plain; charset=utf-8"),
        ):
            if name not in headers:
                headers.add(name, value)
        response = Response(status, headers, body)
        self.put({"type": "websocket.disconnect", "code": 1006})
        self.phase = Phase.RESPONDED
        self.transport.write(response.serialize())
        self.transport.close()

    # -- graceful shutdown -----------------------------------------------------

    def shutdown(self) -> None:
        """uvicorn is stopping: close with 1012 (service restart), or 500 before accept."""
        self.stop_keepalive()
        if self.phase is Phase.CLOSED or self.phase is Phase.RESPONDED:
            if self.close_timer is not None:
                self.close_timer.cancel()
                self.close_timer = None
        elif self.conn is not None:
            self.put({"type": "websocket.disconnect", "code": 1012})
            self.write(self.conn.send_close(1012))
        else:
            self.send_500_response()
        self.close_transport()

    # -- keepalive (the schedule and the verdicts are fastws.policy.Keepalive's) --

    def start_keepalive(self) -> None:
        interval = self.ping_interval if self.ping_interval is not None and self.ping_interval > 0 else None
        self.keepalive = Keepalive(interval, self.ping_timeout, self.loop.time())
        self.arm_keepalive()

    def stop_keepalive(self) -> None:
        if self.keepalive_timer is not None:
            self.keepalive_timer.cancel()
            self.keepalive_timer = None
        self.keepalive = None

    def arm_keepalive(self) -> None:
        if self.keepalive_timer is not None:
            self.keepalive_timer.cancel()
            self.keepalive_timer = None
        keepalive = self.keepalive
        if keepalive is not None and keepalive.deadline is not None:
            self.keepalive_timer = self.loop.call_at(keepalive.deadline, self.keepalive_due)

    def keepalive_due(self) -> None:
        self.keepalive_timer = None
        conn, keepalive = self.conn, self.keepalive
        if keepalive is None or conn is None or conn.state is not State.OPEN or self.transport.is_closing():
            return
        action = keepalive.on_timer(self.loop.time())
        if isinstance(action, SendPing):
            self.transport.write(conn.send_ping(action.payload))
        elif isinstance(action, PeerDead):
            self._trace("WebSocket keepalive ping timeout")
            self.transport.write(conn.send_close(CloseCode.INTERNAL_ERROR, action.reason))
            self.phase = Phase.CLOSED
            self.keepalive = None
            self.close_transport()
            return
        self.arm_keepalive()

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
